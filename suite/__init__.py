"""synmed-suite: synthetic medical images -> self-supervised pretraining -> evaluation."""

from __future__ import annotations

__version__ = "0.1.0"
