"""A ControlNet on a locked Stable Diffusion, guided by a conditioning image (seed 002's edge maps).

The training step is diffusers' ``examples/controlnet/train_controlnet.py``: the ControlNet is
``ControlNetModel.from_unet(unet)`` (the base UNet's encoder copied, zero convolutions out), the
base stays frozen, and the UNet adds the ControlNet's residuals at every resolution. A row's hint
is the row of the ``model.hints`` conditioning set whose ``source_index`` is the row's index
(``synmed data edges`` writes such a set); at sampling time ``synmed sample --conditions HINTS
--per-condition K`` hands each output its hint, and its mask and ``source_index`` ride along, so
the outputs are image+mask pairs. The export is a ``controlnet/`` folder that
``ControlNetModel.from_pretrained`` and ``StableDiffusionControlNetPipeline`` read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import nn

from suite.errors import ConfigError, DataError
from suite.generative.configs import ControlNetConfig
from suite.generative.stable_diffusion import StableDiffusionFamily

if TYPE_CHECKING:
    from suite.data.dataset import ShardDataset

CONTROLNET_DIR = "controlnet"


class ControlNet(StableDiffusionFamily):
    config_class: ClassVar[type] = ControlNetConfig
    # the hint conditions; a row's mask and label ride along, so outputs are image+mask pairs
    conditions = ("images", "masks", "labels", "prompts")
    weights_key = "controlnet_sha256"

    def __init__(self, config: ControlNetConfig, controlnet: nn.Module | None = None) -> None:
        super().__init__(config)
        from diffusers import ControlNetModel

        factor = 2 ** (len(config.conditioning_embedding_out_channels) - 1)
        if factor != self.latent_factor:
            raise ConfigError(
                f"model.conditioning_embedding_out_channels has "
                f"{len(config.conditioning_embedding_out_channels)} levels, so the hint is "
                f"downsampled {factor}x, but the base's VAE downsamples {self.latent_factor}x",
                f"give {len(self.vae.config.block_out_channels)} channel counts (SD: 16, 32, 96, "
                "256; the tiny base: 16, 32)",
            )
        self.controlnet = controlnet or ControlNetModel.from_unet(
            self.unet,
            conditioning_channels=config.conditioning_channels,
            conditioning_embedding_out_channels=tuple(config.conditioning_embedding_out_channels),
        )
        self._hints: ShardDataset | None = None
        self._hint_row: dict[int, int] = {}

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"controlnet": self.controlnet}

    def bind_rows(self, dataset: ShardDataset) -> None:
        super().bind_rows(dataset)
        from suite.data.dataset import ShardDataset
        from suite.data.shards import MANIFEST

        fix = "make one with synmed data edges SHARDS --out HINTS, then set model.hints=HINTS"
        if self.config.hints is None:
            raise ConfigError(
                "model.hints is not set: a ControlNet trains on image+hint pairs", fix
            )
        path = Path(self.config.hints)
        if not (path / MANIFEST).is_file():
            raise DataError(f"model.hints {path} is not a shard set", fix)
        hints = ShardDataset(path, verify="sha256")
        sources = hints.read_column("source_index")
        if sources is None:
            raise DataError(f"model.hints {path} has no source_index column", fix)
        self._hint_row = {int(s): i for i, s in enumerate(sources)}
        missing = [int(i) for i in dataset.indices if int(i) not in self._hint_row]
        if missing:
            raise DataError(
                f"model.hints {path} has no hint for {len(missing)} training rows (e.g. index "
                f"{missing[0]})",
                f"make the hints from the training set itself: {fix}",
            )
        shape = tuple(hints[0]["image"].shape)
        want = (self.config.conditioning_channels, self.config.image_size, self.config.image_size)
        if shape != want:
            raise DataError(
                f"model.hints {path} holds {shape} (C, H, W) hints, the ControlNet expects {want}",
                "set model.conditioning_channels, or make the hints at model.image_size",
            )
        self._hints = hints

    def training_hints(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self._hints is not None, "bind_rows() reads the hints before training"
        rows = [self._hint_row[int(i)] for i in batch["index"]]
        hints = torch.stack([self._hints[r]["image"] for r in rows])
        return hints.to(batch["image"].device).float().div(255)

    @torch.no_grad()
    def sample_preview(
        self, n: int, *, steps: int, seed: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Previews drawn for the first ``n`` training hints (cycled), so they show what the
        ControlNet makes of real edge maps."""
        from suite.generative.base import Conditions, SampleOptions

        assert self._hints is not None, "previews follow bind_rows()"
        rows = [i % len(self._hints) for i in range(n)]
        hints = np.stack([self._hints[r]["image"].numpy() for r in rows])
        conditions = Conditions(
            images=hints, labels=labels.cpu().numpy() if labels is not None else None
        )
        options = SampleOptions(
            sampler=self.samplers[0], steps=steps, guidance_scale=self.config.guidance_scale
        )
        device = next(self.parameters()).device
        out = self.sample(range(n), seed, conditions, options, device)
        return torch.from_numpy(out.images).float().div(255)

    def predict(
        self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor, hints: torch.Tensor | None
    ) -> torch.Tensor:
        if hints is None:
            raise ConfigError(
                "a ControlNet samples from a conditioning image per row",
                "pass --conditions HINTS (a set from synmed data edges) to synmed sample",
            )
        down, mid = self.controlnet(
            x,
            t,
            encoder_hidden_states=states,
            controlnet_cond=hints.to(x.dtype),
            conditioning_scale=self.config.conditioning_scale,
            return_dict=False,
        )
        return self.unet(
            x,
            t,
            states,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]

    def export_files(self, directory: Path) -> None:
        self.controlnet.save_pretrained(directory / CONTROLNET_DIR, safe_serialization=True)

    @classmethod
    def load_exported(cls, directory: Path, config: ControlNetConfig) -> ControlNet:
        from diffusers import ControlNetModel

        controlnet = ControlNetModel.from_pretrained(directory / CONTROLNET_DIR)
        return cls(config, controlnet=controlnet).exported()
