"""A mask-conditioned pixel DDPM: the pair generator (an image for a given segmentation mask).

Ho et al., "Denoising Diffusion Probabilistic Models" (arXiv:2006.11239), with a diffusers
``UNet2DModel`` predicting the noise. The mask is not embedded: its one-hot (``mask_classes``
channels, background included) is concatenated to the noisy image as extra input channels, the
way SR3 (Saharia et al., arXiv:2104.07636) and Palette (Saharia et al., arXiv:2111.05826) condition
a pixel diffusion on an image of the same size. Concatenation keeps the condition pixel-aligned at
the UNet's input, so every resolution sees where each class lies, at no extra parameters beyond
the first convolution's. Classifier-free guidance (Ho & Salimans, arXiv:2207.12598): a training
row's one-hot is all zeros with probability ``mask_dropout`` (a real one-hot has one 1 per pixel,
so zeros mean "no mask"), and sampling mixes uncond + s * (cond - uncond) in one batched UNet call.

Training reads the rows' masks (a set ingested with masks); ``synmed sample --conditions MASKS
--per-condition K`` draws K images per conditioning mask, and each output keeps its mask and
``source_index``: image+mask pairs. The export is a ``unet/`` and a ``scheduler/`` diffusers folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from torch import nn

from suite.errors import ConfigError, DataError
from suite.generative.base import Conditions, OptimizerSpec, SampleOptions
from suite.generative.configs import MaskDDPMConfig
from suite.generative.diffusion import DiffusionGenerator
from suite.generative.optim import adam_with_schedule
from suite.generative.pixel_unet import build_scheduler, build_unet, schedule_of, target

if TYPE_CHECKING:
    from suite.data.dataset import ShardDataset

NEED_CONDITIONS = "pass --conditions MASKS (a shard set with masks, e.g. the training set)"
INGEST_MASKS = "ingest the images with their masks (synmed data ingest ... with a mask source)"


def max_mask_id(data: ShardDataset) -> int:
    """The largest mask id in the set's shards, read a block at a time."""
    top = 0
    for rec in data.manifest.shards:
        with h5py.File(data.directory / rec.file, "r") as h5:
            masks = h5["masks"]
            for start in range(0, masks.shape[0], 256):
                top = max(top, int(masks[start : start + 256].max(initial=0)))
    return top


