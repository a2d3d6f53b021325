"""Typed config of a training loop (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from suite.config import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    added_field,
)


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """One Accelerate training loop. Batch sizes are per process; the global batch is
    ``batch_size * grad_accum * world_size``.

    ``synmed pretrain`` reads its length, learning rate and weight decay from ``pretrain:``
    (epochs and DINO's schedules); from here it takes the batch, ``grad_accum``,
    ``max_grad_norm``, ``mixed_precision``, ``num_workers`` and the logging/checkpoint intervals.
    """

    batch_size: PositiveInt = 8
    grad_accum: PositiveInt = 1
    max_steps: PositiveInt = 1000  # optimizer steps
    lr: PositiveFloat = 8e-5
    adam_betas: tuple[Fraction, Fraction] = (0.9, 0.99)
    weight_decay: NonNegativeFloat = 0.0
    # cosine_restarts: torch's CosineAnnealingWarmRestarts(T_0=lr_restart_steps,
    # T_mult=lr_restart_mult) stepped per optimizer step, as seed 003 overrode diffusers' schedule
    lr_schedule: Literal["constant", "cosine", "cosine_restarts"] = "constant"
    lr_restart_steps: PositiveInt = added_field(500)
    lr_restart_mult: PositiveInt = added_field(2)
    warmup_steps: NonNegativeInt = 0
    max_grad_norm: PositiveFloat | None = 1.0
    # "auto": fp16 on CUDA, bf16 where the GPU has it... "no" on CPU.
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    # EMA of the weights, as ema-pytorch (Karras-style warm-up): what samples and exports use.
    ema_decay: Fraction = 0.995
    ema_update_every: PositiveInt = 10
    ema_update_after_step: NonNegativeInt = 100
    # Augmentation, off by default: a left/right flip of a chest X-ray moves the heart.
    hflip: bool = False
    affine_degrees: NonNegativeFloat = 0.0
    affine_translate: Fraction = 0.0
    num_workers: NonNegativeInt = 2
    checkpoint_every: PositiveInt = 500
    keep_last: NonNegativeInt = 3
    log_every: PositiveInt = 10
    sample_every: PositiveInt = 1000
    sample_images: PositiveInt = 16
    sample_steps: PositiveInt = 50  # DDIM steps for the preview grids (not the final sampler)
    deterministic: bool = False  # torch.use_deterministic_algorithms; slower on GPU
    record_indices: bool = False  # write the sample indices each rank trained on (debugging, tests)
