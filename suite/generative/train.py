"""`synmed train generator`: the training loop (:mod:`suite.train.loop`) for every generator family.

The family owns its step (:meth:`Generator.train_step`) and its optimizers; the trainer adds an
EMA of the trainable modules the family names (``ema_modules``: what previews and exports use; a
frozen base is never copied), each optimizer's LR schedule, and preview grids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import DistributedDataParallelKwargs
from ema_pytorch import EMA

from suite.artifacts.digests import sha256_file, sha256_json
from suite.artifacts.exports import folder_digests
from suite.data.dataset import ShardDataset
from suite.data.shards import MANIFEST
from suite.data.transforms import Compose, SeededAugment, to_float
from suite.errors import ConfigError, DataError, ShardError
from suite.generative.base import Generator
from suite.generative.export import export_generator
from suite.generative.families import GENERATORS, build_generator
from suite.launch.task import run_training
from suite.schema import SuiteConfig
from suite.train import run_state
from suite.train.loop import CONFIG_FILE, EXPORT_DIR, Resume, StepContext, TrainLoop
from suite.train.monitor import save_grid

__all__ = ["EXPORT_DIR", "GeneratorTrainer", "train_generator"]


class GeneratorTrainer(TrainLoop):
    """Builds a generator, its EMA and optimizers from a config; :meth:`fit` trains it."""

    title = "train generator"
    resume_safe = frozenset(
        {
            "train.max_steps",
            "train.sample_every",
            "train.sample_images",
            "train.sample_steps",
        }
    )

    def __init__(
        self, cfg: SuiteConfig, *, resume: Resume = "no", allow_config_change: bool = False
    ) -> None:
        if cfg.model is None:
            raise ConfigError(
                "the config has no model: section",
                f"add a model: section with kind: one of {', '.join(GENERATORS)}",
            )
        if cfg.data.shards is None:
            raise ConfigError(
                "data.shards is not set",
                "point data.shards at a shard set (synmed data ingest ...)",
            )
        manifest = Path(cfg.data.shards) / MANIFEST
        if not manifest.is_file():
            raise ShardError(
                f"data.shards: {cfg.data.shards} is not a shard set (no {MANIFEST} in it)",
                "ingest the images into a shard set (synmed data ingest SOURCE --out SHARDS), "
                "then pass data.shards=SHARDS",
            )
        self._data_digest = sha256_file(manifest)
        super().__init__(cfg, resume=resume, allow_config_change=allow_config_change)

    # -- setup -------------------------------------------------------------------------------------

    @property
    def data_digest(self) -> str:
        return self._data_digest

    def build_dataset(self, verify: str) -> ShardDataset:
        cfg = self.cfg
        self.augment = SeededAugment(
            seed=cfg.run.seed,
            hflip=cfg.train.hflip,
            degrees=cfg.train.affine_degrees,
            translate=cfg.train.affine_translate,
        )
        dataset = ShardDataset(
            cfg.data.shards,
            split=cfg.data.split,
            classes=cfg.data.classes,
            clusters=cfg.data.clusters,
            representatives_only=cfg.data.representatives_only,
            labels_from=cfg.data.labels_from,
            transform=Compose([self.augment, to_float]),
            verify=verify,
        )
        if len(dataset) == 0:
            raise DataError(
                f"{cfg.data.shards} has no images for split={cfg.data.split} classes={cfg.data.classes} "
                f"clusters={cfg.data.clusters}",
                "check data.split / data.classes / data.clusters, or ingest data first",
            )
        shape = tuple(dataset[0]["image"].shape)
        model = cfg.model
        want = (model.channels, model.image_size, model.image_size)
        if shape != want:
            raise DataError(
                f"{cfg.data.shards} holds images of shape {shape} (C, H, W) but the model expects {want}",
                f"set model.channels={shape[0]} model.image_size={shape[1]}, or re-ingest with "
                f"--image-size {model.image_size} --channels {model.channels}",
            )
        num_classes = getattr(model, "num_classes", 0)
        if num_classes and dataset.label_kind != "multiclass":
            raise DataError(
                f"model.num_classes={num_classes} needs class labels, {cfg.data.shards} has {dataset.label_kind}",
                "set model.num_classes: 0, or train on a labelled (multiclass) shard set",
            )
        if num_classes and num_classes != len(dataset.class_names):
            raise DataError(
                f"model.num_classes={num_classes} but {cfg.data.shards} has {len(dataset.class_names)} classes "
                f"({', '.join(dataset.class_names)})",
                f"set model.num_classes={len(dataset.class_names)}",
            )
        return dataset

    def build(self) -> None:
        tc, acc = self.train_cfg, self.accelerator
        self.generator: Generator = build_generator(self.cfg.model)
        labels = self.dataset.labels
        present = (
            sorted(int(c) for c in np.unique(labels))
            if labels is not None and labels.ndim == 1
            else []
        )
        self.generator.bind_data(self.dataset.class_names, present)
        self.generator.bind_rows(self.dataset)
        self.base_digests = {
            name: sha256_json(folder_digests(path))
            for name, path in self.generator.frozen_bases().items()
        }
        autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision)
        if autocast is not None:
            self.generator.cast_frozen(autocast)
        self.trainables = torch.nn.ModuleDict(self.generator.trainable_modules())
        self.ema = EMA(
            torch.nn.ModuleDict(self.generator.ema_modules()),
            beta=tc.ema_decay,
            update_every=tc.ema_update_every,
            update_after_step=tc.ema_update_after_step,
            # without the warm-up the decay is ema_decay from the first average on
            min_value=0.0 if self.generator.ema_warmup else tc.ema_decay,
            include_online_model=False,
        )
        specs = self.generator.configure_optimizers(tc)
        # The LR schedules are stepped by the step context once per optimizer step: Accelerate's
        # wrapper would step them once per process.
        self.schedules = {
            name: torch.optim.lr_scheduler.LambdaLR(spec.optimizer, spec.lr_lambda)
            for name, spec in specs.items()
        }
        if self.generator.find_unused_parameters:
            # read by prepare(): a family whose steps leave parameters without gradients
            acc.ddp_handler = DistributedDataParallelKwargs(find_unused_parameters=True)
        prepared = acc.prepare(self.generator, *(spec.optimizer for spec in specs.values()))
        self.model, optimizers = prepared[0], prepared[1:]
        self.optimizers = dict(zip(specs, optimizers))
        self.ema.to(acc.device)

    def set_epoch(self, epoch: int) -> None:
        self.augment.epoch = epoch

    def describe(self) -> dict[str, Any]:
        return {"model": self.cfg.model.kind}

    # -- state and hooks ---------------------------------------------------------------------------

    def model_state(self) -> dict[str, torch.Tensor]:
        return self.generator.trainable_state()

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.load_trainable_state(state)

    def extra_state(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict(), "base_digests": self.base_digests}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        saved = state.get("base_digests", {})
        for name, digest in self.base_digests.items():
            if saved.get(name) != digest:
                raise ConfigError(
                    f"--resume: the {name} base model {self.generator.frozen_bases()[name]} "
                    "changed since the checkpoint was written (digest differs)",
                    "resume on the base the run started from, or start a new run.name",
                )
        self.ema.load_state_dict(state["ema"])

    def ema_weights(self) -> dict[str, torch.nn.Module]:
        """The EMA's copy of each trainable module, by the generator's names."""
        return dict(self.ema.ema_model.items())

    def check_losses(self, losses: dict[str, float]) -> None:
        self.generator.check_losses(
            losses,
            self.state,
            step=self.step + 1,
            command=f"{self.command} {self.run_dir / CONFIG_FILE}",
            last_checkpoint=run_state.latest_checkpoint(self.run_dir),
        )

    def synced_modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.trainables, "ema": self.ema.ema_model}

    def log_extras(self) -> dict[str, float]:
        # a family's schedule (PGGAN's scale and alpha) beside its losses
        return {k: float(v) for k, v in self.state.values.items() if isinstance(v, int | float)}

    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        device = self.accelerator.device
        return {
            k: v.to(device, non_blocking=True)
            for k, v in batch.items()
            if k in ("image", "label", "mask", "index") and isinstance(v, torch.Tensor)
        }

    def train_step(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        return self.generator.train_step(ctx)

    def after_step(self) -> None:
        if self.world > 1:
            self._share_running_stats()
        self.ema.update()

    def _share_running_stats(self) -> None:
        """Give every rank rank 0's BatchNorm running statistics. Each rank updates them from its
        own rows; DDP copies rank 0's over them at the start of the next forward, so training is
        unchanged, but without this the EMA (and the ranks' end-of-run check) would see each
        rank's own."""
        stats = [
            b
            for m in self.trainables.modules()
            if isinstance(m, torch.nn.modules.batchnorm._NormBase)
            for b in m.buffers()
        ]
        for dtype in sorted({b.dtype for b in stats}, key=str):
            group = [b for b in stats if b.dtype == dtype]
            flat = torch.cat([b.reshape(-1) for b in group])
            torch.distributed.broadcast(flat, src=0)
            for b, v in zip(group, flat.split([b.numel() for b in group])):
                b.copy_(v.view_as(b))

    def on_step_end(self) -> None:
        tc = self.train_cfg
        if self.accelerator.is_main_process and (
            self.step % tc.sample_every == 0 or self.step == self.max_steps
        ):
            self._preview()

    def _preview(self) -> None:
        self.check_weights("preview")  # a diverged model would sample NaN: say so in training terms
        tc, model = self.train_cfg, self.generator
        labels = None
        if model.num_classes:
            labels = (
                torch.arange(tc.sample_images, device=self.accelerator.device) % model.num_classes
            )
        with model.weights_from(self.ema_weights()):
            images = model.sample_preview(
                tc.sample_images, steps=tc.sample_steps, seed=self.cfg.run.seed, labels=labels
            )
        save_grid(images, self.run_dir / "samples" / f"step-{self.step:08d}.png")

    # -- export ------------------------------------------------------------------------------------

    def export(self, folder: Path, provenance: dict[str, Any]) -> None:
        model = self.generator
        with model.weights_from(self.ema_weights()):
            export_generator(
                model,
                folder,
                {
                    **provenance,
                    "data_manifest_sha256": self.data_digest,
                    "data": str(Path(self.cfg.data.shards).resolve()),
                    "ema_decay": self.train_cfg.ema_decay,
                    "weights": "ema",
                    "class_names": self.dataset.class_names,
                    **self._class_split(),
                },
                class_names=self.dataset.class_names,
            )

    def _class_split(self) -> dict[str, str]:
        """What the merge of a per_class DCGAN's class runs compares (suite/generative/per_class.py)."""
        model = self.cfg.model
        if model.kind != "dcgan" or getattr(model, "mode", "") != "per_class":
            return {}
        from suite.generative.per_class import split_digest

        return {"class_split_digest": split_digest(self.cfg)}


def train_generator(
    cfg: SuiteConfig, *, resume: Resume = "no", allow_config_change: bool = False
) -> dict[str, Any]:
    """The `synmed train generator` stage, under whatever launcher started this process."""
    return run_training(
        lambda: GeneratorTrainer(cfg, resume=resume, allow_config_change=allow_config_change)
    )
