"""What every generator offers the training loop, the sampler and the exporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class Generator(nn.Module):
    """A trainable image generator over images in [0, 1], shape (B, C, H, W).

    Subclasses set ``config`` (their dataclass) and implement the four methods below.
    """

    config: Any

    def training_loss(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The scalar loss of one batch."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # DDP synchronises gradients only for calls that go through forward().
        return self.training_loss(images, labels)

    def scheduler_config(self) -> dict[str, Any]:
        """The noise schedule as diffusers scheduler arguments (``num_train_timesteps``,
        ``trained_betas`` or ``beta_schedule``, ``prediction_type``), so any diffusers sampler
        (DDPM, DDIM, DPM-Solver++) can drive this model."""
        raise NotImplementedError

    def denoise(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None, guidance_scale: float
    ) -> torch.Tensor:
        """The network's prediction at noisy images ``x`` in [-1, 1] and timesteps ``t`` (B,), in
        the parameterisation ``scheduler_config()["prediction_type"]`` names."""
        raise NotImplementedError

    @property
    def class_names(self) -> list[str]:
        return list(getattr(self, "_class_names", []))

    @torch.no_grad()
    def sample_preview(
        self, n: int, *, steps: int, seed: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``n`` images in [0, 1] from a fast sampler, with noise from ``seed`` alone (the global
        RNG is left untouched, so previews never change what training draws)."""
        raise NotImplementedError

    def export(self, directory: Path, provenance: dict[str, Any]) -> None:
        """Write a self-contained, loadable model folder (safetensors plus configs)."""
        raise NotImplementedError

    @classmethod
    def load_exported(cls, directory: Path) -> Generator:
        """Rebuild a generator from :meth:`export`'s folder (no training code needed)."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return int(getattr(self.config, "num_classes", 0))
