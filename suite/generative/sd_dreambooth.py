"""DreamBooth with LoRA and prior preservation (Ruiz et al. 2023, arXiv:2208.12242).

The step of diffusers' ``examples/dreambooth/train_dreambooth_lora.py`` with
``--with_prior_preservation``: every micro-batch of instance images (under the instance prompt,
``model.prompt``) is joined by as many class images, the base model's own samples of
``model.class_prompt`` (``synmed generator init`` exports the untrained model, ``synmed sample``
draws them into a shard set). The loss is the instance rows' MSE plus ``prior_loss_weight`` times
the class rows'; both halves go through one UNet call, as the script's ``torch.chunk``.
``model.train_text_encoder`` adds adapters to the text encoder, as the script's
``--train_text_encoder``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from suite.errors import ConfigError, DataError
from suite.generative.configs import SDDreamBoothConfig
from suite.generative.sd_lora import SDLoRA

if TYPE_CHECKING:
    from suite.data.dataset import ShardDataset


class SDDreamBooth(SDLoRA):
    config_class: ClassVar[type] = SDDreamBoothConfig

    def __init__(self, config: SDDreamBoothConfig) -> None:
        super().__init__(config)
        if config.class_images is not None and not config.class_prompt:
            raise ConfigError(
                "model.class_images is set but model.class_prompt is empty",
                "set model.class_prompt to the prompt the class images were sampled with",
            )
        self._prior: ShardDataset | None = None

    def bind_rows(self, dataset: ShardDataset) -> None:
        super().bind_rows(dataset)
        cfg = self.config
        if cfg.class_images is None:
            return
        from suite.data.dataset import ShardDataset
        from suite.data.shards import MANIFEST
        from suite.data.transforms import to_float

        path = Path(cfg.class_images)
        # into a new folder: model.class_images may hold another sampling job already
        make = (
            "sample them from the base model: synmed generator init CONFIG --out BASE; "
            f"synmed sample --checkpoint BASE --prompt {shlex.quote(cfg.class_prompt)} "
            f"--num-images {cfg.min_class_images} --out NEW_DIR, then set "
            "model.class_images=NEW_DIR"
        )
        if not (path / MANIFEST).is_file():
            raise DataError(f"model.class_images {path} is not a shard set", make)
        prior = ShardDataset(path, transform=to_float, verify="sha256")
        if len(prior) < cfg.min_class_images:
            raise DataError(
                f"model.class_images {path} holds {len(prior)} images, fewer than "
                f"model.min_class_images={cfg.min_class_images}",
                make,
            )
        shape = tuple(prior[0]["image"].shape)
        want = tuple(dataset[0]["image"].shape)
        if shape != want:
            raise DataError(
                f"model.class_images {path} holds {shape} (C, H, W) images, the instance images "
                f"are {want}",
                "sample the class images at the instance images' size and channels",
            )
        prompts = prior.read_column("prompts")
        other = (
            sorted({str(p) for p in prompts} - {cfg.class_prompt}) if prompts is not None else []
        )
        if other:
            raise DataError(
                f"model.class_images {path} was sampled with the prompt {other[0]!r}, not "
                f"model.class_prompt {cfg.class_prompt!r}",
                f"set model.class_prompt to the sampled prompt, or {make}",
            )
        self._prior = prior

    def loss(self, batch: dict[str, torch.Tensor], objective: str) -> torch.Tensor:
        images, prompts = batch["image"], self.training_prompts(batch)
        if self._prior is None:
            return self.per_row_loss(images, prompts).mean()
        # the loop's generator state is checkpointed, so a resumed run draws the same rows
        rows = torch.randint(0, len(self._prior), (images.shape[0],)).tolist()
        prior_images = torch.stack([self._prior[r]["image"] for r in rows]).to(images)
        losses = self.per_row_loss(
            torch.cat([images, prior_images]), [*prompts, *[self.config.class_prompt] * len(rows)]
        )
        instance, prior = losses.chunk(2)
        return instance.mean() + self.config.prior_loss_weight * prior.mean()
