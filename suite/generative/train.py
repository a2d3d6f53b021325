"""`synmed train generator`: one Accelerate loop for every generator kind.

The same code runs in one process, under ``accelerate launch`` (one process per GPU, or gloo ranks
on a CPU), and under SLURM/Submitit. What makes a run resumable bit for bit:

- the data order is a pure function of (seed, epoch) and the step (``ResumableShardSampler``);
- augmentation is seeded per sample (``SeededAugment``), not by worker RNGs;
- the run state holds model, EMA, optimizer, LR schedule, grad scaler, step and every rank's RNG;
- preview sampling forks the RNG, so it never changes what training draws.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from ema_pytorch import EMA
from torch.utils.data import DataLoader
from tqdm import tqdm

from suite.config import SuiteConfig, config_digest, dump_yaml, load_config, to_dict
from suite.data.dataset import ShardDataset
from suite.data.shards import MANIFEST, atomic_write_text, sha256_file
from suite.data.transforms import Compose, SeededAugment, to_float
from suite.errors import ConfigError, DataError, SynmedError
from suite.generative.base import Generator
from suite.generative.registry import build_generator, export_generator
from suite.launch.task import run_training
from suite.train import run_state
from suite.train.memory import keep_heap_between_steps
from suite.train.monitor import MetricsLog, save_grid, save_loss_curve, write_summary
from suite.train.sampler import ResumableShardSampler

# "no": a fresh run (refuses a folder with checkpoints); "yes": continue, a checkpoint must exist;
# "auto": continue when there is one (jobs that may be requeued use this).
Resume = Literal["no", "yes", "auto"]
CONFIG_FILE = "config.yaml"
EXPORT_DIR = "export"
# Keys that may differ between a run and its resumption: they change what is logged or kept, or how
# long the run goes on, never what a step computes.
RESUME_SAFE = {
    "run.out_dir",
    "train.max_steps",
    "train.log_every",
    "train.sample_every",
    "train.sample_images",
    "train.sample_steps",
    "train.checkpoint_every",
    "train.keep_last",
    "train.num_workers",
    "train.record_indices",
}


class TrainingError(SynmedError):
    """Training cannot go on (a non-finite loss, a data set too small for the batch)."""


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def config_differences(old: SuiteConfig, new: SuiteConfig) -> list[str]:
    """Dotted keys whose values differ, except the resume-safe ones."""
    a, b = _flatten(to_dict(old)), _flatten(to_dict(new))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and k not in RESUME_SAFE)


def _mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _lr_lambda(cfg: Any) -> Any:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


@dataclass
class _Position:
    step: int = 0

    def epoch_and_offset(self, steps_per_epoch: int, samples_per_step: int) -> tuple[int, int]:
        epoch, in_epoch = divmod(self.step, steps_per_epoch)
        return epoch, in_epoch * samples_per_step


class GeneratorTrainer:
    """Builds everything from a config, then :meth:`fit` trains to ``train.max_steps``."""

    def __init__(self, cfg: SuiteConfig, *, resume: Resume = "no") -> None:
        if cfg.model is None:
            raise ConfigError(
                "the config has no model: section",
                "add model.kind: ddpm_lucidrains or ddpm_diffusers",
            )
        if cfg.data.shards is None:
            raise ConfigError(
                "data.shards is not set",
                "point data.shards at a shard set (synmed data ingest ...)",
            )
        keep_heap_between_steps()
        self.cfg = cfg
        self.train_cfg = cfg.train
        self.run_dir = Path(cfg.run.out_dir) / cfg.run.name
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            mixed_precision=_mixed_precision(cfg.train.mixed_precision),
            log_with="tensorboard",
            project_dir=str(self.run_dir),
        )
        acc = self.accelerator
        self.rank, self.world = acc.process_index, acc.num_processes
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        set_seed(cfg.run.seed, device_specific=True)  # seed + rank: each rank draws its own noise

        self.dataset = self._dataset()
        self.data_digest = sha256_file(Path(cfg.data.shards) / MANIFEST)
        self.config_digest = config_digest(cfg)
        self.samples_per_step = cfg.train.batch_size * cfg.train.grad_accum
        per_rank = len(self.dataset) // self.world
        self.steps_per_epoch = per_rank // self.samples_per_step
        if self.steps_per_epoch < 1:
            raise TrainingError(
                f"{cfg.data.shards} has {len(self.dataset)} images: too few for {self.world} rank(s) x "
                f"batch {cfg.train.batch_size} x grad_accum {cfg.train.grad_accum}",
                "lower train.batch_size or train.grad_accum, or use more data",
            )

        self.generator: Generator = build_generator(cfg.model)
        self.ema = EMA(
            self.generator,
            beta=cfg.train.ema_decay,
            update_every=cfg.train.ema_update_every,
            update_after_step=cfg.train.ema_update_after_step,
            include_online_model=False,
        )
        self.optimizer = torch.optim.Adam(
            self.generator.parameters(),
            lr=cfg.train.lr,
            betas=tuple(cfg.train.adam_betas),
            weight_decay=cfg.train.weight_decay,
        )
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg.train))
        # The LR schedule is stepped by hand once per optimizer step: Accelerate's wrapper would
        # step it once per process.
        self.model, self.optimizer = acc.prepare(self.generator, self.optimizer)
        self.ema.to(acc.device)
        self.position = _Position()
        self._stop_requested: Callable[[], bool] = lambda: False
        self._stop_agreed = False
        self._prepare_run_dir(resume)

    # -- setup -------------------------------------------------------------------------------------

    def _dataset(self) -> ShardDataset:
        cfg, acc = self.cfg, self.accelerator
        self.augment = SeededAugment(
            seed=cfg.run.seed,
            hflip=cfg.train.hflip,
            degrees=cfg.train.affine_degrees,
            translate=cfg.train.affine_translate,
        )
        # Rank 0 hashes every shard; the others then only check they exist.
        with acc.main_process_first():
            dataset = ShardDataset(
                cfg.data.shards,
                split=cfg.data.split,
                classes=cfg.data.classes,
                clusters=cfg.data.clusters,
                transform=Compose([self.augment, to_float]),
                verify="sha256" if acc.is_main_process else "size",
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

    def _prepare_run_dir(self, resume: Resume) -> None:
        acc, cfg = self.accelerator, self.cfg
        saved = self.run_dir / CONFIG_FILE
        checkpoint = run_state.latest_checkpoint(self.run_dir) if resume != "no" else None
        if resume == "no" and run_state.list_checkpoints(self.run_dir):
            raise ConfigError(
                f"run folder {self.run_dir} already holds checkpoints",
                "pass --resume to continue it, or choose another run.name",
            )
        if resume == "yes" and checkpoint is None:
            raise ConfigError(
                f"--resume: {self.run_dir} has no complete checkpoint",
                "drop --resume to start the run, or check run.out_dir and run.name",
            )
        if checkpoint is not None:
            old = load_config(saved)
            differ = config_differences(old, cfg)
            if differ:
                raise ConfigError(
                    f"--resume: the config differs from the run's {saved} in: {', '.join(differ)}",
                    "resume with the same config (only max_steps and logging/checkpoint intervals may change), "
                    "or start a new run.name",
                )
            meta = run_state.read_meta(checkpoint)
            if meta.data_digest != self.data_digest:
                raise ConfigError(
                    f"--resume: {cfg.data.shards} changed since {checkpoint.name} (manifest digest differs)",
                    "resume on the same shard set, or start a new run.name",
                )
            self._load(checkpoint)
            if acc.is_main_process:
                print(f"synmed: resumed from {checkpoint} at step {self.position.step}", flush=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(saved, dump_yaml(cfg))
        acc.wait_for_everyone()
        self.metrics = (
            MetricsLog(self.run_dir, self.position.step if checkpoint else None)
            if acc.is_main_process
            else None
        )
        self.resumed_from = checkpoint

    # -- run state ---------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        scaler = self.accelerator.scaler
        return {
            "model": self.accelerator.unwrap_model(self.model).state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "step": self.position.step,
            "data": {
                "steps_per_epoch": self.steps_per_epoch,
                "samples_per_step": self.samples_per_step,
            },
        }

    def _load(self, checkpoint: Path) -> None:
        # Loaded to the CPU: load_state_dict copies onto each parameter's device.
        state, rng = run_state.load_state(checkpoint, self.rank)
        self.accelerator.unwrap_model(self.model).load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        if state["scaler"] is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        if state["data"]["steps_per_epoch"] != self.steps_per_epoch:
            raise ConfigError(
                f"--resume: {checkpoint.name} was made with {state['data']['steps_per_epoch']} steps per epoch, "
                f"now {self.steps_per_epoch} (another number of processes or batch size)",
                "resume with the same world size and batch settings",
            )
        self.position.step = int(state["step"])
        if rng is not None:
            run_state.set_rng_state(rng)

    def save(self) -> Path:
        acc = self.accelerator
        return run_state.save_checkpoint(
            self.run_dir,
            self.position.step,
            self._state() if acc.is_main_process else None,
            rank=self.rank,
            world_size=self.world,
            barrier=acc.wait_for_everyone,
            config_digest=self.config_digest,
            data_digest=self.data_digest,
            keep_last=self.train_cfg.keep_last,
        )

    # -- loop --------------------------------------------------------------------------------------

    def _loader(self, epoch: int, offset: int) -> DataLoader:
        sampler = ResumableShardSampler(
            len(self.dataset), rank=self.rank, world_size=self.world, seed=self.cfg.run.seed
        )
        sampler.set_epoch(epoch, offset)
        self.augment.epoch = epoch
        return DataLoader(
            self.dataset,
            batch_size=self.train_cfg.batch_size,
            sampler=sampler,
            num_workers=self.train_cfg.num_workers,
            drop_last=True,
            pin_memory=torch.cuda.is_available(),
            # Its own generator: creating an iterator must not draw from the global RNG, or a run
            # resumed mid-epoch (one extra iterator) would draw different noise from then on.
            generator=torch.Generator().manual_seed(self.cfg.run.seed * 1_000_003 + epoch),
        )

    def _preview(self) -> None:
        tc = self.train_cfg
        model = self.ema.ema_model
        labels = None
        if model.num_classes:
            labels = (
                torch.arange(tc.sample_images, device=self.accelerator.device) % model.num_classes
            )
        images = model.sample_preview(
            tc.sample_images, steps=tc.sample_steps, seed=self.cfg.run.seed, labels=labels
        )
        save_grid(images, self.run_dir / "samples" / f"step-{self.position.step:08d}.png")

    def fit(self, stop_requested: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Train until ``train.max_steps``.

        ``stop_requested()`` is this rank's wish to stop (a preemption signal). It travels in the
        per-step all-reduce, so every rank learns after the same step, saves that step together,
        and returns ``{"stopped_at": step}``.
        """
        self._stop_requested = stop_requested or (lambda: False)
        acc, tc = self.accelerator, self.train_cfg
        acc.init_trackers("tensorboard")
        start_step = self.position.step
        bar = tqdm(
            total=tc.max_steps,
            initial=start_step,
            desc="train generator",
            disable=not acc.is_main_process,
        )
        t0, seen_since_log, log_t = time.time(), 0, time.time()
        loss_value = float("nan")
        grad_norm = None
        while self.position.step < tc.max_steps:
            epoch, offset = self.position.epoch_and_offset(
                self.steps_per_epoch, self.samples_per_step
            )
            batches = iter(self._loader(epoch, offset))
            for _ in range(self.steps_per_epoch - offset // self.samples_per_step):
                if self.position.step >= tc.max_steps:
                    break
                loss_value, grad_norm, indices = self._step(batches)
                self.position.step += 1
                seen_since_log += self.samples_per_step * self.world
                bar.update(1)
                if tc.record_indices:
                    with open(self.run_dir / f"indices-rank{self.rank}.jsonl", "a") as f:
                        f.write(json.dumps({"step": self.position.step, "indices": indices}) + "\n")
                step = self.position.step
                if step % tc.log_every == 0 or step == tc.max_steps:
                    rate = seen_since_log / max(time.time() - log_t, 1e-9)
                    record = {
                        "step": step,
                        "loss": loss_value,
                        "lr": self.lr_schedule.get_last_lr()[0],
                        "images_per_s": rate,
                    }
                    if grad_norm is not None:
                        record["grad_norm"] = grad_norm
                    acc.log(record, step=step)
                    if self.metrics is not None:
                        self.metrics.write(record)
                    bar.set_postfix(loss=f"{loss_value:.4f}")
                    seen_since_log, log_t = 0, time.time()
                if acc.is_main_process and (step % tc.sample_every == 0 or step == tc.max_steps):
                    self._preview()
                if step % tc.checkpoint_every == 0 or step == tc.max_steps:
                    self.save()
                if self._stop_agreed:
                    checkpoint = self.save()
                    bar.close()
                    print(f"synmed: stopped at step {step}; saved {checkpoint}", flush=True)
                    return {"stopped_at": step, "checkpoint": str(checkpoint)}
        bar.close()
        summary = self._finish(start_step, time.time() - t0, loss_value)
        acc.end_training()  # last: it also tears down the process group
        return summary

    def _step(self, batches: Any) -> tuple[float, float | None, list[int]]:
        acc, tc = self.accelerator, self.train_cfg
        self.model.train()
        total = torch.zeros((), device=acc.device)
        indices: list[int] = []
        for micro in range(tc.grad_accum):
            batch = next(batches)
            images = batch["image"].to(acc.device, non_blocking=True)
            labels = batch.get("label")
            labels = labels.to(acc.device) if isinstance(labels, torch.Tensor) else None
            indices += batch["index"].tolist()
            sync = (
                contextlib.nullcontext() if micro == tc.grad_accum - 1 else acc.no_sync(self.model)
            )
            with sync, acc.autocast():
                loss = self.model(images, labels)
            acc.backward(loss / tc.grad_accum)
            total += loss.detach().float()
        # One collective per step carries the loss for the log (a NaN on any rank stops every rank)
        # and every rank's wish to stop (a preemption signal), so all ranks agree on both.
        wish = 1.0 if self._stop_requested() else 0.0
        packed = torch.stack([total / tc.grad_accum, torch.tensor(wish, device=acc.device)])
        packed = acc.reduce(packed, reduction="sum")
        mean_loss = packed[0] / self.world
        self._stop_agreed = bool(packed[1] > 0)
        if not torch.isfinite(mean_loss):
            last = run_state.latest_checkpoint(self.run_dir)
            raise TrainingError(
                f"the training loss became {mean_loss.item()} at step {self.position.step + 1}; "
                f"weights were not updated; last good checkpoint: {last or 'none yet'}",
                "lower train.lr, set train.max_grad_norm, or check the data; resume with --resume",
            )
        grad_norm = None
        if tc.max_grad_norm is not None:
            grad_norm = float(acc.clip_grad_norm_(self.model.parameters(), tc.max_grad_norm))
        self.optimizer.step()
        self.lr_schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update()
        return float(mean_loss), grad_norm, indices

    def _weights_digest(self, module: torch.nn.Module) -> str:
        digest = hashlib.sha256()
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def ranks_in_sync(self) -> dict[str, bool]:
        """Whether every rank holds bit-identical model and EMA weights (DDP and the EMA update
        must keep them so; a difference means a desynchronised run)."""
        model = self._weights_digest(self.accelerator.unwrap_model(self.model))
        ema = self._weights_digest(self.ema.ema_model)
        everyone = gather_object([(model, ema)]) if self.world > 1 else [(model, ema)]
        return {
            "model_equal_across_ranks": len({m for m, _ in everyone}) == 1,
            "ema_equal_across_ranks": len({e for _, e in everyone}) == 1,
        }

    def _finish(self, start_step: int, seconds: float, loss: float) -> dict[str, Any]:
        acc = self.accelerator
        summary: dict[str, Any] = {}
        sync = self.ranks_in_sync()
        if acc.is_main_process:
            export_dir = self.run_dir / EXPORT_DIR
            provenance = {
                "config_digest": self.config_digest,
                "data_manifest_sha256": self.data_digest,
                "data": str(Path(self.cfg.data.shards).resolve()),
                "step": self.position.step,
                "ema_decay": self.train_cfg.ema_decay,
                "weights": "ema",
                "class_names": self.dataset.class_names,
            }
            export_generator(self.ema.ema_model, export_dir, provenance)
            records = self.metrics.read() if self.metrics else []
            save_loss_curve(
                records, self.run_dir / "loss.png", f"{self.cfg.model.kind} · {self.cfg.run.name}"
            )
            steps_run = self.position.step - start_step
            summary = {
                "run": str(self.run_dir),
                "model": self.cfg.model.kind,
                "steps": self.position.step,
                "steps_this_session": steps_run,
                "resumed_from": str(self.resumed_from) if self.resumed_from else None,
                "world_size": self.world,
                "global_batch": self.samples_per_step * self.world,
                "final_loss": loss,
                "seconds": seconds,
                "images_per_s": steps_run * self.samples_per_step * self.world / max(seconds, 1e-9),
                "config_digest": self.config_digest,
                "data_manifest_sha256": self.data_digest,
                "checkpoint": str(run_state.latest_checkpoint(self.run_dir)),
                **sync,
                "export": str(export_dir),
            }
            write_summary(self.run_dir / "summary.json", summary)
        acc.wait_for_everyone()
        return summary


def train_generator(cfg: SuiteConfig, *, resume: Resume = "no") -> dict[str, Any]:
    """The `synmed train generator` stage, under whatever launcher started this process."""
    return run_training(lambda: GeneratorTrainer(cfg, resume=resume))
