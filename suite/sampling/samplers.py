"""Fast and slow samplers for any trained generator, with noise fixed per image index.

Every generator exposes its noise schedule as diffusers scheduler arguments and a ``denoise``
function, so the same diffusers schedulers drive both kinds (the lucidrains ``Unet`` included):

- ``ddpm``: ancestral sampling over all training steps (Ho et al. 2020), x0 clipped to [-1, 1] and
  the fixed-small posterior variance, as denoising-diffusion-pytorch's own ``p_sample_loop``;
- ``ddim``: DDIM with eta = 0 (Song et al. 2021, arXiv:2010.02502);
- ``dpm-solver``: DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095).

Image ``i`` draws its initial noise, and every later noise sample, from its own generator seeded by
(seed, i): the image does not depend on which worker or batch produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from suite.data.transforms import sample_seed
from suite.errors import ConfigError
from suite.generative.base import Generator

SAMPLERS = ("ddpm", "ddim", "dpm-solver")


def make_scheduler(model: Generator, sampler: str, steps: int) -> Any:
    """A fresh diffusers scheduler for ``model`` with ``steps`` inference steps."""
    config = model.scheduler_config()
    total = config["num_train_timesteps"]
    if not 1 <= steps <= total:
        raise ConfigError(
            f"--sampling-steps {steps} is outside 1..{total} (the model's training steps)",
            f"pass 1 to {total}",
        )
    if sampler == "ddpm":
        scheduler = DDPMScheduler(**config, variance_type="fixed_small", clip_sample=True)
    elif sampler == "ddim":
        scheduler = DDIMScheduler(**config, clip_sample=True, set_alpha_to_one=True)
    elif sampler == "dpm-solver":
        scheduler = DPMSolverMultistepScheduler(
            **config, algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True
        )
    else:
        raise ConfigError(f"unknown sampler {sampler!r}", f"use one of: {', '.join(SAMPLERS)}")
    scheduler.set_timesteps(steps)
    return scheduler


def noise_generators(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator(device="cpu").manual_seed(sample_seed(seed, int(i))) for i in indices]


@torch.no_grad()
def sample_images(
    model: Generator,
    indices: Sequence[int],
    *,
    sampler: str,
    steps: int,
    seed: int,
    labels: np.ndarray | None = None,
    guidance_scale: float = 1.0,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Images for global ``indices`` as uint8 (B, C, H, W); a pure function of (model, sampler,
    steps, seed, index, label)."""
    cfg = model.config
    scheduler = make_scheduler(model, sampler, steps)
    generators = noise_generators(seed, indices)
    shape = (cfg.channels, cfg.image_size, cfg.image_size)
    x = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)
    x = x * scheduler.init_noise_sigma
    y = torch.as_tensor(labels, device=device) if labels is not None else None
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        out = model.denoise(model_input, t.to(device), y, guidance_scale)
        x = scheduler.step(out, t, x, generator=generators).prev_sample
    images = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.cpu().numpy()
