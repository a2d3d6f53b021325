"""The shared sampler loop of every diffusion family (pixel DDPMs, latent diffusion, ControlNet).

A family exposes its noise schedule as diffusers scheduler arguments and a ``denoise`` function,
so the same diffusers schedulers drive all of them (the lucidrains ``Unet`` included):

- ``ddpm``: ancestral sampling over all training steps (Ho et al. 2020), the fixed-small posterior
  variance and, where the family clips (``clip_sample``), x0 clipped to [-1, 1], as
  denoising-diffusion-pytorch's own ``p_sample_loop``;
- ``ddim``: DDIM with eta = 0 (Song et al. 2021, arXiv:2010.02502);
- ``dpm-solver``: DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095);
- ``dpm-solver-3m``: DPM-Solver++(3M), the third-order multistep variant of the same paper, for
  unconditional pixel models at 10 steps or fewer;
- ``unipc``: UniPC (Zhao et al. 2023, arXiv:2302.04867), order 3 with the B(h) = e^h - 1
  corrector (``bh2``); diffusers suggests ``bh1`` below 10 unconditional steps, but at order 3 its
  last step divides by zero (NaN images from the suite's DDPMs at 4-10 steps).

Image ``i`` draws its initial noise, and every later noise sample, from its own generator seeded by
(seed, i, attempt): the image does not depend on which worker or batch produced it. The latent
shape comes from the family (``latent_shape``), and ``decode`` maps the final latent to images in
[-1, 1] (the identity for pixel models, the VAE for latent ones).
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UniPCMultistepScheduler,
)

from suite.errors import ConfigError
from suite.generative.base import (
    Conditions,
    Generator,
    SampleOptions,
    SampleOutput,
    noise_generators,
    to_uint8,
)

DIFFUSION_SAMPLERS = ("ddpm", "ddim", "dpm-solver", "dpm-solver-3m", "unipc")


class DiffusionGenerator(Generator):
    """A generator sampled by a diffusers scheduler over ``denoise``."""

    samplers: ClassVar[tuple[str, ...]] = DIFFUSION_SAMPLERS
    #: whether the DDPM/DDIM steps clip the predicted x0 to [-1, 1] (pixel models; not latents)
    clip_sample: ClassVar[bool] = True

    @abstractmethod
    def scheduler_config(self) -> dict[str, Any]:
        """The noise schedule as diffusers scheduler arguments (``num_train_timesteps``,
        ``trained_betas`` or ``beta_schedule``, ``prediction_type``)."""

    @abstractmethod
    def latent_shape(self) -> tuple[int, ...]:
        """The shape (without batch) of what the scheduler denoises."""

    @abstractmethod
    def denoise(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        conditions: Any,
        guidance_scale: float,
    ) -> torch.Tensor:
        """The network's prediction at noisy ``x`` and timestep ``t``, in the parameterisation
        ``scheduler_config()["prediction_type"]`` names; ``conditions`` is what
        :meth:`encode_conditions` made of the batch's."""

    def encode_conditions(
        self, conditions: Conditions | None, options: SampleOptions, n: int, device: Any
    ) -> Any:
        """What ``denoise`` and ``decode`` read of a batch's conditions, computed once per batch
        (a text encoder's embeddings); by default the conditions themselves."""
        return conditions

    def decode(self, x: torch.Tensor, conditions: Any) -> torch.Tensor:
        """The final latent as images in [-1, 1]."""
        return x

    def finish_output(self, output: SampleOutput, conditions: Any) -> SampleOutput:
        """Add what the family records per row (prompts, metadata) to a sampled batch."""
        return output

    def make_scheduler(self, sampler: str, steps: int) -> Any:
        """A fresh diffusers scheduler with ``steps`` inference steps."""
        config = self.scheduler_config()
        total = config["num_train_timesteps"]
        if sampler not in self.samplers:
            raise ConfigError(
                f"unknown sampler {sampler!r}", f"use one of: {', '.join(self.samplers)}"
            )
        if not 1 <= steps <= total:
            raise ConfigError(
                f"--sampling-steps {steps} is outside 1..{total} (the model's training steps)",
                f"pass 1 to {total}",
            )
        if sampler == "ddpm":
            scheduler = DDPMScheduler(
                **config, variance_type="fixed_small", clip_sample=self.clip_sample
            )
        elif sampler == "ddim":
            scheduler = DDIMScheduler(**config, clip_sample=self.clip_sample, set_alpha_to_one=True)
        elif sampler == "unipc":
            scheduler = UniPCMultistepScheduler(
                **config, solver_order=3, solver_type="bh2", lower_order_final=True
            )
        else:
            scheduler = DPMSolverMultistepScheduler(
                **config,
                algorithm_type="dpmsolver++",
                solver_order=3 if sampler == "dpm-solver-3m" else 2,
                lower_order_final=True,
            )
        scheduler.set_timesteps(steps)
        return scheduler

    def check_sampling(self, options: SampleOptions) -> None:
        self.make_scheduler(options.sampler, options.steps)

    @torch.no_grad()
    def sample(
        self,
        indices: Sequence[int],
        seed: int,
        conditions: Conditions | None,
        options: SampleOptions,
        device: torch.device | str = "cpu",
    ) -> SampleOutput:
        with self.in_eval():
            scheduler = self.make_scheduler(options.sampler, options.steps)
            generators = noise_generators(seed, indices, options.attempt)
            shape = self.latent_shape()
            x = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)
            x = x * scheduler.init_noise_sigma
            encoded = self.encode_conditions(conditions, options, len(generators), device)
            # the stochastic steps draw each image's noise from its generator; UniPC draws none
            # and takes no generator argument
            noise = (
                {"generator": generators}
                if "generator" in inspect.signature(scheduler.step).parameters
                else {}
            )
            for t in scheduler.timesteps:
                model_input = scheduler.scale_model_input(x, t)
                out = self.denoise(model_input, t.to(device), encoded, options.guidance_scale)
                x = scheduler.step(out, t, x, **noise).prev_sample
            images = to_uint8(self.decode(x, encoded), self.source)
        output = SampleOutput(
            images=images,
            labels=conditions.labels if conditions is not None else None,
            masks=conditions.masks if conditions is not None else None,
        )
        return self.finish_output(output, encoded)
