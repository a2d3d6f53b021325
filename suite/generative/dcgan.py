"""DCGAN: pytorch/examples' networks scaled to the image size, or seed 001's; one pair, one pair
per class, or one class-conditional pair (suite/generative/configs.py: :class:`DCGANConfig`).

Radford et al., "Unsupervised Representation Learning with Deep Convolutional GANs" (ICLR 2016,
arXiv:1511.06434); the training recipe is pytorch/examples ``dcgan/main.py`` (nz 100, ngf/ndf
64, N(0, 0.02) init, Adam 2e-4 with beta1 0.5, D then non-saturating G), with BCE on logits
where it had Sigmoid + BCELoss (the same loss, stable in half precision).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError, DataError
from suite.generative.base import Conditions, SampleOptions, SampleOutput
from suite.generative.configs import DCGANConfig
from suite.generative.gan import GAN, init_dcgan_weights

# -- networks -----------------------------------------------------------------------------------------


def ladder_depth(image_size: int) -> int:
    """The number of 2x steps from 4 px to ``image_size`` (pytorch/examples: 4 for 64 px)."""
    depth = int(round(math.log2(image_size / 4))) if image_size >= 8 else 0
    if depth < 1 or 4 * 2**depth != image_size:
        raise ConfigError(
            f"model.image_size={image_size}: the examples DCGAN grows from 4 px by powers of two",
            "use an image size of 8, 16, 32, 64, 128 or 256, or model.architecture: seed "
            "(any size: its output is resized)",
        )
    return depth


def examples_generator(z_dim: int, ngf: int, channels: int, image_size: int) -> nn.Sequential:
    depth = ladder_depth(image_size)
    width = ngf * 2 ** (depth - 1)
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(z_dim, width, 4, 1, 0, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(True),
    ]
    for _ in range(depth - 1):
        layers += [
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width // 2),
            nn.ReLU(True),
        ]
        width //= 2
    layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def examples_discriminator(channels: int, ndf: int, image_size: int) -> nn.Sequential:
    depth = ladder_depth(image_size)
    layers: list[nn.Module] = [
        nn.Conv2d(channels, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
    ]
    width = ndf
    for _ in range(depth - 1):
        layers += [
            nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width * 2),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width *= 2
    layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False), nn.Flatten()]
    return nn.Sequential(*layers)


class Reshape(nn.Module):
    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


class Resize(nn.Module):
    """Bilinear resize to ``size`` (the seed resized its 256 px output to 224 with torchvision's
    ``Resize``, bilinear with antialiasing)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x
        return F.interpolate(
            x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
        )


