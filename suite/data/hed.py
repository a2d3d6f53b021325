"""HED edges (Xie and Tu, holistically-nested edge detection) from a local weights file.

The network is the BSDS500 HED that DiffBoost's preprocessing and ControlNet's HED annotator run:
VGG16's five convolution stages, a 1x1 score per stage upsampled to the input size, and a 1x1
fusion with a sigmoid. Its weights are the file ``network-bsds500.pth`` (keys ``moduleVggOne.0.weight``
...; lllyasviel/ControlNet keeps it under ``annotator/ckpts/``). Nothing is downloaded: the file must
be on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from suite.errors import ConfigError

# (in channels, out channels, convolutions) of VGG16's five stages; HED's naming of them
STAGES = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))
NAMES = ("One", "Two", "Thr", "Fou", "Fiv")
# the Caffe BGR means the BSDS500 weights were trained with
BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
BATCH = 32
OBTAIN = (
    "put network-bsds500.pth (the BSDS500 HED weights; lllyasviel/ControlNet annotator/ckpts/) on "
    "this machine and pass its path, or drop --hed to use Canny edges"
)


class HED(nn.Module):
    """(B, 3, H, W) BGR in 0..255 -> (B, 1, H, W) edge probability."""

    def __init__(self) -> None:
        super().__init__()
        for i, (cin, cout, convs) in enumerate(STAGES):
            layers: list[nn.Module] = [nn.MaxPool2d(2, 2)] if i else []
            for k in range(convs):
                layers += [nn.Conv2d(cin if k == 0 else cout, cout, 3, padding=1), nn.ReLU()]
            setattr(self, f"netVgg{NAMES[i]}", nn.Sequential(*layers))
            setattr(self, f"netScore{NAMES[i]}", nn.Conv2d(cout, 1, 1))
        self.netCombine = nn.Sequential(nn.Conv2d(5, 1, 1), nn.Sigmoid())
        self.register_buffer("mean", torch.tensor(BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        h = x - self.mean
        scores = []
        for name in NAMES:
            h = getattr(self, f"netVgg{name}")(h)
            score = getattr(self, f"netScore{name}")(h)
            scores.append(F.interpolate(score, size=size, mode="bilinear", align_corners=False))
        return self.netCombine(torch.cat(scores, 1))


def load_hed(path: Path, device: str | None = None) -> HED:
    """The network with the weights in ``path``; a clear error when the file is missing or not
    the BSDS500 HED."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"HED weights {path} do not exist", OBTAIN)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch raise many types on a bad file
        raise ConfigError(
            f"HED weights {path} are not a readable torch file ({type(err).__name__}: {err})",
            OBTAIN,
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"HED weights {path} hold no state dict", OBTAIN)
    # the published file names its modules "moduleVggOne..."; this network "netVggOne..."
    state = {str(k).replace("module", "net"): v for k, v in state.items()}
    model = HED()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[:2]
        raise ConfigError(
            f"{path} is not the BSDS500 HED network ({' '.join(first)[:300]})", OBTAIN
        ) from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()


@torch.no_grad()
def hed_edges(model: HED, images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) uint8 (gray or RGB) -> (N, H, W) float32 edge probabilities in [0, 1]."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), BATCH):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + BATCH])).float()
        x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x.flip(1)  # gray -> 3, RGB -> BGR
        out.append(model(x.to(device))[:, 0].float().cpu().numpy())
    return np.concatenate(out).clip(0.0, 1.0) if out else np.zeros((0,), np.float32)
