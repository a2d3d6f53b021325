"""What every GAN family shares (dcgan, acgan, pggan): losses, the D/G step, latents, sampling,
export and the stop rule for a discriminator that wins outright.

A family subclasses :class:`GAN`, sets ``self.G`` and ``self.D`` and implements
:meth:`GAN.latent_shape`, :meth:`GAN.generate` and :meth:`GAN.discriminate` (or overrides
:meth:`GAN.discriminator_loss` / :meth:`GAN.generator_loss`, as ACGAN's auxiliary head and
PGGAN's WGAN-GP do). Training draws latents from the global RNG, which the run state saves per
rank (so a resumed run draws what the uninterrupted one drew); sampling draws each row's latent
from its own generator seeded by (seed, index, attempt), in eval mode, so an index gives the same
image on any worker and in any batch (with BatchNorm in train mode it would not).

The default losses reuse the D objective's fakes in the G objective of the same micro-batch, as
pytorch/examples' dcgan does: one G forward a step, not a no-grad one for D and another for G
(12 % of a 32 px step on a CPU, benchmarks/bench_train_gan.py). The graph through G then lives
across D's update, which never touches G; the cache lives inside one ``train_step`` only, so a
checkpoint (taken between steps) never holds it and a resumed run draws what the uninterrupted
one drew.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from suite.errors import ConfigError
from suite.generative.base import (
    Conditions,
    Generator,
    OptimizerSpec,
    SampleOptions,
    SampleOutput,
    noise_generators,
    to_uint8,
)
from suite.generative.optim import lr_lambda
from suite.train.state import TrainState
from suite.train.step import StepContext, TrainingError

WEIGHTS = "generator.safetensors"
#: the one sampler of every GAN: one forward pass of G (``--sampling-steps`` is ignored)
SAMPLER = "gan"
#: which optimizer each objective steps
OPTIMIZER = {"discriminator": "D", "generator": "G"}
#: the train-state value counting consecutive steps the discriminator won outright
D_WINS = "gan_d_wins"

# -- losses ------------------------------------------------------------------------------------------


def bce_d_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, real_target: float = 1.0
) -> torch.Tensor:
    """The discriminator's BCE on logits (real -> ``real_target``, fake -> 0), the mean of the two
    halves' means, as pytorch/examples (errD_real + errD_fake, halved for scale)."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    real = F.binary_cross_entropy_with_logits(
        real_logits, torch.full_like(real_logits, real_target)
    )
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return (real + fake) / 2


def bce_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss, -log D(G(z)) (Goodfellow et al. 2014, sec. 3)."""
    fake_logits = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    gp_lambda: float = 10.0,
) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017, arXiv:1704.00028): ``gp_lambda`` times
    (||grad critic(x_hat)|| - 1)^2 at random interpolates of real and fake (the interpolation
    weights come from the global RNG, saved per rank)."""
    eps = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    # grads w.r.t. the inputs only: parameters' .grad (and DDP's hooks) are left to backward()
    (grad,) = torch.autograd.grad(scores.float().sum(), mixed, create_graph=True)
    return gp_lambda * ((grad.flatten(1).float().norm(2, dim=1) - 1) ** 2).mean()


def wgan_gp_d_loss(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    real_scores: torch.Tensor,
    fake_scores: torch.Tensor,
    gp_lambda: float = 10.0,
    drift: float = 1e-3,
) -> torch.Tensor:
    """The critic's WGAN-GP loss with PGGAN's drift term ``drift * E[D(real)^2]`` (Karras et al.
    2018, arXiv:1710.10196, appendix A.1)."""
    real_scores, fake_scores = real_scores.float(), fake_scores.float()
    return (
        fake_scores.mean()
        - real_scores.mean()
        + gradient_penalty(critic, real, fake, gp_lambda)
        + drift * (real_scores**2).mean()
    )


def wgan_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.float().mean()


# -- latents and labels ------------------------------------------------------------------------------


def latents(
    seed: int, indices: Sequence[int], shape: tuple[int, ...], attempt: int = 0
) -> torch.Tensor:
    """(B, *shape) standard normal latents on the CPU, row i from (seed, indices[i], attempt)
    alone (never the global or numpy RNG)."""
    return torch.stack(
        [torch.randn(shape, generator=g) for g in noise_generators(seed, indices, attempt)]
    )


def sampling_labels(
    conditions: Conditions | None, n: int, num_classes: int, source: str
) -> torch.Tensor | None:
    """The class ids of a sampling batch from ``conditions.labels`` (None for an unconditional
    GAN); a conditional GAN without labels, or a label outside 0..K-1, is one error."""
    if not num_classes:
        return None
    if conditions is None or conditions.labels is None:
        raise ConfigError(
            f"{source} is class-conditional ({num_classes} classes) and was given no labels",
            "sample it with --per-class N or --class-weights W1,...,WK",
        )
    labels = np.asarray(conditions.labels).astype(np.int64).reshape(-1)
    if labels.shape[0] != n or labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise ConfigError(
            f"labels {sorted(set(labels.tolist()))} for {n} rows do not fit {source}'s "
            f"{num_classes} classes",
            f"give one label in 0..{num_classes - 1} per row",
        )
    return torch.from_numpy(labels)