class MaskDDPM(DiffusionGenerator):
    config_class = MaskDDPMConfig
    conditions = ("masks",)

    def __init__(self, config: MaskDDPMConfig, unet: UNet2DModel | None = None) -> None:
        super().__init__()
        if config.mask_classes < 2:
            raise ConfigError(
                f"model.mask_classes is {config.mask_classes}: a mask needs background and at "
                "least one foreground class",
                "set model.mask_classes to the number of mask ids, background included",
            )
        self.config = config
        self.unet = unet or build_unet(config, config.channels + config.mask_classes)
        self.scheduler = build_scheduler(config)
        self._rows: ShardDataset | None = None

    # -- the conditioning input ---------------------------------------------------------------------

    def mask_channels(
        self, masks: torch.Tensor, drop: torch.Tensor | None = None, *, source: str = "the masks"
    ) -> torch.Tensor:
        """(B, 1, H, W) mask ids -> (B, mask_classes, H, W) float one-hot; rows where ``drop``
        is True are all zeros (the "no mask" input of classifier-free guidance)."""
        k = self.config.mask_classes
        ids = masks.long()
        top = int(ids.max()) if ids.numel() else 0
        if top >= k:
            raise DataError(
                f"{source} hold mask id {top}, but model.mask_classes is {k} (ids 0..{k - 1})",
                f"set model.mask_classes={top + 1} and retrain, or use masks with ids below {k}",
            )
        onehot = F.one_hot(ids[:, 0], k).permute(0, 3, 1, 2).float()
        if drop is not None:
            onehot = onehot * (~drop).float().view(-1, 1, 1, 1)
        return onehot

    def _check_set(self, data: ShardDataset, what: str, fix: str) -> None:
        """A set's masks against ``mask_classes``: its ``mask_names`` and its largest id."""
        k = self.config.mask_classes
        names = data.manifest.attrs.get("mask_names")
        if names and len(names) != k:
            raise DataError(
                f"{what} {data.directory} has {len(names)} mask classes ({', '.join(names)}), "
                f"model.mask_classes is {k}",
                fix.format(n=len(names)),
            )
        top = max_mask_id(data)
        if top >= k:
            raise DataError(
                f"{what} {data.directory} holds mask id {top}, but model.mask_classes is {k} "
                f"(ids 0..{k - 1})",
                fix.format(n=top + 1),
            )

    # -- training ------------------------------------------------------------------------------------

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    def bind_rows(self, dataset: ShardDataset) -> None:
        if not dataset.has_masks:
            raise DataError(
                f"data.shards {dataset.directory} has no masks: mask_ddpm trains on image+mask "
                "pairs",
                INGEST_MASKS + ", then pass data.shards=THAT_SET",
            )
        self._check_set(dataset, "data.shards", "set model.mask_classes={n}")
        self._rows = dataset

    def configure_optimizers(self, train_cfg: Any) -> dict[str, OptimizerSpec]:
        # the trainer's augmentations move the image only: its mask would no longer fit it
        if train_cfg.hflip or train_cfg.affine_degrees > 0 or train_cfg.affine_translate > 0:
            raise ConfigError(
                "train.hflip / train.affine_degrees / train.affine_translate move an image but "
                "not its mask: mask_ddpm would learn images that do not fit their masks",
                "set train.hflip=false train.affine_degrees=0 train.affine_translate=0",
            )
        return {"model": adam_with_schedule(self.parameters(), train_cfg)}

    def loss(self, batch: dict[str, torch.Tensor], objective: str) -> torch.Tensor:
        if "mask" not in batch:
            raise DataError("a mask_ddpm training batch has no mask", INGEST_MASKS)
        x0 = batch["image"] * 2 - 1
        n = x0.shape[0]
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.config.timesteps, (n,), device=x0.device)
        xt = self.scheduler.add_noise(x0, noise, t)
        drop = torch.rand(n, device=x0.device) < self.config.mask_dropout
        cond = self.mask_channels(batch["mask"].to(x0.device), drop, source="the training masks")
        pred = self.unet(torch.cat([xt, cond.to(xt.dtype)], dim=1), t).sample
        return F.mse_loss(pred.float(), target(self.scheduler, x0, noise, t).float())

    # -- sampling ------------------------------------------------------------------------------------

    def check_conditions(self, conditions: Path | None, split: str | None) -> None:
        if conditions is None:
            raise ConfigError(
                "a mask_ddpm generator draws each image for a segmentation mask: synmed sample "
                "needs --conditions MASKS",
                NEED_CONDITIONS + " and --per-condition K",
            )
        from suite.data.dataset import ShardDataset

        data = ShardDataset(conditions, split=split, verify="none")  # the job verified it
        fix = f"condition on masks of this generator's {self.config.mask_classes} classes"
        self._check_set(data, "--conditions", fix)
        size = self.config.image_size
        shape = tuple(data[0]["mask"].shape)
        if shape != (1, size, size):
            raise DataError(
                f"--conditions {conditions} holds {shape} masks, the generator makes "
                f"{size} x {size} images",
                f"condition on a set ingested at --image-size {size}",
            )

    def scheduler_config(self) -> dict[str, Any]:
        return schedule_of(self.scheduler)

    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.channels, self.config.image_size, self.config.image_size)

    def encode_conditions(
        self, conditions: Conditions | None, options: SampleOptions, n: int, device: Any
    ) -> torch.Tensor:
        if conditions is None or conditions.masks is None:
            raise ConfigError("a mask_ddpm generator samples from a mask per row", NEED_CONDITIONS)
        masks = torch.as_tensor(np.asarray(conditions.masks), device=device)
        return self.mask_channels(masks, source="the conditioning masks")

    def denoise(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        conditions: torch.Tensor,
        guidance_scale: float,
    ) -> torch.Tensor:
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        cond = conditions.to(x.dtype)
        if guidance_scale == 1.0:
            return self.unet(torch.cat([x, cond], dim=1), t).sample
        both = self.unet(
            torch.cat([torch.cat([x, cond], dim=1), torch.cat([x, torch.zeros_like(cond)], dim=1)]),
            torch.cat([t, t]),
        ).sample
        guided, unguided = both.chunk(2)
        return unguided + guidance_scale * (guided - unguided)

    @torch.no_grad()
    def sample_preview(
        self, n: int, *, steps: int, seed: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Previews drawn for the masks of the first ``n`` training rows (cycled), so they show
        what the model makes of real masks."""
        assert self._rows is not None, "previews follow bind_rows()"
        rows = [i % len(self._rows) for i in range(n)]
        masks = np.stack([self._rows[r]["mask"].numpy() for r in rows])
        options = SampleOptions(
            sampler="ddim",
            steps=min(steps, self.config.timesteps),
            guidance_scale=self.config.guidance_scale,
        )
        device = next(self.unet.parameters()).device
        out = self.sample(range(n), seed, Conditions(masks=masks), options, device)
        return torch.from_numpy(out.images).float().div(255)

    # -- export --------------------------------------------------------------------------------------

    def export_files(self, directory: Path) -> None:
        # no model_index.json: DDPMPipeline cannot feed the mask channels, so the folder names
        # no pipeline; UNet2DModel.from_pretrained(directory / "unet") loads the network
        self.unet.save_pretrained(directory / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(directory / "scheduler")

    @classmethod
    def load_exported(cls, directory: Path, config: MaskDDPMConfig) -> MaskDDPM:
        unet = UNet2DModel.from_pretrained(directory / "unet")
        model = cls(config, unet=unet)
        model.scheduler = DDPMScheduler.from_pretrained(directory / "scheduler")
        return model.eval()
