"""What the pixel-space diffusers DDPMs share (``ddpm_diffusers``, ``mask_ddpm``): their
``UNet2DModel``, their noise schedule and their regression target."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel

from suite.errors import ConfigError

SCHEDULE_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "prediction_type",
)


def build_unet(config: Any, in_channels: int, **extra: Any) -> UNet2DModel:
    """A ``UNet2DModel`` of ``config`` (``block_out_channels``, ``attention`` one flag per level,
    ``layers_per_block``, ``norm_num_groups``) taking ``in_channels`` and returning the image."""
    if len(config.attention) != len(config.block_out_channels):
        raise ConfigError(
            f"model.attention has {len(config.attention)} flags but model.block_out_channels "
            f"has {len(config.block_out_channels)} levels",
            "give one attention flag per level",
        )
    return UNet2DModel(
        sample_size=config.image_size,
        in_channels=in_channels,
        out_channels=config.channels,
        layers_per_block=config.layers_per_block,
        block_out_channels=tuple(config.block_out_channels),
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.attention),
        up_block_types=tuple(
            "AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention)
        ),
        norm_num_groups=config.norm_num_groups,
        **extra,
    )


def build_scheduler(config: Any) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=config.timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
    )


def schedule_of(scheduler: DDPMScheduler) -> dict[str, Any]:
    """The schedule as the arguments of the sampler's diffusers schedulers."""
    return {k: scheduler.config[k] for k in SCHEDULE_KEYS}


def target(
    scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """What the UNet regresses in the schedule's ``prediction_type``: the noise, the velocity
    (Salimans & Ho 2022, arXiv:2202.00512) or the clean image."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return x0