# -- the stop rule ------------------------------------------------------------------------------------


def check_discriminator_wins(
    losses: dict[str, float],
    state: TrainState,
    config: Any,
    *,
    step: int,
    command: str,
    last_checkpoint: Path | None,
) -> None:
    """Count the consecutive steps the discriminator won outright (``losses`` holds the rank
    means of "d_real", "d_fake" and "g_adv", the generator's adversarial loss; the count lives in the train state, so a resumed
    run counts on); stop at ``config.d_wins_patience`` with one error naming the step and what to
    change."""
    patience = config.d_wins_patience
    if not patience:
        return
    margin, above = config.d_wins_margin, config.d_wins_g_loss
    d_real, d_fake = losses["d_real"], losses["d_fake"]
    g_loss = losses.get("g_adv", losses["generator"])
    won = d_real > 1 - margin and d_fake < margin and g_loss > above
    count = int(state.values.get(D_WINS, 0)) + 1 if won else 0
    state.values[D_WINS] = count
    if count < patience:
        return
    raise TrainingError(
        f"the discriminator won outright for {count} consecutive steps by step {step} "
        f"(D(real) {d_real:.3f} > {1 - margin:g}, D(fake) {d_fake:.3g} < {margin:g}, generator "
        f"adversarial loss {g_loss:.2f} > {above:g}): the generator gets no useful gradient; last good "
        f"checkpoint: {last_checkpoint or 'none yet'}",
        f"start over with a weaker discriminator: {command} "
        f"model.d_lr_factor={config.d_lr_factor / 4:g} --restart (the checkpoints are moved "
        "aside, not deleted); or raise model.d_wins_patience (0 turns this check off)",
    )


# -- the family base ----------------------------------------------------------------------------------


