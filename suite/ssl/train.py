"""`synmed pretrain`: the training loop (:mod:`suite.train.loop`) for every SSL method.

What pretraining adds to the shared loop: mixed sources read as seeded views, DINO's per-step
schedules (learning rate with linear warm-up then cosine, weight decay cosine on every decayed
parameter), the method's own hooks (teacher EMA, last-layer freezing), a kNN monitor, and the
backbone export that evaluation and ``synmed cluster`` read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from suite.errors import ConfigError
from suite.launch.task import run_training
from suite.models.backbones import BackboneSpec, build_backbone, load_init, save_backbone
from suite.schema import SuiteConfig
from suite.ssl.config import PretrainConfig
from suite.ssl.data import MixedShardDataset, parse_mix
from suite.ssl.knn_monitor import KNNMonitor
from suite.ssl.method import Progress, SSLMethod, cosine
from suite.ssl.registry import method_class
from suite.ssl.views import SeededViews
from suite.train.loop import Resume, TrainLoop


def backbone_spec(pc: PretrainConfig, channels: int) -> BackboneSpec:
    b = pc.backbone
    return BackboneSpec(
        arch=b.arch,
        image_size=b.image_size,
        in_channels=b.in_channels or channels,
        stem=b.stem,
        patch_size=b.patch_size,
        num_layers=b.num_layers,
        num_heads=b.num_heads,
        hidden_dim=b.hidden_dim,
        mlp_dim=b.mlp_dim,
    )


def param_groups(module: nn.Module) -> list[dict[str, Any]]:
    """Decayed weights first, then biases and norm parameters (no decay), as DINO's
    ``get_params_groups``; the weight-decay schedule writes to every group that decays."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "decays": True},
        {"params": no_decay, "weight_decay": 0.0, "decays": False},
    ]


