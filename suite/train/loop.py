"""One Accelerate training loop that every trainer (generators, SSL methods) specialises.

The same code runs in one process, under ``accelerate launch`` (one process per GPU, or gloo ranks
on a CPU), and under SLURM/Submitit (:func:`suite.launch.task.run_training`). What makes a run
resumable bit for bit:

- the data order is a pure function of (seed, epoch) and the step (``ResumableShardSampler``);
- augmentation is seeded per sample, not by worker RNGs;
- the run state holds the model, the optimizer, the grad scaler, the step, every rank's RNG, and
  whatever a trainer adds (:meth:`TrainLoop.extra_state`: an EMA, a teacher, a loss centre);
- previews fork the RNG, so they never change what training draws.

A trainer implements :meth:`build_dataset`, :meth:`build` and :meth:`export`, and either
:meth:`loss` (one optimizer, one objective) or the public :meth:`TrainLoop.train_step`, which owns
the order of several optimizers' backward and step calls through a
:class:`~suite.train.step.StepContext` (a generator family's ``train_step``). It may override the
hooks (``before_step``, ``after_backward``, ``after_step``, ``on_step_end``, ``log_extras``). The
run state holds every named optimizer and LR schedule, the grad scaler and the
:class:`~suite.train.state.TrainState` (step, epoch, a family's phase, named RNGs).
"""

from __future__ import annotations

import json
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import gather_object, set_seed
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from suite.artifacts.digests import sha256_tensors
from suite.artifacts.files import atomic_write_text
from suite.config import config_digest, dump_yaml, load_config, to_dict
from suite.errors import ConfigError
from suite.train import run_state
from suite.train.memory import keep_heap_between_steps
from suite.train.monitor import MetricsLog, save_loss_curve, write_summary
from suite.train.sampler import ResumableShardSampler
from suite.train.state import TrainState
from suite.train.step import StepContext, TrainingError

__all__ = ["EXPORT_DIR", "Resume", "StepContext", "TrainLoop", "TrainingError"]

# "no": a fresh run (refuses a folder with checkpoints); "yes": continue, a checkpoint must exist;
# "auto": continue when there is one (jobs that may be requeued use this); "restart": start over in
# the same folder, its checkpoints moved aside (never deleted).
Resume = Literal["no", "yes", "auto", "restart"]
CONFIG_FILE = "config.yaml"
# One line per resume with --allow-config-change: the step, the checkpoint and {key: [old, new]}.
CONFIG_CHANGES = "config-changes.jsonl"
EXPORT_DIR = "export"
# Keys that may differ between a run and its resumption in every trainer: they change what is
# logged or kept, never what a step computes.
RESUME_SAFE = frozenset(
    {
        "run.out_dir",
        "train.log_every",
        "train.checkpoint_every",
        "train.keep_last",
        "train.num_workers",
        "train.record_indices",
    }
)
# Keys that must never change on a resume, even with --allow-config-change: a step's batch (and
# with it the data position a checkpoint holds) is built from them.
BATCH_KEYS = frozenset({"train.batch_size", "train.grad_accum"})
# A weight this large is a run that diverged (one step at a huge learning rate), not a model; the
# weights of a trained network stay many orders of magnitude below it.
EXPLODED = 1e12


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def config_differences(old: Any, new: Any, resume_safe: frozenset[str] = RESUME_SAFE) -> list[str]:
    """Dotted keys whose values differ, except the resume-safe ones."""
    a, b = flatten(to_dict(old)), flatten(to_dict(new))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and k not in resume_safe)


def bad_tensors(tree: Any, prefix: str = "") -> list[str]:
    """Names of the floating tensors in ``tree`` (nested dicts/lists) that hold NaN or inf or
    exceed :data:`EXPLODED` in magnitude."""
    if isinstance(tree, torch.Tensor):
        if not tree.is_floating_point() or tree.numel() == 0:
            return []
        t = tree.detach()
        return [prefix] if not bool(torch.isfinite(t).all()) or t.abs().max() > EXPLODED else []
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list | tuple):
        items = enumerate(tree)
    else:
        return []
    return [
        name for k, v in items for name in bad_tensors(v, f"{prefix}.{k}" if prefix else str(k))
    ]


def mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def weights_digest(module: torch.nn.Module) -> str:
    return sha256_tensors(module.state_dict())


class TrainLoop(ABC):
    """Builds everything from a config, then :meth:`fit` trains to :attr:`max_steps`."""

    #: shown on the progress bar
    title = "train"
    #: keys (beyond :data:`RESUME_SAFE`) that may change between a run and its resumption
    resume_safe: frozenset[str] = frozenset()
    #: the command that runs this trainer, and its learning-rate key (for the advice it prints)
    command = "synmed train generator"
    lr_key = "train.lr"
    #: keys beyond ``train.*`` that ``--allow-config-change`` lets a resume change: they set how
    #: the weights are optimised from here on, not what the checkpoint's weights are
    tunable: frozenset[str] = frozenset()

    def __init__(
        self, cfg: Any, *, resume: Resume = "no", allow_config_change: bool = False
    ) -> None:
        keep_heap_between_steps()
        self.cfg = cfg
        self.allow_config_change = allow_config_change
        self.config_changes: dict[str, list[Any]] = {}
        self.train_cfg = cfg.train
        self.run_dir = Path(cfg.run.out_dir) / cfg.run.name
        # Accelerate's state is a process-wide singleton that refuses a second mixed_precision: a
        # trainer left by an error before fit() ended (which resets it) must not decide this
        # one's. The process group (PartialState) is kept.
        AcceleratorState._reset_state()
        GradientState._reset_state()
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            mixed_precision=mixed_precision(cfg.train.mixed_precision),
            log_with="tensorboard",
            project_dir=str(self.run_dir),
        )
        acc = self.accelerator
        self.rank, self.world = acc.process_index, acc.num_processes
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        set_seed(cfg.run.seed, device_specific=True)  # seed + rank: each rank draws its own noise

        # Rank 0 hashes every shard; the others then only check they exist.
        with acc.main_process_first():
            self.dataset = self.build_dataset(verify="sha256" if acc.is_main_process else "size")
        self.config_digest = config_digest(cfg)
        self.samples_per_step = cfg.train.batch_size * cfg.train.grad_accum
        per_rank = len(self.dataset) // self.world
        self.steps_per_epoch = per_rank // self.samples_per_step
        if self.steps_per_epoch < 1:
            raise TrainingError(
                f"{self.data_description()} has {len(self.dataset)} images: too few for "
                f"{self.world} rank(s) x batch {cfg.train.batch_size} x grad_accum "
                f"{cfg.train.grad_accum}",
                "lower train.batch_size or train.grad_accum, or use more data",
            )
        self.state = TrainState()
        self.schedules: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.build()
        self._stop_requested: Callable[[], bool] = lambda: False
        self._stop_agreed = False
        self._prepare_run_dir(resume)

    # -- what a trainer provides -------------------------------------------------------------------

    @abstractmethod
    def build_dataset(self, verify: str) -> Dataset:
        """The training set; ``verify`` is the shard check this rank runs ("sha256" or "size")."""

    @abstractmethod
    def build(self) -> None:
        """Set ``self.model`` and ``self.optimizers`` (name -> optimizer, all passed through
        ``accelerator.prepare``), optionally ``self.schedules`` (name -> LR scheduler, stepped
        after its optimizer), and whatever else the trainer keeps (EMA, teacher, loss)."""

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The loss of one micro-batch (called inside autocast and the no-sync context), for
        trainers that keep the default :meth:`train_step`."""
        raise NotImplementedError(f"{type(self).__name__} defines neither loss() nor train_step()")

    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A micro-batch as :meth:`train_step` receives it (e.g. moved to the device)."""
        return batch

    def train_step(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One optimizer step; returns the mean loss of each objective. The default: one
        optimizer named "model" and :meth:`loss`, with :meth:`after_backward` between the
        backward passes and the step."""
        loss = ctx.accumulate("model", self.loss)
        self.after_backward()
        ctx.step("model")
        return {"loss": loss}

    @abstractmethod
    def export(self, folder: Path, provenance: dict[str, Any]) -> None:
        """Write the trained weights for the next stage (main process only)."""

    @property
    @abstractmethod
    def data_digest(self) -> str:
        """A digest of the training data (the manifest's sha256, or of several)."""

    @property
    def max_steps(self) -> int:
        return self.train_cfg.max_steps

    def data_description(self) -> str:
        return str(self.cfg.data.shards)

    def describe(self) -> dict[str, Any]:
        """What the summary says this run trained."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Run state beyond model, optimizer, scaler and step."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    def synced_modules(self) -> dict[str, torch.nn.Module]:
        """Modules every rank must hold bit-identically (checked at the end)."""
        return {"model": self.accelerator.unwrap_model(self.model)}

    def before_step(self) -> None:
        """Before the step's first micro-batch (e.g. set this step's LR and weight decay)."""

    def after_backward(self) -> None:
        """After the gradients are final, before clipping and the optimizer step."""

    def after_step(self) -> None:
        """After the optimizer step (an EMA or teacher update, an LR scheduler step)."""

    def on_step_end(self) -> None:
        """After logging and checkpointing decisions of a step (previews, monitors)."""

    def check_losses(self, losses: dict[str, float]) -> None:
        """After every step, with its losses averaged over the ranks (every rank sees the same
        values): raise :class:`TrainingError` to stop a run that can no longer learn."""

    def log_extras(self) -> dict[str, float]:
        """Values logged with the loss (a momentum, a temperature...)."""
        return {}

    # -- run folder and run state ------------------------------------------------------------------

    @property
    def step(self) -> int:
        return self.state.step

    @step.setter
    def step(self, value: int) -> None:
        self.state.step = value
        self.state.epoch = value // self.steps_per_epoch

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The first optimizer (the only one of single-optimizer trainers); its LR is logged."""
        return next(iter(self.optimizers.values()))

    def _prepare_run_dir(self, resume: Resume) -> None:
        acc, cfg = self.accelerator, self.cfg
        saved = self.run_dir / CONFIG_FILE
        if resume == "restart":
            acc.wait_for_everyone()
            if acc.is_main_process:
                aside = run_state.set_aside(self.run_dir)
                if aside is not None:
                    print(f"synmed: --restart: moved the old checkpoints to {aside}", flush=True)
            acc.wait_for_everyone()
            resume = "no"
        checkpoint = run_state.latest_checkpoint(self.run_dir) if resume != "no" else None
        damaged = run_state.damaged_checkpoints(self.run_dir) if checkpoint is None else []
        root = self.run_dir / run_state.CHECKPOINTS
        if resume == "auto" and damaged:
            # a requeued job has no one to ask: it starts over, keeping the damaged ones aside
            acc.wait_for_everyone()
            if acc.is_main_process:
                aside = run_state.set_aside(self.run_dir)
                print(
                    f"synmed: --auto-resume: every checkpoint was damaged; moved them to {aside} "
                    "and started the run over",
                    flush=True,
                )
            acc.wait_for_everyone()
            damaged = []
        if resume == "no" and run_state.list_checkpoints(self.run_dir):
            if damaged:
                names = ", ".join(p.name for p in damaged)
                raise ConfigError(
                    f"run folder {self.run_dir} holds only damaged checkpoints ({names} in {root})",
                    "pass --restart to move them aside and start the run over (nothing is "
                    "deleted), or choose another run.name",
                )
            raise ConfigError(
                f"run folder {self.run_dir} already holds checkpoints",
                "pass --resume to continue it, --restart to start it over (its checkpoints moved "
                "aside), or choose another run.name",
            )
        if resume == "yes" and checkpoint is None:
            if damaged:
                raise ConfigError(
                    f"--resume: every checkpoint of {self.run_dir} is damaged: "
                    + ", ".join(str(p) for p in damaged),
                    "pass --restart instead of --resume to move them aside and start the run over "
                    f"(or move {root} away yourself and drop --resume)",
                )
            raise ConfigError(
                f"--resume: {self.run_dir} has no complete checkpoint",
                "drop --resume to start the run, or check run.out_dir and run.name",
            )
        if checkpoint is not None:
            old = load_config(saved, schema=type(cfg))
            differ = config_differences(old, cfg, RESUME_SAFE | self.resume_safe)
            refused = [k for k in differ if not self._tunable(k)]
            if refused:
                raise ConfigError(
                    f"--resume: the config differs from the run's {saved} in: {', '.join(differ)}; "
                    f"{', '.join(refused)} cannot change on a resume: {checkpoint} holds the "
                    "weights of the old model and data, which this change makes meaningless",
                    f"set {', '.join(refused)} back as in {saved}, or start a new run.name",
                )
            if differ and not self.allow_config_change:
                raise ConfigError(
                    f"--resume: the config differs from the run's {saved} in: {', '.join(differ)}",
                    "resume with the same config, or add --allow-config-change to resume with "
                    "these changed optimisation keys (train.* but train.batch_size and "
                    "train.grad_accum"
                    + "".join(f"; {k}" for k in sorted(self.tunable))
                    + "), or start a new run.name",
                )
            flat_old, flat_new = flatten(to_dict(old)), flatten(to_dict(cfg))
            self.config_changes = {k: [flat_old.get(k), flat_new.get(k)] for k in differ}
            meta = run_state.read_meta(checkpoint)
            if meta.data_digest != self.data_digest:
                raise ConfigError(
                    f"--resume: {self.data_description()} changed since {checkpoint.name} "
                    "(manifest digest differs)",
                    "resume on the same shard set, or start a new run.name",
                )
            self._load(checkpoint)
            if acc.is_main_process:
                print(f"synmed: resumed from {checkpoint} at step {self.step}", flush=True)
                if self.config_changes:
                    changes = ", ".join(
                        f"{k}: {a} -> {b}" for k, (a, b) in self.config_changes.items()
                    )
                    print(f"synmed: with changed config (--allow-config-change): {changes}")
                    record = {
                        "step": self.step,
                        "checkpoint": str(checkpoint),
                        "changes": self.config_changes,
                    }
                    with open(self.run_dir / CONFIG_CHANGES, "a") as f:
                        f.write(json.dumps(record) + "\n")
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(saved, dump_yaml(cfg))
        acc.wait_for_everyone()
        self.metrics = (
            MetricsLog(self.run_dir, self.step if checkpoint else None)
            if acc.is_main_process
            else None
        )
        self.resumed_from = checkpoint

    def _state(self) -> dict[str, Any]:
        scaler = self.accelerator.scaler
        return {
            "model": self.model_state(),
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedules": {n: s.state_dict() for n, s in self.schedules.items()},
            "scaler": scaler.state_dict() if scaler is not None else None,
            "train_state": self.state.state_dict(),
            "data": {
                "steps_per_epoch": self.steps_per_epoch,
                "samples_per_step": self.samples_per_step,
            },
            **self.extra_state(),
        }

    def _load(self, checkpoint: Path) -> None:
        # Loaded to the CPU: load_state_dict copies onto each parameter's device.
        state, rng = run_state.load_state(checkpoint, self.rank)
        # What this config sets (lr, betas, decay): a checkpoint's optimizer and schedule states
        # hold the old values, which an accepted config change must replace.
        fresh_groups = {
            n: [{k: v for k, v in g.items() if k != "params"} for g in o.param_groups]
            for n, o in self.optimizers.items()
        }
        fresh_base = {n: list(getattr(s, "base_lrs", [])) for n, s in self.schedules.items()}
        if "train_state" not in state:
            raise ConfigError(
                f"--resume: {checkpoint} was written by an older synmed (one optimizer, no train "
                "state); this one cannot continue it",
                "start a new run.name, or finish the run with the synmed that began it",
            )
        if state["data"]["steps_per_epoch"] != self.steps_per_epoch:
            raise ConfigError(
                f"--resume: {checkpoint.name} was made with {state['data']['steps_per_epoch']} "
                f"steps per epoch, now {self.steps_per_epoch} (another number of processes or "
                "batch size)",
                "resume with the same world size and batch settings",
            )
        self.load_model_state(state["model"])
        if set(state["optimizers"]) != set(self.optimizers):
            raise ConfigError(
                f"--resume: {checkpoint.name} holds optimizers {sorted(state['optimizers'])}, "
                f"this run has {sorted(self.optimizers)}",
                "resume with the same model settings, or start a new run.name",
            )
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, schedule in self.schedules.items():
            schedule.load_state_dict(state["schedules"][name])
        if state["scaler"] is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        if self.config_changes:
            self._apply_config(fresh_groups, fresh_base)
        self.load_extra_state(state)
        self.state.load_state_dict(state["train_state"])
        if rng is not None:
            run_state.set_rng_state(rng)

    def _apply_config(
        self, groups: dict[str, list[dict[str, Any]]], base_lrs: dict[str, list[float]]
    ) -> None:
        """Put this config's optimiser hyperparameters over a loaded checkpoint's, keeping the
        optimizer moments and the schedule's position."""
        for name, optimizer in self.optimizers.items():
            for group, fresh in zip(optimizer.param_groups, groups[name]):
                group.update(fresh)
        for name, schedule in self.schedules.items():
            if base_lrs[name] and hasattr(schedule, "base_lrs"):
                schedule.base_lrs = base_lrs[name]
                # the lr at the schedule's position, from the new base (LambdaLR's get_lr is
                # closed-form; chainable ones such as StepLR offer _get_closed_form_lr)
                closed_form = getattr(schedule, "_get_closed_form_lr", schedule.get_lr)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # get_lr() outside step() is what we want
                    lrs = closed_form()
                for group, lr in zip(schedule.optimizer.param_groups, lrs):
                    group["lr"] = lr
                schedule._last_lr = lrs  # type: ignore[attr-defined]

    def _tunable(self, key: str) -> bool:
        return (key.startswith("train.") and key not in BATCH_KEYS) or key in self.tunable

    def resume_command(self, last: Path | None) -> str:
        """The command that continues this run from ``last`` at a tenth of the learning rate
        (from scratch when there is no checkpoint yet)."""
        lr = flatten(to_dict(self.cfg)).get(self.lr_key)
        lower = f" {self.lr_key}={lr / 10:g}" if isinstance(lr, int | float) else ""
        config = self.run_dir / CONFIG_FILE
        if last is None:
            return f"{self.command} {config}{lower} --restart"
        return f"{self.command} {config}{lower} --resume --allow-config-change"

    def diverged_fix(self) -> str:
        """The fix of a run that diverged: a lower learning rate from the last good checkpoint."""
        last = run_state.latest_checkpoint(self.run_dir)
        how = "continue from the last good checkpoint" if last else "start over"
        return (
            f"lower the learning rate and {how}: {self.resume_command(last)} "
            "(or set train.max_grad_norm, or check the data)"
        )

    def check_weights(self, what: str) -> None:
        """Refuse to write ``what`` (a checkpoint, an export) from weights that are NaN, inf or
        exploded; every rank holds the same weights, so every rank stops together."""
        bad = bad_tensors({"model": self.model_state(), **self.extra_state()})
        if bad:
            last = run_state.latest_checkpoint(self.run_dir)
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise TrainingError(
                "the weights became non-finite or exploded (|w| > 1e12) by step "
                f"{self.step} ({shown}); the {what} was not written; last good checkpoint: "
                f"{last or 'none yet'}",
                self.diverged_fix(),
            )

    def model_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds of the model (a generator trainer keeps only what trains)."""
        return self.accelerator.unwrap_model(self.model).state_dict()

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        self.accelerator.unwrap_model(self.model).load_state_dict(state)

    def _all_ranks_ok(self, ok: bool) -> bool:
        """Whether ``ok`` holds on every rank (one all-reduce; no collective with one process)."""
        if self.world == 1:
            return ok
        failed = torch.tensor([0 if ok else 1], device=self.accelerator.device)
        return int(self.accelerator.reduce(failed, reduction="sum").item()) == 0

    def save(self) -> Path:
        acc = self.accelerator
        self.check_weights("checkpoint")
        try:
            return run_state.save_checkpoint(
                self.run_dir,
                self.step,
                self._state() if acc.is_main_process else None,
                rank=self.rank,
                world_size=self.world,
                barrier=acc.wait_for_everyone,
                all_ok=self._all_ranks_ok,
                config_digest=self.config_digest,
                data_digest=self.data_digest,
                keep_last=self.train_cfg.keep_last,
            )
        except run_state.CheckpointWriteError as err:
            config = self.run_dir / CONFIG_FILE
            rerun = (
                f"{self.command} {config} --resume" if err.last_good else f"{self.command} {config}"
            )
            raise run_state.CheckpointWriteError(
                err.what,
                f"free space on the disk of {self.run_dir} (or raise the file-size limit), then "
                f"{rerun}",
                err.path,
                err.last_good,
            ) from None

    # -- loop --------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Tell epoch-seeded parts (augmentation, mixing tables) the epoch about to be read."""

    def _loader(self, epoch: int, offset: int) -> DataLoader:
        sampler = ResumableShardSampler(
            len(self.dataset), rank=self.rank, world_size=self.world, seed=self.cfg.run.seed
        )
        sampler.set_epoch(epoch, offset)
        self.set_epoch(epoch)
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

    def fit(self, stop_requested: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Train until :attr:`max_steps`.

        ``stop_requested()`` is this rank's wish to stop (a preemption signal). It travels in the
        per-step all-reduce, so every rank learns after the same step, saves that step together,
        and returns ``{"stopped_at": step}``.
        """
        self._stop_requested = stop_requested or (lambda: False)
        acc, tc = self.accelerator, self.train_cfg
        acc.init_trackers("tensorboard")
        start_step, max_steps = self.step, self.max_steps
        bar = tqdm(
            total=max_steps, initial=start_step, desc=self.title, disable=not acc.is_main_process
        )
        t0, seen_since_log, log_t = time.time(), 0, time.time()
        # host seconds blocked on the loader (its start at each epoch included): the share of
        # step time the workers fail to hide, reported per log window and in the summary
        self._data_wait, wait_at_log = 0.0, 0.0
        loss_value = float("nan")
        grad_norm = None
        while self.step < max_steps:
            epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
            started = time.perf_counter()
            batches = iter(self._loader(epoch, in_epoch * self.samples_per_step))
            self._data_wait += time.perf_counter() - started
            for _ in range(self.steps_per_epoch - in_epoch):
                if self.step >= max_steps:
                    break
                loss_value, grad_norm, indices, extras = self._step(batches)
                self.step += 1
                seen_since_log += self.samples_per_step * self.world
                bar.update(1)
                if tc.record_indices:
                    with open(self.run_dir / f"indices-rank{self.rank}.jsonl", "a") as f:
                        f.write(json.dumps({"step": self.step, "indices": indices}) + "\n")
                step = self.step
                if step % tc.log_every == 0 or step == max_steps:
                    window = max(time.time() - log_t, 1e-9)
                    record = {
                        "step": step,
                        "epoch": self.epoch,
                        "loss": loss_value,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "images_per_s": seen_since_log / window,
                        "data_wait_fraction": min(1.0, (self._data_wait - wait_at_log) / window),
                        **extras,
                        **self.log_extras(),
                    }
                    if grad_norm is not None:
                        record["grad_norm"] = grad_norm
                    acc.log(record, step=step)
                    if self.metrics is not None:
                        self.metrics.write(record)
                    bar.set_postfix(loss=f"{loss_value:.4f}")
                    seen_since_log, log_t, wait_at_log = 0, time.time(), self._data_wait
                self.on_step_end()
                if step % tc.checkpoint_every == 0 or step == max_steps:
                    self.save()
                if self._stop_agreed:
                    checkpoint = self.save()
                    bar.close()
                    print(f"synmed: stopped at step {step}; saved {checkpoint}", flush=True)
                    return {"stopped_at": step, "checkpoint": str(checkpoint)}
        bar.close()
        summary = self._finish(start_step, time.time() - t0, loss_value)
        for tracker in acc.trackers:
            tracker.finish()
        # Not acc.end_training(): it destroys the process group, and a run's pretrain stage trains
        # every variant and seed in one job (torchrun's store takes no second rendezvous). The group
        # lives as long as the process; Accelerate's per-trainer state is reset for the next one.
        AcceleratorState._reset_state()
        GradientState._reset_state()
        return summary

    def _step(
        self, batches: Iterator[dict[str, Any]]
    ) -> tuple[float, float | None, list[int], dict[str, float]]:
        acc, tc = self.accelerator, self.train_cfg
        self.model.train()
        self.before_step()
        started = time.perf_counter()
        micro_batches = [next(batches) for _ in range(tc.grad_accum)]
        self._data_wait += time.perf_counter() - started
        indices = [i for batch in micro_batches for i in batch["index"].tolist()]
        ctx = StepContext(
            accelerator=acc,
            model=self.model,
            micro_batches=[self.prepare_batch(b) for b in micro_batches],
            optimizers=self.optimizers,
            schedules=self.schedules,
            step_number=self.step + 1,
            max_grad_norm=tc.max_grad_norm,
            state=self.state,
            last_checkpoint=lambda: run_state.latest_checkpoint(self.run_dir),
            fix=self.diverged_fix,
        )
        # Gradients never carry from one step to the next: a GAN's G backward leaves gradients
        # on D that D's next step must not see (and a resumed run would not have them).
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        losses = self.train_step(ctx)
        # One collective per step carries the losses for the log (a NaN on any rank stops every
        # rank) and every rank's wish to stop (a preemption signal), so all ranks agree on both.
        wish = 1.0 if self._stop_requested() else 0.0
        names = list(losses)
        packed = torch.stack([*(losses[n] for n in names), torch.tensor(wish, device=acc.device)])
        packed = acc.reduce(packed, reduction="sum")
        means = {n: packed[i] / self.world for i, n in enumerate(names)}
        self._stop_agreed = bool(packed[-1] > 0)
        bad = {n: v.item() for n, v in means.items() if not torch.isfinite(v)}
        if bad:
            last = run_state.latest_checkpoint(self.run_dir)
            raise TrainingError(
                f"the training loss became {', '.join(f'{v} ({n})' for n, v in bad.items())} at "
                f"step {self.step + 1}; last good checkpoint: {last or 'none yet'}",
                self.diverged_fix(),
            )
        self.check_losses({n: float(v) for n, v in means.items()})
        self.after_step()
        main = float(means[names[0]])
        extras = {f"loss_{n}": float(v) for n, v in means.items()} if len(names) > 1 else {}
        grad_norm = next(iter(ctx.grad_norms.values()), None)
        return main, grad_norm, indices, extras

    # -- end ---------------------------------------------------------------------------------------

    def ranks_in_sync(self) -> dict[str, bool]:
        """Whether every rank holds bit-identical weights of :meth:`synced_modules` (DDP and the
        EMA/teacher updates must keep them so; a difference means a desynchronised run)."""
        mine = {name: weights_digest(m) for name, m in self.synced_modules().items()}
        everyone = gather_object([mine]) if self.world > 1 else [mine]
        return {
            f"{name}_equal_across_ranks": len({d[name] for d in everyone}) == 1 for name in mine
        }

    def _finish(self, start_step: int, seconds: float, loss: float) -> dict[str, Any]:
        acc = self.accelerator
        summary: dict[str, Any] = {}
        sync = self.ranks_in_sync()
        self.check_weights("export")
        if acc.is_main_process:
            export_dir = self.run_dir / EXPORT_DIR
            self.export(
                export_dir,
                {
                    "config_digest": self.config_digest,
                    "data_digest": self.data_digest,
                    "run": str(self.run_dir.resolve()),
                    "step": self.step,
                },
            )
            records = self.metrics.read() if self.metrics else []
            save_loss_curve(
                records, self.run_dir / "loss.png", f"{self.title} · {self.cfg.run.name}"
            )
            steps_run = self.step - start_step
            summary = {
                "run": str(self.run_dir),
                **self.describe(),
                "steps": self.step,
                "epochs": self.step / self.steps_per_epoch,
                "steps_this_session": steps_run,
                "resumed_from": str(self.resumed_from) if self.resumed_from else None,
                "config_changes": self.config_changes,
                "world_size": self.world,
                "global_batch": self.samples_per_step * self.world,
                "final_loss": loss,
                "seconds": seconds,
                "data_wait_s": self._data_wait,
                "data_wait_fraction": min(1.0, self._data_wait / max(seconds, 1e-9)),
                "images_per_s": steps_run * self.samples_per_step * self.world / max(seconds, 1e-9),
                "config_digest": self.config_digest,
                "data_digest": self.data_digest,
                "checkpoint": str(run_state.latest_checkpoint(self.run_dir)),
                **sync,
                "export": str(export_dir),
            }
            write_summary(self.run_dir / "summary.json", summary)
        acc.wait_for_everyone()
        return summary