def seed_generator(
    z_dim: int, ngf: int, channels: int, image_size: int, base: int
) -> nn.Sequential:
    width = ngf * 16
    layers: list[nn.Module] = [
        nn.Linear(z_dim, width * base * base, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        Reshape(width, base, base),
    ]
    for _ in range(4):
        layers += [
            nn.ConvTranspose2d(width, width // 2, 5, 2, 2, output_padding=1, bias=False),
            nn.BatchNorm2d(width // 2),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width //= 2
    layers += [nn.ConvTranspose2d(width, channels, 5, 1, 2, bias=False), nn.Tanh()]
    return nn.Sequential(*layers, Resize(image_size))


def seed_discriminator(channels: int, ndf: int, image_size: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width, size = channels, image_size
    for i in range(5):
        out = ndf * 2**i
        layers.append(nn.Conv2d(width, out, 5, 2, 2, bias=False))
        # the seed defines a BatchNorm for its fifth conv but never applies it
        if i < 4:
            layers += [nn.BatchNorm2d(out), nn.LeakyReLU(0.2, inplace=True), nn.Dropout2d(dropout)]
        else:
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        width, size = out, (size + 1) // 2
    layers += [nn.Flatten(), nn.Linear(width * size * size, 1)]
    return nn.Sequential(*layers)


# -- how labels reach the networks --------------------------------------------------------------------


def by_class(nets: nn.ModuleDict, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Row i through ``nets[str(labels[i])]``, in the rows' order."""
    order, outs = [], []
    for k in labels.unique().tolist():
        rows = (labels == k).nonzero().squeeze(1)
        order.append(rows)
        outs.append(nets[str(k)](x[rows]))
    perm = torch.cat(order)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=perm.device)
    return torch.cat(outs)[inverse]


class Unconditional(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.net(x)


class PerClass(nn.Module):
    """One network per class; ``trained`` flags the classes whose pair trains (a ``data.classes``
    filter, or one SLURM array task per class, trains some of them; a float buffer, so the EMA
    carries it into the export)."""

    def __init__(self, nets: dict[str, nn.Module], track: bool = True) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(nets)
        if track:
            self.register_buffer("trained", torch.zeros(len(nets)))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        assert labels is not None
        return by_class(self.nets, x, labels)


class LabelToLatent(nn.Module):
    """G's input: z concatenated with a learned label embedding."""

    def __init__(self, net: nn.Module, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.net = net
        self.embed = nn.Embedding(num_classes, embed_dim)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        assert labels is not None
        e = self.embed(labels).view(z.shape[0], -1, *z.shape[2:])
        return self.net(torch.cat([z, e.to(z.dtype)], dim=1))


class LabelPlane(nn.Module):
    """D's input: the image with one more channel, a learned plane per class."""

    def __init__(self, net: nn.Module, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.net = net
        self.size = image_size
        self.embed = nn.Embedding(num_classes, image_size * image_size)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        assert labels is not None
        plane = self.embed(labels).view(x.shape[0], 1, self.size, self.size)
        return self.net(torch.cat([x, plane.to(x.dtype)], dim=1))


# -- the family ---------------------------------------------------------------------------------------


class DCGAN(GAN):
    config_class = DCGANConfig

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        self.config = config
        k, mode = config.num_classes, config.mode
        if mode == "unconditional" and k:
            raise ConfigError(
                f"model.mode=unconditional with model.num_classes={k}",
                "set model.mode: per_class or conditional, or model.num_classes: 0",
            )
        if mode != "unconditional" and not k:
            raise ConfigError(
                f"model.mode={mode} needs classes; model.num_classes is 0",
                "set model.num_classes to the data's class count (or model.mode: unconditional)",
            )
        z_in = config.latent_dim + (config.embed_dim if mode == "conditional" else 0)
        d_in = config.channels + (1 if mode == "conditional" else 0)

        def g() -> nn.Module:
            if config.architecture == "seed":
                return seed_generator(
                    z_in, config.ngf, config.channels, config.image_size, config.seed_base
                )
            return examples_generator(z_in, config.ngf, config.channels, config.image_size)

        def d() -> nn.Module:
            if config.architecture == "seed":
                return seed_discriminator(d_in, config.ndf, config.image_size, config.dropout)
            return examples_discriminator(d_in, config.ndf, config.image_size)

        if mode == "per_class":
            self.G: nn.Module = PerClass({str(c): g() for c in range(k)})
            self.D: nn.Module = PerClass({str(c): d() for c in range(k)}, track=False)
        elif mode == "conditional":
            self.G = LabelToLatent(g(), k, config.embed_dim)
            self.D = LabelPlane(d(), k, config.image_size)
        else:
            self.G, self.D = Unconditional(g()), Unconditional(d())
        self.apply(init_dcgan_weights)

    def latent_shape(self) -> tuple[int, ...]:
        if self.config.architecture == "seed":
            return (self.config.latent_dim,)
        return (self.config.latent_dim, 1, 1)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.G(z, labels)

    def discriminate(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.D(images, labels).reshape(-1)

    # -- per-class bookkeeping -----------------------------------------------------------------------

    def bind_data(self, class_names: Sequence[str], classes_present: Sequence[int]) -> None:
        if isinstance(self.G, PerClass):
            with torch.no_grad():
                self.G.trained.zero_()
                self.G.trained[list(classes_present)] = 1.0

    def trained_classes(self) -> list[int]:
        if not isinstance(self.G, PerClass):
            return list(range(self.config.num_classes))
        return [int(c) for c in (self.G.trained > 0).nonzero().flatten().tolist()]

    def sample(
        self,
        indices: Sequence[int],
        seed: int,
        conditions: Conditions | None,
        options: SampleOptions,
        device: torch.device | str = "cpu",
    ) -> SampleOutput:
        if (
            isinstance(self.G, PerClass)
            and conditions is not None
            and conditions.labels is not None
        ):
            trained = self.trained_classes()
            untrained = sorted({int(c) for c in conditions.labels} - set(trained))
            if untrained:
                names = self.class_names or [str(c) for c in range(self.config.num_classes)]
                weights = ",".join("1" if c in trained else "0" for c in range(len(names)))
                raise DataError(
                    f"{self.source} has no trained generator for class(es) "
                    f"{', '.join(names[c] if c < len(names) else str(c) for c in untrained)}: "
                    "its run trained "
                    + (", ".join(names[c] for c in trained if c < len(names)) or "none"),
                    f"sample the trained classes only (--class-weights {weights}), or sample "
                    "the export of the run that trained the others",
                )
        return super().sample(indices, seed, conditions, options, device)

    @torch.no_grad()
    def sample_preview(
        self, n: int, *, steps: int, seed: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if isinstance(self.G, PerClass):
            # previews cycle through the classes this run trains
            trained = torch.tensor(self.trained_classes() or [0])
            base = labels.cpu() if labels is not None else torch.arange(n)
            labels = trained[base % trained.numel()]
        return super().sample_preview(n, steps=steps, seed=seed, labels=labels)
