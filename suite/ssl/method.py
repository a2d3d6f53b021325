"""What every SSL method provides to the pretraining loop (one file per method, one registry line)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from suite.models.backbones import BackboneSpec


@dataclass(frozen=True, slots=True)
class Progress:
    """Where the run is: methods schedule their momentum and temperatures from it."""

    step: int  # optimizer steps done before this one
    max_steps: int
    steps_per_epoch: int

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch


def cosine(start: float, end: float, step: int, total: int) -> float:
    """Cosine from ``start`` (step 0) to ``end`` (step ``total``), as DINO's schedules."""
    progress = min(1.0, step / max(1, total))
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))


class SSLMethod(nn.Module, ABC):
    """A backbone plus the heads, loss and any teacher that train it.

    ``forward(views, progress)`` returns the loss of a batch of views; it runs inside DDP, so it
    is the only place the student's parameters are used.
    """

    def __init__(self, backbone: nn.Module, spec: BackboneSpec) -> None:
        super().__init__()
        self.backbone = backbone
        self.spec = spec

    @staticmethod
    @abstractmethod
    def views(cfg: Any, spec: BackboneSpec) -> Callable[[Image.Image], list[torch.Tensor]]:
        """The multi-view transform (a lightly transform) for this method's config."""

    @abstractmethod
    def forward(self, views: list[torch.Tensor], progress: Progress) -> torch.Tensor: ...

    def after_backward(self, progress: Progress) -> None:
        """Between backward and the optimizer step (DINO freezes its last layer here)."""

    def after_step(self, progress: Progress) -> None:
        """After the optimizer step (a teacher's EMA update)."""

    def log_values(self, progress: Progress) -> dict[str, float]:
        return {}

    def export_backbone(self) -> nn.Module:
        """The network whose features downstream tasks use."""
        return self.backbone
