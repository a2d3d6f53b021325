"""SimCLR (Chen et al., 2020, arXiv:2002.05709): two augmented views, a projection MLP, and
NT-Xent over the global batch (lightly's ``NTXentLoss`` gathers the other ranks' embeddings, with
gradients, so a 2-rank run of batch B sees the same 2B-1 negatives as one rank of batch 2B)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from PIL import Image
from torch import nn

from suite.models.backbones import BackboneSpec
from suite.ssl.config import SimCLRConfig
from suite.ssl.method import Progress, SSLMethod


class SimCLR(SSLMethod):
    def __init__(self, backbone: nn.Module, spec: BackboneSpec, cfg: SimCLRConfig) -> None:
        super().__init__(backbone, spec)
        self.head = SimCLRProjectionHead(spec.dim, cfg.head_hidden_dim, cfg.head_output_dim)
        self.criterion = NTXentLoss(temperature=cfg.temperature, gather_distributed=True)

    @staticmethod
    def views(cfg: SimCLRConfig, spec: BackboneSpec) -> Callable[[Image.Image], list[torch.Tensor]]:
        return SimCLRTransform(
            input_size=spec.image_size,
            min_scale=cfg.crop_min_scale,
            hf_prob=cfg.hflip_prob,
            cj_prob=cfg.color_jitter_prob,
            cj_strength=cfg.color_jitter_strength,
            random_gray_scale=cfg.gray_scale_prob,
            gaussian_blur=cfg.blur_prob,
            normalize={"mean": list(spec.mean), "std": list(spec.std)},
        )

    def forward(self, views: list[torch.Tensor], progress: Progress) -> torch.Tensor:
        z0, z1 = self.head(self.backbone(torch.cat(views[:2]))).chunk(2)
        return self.criterion(z0, z1)
