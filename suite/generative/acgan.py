"""ACGAN: a class-conditional generator against a discriminator with an auxiliary class head
(suite/generative/configs.py: :class:`ACGANConfig`).

Odena et al., "Conditional Image Synthesis with Auxiliary Classifier GANs" (ICML 2017,
arXiv:1610.09585); the networks and step are eriklindernoren/PyTorch-GAN's
``implementations/acgan/acgan.py``, as seed 001 used them (224 px, 1 channel, latent 128, 4
classes): G multiplies z by a label embedding, D returns a real/fake logit and class logits, G
steps before D, the losses are BCE (on logits here, where it had Sigmoid + BCELoss) plus
cross-entropy on the class logits (without the reference's Softmax in front).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError
from suite.generative.configs import ACGANConfig
from suite.generative.gan import GAN, bce_d_loss, bce_g_loss, init_dcgan_weights


def batch_norm(channels: int, faithful_eps: bool) -> nn.BatchNorm2d:
    # The reference's BatchNorm2d(C, 0.8) passes 0.8 as eps (the second positional argument),
    # not as momentum; ``bn_eps_0_8`` keeps that, the default is PyTorch's eps.
    return nn.BatchNorm2d(channels, 0.8) if faithful_eps else nn.BatchNorm2d(channels)


class ACGANGenerator(nn.Module):
    def __init__(self, config: ACGANConfig) -> None:
        super().__init__()
        self.init_size = config.image_size // 4
        eps = config.bn_eps_0_8
        self.label_emb = nn.Embedding(config.num_classes, config.latent_dim)
        self.l1 = nn.Linear(config.latent_dim, 128 * self.init_size**2)
        self.conv_blocks = nn.Sequential(
            nn.BatchNorm2d(128),  # the reference's first BatchNorm has the default eps
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 128, 3, stride=1, padding=1),
            batch_norm(128, eps),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 3, stride=1, padding=1),
            batch_norm(64, eps),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, config.channels, 3, stride=1, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        assert labels is not None
        x = torch.mul(self.label_emb(labels).to(z.dtype), z)
        x = self.l1(x).view(x.shape[0], 128, self.init_size, self.init_size)
        return self.conv_blocks(x)


class ACGANDiscriminator(nn.Module):
    def __init__(self, config: ACGANConfig) -> None:
        super().__init__()
        eps = config.bn_eps_0_8

        def block(c_in: int, c_out: int, bn: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [
                nn.Conv2d(c_in, c_out, 3, 2, 1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Dropout2d(0.25),
            ]
            return layers + ([batch_norm(c_out, eps)] if bn else [])

        self.conv_blocks = nn.Sequential(
            *block(config.channels, 16, bn=False), *block(16, 32), *block(32, 64), *block(64, 128)
        )
        size = config.image_size // 2**4
        self.adv_layer = nn.Linear(128 * size**2, 1)  # a logit: the Sigmoid is in the loss
        self.aux_layer = nn.Linear(128 * size**2, config.num_classes)  # logits: no Softmax

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv_blocks(images).flatten(1)
        return self.adv_layer(out).reshape(-1), self.aux_layer(out)


class ACGAN(GAN):
    config_class = ACGANConfig
    # PyTorch-GAN's acgan.py steps G, then D on the same iteration's batch
    step_order = ("generator", "discriminator")

    def __init__(self, config: ACGANConfig) -> None:
        super().__init__()
        if config.num_classes < 1:
            raise ConfigError(
                "model.num_classes is 0: ACGAN is class-conditional",
                "set model.num_classes to the data's class count (or use model.kind: dcgan)",
            )
        if config.image_size % 16:
            raise ConfigError(
                f"model.image_size={config.image_size}: ACGAN's D halves the image four times "
                "and its G doubles it twice",
                "use a multiple of 16 (16, 32, 64, ..., 224)",
            )
        self.config = config
        self.G = ACGANGenerator(config)
        self.D = ACGANDiscriminator(config)
        self.apply(init_dcgan_weights)

    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.G(z, labels)

    def random_labels(self, n: int, device: torch.device) -> torch.Tensor:
        """The fakes' classes, uniform as the reference's ``gen_labels``."""
        return torch.randint(0, self.config.num_classes, (n,), device=device)

    def discriminator_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        real, labels = batch["image"] * 2 - 1, batch["label"].long()
        n, device = real.shape[0], real.device
        fake_labels = self.random_labels(n, device)
        with torch.no_grad():
            fake = self.G(self.random_latents(n, device), fake_labels)
        real_adv, real_aux = self.D(real)
        fake_adv, fake_aux = self.D(fake.detach())
        self.record_d(real_adv, fake_adv)
        # (d_real_loss + d_fake_loss) / 2, each (adversarial + auxiliary) / 2, as the reference
        adversarial = bce_d_loss(real_adv, fake_adv)
        auxiliary = (
            F.cross_entropy(real_aux.float(), labels)
            + F.cross_entropy(fake_aux.float(), fake_labels)
        ) / 2
        return (adversarial + auxiliary) / 2

    def generator_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        n, device = batch["image"].shape[0], batch["image"].device
        labels = self.random_labels(n, device)
        adv, aux = self.D(self.G(self.random_latents(n, device), labels))
        adversarial = bce_g_loss(adv)
        self.record_g(adversarial)
        return 0.5 * (adversarial + F.cross_entropy(aux.float(), labels))