class GAN(Generator):
    """A generator ``G`` trained against a discriminator ``D`` on the optimizers "D" and "G".

    The config is a :class:`~suite.generative.configs.GANConfig`. Images are in [-1, 1] inside
    the networks; ``generate`` maps (latents, labels) to images, ``discriminate`` maps (images,
    labels) to one logit per row.
    """

    samplers: ClassVar[tuple[str, ...]] = (SAMPLER,)
    conditions: ClassVar[tuple[str, ...]] = ("labels",)
    # the D step leaves G without gradients (and a per-class GAN's absent classes)
    find_unused_parameters: ClassVar[bool] = True
    #: the objectives in the order each step trains them (pytorch/examples: D, then G)
    step_order: ClassVar[tuple[str, ...]] = ("discriminator", "generator")
    #: whether the default G loss takes the fakes the default D loss made this step (only with
    #: D before G)
    reuse_fakes: ClassVar[bool] = True

    G: nn.Module
    D: nn.Module

    def __init__(self) -> None:
        super().__init__()
        self._d_stats: list[torch.Tensor] = []
        self._g_adv: list[torch.Tensor] = []
        # this step's fakes (with G's graph) and their labels, one per D micro-batch, in order
        self._fakes: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self._keep_fakes = False

    # -- what a family provides ----------------------------------------------------------------------

    @abstractmethod
    def latent_shape(self) -> tuple[int, ...]:
        """The shape (without batch) of one latent."""

    @abstractmethod
    def generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Images in [-1, 1] (B, C, H, W) from latents (and class ids)."""

    def discriminate(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """One real/fake logit per row (B,)."""
        raise NotImplementedError(f"{type(self).__name__} defines no discriminate()")

    # -- training ------------------------------------------------------------------------------------

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def ema_modules(self) -> dict[str, nn.Module]:
        return {"G": self.G}

    def configure_optimizers(self, train_cfg: Any) -> dict[str, OptimizerSpec]:
        """Adam for each network (pytorch/examples: lr 2e-4, betas (0.5, 0.999), set in the
        presets' ``train:``); D's learning rate is scaled by ``model.d_lr_factor``."""
        betas = tuple(train_cfg.adam_betas)
        specs = {}
        for name, module, factor in (
            ("D", self.D, self.config.d_lr_factor),
            ("G", self.G, 1.0),
        ):
            optimizer = torch.optim.Adam(
                module.parameters(),
                lr=train_cfg.lr * factor,
                betas=betas,
                weight_decay=train_cfg.weight_decay,
            )
            specs[name] = OptimizerSpec(optimizer=optimizer, lr_lambda=lr_lambda(train_cfg))
        return specs

    def train_labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The class ids of this micro-batch's fakes: the real rows' (so each class meets as many
        fakes as real rows), None for an unconditional GAN."""
        if not self.config.num_classes:
            return None
        return batch["label"].long()

    def random_latents(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn((n, *self.latent_shape()), device=device)

    def record_d(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        """Keep this micro-batch's mean D(real) and D(fake) (as probabilities) for the stop rule
        and the log."""
        with torch.no_grad():
            self._d_stats.append(
                torch.stack(
                    [
                        torch.sigmoid(real_logits.float()).mean(),
                        torch.sigmoid(fake_logits.float()).mean(),
                    ]
                )
            )

    def record_g(self, adversarial: torch.Tensor) -> None:
        """Keep this micro-batch's adversarial part of the generator loss (ACGAN's G loss adds a
        class term), which the stop rule reads."""
        self._g_adv.append(adversarial.detach().float())

    def discriminator_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        real = batch["image"] * 2 - 1
        real_labels = batch.get("label") if self.config.num_classes else None
        fake_labels = self.train_labels(batch)
        z = self.random_latents(real.shape[0], real.device)
        if self._keep_fakes:
            fake = self.generate(z, fake_labels)
            self._fakes.append((fake, fake_labels))
        else:
            with torch.no_grad():
                fake = self.generate(z, fake_labels)
        real_logits = self.discriminate(real, real_labels)
        fake_logits = self.discriminate(fake.detach(), fake_labels)
        self.record_d(real_logits, fake_logits)
        return bce_d_loss(real_logits, fake_logits)

    def generator_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        n, device = batch["image"].shape[0], batch["image"].device
        if self._fakes:
            fake, labels = self._fakes.pop(0)
        else:
            labels = self.train_labels(batch)
            fake = self.generate(self.random_latents(n, device), labels)
        loss = bce_g_loss(self.discriminate(fake, labels))
        self.record_g(loss)
        return loss

    def loss(self, batch: dict[str, torch.Tensor], objective: str) -> torch.Tensor:
        if objective == "discriminator":
            return self.discriminator_loss(batch)
        if objective == "generator":
            return self.generator_loss(batch)
        raise ValueError(f"unknown GAN objective {objective!r}")

    def train_step(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Each objective of :attr:`step_order` accumulated over the micro-batches, then its
        optimizer stepped. Returns the objectives' mean losses, the mean D(real), D(fake) of the
        discriminator objective and the adversarial part of the generator loss ("g_adv"): what
        the stop rule reads."""
        self._d_stats, self._g_adv, self._fakes = [], [], []
        self._keep_fakes = self.reuse_fakes and self.step_order == ("discriminator", "generator")
        means = {}
        try:
            for objective in self.step_order:
                means[objective] = ctx.accumulate(objective)
                ctx.step(OPTIMIZER[objective])
        finally:
            self._fakes, self._keep_fakes = [], False
        device = ctx.accelerator.device
        stats = (
            torch.stack(self._d_stats).mean(0).to(device)
            if self._d_stats
            else torch.full((2,), 0.5, device=device)
        )
        g_adv = torch.stack(self._g_adv).mean().to(device) if self._g_adv else means["generator"]
        self._d_stats, self._g_adv = [], []
        return {
            "discriminator": means["discriminator"],
            "generator": means["generator"],
            "d_real": stats[0],
            "d_fake": stats[1],
            "g_adv": g_adv,
        }

    def check_losses(
        self,
        losses: dict[str, float],
        state: TrainState,
        *,
        step: int,
        command: str,
        last_checkpoint: Path | None,
    ) -> None:
        check_discriminator_wins(
            losses, state, self.config, step=step, command=command, last_checkpoint=last_checkpoint
        )

    # -- sampling ------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        indices: Sequence[int],
        seed: int,
        conditions: Conditions | None,
        options: SampleOptions,
        device: torch.device | str = "cpu",
    ) -> SampleOutput:
        self.check_sampling(options)
        labels = sampling_labels(conditions, len(indices), self.config.num_classes, self.source)
        with self.in_eval():
            z = latents(seed, indices, self.latent_shape(), options.attempt).to(device)
            images = self.generate(z, labels.to(device) if labels is not None else None)
            pixels = to_uint8(images, self.source)
        return SampleOutput(images=pixels, labels=labels.numpy() if labels is not None else None)

    @torch.no_grad()
    def sample_preview(
        self, n: int, *, steps: int, seed: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.config.num_classes and labels is None:
            labels = torch.arange(n) % self.config.num_classes
        return super().sample_preview(n, steps=steps, seed=seed, labels=labels)

    def check_sampling(self, options: SampleOptions) -> None:
        if options.sampler not in self.samplers:
            raise ConfigError(
                f"sampler {options.sampler!r} is not a GAN's: a GAN samples in one pass of its "
                "generator",
                f"pass --sampler {SAMPLER} (--sampling-steps is ignored)",
            )

    # -- export --------------------------------------------------------------------------------------

    def export_files(self, directory: Path) -> None:
        """G's weights and buffers only (sampling needs no discriminator)."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.G.state_dict().items()}
        save_file(state, str(directory / WEIGHTS), metadata={"format": "pt"})

    @classmethod
    def load_exported(cls, directory: Path, config: Any) -> GAN:
        model = cls(config)
        model.G.load_state_dict(load_file(str(directory / WEIGHTS)))
        return model.eval()


def init_dcgan_weights(module: nn.Module) -> None:
    """pytorch/examples dcgan's ``weights_init`` (and PyTorch-GAN's ``weights_init_normal``):
    conv weights N(0, 0.02), BatchNorm weights N(1, 0.02) and biases 0; linear layers and
    embeddings keep PyTorch's defaults, as there. Draws from the global RNG, seeded by the loop."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