class SSLTrainer(TrainLoop):
    """Builds a backbone, its SSL method and optimizer from a config; :meth:`fit` pretrains it."""

    title = "pretrain"
    resume_safe = frozenset(
        {
            "pretrain.epochs",
            "pretrain.knn.every_epochs",
            "pretrain.knn.max_images",
            "pretrain.knn.label_fraction",
        }
    )
    command = "synmed pretrain"
    lr_key = "pretrain.lr"
    tunable = frozenset(
        {
            "pretrain.lr",
            "pretrain.min_lr",
            "pretrain.scale_lr",
            "pretrain.warmup_epochs",
            "pretrain.weight_decay",
            "pretrain.weight_decay_end",
        }
    )

    def __init__(
        self, cfg: SuiteConfig, *, resume: Resume = "no", allow_config_change: bool = False
    ) -> None:
        if cfg.pretrain is None:
            raise ConfigError(
                "the config has no pretrain: section",
                "add pretrain.method.kind (dino or simclr), pretrain.backbone and pretrain.sources",
            )
        self.pc: PretrainConfig = cfg.pretrain
        self.proportions = parse_mix(self.pc.mix, self.pc.sources)
        super().__init__(cfg, resume=resume, allow_config_change=allow_config_change)

    # -- setup -------------------------------------------------------------------------------------

    def build_dataset(self, verify: str) -> MixedShardDataset:
        data = MixedShardDataset(
            {n: self.pc.sources[n] for n in self.proportions},
            self.proportions,
            split=self.pc.split,
            seed=self.cfg.run.seed,
            verify=verify,
            length=self.pc.epoch_size,
        )
        self.spec = backbone_spec(self.pc, data.channels)
        self.views = SeededViews(
            method_class(self.pc.method).views(self.pc.method, self.spec),
            channels=self.spec.in_channels,
            seed=self.cfg.run.seed,
        )
        data.transform = self.views
        return data

    @property
    def data_digest(self) -> str:
        return self.dataset.digest

    def data_description(self) -> str:
        return ", ".join(f"{n}={self.pc.sources[n]}" for n in self.proportions)

    @property
    def max_steps(self) -> int:
        return self.pc.epochs * self.steps_per_epoch

    @property
    def peak_lr(self) -> float:
        global_batch = self.samples_per_step * self.world
        return self.pc.lr * global_batch / 256 if self.pc.scale_lr else self.pc.lr

    def build(self) -> None:
        acc, pc = self.accelerator, self.pc
        backbone = build_backbone(self.spec)
        self.init_provenance = (
            load_init(backbone, self.spec, pc.backbone.init) if pc.backbone.init else {}
        )
        self.method: SSLMethod = method_class(pc.method)(backbone, self.spec, pc.method)
        groups = param_groups(self.method)
        if pc.optimizer == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=self.peak_lr, weight_decay=pc.weight_decay)
        elif pc.optimizer == "adam":
            # torch's Adam adds an L2 term to the gradient (not decoupled decay): seed 001's choice
            optimizer = torch.optim.Adam(groups, lr=self.peak_lr, weight_decay=pc.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                groups, lr=self.peak_lr, momentum=0.9, weight_decay=pc.weight_decay
            )
        self.model, optimizer = acc.prepare(self.method, optimizer)
        self.optimizers = {"model": optimizer}
        self.monitor = (
            KNNMonitor(
                pc.knn.shards,
                pc.knn.train_split,
                pc.knn.eval_split,
                pc.knn.k,
                pc.knn.temperature,
                pc.knn.max_images,
                pc.knn.label_fraction,
            )
            if pc.knn.shards and acc.is_main_process
            else None
        )

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
        self.views.epoch = epoch

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.pc.method.kind,
            "arch": self.spec.arch,
            "sources": {n: self.pc.sources[n] for n in self.proportions},
            "mix": self.proportions,
            "peak_lr": self.peak_lr,
            "knn_accuracy": getattr(self, "last_knn", None),
        }

    # -- schedules and hooks -----------------------------------------------------------------------

    def progress(self) -> Progress:
        return Progress(
            step=self.step, max_steps=self.max_steps, steps_per_epoch=self.steps_per_epoch
        )

    def lr_at(self, step: int) -> float:
        warmup = self.pc.warmup_epochs * self.steps_per_epoch
        if step < warmup:
            return self.peak_lr * step / warmup
        return cosine(self.peak_lr, self.pc.min_lr, step - warmup, self.max_steps - warmup)

    def weight_decay_at(self, step: int) -> float:
        return cosine(self.pc.weight_decay, self.pc.weight_decay_end, step, self.max_steps)

    def before_step(self) -> None:
        lr, wd = self.lr_at(self.step), self.weight_decay_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if group["decays"]:
                group["weight_decay"] = wd

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        device = self.accelerator.device
        views = [v.to(device, non_blocking=True) for v in batch["views"]]
        return self.model(views, self.progress())

    def after_backward(self) -> None:
        self.method.after_backward(self.progress())

    def after_step(self) -> None:
        self.method.after_step(self.progress())

    def log_extras(self) -> dict[str, float]:
        # the step just taken: log the values it used
        done = Progress(
            step=self.step - 1, max_steps=self.max_steps, steps_per_epoch=self.steps_per_epoch
        )
        return {
            "weight_decay": self.weight_decay_at(self.step - 1),
            **self.method.log_values(done),
        }

    def on_step_end(self) -> None:
        every = self.pc.knn.every_epochs * self.steps_per_epoch
        if self.monitor is None or not (self.step % every == 0 or self.step == self.max_steps):
            return
        accuracy = self.monitor.accuracy(
            self.method.export_backbone(), self.spec, self.accelerator.device
        )
        record = {"step": self.step, "epoch": self.epoch, "knn_accuracy": accuracy}
        self.accelerator.log({"knn_accuracy": accuracy}, step=self.step)
        if self.metrics is not None:
            self.metrics.write(record)
        self.last_knn = accuracy

    # -- state and export --------------------------------------------------------------------------

    def synced_modules(self) -> dict[str, nn.Module]:
        return {"model": self.method}

    def export(self, folder: Path, provenance: dict[str, Any]) -> None:
        save_backbone(
            self.method.export_backbone(),
            self.spec,
            folder,
            {
                **provenance,
                "method": self.pc.method.kind,
                "weights": "teacher" if self.pc.method.kind == "dino" else "student",
                "sources": {n: str(Path(self.pc.sources[n]).resolve()) for n in self.proportions},
                "source_manifest_sha256": self.dataset.digests,
                "mix": self.proportions,
                "epochs": self.step / self.steps_per_epoch,
                **self.init_provenance,
                **({"knn_accuracy": self.last_knn} if hasattr(self, "last_knn") else {}),
            },
        )


def pretrain(
    cfg: SuiteConfig, *, resume: Resume = "no", allow_config_change: bool = False
) -> dict[str, Any]:
    """The `synmed pretrain` stage, under whatever launcher started this process."""
    return run_training(
        lambda: SSLTrainer(cfg, resume=resume, allow_config_change=allow_config_change)
    )
