"""Vision Transformers (Dosovitskiy et al., 2021) that take any image size.

The network is torchvision's ``VisionTransformer`` (so its key names, and torchvision's ImageNet
files, apply); the forward pass interpolates the position embeddings to the input's patch grid, as
DINO does (Caron et al., 2021, ``interpolate_pos_encoding``), so the 96 px local crops of DINO's
multi-crop go through the same network as the 224 px global crops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

# depth, heads, width, MLP width (DeiT / DINO sizes)
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "vit_tiny": (12, 3, 192, 768),
    "vit_small": (12, 6, 384, 1536),
    "vit_base": (12, 12, 768, 3072),
}


class ViTBackbone(nn.Module):
    """``(B, C, H, W)`` with H, W multiples of the patch size -> ``(B, hidden_dim)`` class token."""

    def __init__(
        self,
        *,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        self.vit = VisionTransformer(
            image_size=image_size,
            patch_size=patch_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            mlp_dim=mlp_dim,
        )
        if in_channels != 3:
            self.vit.conv_proj = nn.Conv2d(
                in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size
            )
        self.vit.heads = nn.Identity()
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.dim = hidden_dim

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        pos = self.vit.encoder.pos_embedding
        if rows == cols == self.grid:
            return pos
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        patch_pos = rearrange(patch_pos, "1 (h w) d -> 1 d h w", h=self.grid)
        patch_pos = F.interpolate(
            patch_pos, size=(rows, cols), mode="bicubic", align_corners=False, antialias=True
        )
        return torch.cat([cls_pos, rearrange(patch_pos, "1 d h w -> 1 (h w) d")], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"a {h}x{w} image is not a whole number of {self.patch_size}px patches"
            )
        tokens = rearrange(self.vit.conv_proj(images), "b d h w -> b (h w) d")
        cls = self.vit.class_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        tokens = tokens + self.position_embedding(h // self.patch_size, w // self.patch_size)
        encoder = self.vit.encoder
        return encoder.ln(encoder.layers(encoder.dropout(tokens)))[:, 0]

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """torchvision ``VisionTransformer`` key names (``conv_proj.*``, ``encoder.*``, ...)."""
        return {k: v for k, v in self.vit.state_dict().items() if not k.startswith("heads.")}

    def load_backbone_state(self, state: dict[str, torch.Tensor]) -> None:
        """Strict apart from ``heads.*`` (a classifier is not part of a backbone)."""
        state = {k: v for k, v in state.items() if not k.startswith("heads.")}
        missing, unexpected = self.vit.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("heads.")]
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
