"""I-SynMed's generator: denoising-diffusion-pytorch's ``Unet`` + ``GaussianDiffusion``.

Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020 (arXiv:2006.11239); the library
is lucidrains/denoising-diffusion-pytorch. Only the model and its loss come from the library; the
training loop is the suite's (its Trainer pickles whole modules and samples without EMA).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from denoising_diffusion_pytorch import GaussianDiffusion, Unet
from safetensors.torch import load_file, save_file

from suite.config import from_dict
from suite.generative.base import Generator
from suite.generative.configs import LucidrainsDDPMConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class LucidrainsDDPM(Generator):
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

    def training_loss(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.diffusion(images)  # normalises [0, 1] -> [-1, 1] itself

    def scheduler_config(self) -> dict[str, Any]:
        prediction = {"pred_noise": "epsilon", "pred_v": "v_prediction", "pred_x0": "sample"}
        return {
            "num_train_timesteps": self.diffusion.num_timesteps,
            # the library's own schedule (sigmoid by default), not a diffusers preset
            "trained_betas": self.diffusion.betas.detach().double().cpu().tolist(),
            "prediction_type": prediction[self.config.objective],
        }

    def denoise(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None, guidance_scale: float
    ) -> torch.Tensor:
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        return self.diffusion.model(x, t.long())

    @torch.no_grad()
    def sample_preview(
        self, n: int, *, steps: int, seed: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
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

    def export(self, directory: Path, provenance: dict[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.diffusion.state_dict().items()}
        save_file(state, str(directory / WEIGHTS), metadata={"format": "pt"})
        body = {"model": dataclasses.asdict(self.config), "provenance": provenance}
        (directory / CONFIG).write_text(json.dumps(body, indent=1))

    @classmethod
    def load_exported(cls, directory: Path) -> LucidrainsDDPM:
        body = json.loads((directory / CONFIG).read_text())
        config = from_dict(LucidrainsDDPMConfig, body["model"], source=str(directory / CONFIG))
        model = cls(config)
        model.diffusion.load_state_dict(load_file(str(directory / WEIGHTS)))
        return model.eval()
