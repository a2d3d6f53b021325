"""A diffusers DDPM: ``UNet2DModel`` + ``DDPMScheduler``, optionally class-conditional.

Ho et al., "Denoising Diffusion Probabilistic Models" (arXiv:2006.11239); classifier-free guidance
from Ho & Salimans (arXiv:2207.12598): with ``num_classes`` = K the UNet gets K + 1 class embeddings,
the last one meaning "no class", and labels are dropped to it with probability ``class_dropout``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from torch import nn

from suite.errors import ConfigError
from suite.generative.base import Conditions, OptimizerSpec
from suite.generative.configs import DiffusersDDPMConfig
from suite.generative.diffusion import DiffusionGenerator
from suite.generative.optim import adam_with_schedule
from suite.generative.pixel_unet import build_scheduler, build_unet, schedule_of, target


class DiffusersDDPM(DiffusionGenerator):
    config_class = DiffusersDDPMConfig
    conditions = ("labels",)

    def __init__(self, config: DiffusersDDPMConfig, unet: UNet2DModel | None = None) -> None:
        super().__init__()
        self.config = config
        self.unet = unet or build_unet(
            config,
            config.channels,
            num_class_embeds=config.num_classes + 1 if config.num_classes else None,
        )
        self.scheduler = build_scheduler(config)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def _class_labels(
        self, labels: torch.Tensor | None, n: int, device: torch.device
    ) -> torch.Tensor | None:
        if not self.config.num_classes:
            return None
        if labels is None:
            return torch.full((n,), self.null_class, device=device, dtype=torch.long)
        if labels.ndim != 1:
            raise ConfigError(
                "class-conditional training needs one class id per image (a multiclass shard set)",
                "set model.num_classes: 0 for multilabel or unlabelled data",
            )
        return labels.to(device=device, dtype=torch.long)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    def configure_optimizers(self, train_cfg: Any) -> dict[str, OptimizerSpec]:
        return {"model": adam_with_schedule(self.parameters(), train_cfg)}

    def loss(self, batch: dict[str, torch.Tensor], objective: str) -> torch.Tensor:
        labels = batch.get("label")
        x0 = batch["image"] * 2 - 1
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.config.timesteps, (x0.shape[0],), device=x0.device)
        xt = self.scheduler.add_noise(x0, noise, t)
        class_labels = self._class_labels(labels, x0.shape[0], x0.device)
        if class_labels is not None and self.config.class_dropout > 0:
            drop = torch.rand(x0.shape[0], device=x0.device) < self.config.class_dropout
            class_labels = torch.where(
                drop, torch.full_like(class_labels, self.null_class), class_labels
            )
        pred = self.unet(xt, t, class_labels=class_labels).sample
        return F.mse_loss(pred.float(), target(self.scheduler, x0, noise, t).float())

    def scheduler_config(self) -> dict[str, Any]:
        return schedule_of(self.scheduler)

    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.channels, self.config.image_size, self.config.image_size)

    def denoise(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        conditions: Conditions | None,
        guidance_scale: float,
    ) -> torch.Tensor:
        labels = None
        if conditions is not None and conditions.labels is not None:
            labels = torch.as_tensor(conditions.labels, device=x.device)
        return self._guided(x, t, labels, guidance_scale)

    def _guided(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None, guidance_scale: float
    ) -> torch.Tensor:
        """The UNet's output at (x, t), with classifier-free guidance when a scale other than 1 is
        asked for and the model is class-conditional."""
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        class_labels = self._class_labels(labels, x.shape[0], x.device)
        if class_labels is None or guidance_scale == 1.0 or labels is None:
            return self.unet(x, t, class_labels=class_labels).sample
        null = torch.full_like(class_labels, self.null_class)
        both = self.unet(
            torch.cat([x, x]),
            torch.cat([t, t]),
            class_labels=torch.cat([class_labels, null]),
        ).sample
        cond, uncond = both.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    @torch.no_grad()
    def sample_preview(
        self, n: int, *, steps: int, seed: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        device = next(self.unet.parameters()).device
        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        scheduler.set_timesteps(min(steps, self.config.timesteps))
        g = torch.Generator(device="cpu").manual_seed(seed)
        shape = (n, self.config.channels, self.config.image_size, self.config.image_size)
        x = torch.randn(shape, generator=g).to(device)
        for t in scheduler.timesteps:
            out = self._guided(x, t.to(device), labels, self.config.guidance_scale)
            x = scheduler.step(out, t, x).prev_sample
        return ((x + 1) / 2).clamp(0, 1)

    def export_files(self, directory: Path) -> None:
        # A standard diffusers folder: DiffusionPipeline.from_pretrained(directory) loads it.
        DDPMPipeline(unet=self.unet, scheduler=self.scheduler).save_pretrained(
            directory, safe_serialization=True
        )

    @classmethod
    def load_exported(cls, directory: Path, config: DiffusersDDPMConfig) -> DiffusersDDPM:
        unet = UNet2DModel.from_pretrained(directory / "unet")
        model = cls(config, unet=unet)
        model.scheduler = DDPMScheduler.from_pretrained(directory / "scheduler")
        return model.eval()
