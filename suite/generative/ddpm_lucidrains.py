"""I-SynMed's generator: denoising-diffusion-pytorch's ``Unet`` + ``GaussianDiffusion``.

Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020 (arXiv:2006.11239); the library
is lucidrains/denoising-diffusion-pytorch. Only the model and its loss come from the library; the
training loop is the suite's (its Trainer pickles whole modules and samples without EMA), and so is
the sampler loop (suite/generative/diffusion.py), which matches the library's ``p_sample_loop``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from denoising_diffusion_pytorch import GaussianDiffusion, Unet
from safetensors.torch import load_file, save_file
from torch import nn

from suite.generative.base import Conditions, OptimizerSpec
from suite.generative.configs import LucidrainsDDPMConfig
from suite.generative.diffusion import DiffusionGenerator
from suite.generative.optim import adam_with_schedule

WEIGHTS = "model.safetensors"


class LucidrainsDDPM(DiffusionGenerator):
    config_class = LucidrainsDDPMConfig

    def __init__(self, config: LucidrainsDDPMConfig) -> None:
        super().__init__()
        self.config = config
        unet = Unet(
            dim=config.dim,
            dim_mults=tuple(config.dim_mults),
            channels=config.channels,
            flash_attn=config.flash_attn,
        )
        self.diffusion = GaussianDiffusion(
            unet,
            image_size=config.image_size,
            timesteps=config.timesteps,
            objective=config.objective,
            beta_schedule=config.beta_schedule,
        )

    # -- training ----------------------------------------------------------------------------------

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"diffusion": self.diffusion}

    def configure_optimizers(self, train_cfg: Any) -> dict[str, OptimizerSpec]:
        return {"model": adam_with_schedule(self.parameters(), train_cfg)}

    def loss(self, batch: dict[str, torch.Tensor], objective: str) -> torch.Tensor:
        return self.diffusion(batch["image"])  # normalises [0, 1] -> [-1, 1] itself

    # -- sampling ----------------------------------------------------------------------------------

    def scheduler_config(self) -> dict[str, Any]:
        prediction = {"pred_noise": "epsilon", "pred_v": "v_prediction", "pred_x0": "sample"}
        return {
            "num_train_timesteps": self.diffusion.num_timesteps,
            # the library's own schedule (sigmoid by default), not a diffusers preset
            "trained_betas": self.diffusion.betas.detach().double().cpu().tolist(),
            "prediction_type": prediction[self.config.objective],
        }

    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.channels, self.config.image_size, self.config.image_size)

    def denoise(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        conditions: Conditions | None,
        guidance_scale: float,
    ) -> torch.Tensor:
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        return self.diffusion.model(x, t.long())

    @torch.no_grad()
    def sample_preview(
        self, n: int, *, steps: int, seed: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        # The library's own sampler (DDIM below the training steps), as the seed's previews.
        diffusion = self.diffusion
        saved = diffusion.sampling_timesteps, diffusion.is_ddim_sampling
        devices = [diffusion.betas.device] if diffusion.betas.is_cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            diffusion.sampling_timesteps = min(steps, diffusion.num_timesteps)
            diffusion.is_ddim_sampling = diffusion.sampling_timesteps < diffusion.num_timesteps
            try:
                return diffusion.sample(batch_size=n).clamp(0, 1)
            finally:
                diffusion.sampling_timesteps, diffusion.is_ddim_sampling = saved

    # -- export ------------------------------------------------------------------------------------

    def export_files(self, directory: Path) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in self.diffusion.state_dict().items()}
        save_file(state, str(directory / WEIGHTS), metadata={"format": "pt"})

    @classmethod
    def load_exported(cls, directory: Path, config: LucidrainsDDPMConfig) -> LucidrainsDDPM:
        model = cls(config)
        model.diffusion.load_state_dict(load_file(str(directory / WEIGHTS)))
        return model.eval()
