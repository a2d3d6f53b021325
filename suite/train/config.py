"""Typed config of a training loop (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """One Accelerate training loop. Batch sizes are per process; the global batch is
    ``batch_size * grad_accum * world_size``.

    ``synmed pretrain`` reads its length, learning rate and weight decay from ``pretrain:``
    (epochs and DINO's schedules); from here it takes the batch, ``grad_accum``,
    ``max_grad_norm``, ``mixed_precision``, ``num_workers`` and the logging/checkpoint intervals.
    """

    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 1000  # optimizer steps
    lr: float = 8e-5
    adam_betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    # "auto": fp16 on CUDA, bf16 where the GPU has it... "no" on CPU.
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    # EMA of the weights, as ema-pytorch (Karras-style warm-up): what samples and exports use.
    ema_decay: float = 0.995
    ema_update_every: int = 10
    ema_update_after_step: int = 100
    # Augmentation, off by default: a left/right flip of a chest X-ray moves the heart.
    hflip: bool = False
    affine_degrees: float = 0.0
    affine_translate: float = 0.0
    num_workers: int = 2
    checkpoint_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    sample_every: int = 1000
    sample_images: int = 16
    sample_steps: int = 50  # DDIM steps for the preview grids (not the final sampler)
    deterministic: bool = False  # torch.use_deterministic_algorithms; slower on GPU
    record_indices: bool = False  # write the sample indices each rank trained on (debugging, tests)
