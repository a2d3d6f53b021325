"""``pggan``: progressive growing of GANs (Karras et al., ICLR 2018, arXiv:1710.10196).

The layers follow facebookresearch/pytorch_GAN_zoo (``models/networks/progressive_conv_net.py``,
``models/networks/custom_layers.py``): equalised learning rate (weights drawn from N(0, 1) and
scaled by He's constant at run time), pixel norm after every generator convolution, minibatch
standard deviation before the discriminator's last block; the training is the zoo's
(``progressive_gan_trainer.py``): WGAN-GP with lambda 10 plus a drift term 1e-3, Adam (0, 0.99) at
1e-3, real images blended like the fakes during a fade, an EMA of G for sampling.

Unlike the zoo, whose ``addScale`` adds parameters mid-run, both networks hold the layers of every
scale from the start and take the scale and the fade-in weight as arguments
(rosinality/progressive-gan-pytorch's ``forward(input, label, step, alpha)``), so modules and
optimizers never change shape and one checkpoint format serves every phase. The phase comes from
the global step (:class:`Schedule`) and is recorded in the train state each step, so a run resumed
mid-fade continues at the same alpha (akanimax/pro_gan_pytorch #15, pytorch_GAN_zoo #135). The
layers above the current scale get no gradient: DDP runs with ``find_unused_parameters``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError
from suite.generative.base import Conditions, SampleOptions, SampleOutput
from suite.generative.configs import PGGANConfig
from suite.generative.gan import GAN, wgan_g_loss, wgan_gp_d_loss
from suite.train.step import StepContext

#: the zoo's feature maps per scale, from 4 px up (``pgan_config.py::depthScales``)
ZOO_DEPTHS = (512, 512, 512, 512, 256, 128, 64, 32, 16)
HE_GAIN = math.sqrt(2.0)


def num_scales(image_size: int) -> int | None:
    """How many scales (4, 8, ... px) reach ``image_size``; None unless it is 4 * 2**k."""
    k = image_size // 4
    if image_size < 4 or image_size % 4 or k & (k - 1):
        return None
    return k.bit_length()


class EqualizedLinear(nn.Module):
    """A linear layer whose weight is N(0, 1) at init and scaled by ``gain / sqrt(fan_in)`` at
    every call, so Adam's per-parameter step is the same relative change in every layer."""

    def __init__(self, fan_in: int, fan_out: int, gain: float = HE_GAIN) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in))
        self.bias = nn.Parameter(torch.zeros(fan_out))
        self.scale = gain / math.sqrt(fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualizedConv2d(nn.Module):
    """A convolution with the equalised-learning-rate scaling of :class:`EqualizedLinear`."""

    def __init__(
        self, cin: int, cout: int, kernel: int, padding: int = 0, gain: float = HE_GAIN
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin * kernel * kernel)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each pixel's feature vector scaled to unit mean square (over channels)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """``x`` with one more channel: the standard deviation of each feature over a group of
    consecutive samples, averaged over features and pixels (the zoo's ``miniBatchStdDev``; a batch
    not divisible by the group size is one group)."""
    b, c, h, w = x.shape
    size = min(group_size, b)
    if b % size:
        size = b
    y = x.reshape(-1, size, c, h, w)
    y = torch.sqrt(y.var(dim=1, unbiased=False) + 1e-8)  # (groups, c, h, w)
    y = y.reshape(y.shape[0], -1).mean(dim=1)  # (groups,)
    y = y.repeat_interleave(size).reshape(b, 1, 1, 1).expand(b, 1, h, w)
    return torch.cat([x, y.to(x.dtype)], dim=1)


def downscale(x: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool ``x`` to ``size`` px (what real images are fed to the discriminator at)."""
    return x if x.shape[-1] == size else F.adaptive_avg_pool2d(x, size)


def fade_blend(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """A real batch as the networks see it during a fade: ``alpha`` of it at its resolution and
    ``1 - alpha`` of it average-pooled to half and upsampled again (the zoo's
    ``progressive_gan_trainer.py::inScaleUpdate``), so real and fake images blend the same way."""
    if alpha >= 1:
        return x
    low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    return alpha * x + (1 - alpha) * low


class _Act(nn.Module):
    def __init__(self, slope: float, norm: bool) -> None:
        super().__init__()
        self.slope, self.norm = slope, norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(x, self.slope)
        return pixel_norm(x) if self.norm else x


class ProgressiveGenerator(nn.Module):
    """z (and a label) -> an image at scale ``step`` (0 = 4 px), blended with the upsampled
    image of the scale below while ``alpha < 1``. Output is linear (no tanh), as the zoo's."""

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int,
        depths: tuple[int, ...],
        num_classes: int = 0,
        slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.latent_dim, self.depths = latent_dim, depths
        self.label_embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        fan_in = latent_dim * (2 if num_classes else 1)
        d0 = depths[0]
        self.input = EqualizedLinear(fan_in, d0 * 16)
        self.blocks = nn.ModuleList(
            [nn.Sequential(_Act(slope, True), EqualizedConv2d(d0, d0, 3, 1), _Act(slope, True))]
        )
        for cin, cout in zip(depths[:-1], depths[1:]):
            self.blocks.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    EqualizedConv2d(cin, cout, 3, 1),
                    _Act(slope, True),
                    EqualizedConv2d(cout, cout, 3, 1),
                    _Act(slope, True),
                )
            )
        self.to_rgb = nn.ModuleList([EqualizedConv2d(d, channels, 1, gain=1.0) for d in depths])

    def forward(
        self, z: torch.Tensor, label: torch.Tensor | None, step: int, alpha: float = 1.0
    ) -> torch.Tensor:
        x = pixel_norm(z)
        if self.label_embed is not None:
            if label is None:
                raise ValueError("a class-conditional generator needs labels")
            x = torch.cat([x, self.label_embed(label)], dim=1)
        x = self.input(x).reshape(z.shape[0], self.depths[0], 4, 4)
        previous = x
        for block in self.blocks[: step + 1]:
            previous, x = x, block(x)
        out = self.to_rgb[step](x)
        if step > 0 and alpha < 1:
            skip = F.interpolate(self.to_rgb[step - 1](previous), scale_factor=2, mode="nearest")
            out = alpha * out + (1 - alpha) * skip
        return out


