"""What every generator family offers the training loop, the sampling job and the exporter.

A family is one file: its config dataclass, a :class:`Generator` subclass, and one registry line
(suite/generative/families.py). The interface is shaped by the five families the suite holds
(pixel DDPMs, GANs, latent diffusion with LoRA, ControlNet, mask-conditioned DDPMs):

- training: the family names its trainable modules and its optimizers and owns the order of its
  backward and step calls in :meth:`Generator.train_step` (a GAN steps D then G); the loop owns
  Accelerate, accumulation, AMP, clipping, checkpoints and the EMA, which covers only what trains;
- sampling: :meth:`Generator.sample` turns (indices, seed, conditions) into uint8 images and, where
  the family makes them, masks, labels, prompts and per-row metadata, with noise drawn from
  (seed, index, attempt) alone, so an index gives the same image on any worker, batch or shard;
- export: :meth:`Generator.export_files` writes the weights; the export's metadata file
  (suite/artifacts/exports.py) records the family, its config and the digest of every file, and a
  frozen base model the family builds on is named by digest (:meth:`Generator.frozen_bases`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from suite.data.transforms import sample_seed
from suite.errors import DataError

if TYPE_CHECKING:
    from suite.data.dataset import ShardDataset
    from suite.train.state import TrainState
    from suite.train.step import StepContext


@dataclass(slots=True)
class Conditions:
    """Per-row conditions of one sampling batch, aligned with its indices.

    ``labels`` (B,) class ids; ``masks`` (B, 1, H, W) uint8 segmentation masks; ``images``
    (B, C, H, W) uint8 conditioning images (edge maps); ``prompts`` one text per row;
    ``source_index`` (B,) the index of the conditioning row each output came from.
    """

    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    images: np.ndarray | None = None
    prompts: list[str] | None = None
    source_index: np.ndarray | None = None

    def present(self) -> tuple[str, ...]:
        return tuple(
            name
            for name in ("labels", "masks", "images", "prompts", "source_index")
            if getattr(self, name) is not None
        )


@dataclass(frozen=True, slots=True)
class SampleOptions:
    """How to sample: a sampler the family declares, its step count, the guidance scale."""

    sampler: str
    steps: int
    guidance_scale: float = 1.0
    negative_prompt: str | None = None  # text-to-image families; None: the model's own
    attempt: int = 0  # acceptance filtering: attempt a of an index has its own noise


@dataclass(slots=True)
class SampleOutput:
    """One batch of generated rows: uint8 (B, C, H, W) images and what else the family makes."""

    images: np.ndarray
    masks: np.ndarray | None = None
    labels: np.ndarray | None = None
    prompts: list[str] | None = None
    metadata: list[dict[str, Any]] | None = None


def noise_seed(seed: int, index: int, attempt: int = 0) -> int:
    """The seed of image ``index``'s noise. Attempt 0 is (seed, index), as every sampled set so
    far; later attempts add a tag so they never meet another draw's seed (the class-weights
    uniform of the sampling plan uses (seed, index, 1))."""
    if attempt == 0:
        return sample_seed(seed, index)
    return sample_seed(seed, index, "attempt", attempt)  # type: ignore[arg-type]


def noise_generators(seed: int, indices: Sequence[int], attempt: int = 0) -> list[torch.Generator]:
    """One CPU generator per image, seeded by (seed, index, attempt) alone."""
    return [
        torch.Generator(device="cpu").manual_seed(noise_seed(seed, int(i), attempt))
        for i in indices
    ]


def to_uint8(x: torch.Tensor, source: str = "the generator") -> np.ndarray:
    """Images in [-1, 1] -> uint8 (B, C, H, W) on the CPU; NaN or inf (which would become black
    pixels) is one error naming ``source``, the model that made them."""
    x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise DataError(
            f"{source} produced NaN/inf pixels ({int((~torch.isfinite(x)).sum())} of {x.numel()} "
            "values): its weights diverged in training",
            "retrain it at a lower train.lr (synmed train generator CONFIG train.lr=... ; "
            "train.max_grad_norm also helps), then sample the new export",
        )
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


@dataclass(slots=True)
class OptimizerSpec:
    """One optimizer of a family, over some of its trainable parameters, with its LR factor per
    optimizer step (``torch.optim.lr_scheduler.LambdaLR`` semantics)."""

    optimizer: torch.optim.Optimizer
    lr_lambda: Callable[[int], float] = field(default=lambda step: 1.0)


class Generator(nn.Module, ABC):
    """A trainable image generator over images in [0, 1], shape (B, C, H, W).

    Subclasses set ``config`` (their dataclass) and ``config_class``, declare ``samplers`` (the
    names ``synmed sample`` accepts for them) and ``conditions`` (the condition kinds they read),
    and implement the abstract methods.
    """

    config: Any
    config_class: ClassVar[type]
    #: sampler names this family accepts; the CLI, run configs and the sampling job check them
    samplers: ClassVar[tuple[str, ...]] = ()
    #: condition kinds (fields of :class:`Conditions`) the family reads when sampling
    conditions: ClassVar[tuple[str, ...]] = ()
    #: DDP option: True where a step leaves some parameters without gradients (a GAN's D step)
    find_unused_parameters: ClassVar[bool] = False
    #: the EMA's decay warm-up (ema-pytorch's, Karras-style); False: ``train.ema_decay`` from the
    #: first average on, as the GAN references keep their generator's average
    ema_warmup: ClassVar[bool] = True

    # -- training ----------------------------------------------------------------------------------

    @abstractmethod
    def trainable_modules(self) -> dict[str, nn.Module]:
        """The modules that train: what the EMA averages and checkpoints hold. A frozen base is
        not among them."""

    def ema_modules(self) -> dict[str, nn.Module]:
        """The trainable modules the EMA averages (and previews and exports use): all of them by
        default; a GAN averages only its generator (a discriminator's average serves nothing)."""
        return self.trainable_modules()

    def bind_data(self, class_names: Sequence[str], classes_present: Sequence[int]) -> None:
        """Called once before training with the data's class names and the class ids its
        selected rows hold (a ``data.classes`` filter trains some classes only); a family that
        keeps one network per class records which of them train. Default: nothing."""

    def bind_rows(self, dataset: ShardDataset) -> None:
        """Called once before training with the training rows (after :meth:`bind_data`); a
        family that reads per-row columns (a text-to-image family's captions, keyed by the
        batch's ``index``) reads them here. Default: nothing."""

    def cast_frozen(self, dtype: torch.dtype) -> None:
        """Called once before training under mixed precision (``dtype`` is the autocast type): a
        family with a frozen base may store it in ``dtype`` (its weights are only read), keeping
        what trains in float32. Default: nothing."""

    def check_losses(
        self,
        losses: dict[str, float],
        state: TrainState,
        *,
        step: int,
        command: str,
        last_checkpoint: Path | None,
    ) -> None:
        """After each step, with the step's losses averaged over every rank (so every rank
        decides alike): raise a :class:`~suite.train.step.TrainingError` to stop a run that can
        no longer learn (a GAN whose discriminator wins outright). ``command`` runs this run's
        config (``synmed train generator RUN/config.yaml``). Default: nothing."""

    @abstractmethod
    def configure_optimizers(self, train_cfg: Any) -> dict[str, OptimizerSpec]:
        """Named optimizers over the trainable parameters, built from ``train:``."""

    @abstractmethod
    def loss(self, batch: dict[str, torch.Tensor], objective: str) -> torch.Tensor:
        """The scalar loss of ``objective`` (one per optimizer, e.g. "generator",
        "discriminator") on one micro-batch: ``image`` in [0, 1] and, where present, ``label``
        and ``mask``."""

    def forward(self, batch: dict[str, torch.Tensor], objective: str = "model") -> torch.Tensor:
        # DDP synchronises gradients only for calls that go through forward().
        return self.loss(batch, objective)

    def train_step(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One optimizer step of every optimizer, in the family's order. The default: one
        optimizer, one objective of the same name. Returns the mean loss of each objective."""
        (name,) = ctx.optimizer_names
        loss = ctx.accumulate(name)
        ctx.step(name)
        return {"loss": loss}

    def frozen_bases(self) -> dict[str, Path]:
        """Frozen models the family builds on (name -> local path): named in the export by
        digest, never copied into checkpoints or exports."""
        return {}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds of the model: the state of the trainable modules."""
        return {
            f"{name}.{key}": value
            for name, module in self.trainable_modules().items()
            for key, value in module.state_dict().items()
        }

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, module in self.trainable_modules().items():
            prefix = f"{name}."
            module.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )

    @contextmanager
    def in_eval(self) -> Iterator[Generator]:
        """This generator in eval mode for the block, its training mode restored after (also on
        an error): sampling never sees BatchNorm or dropout in training mode."""
        was_training = self.training
        try:
            yield self.eval()
        finally:
            self.train(was_training)

    @contextmanager
    def weights_from(self, modules: dict[str, nn.Module]) -> Iterator[Generator]:
        """This generator in eval mode with its trainable modules' weights copied from
        ``modules`` (an EMA's copies) for the duration of the block; weights and training mode
        are then restored exactly. Previews and exports use the EMA weights without a second copy
        of a frozen base. Only the modules named in ``modules`` are swapped (a GAN's EMA holds
        its generator, not its discriminator)."""
        live = {n: m for n, m in self.trainable_modules().items() if n in modules}
        saved = {
            n: {k: v.detach().clone() for k, v in m.state_dict().items()} for n, m in live.items()
        }
        try:
            with torch.no_grad():
                for name, module in live.items():
                    module.load_state_dict(modules[name].state_dict())
            with self.in_eval():
                yield self
        finally:
            with torch.no_grad():
                for name, module in live.items():
                    module.load_state_dict(saved[name])

    # -- sampling ----------------------------------------------------------------------------------

    @abstractmethod
    def sample(
        self,
        indices: Sequence[int],
        seed: int,
        conditions: Conditions | None,
        options: SampleOptions,
        device: torch.device | str = "cpu",
    ) -> SampleOutput:
        """Rows for global ``indices``: a pure function of (weights, seed, index, attempt,
        condition, options), in eval mode."""

    def check_sampling(self, options: SampleOptions) -> None:
        """Refuse options this family cannot honour, before any work starts."""
        from suite.errors import ConfigError

        if options.sampler not in self.samplers:
            raise ConfigError(
                f"sampler {options.sampler!r} is not one of {type(self).__name__}'s samplers",
                f"use one of: {', '.join(self.samplers)}",
            )

    def check_conditions(self, conditions: Path | None, split: str | None) -> None:
        """Refuse a sampling job's ``--conditions`` set (None: none given) before any output is
        written; the set already has the columns ``conditions`` declares. Default: nothing."""

    @torch.no_grad()
    def sample_preview(
        self, n: int, *, steps: int, seed: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``n`` images in [0, 1] for the training previews, with noise from ``seed`` alone (the
        global RNG is left untouched, so previews never change what training draws)."""
        conditions = Conditions(labels=labels.cpu().numpy()) if labels is not None else None
        options = SampleOptions(sampler=self.samplers[0], steps=steps)
        device = next(self.parameters()).device
        out = self.sample(range(n), seed, conditions, options, device)
        return torch.from_numpy(out.images).float().div(255)

    # -- export ------------------------------------------------------------------------------------

    @abstractmethod
    def export_files(self, directory: Path) -> None:
        """Write the weights (safetensors, or a diffusers folder) into ``directory``."""

    @classmethod
    @abstractmethod
    def load_exported(cls, directory: Path, config: Any) -> Generator:
        """Rebuild a generator from :meth:`export_files`' folder and its config."""

    @property
    def source(self) -> str:
        """What made this model, for messages: its export folder once loaded from one."""
        folder = getattr(self, "_export_folder", None)
        return f"the generator export {folder}" if folder else "the generator being trained"

    @property
    def class_names(self) -> list[str]:
        return list(getattr(self, "_class_names", []))

    @property
    def num_classes(self) -> int:
        return int(getattr(self.config, "num_classes", 0))