class ProgressiveDiscriminator(nn.Module):
    """An image at scale ``step`` -> (a critic value per image, class logits or None).

    ``head="ac"`` adds ``num_classes`` logits to the last layer (an auxiliary classifier, the
    zoo's ``weightConditionD``); ``head="projection"`` adds ``<embed(label), features>`` to the
    critic (Miyato & Koyama, ICLR 2018) and returns no logits."""

    def __init__(
        self,
        *,
        channels: int,
        depths: tuple[int, ...],
        num_classes: int = 0,
        head: str = "ac",
        group_size: int = 4,
        slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.group_size, self.slope, self.head = group_size, slope, head
        self.num_classes = num_classes
        self.from_rgb = nn.ModuleList([EqualizedConv2d(channels, d, 1) for d in depths])
        # blocks[s] takes scale s (4 * 2**s px, depths[s] maps) down to scale s - 1
        self.blocks = nn.ModuleList([nn.Identity()])
        for cin, cout in zip(depths[1:], depths[:-1]):
            self.blocks.append(
                nn.Sequential(
                    EqualizedConv2d(cin, cin, 3, 1),
                    _Act(slope, False),
                    EqualizedConv2d(cin, cout, 3, 1),
                    _Act(slope, False),
                    nn.AvgPool2d(2),
                )
            )
        d0 = depths[0]
        self.final_conv = EqualizedConv2d(d0 + 1, d0, 3, 1)
        self.final_dense = EqualizedLinear(d0 * 16, d0)
        logits = num_classes if num_classes and head == "ac" else 0
        self.out = EqualizedLinear(d0, 1 + logits, gain=1.0)
        self.projection = (
            nn.Embedding(num_classes, d0) if num_classes and head == "projection" else None
        )

    def forward(
        self, x: torch.Tensor, label: torch.Tensor | None, step: int, alpha: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = F.leaky_relu(self.from_rgb[step](x), self.slope)
        if step > 0:
            h = self.blocks[step](h)
            if alpha < 1:
                skip = F.leaky_relu(self.from_rgb[step - 1](F.avg_pool2d(x, 2)), self.slope)
                h = alpha * h + (1 - alpha) * skip
        for s in range(step - 1, 0, -1):
            h = self.blocks[s](h)
        h = minibatch_stddev(h, self.group_size)
        h = F.leaky_relu(self.final_conv(h), self.slope)
        h = F.leaky_relu(self.final_dense(h.flatten(1)), self.slope)
        out = self.out(h)
        critic, logits = out[:, 0], (out[:, 1:] if out.shape[1] > 1 else None)
        if self.projection is not None:
            if label is None:
                raise ValueError("a projection discriminator needs labels")
            critic = critic + (self.projection(label) * h).sum(dim=1)
        return critic, logits


# -- the schedule ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phase:
    """Where a step is in the growth: the output scale (0 = 4 px) and the fade-in weight of its
    newest layers (1 once the scale is stable)."""

    scale: int
    alpha: float

    @property
    def resolution(self) -> int:
        return 4 * 2**self.scale

    @property
    def name(self) -> str:
        return f"{'fade' if self.alpha < 1 else 'stable'}-{self.resolution}px"

    def as_values(self) -> dict[str, float | int]:
        return {"scale": self.scale, "alpha": self.alpha, "resolution": self.resolution}


@dataclass(frozen=True, slots=True)
class Schedule:
    """``steps_per_phase`` stable steps at 4 px; then per further scale ``steps_per_fade`` fade
    steps with alpha = (r + 1) / (steps_per_fade + 1) at fade step r (so a fade never repeats the
    stable step before it or after it) and ``steps_per_phase`` stable steps; the last scale stays
    stable from its fade on."""

    scales: int
    steps_per_phase: int
    steps_per_fade: int

    def at(self, step: int) -> Phase:
        """The phase of the step taken after ``step`` steps (0-based)."""
        if step < self.steps_per_phase or self.scales == 1:
            return Phase(0, 1.0)
        period = self.steps_per_fade + self.steps_per_phase
        grown, into = divmod(step - self.steps_per_phase, period)
        scale = grown + 1
        if scale >= self.scales:
            return Phase(self.scales - 1, 1.0)
        if into < self.steps_per_fade:
            return Phase(scale, (into + 1) / (self.steps_per_fade + 1))
        return Phase(scale, 1.0)

    @property
    def total_steps(self) -> int:
        """The step at which the last scale becomes stable."""
        return self.steps_per_phase + (self.scales - 1) * (
            self.steps_per_fade + self.steps_per_phase
        )


# -- the family ------------------------------------------------------------------------------------


class PGGAN(GAN):
    """G and D of :mod:`suite.generative.gan` with a phase: each step's scale and alpha come from
    :class:`Schedule` and the global step, and are written to the train state."""

    config_class = PGGANConfig
    # the zoo averages G at a fixed 0.999 from the start
    ema_warmup = False

    def __init__(self, config: PGGANConfig) -> None:
        super().__init__()
        self.config = config
        scales = num_scales(config.image_size)
        if scales is None:
            raise ConfigError(
                f"model.image_size={config.image_size}: PGGAN grows from 4 px by doubling, so the "
                "size must be 4 * 2**k",
                "set model.image_size to 16, 32, 64, 128, 256, 512 or 1024 (and ingest the images "
                "at that --image-size)",
            )
        depths = tuple(config.depths) or (ZOO_DEPTHS + (16,) * scales)[:scales]
        if len(depths) != scales:
            sizes = ", ".join(str(4 * 2**s) for s in range(scales))
            raise ConfigError(
                f"model.depths has {len(depths)} entries but {config.image_size} px has {scales} "
                f"scales ({sizes} px)",
                f"give model.depths {scales} entries (one per scale), or [] for the zoo's",
            )
        self.schedule = Schedule(scales, config.steps_per_phase, config.steps_per_fade)
        self.G = ProgressiveGenerator(
            latent_dim=config.latent_dim, channels=config.channels, depths=depths,
            num_classes=config.num_classes, slope=config.leaky_slope,
        )  # fmt: skip
        self.D = ProgressiveDiscriminator(
            channels=config.channels, depths=depths, num_classes=config.num_classes,
            head=config.class_head, group_size=config.minibatch_group, slope=config.leaky_slope,
        )  # fmt: skip
        #: the phase the losses and previews use (train_step sets it); sampling uses the last
        self.phase = self.final_phase
        self._sampling_phase: Phase | None = None

    @property
    def final_phase(self) -> Phase:
        return Phase(self.schedule.scales - 1, 1.0)

    # -- the networks at the current phase ---------------------------------------------------------

    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        phase = self._sampling_phase or self.phase
        return self.G(z, labels, phase.scale, phase.alpha)

    def critic(
        self, images: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.D(images, labels, self.phase.scale, self.phase.alpha)

    def discriminate(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.critic(images, labels)[0]

    def real_images(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The real batch at this phase: in [-1, 1], average-pooled to the phase's resolution,
        blended with its own half-resolution copy while the scale fades in."""
        x = downscale(batch["image"] * 2 - 1, self.phase.resolution)
        return fade_blend(x, self.phase.alpha)

    # -- training ----------------------------------------------------------------------------------

    def class_loss(self, logits: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor:
        """The auxiliary classifier's cross-entropy on logits, times ``model.ac_weight``."""
        if logits is None or labels is None or not self.config.ac_weight:
            return torch.zeros((), device=logits.device if logits is not None else None)
        return self.config.ac_weight * F.cross_entropy(logits.float(), labels)

    def discriminator_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.config
        real = self.real_images(batch)
        labels = self.train_labels(batch)
        with torch.no_grad():
            fake = self.generate(self.random_latents(real.shape[0], real.device), labels)
        real_scores, real_logits = self.critic(real, labels)
        fake_scores, fake_logits = self.critic(fake, labels)
        self.record_d(real_scores, fake_scores)
        loss = wgan_gp_d_loss(
            lambda x: self.discriminate(x, labels), real, fake, real_scores, fake_scores,
            gp_lambda=cfg.gp_lambda, drift=cfg.drift,
        )  # fmt: skip
        return loss + self.class_loss(real_logits, labels) + self.class_loss(fake_logits, labels)

    def generator_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        n, device = batch["image"].shape[0], batch["image"].device
        labels = self.train_labels(batch)
        scores, logits = self.critic(self.generate(self.random_latents(n, device), labels), labels)
        adversarial = wgan_g_loss(scores)
        self.record_g(adversarial)  # what the stop rule reads, without the class term
        return adversarial + self.class_loss(logits, labels)

    def train_step(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        taken = ctx.step_number - 1
        stored = ctx.state.values
        if taken and "scale" in stored:
            # a resumed run: its checkpoint's phase must be what the schedule gave its last step
            before = self.schedule.at(taken - 1)
            if (stored["scale"], stored["alpha"]) != (before.scale, before.alpha):
                raise ConfigError(
                    f"the train state says step {taken} ran at scale {stored['scale']} alpha "
                    f"{stored['alpha']}, the schedule says scale {before.scale} alpha "
                    f"{before.alpha}: the checkpoint was made with another schedule",
                    "resume with the model.steps_per_phase / model.steps_per_fade it was made "
                    "with, or start a new run.name",
                )
        self.phase = self.schedule.at(taken)
        ctx.state.phase = self.phase.name
        ctx.state.values.update(self.phase.as_values())
        return super().train_step(ctx)

    # -- sampling ----------------------------------------------------------------------------------

    def sample(
        self,
        indices: Sequence[int],
        seed: int,
        conditions: Conditions | None,
        options: SampleOptions,
        device: torch.device | str = "cpu",
    ) -> SampleOutput:
        """Images at the target resolution (the last scale, alpha 1), whatever phase training
        reached."""
        with self.sampling_at(self._sampling_phase or self.final_phase):
            return super().sample(indices, seed, conditions, options, device)

    @contextmanager
    def sampling_at(self, phase: Phase) -> Iterator[None]:
        saved, self._sampling_phase = self._sampling_phase, phase
        try:
            yield
        finally:
            self._sampling_phase = saved

    @torch.no_grad()
    def sample_preview(
        self, n: int, *, steps: int, seed: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        # the scale being trained, enlarged to the target (4 px noise at first, then 8 px ...)
        with self.sampling_at(self.phase):
            x = super().sample_preview(n, steps=steps, seed=seed, labels=labels)
        return F.interpolate(x, size=self.config.image_size, mode="nearest")
