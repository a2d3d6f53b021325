"""Backbones by name, and the export folder every stage reads them from.

A backbone maps a normalised float batch ``(B, C, H, W)`` to features ``(B, D)``. Families:

- ``resnet18`` ... ``wide_resnet101_2``: torchvision ResNets (:mod:`suite.models.resnet`);
- ``vit_tiny``, ``vit_small``, ``vit_base`` (with ``patch_size``, ViT-S/16 = ``vit_small`` + 16) or
  ``vit`` with explicit sizes: torchvision ViTs taking any image size (:mod:`suite.models.vit`).

The export folder (what ``synmed pretrain`` writes, ``ssl:PATH`` encoders and evaluation read), an
export of kind ``backbone`` (:mod:`suite.artifacts.exports`):

``backbone.safetensors``
    the network's ``state_dict`` with torchvision key names, classifier (``fc.*``, ``heads.*``) left
    out; loaded strictly.
``synmed-export.json``
    the metadata file: kind ``backbone``, family = the arch, the weights' sha256 (checked before
    loading), free-form ``provenance`` (method, run, step, data digests) and, as ``body.spec``, the
    :class:`BackboneSpec` fields (``arch``, ``image_size``, ``in_channels``, ``mean``, ``std``, and
    per family ``stem`` or the ViT sizes).

To add a family: a module with a builder and its :class:`Family` (the arch names it builds), and
one line in :data:`FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from suite.artifacts.digests import sha256_file
from suite.artifacts.exports import (
    EXPORT_META,
    ExportMeta,
    export_folder,
    read_export,
    write_export,
)
from suite.errors import DataError
from suite.models import efficientnet_lite, resnet, vit
from suite.registry import Registry

WEIGHTS_FILE = "backbone.safetensors"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, slots=True)
class BackboneSpec:
    """What a backbone is: enough to build it again and to feed it the pixels it was trained on."""

    arch: str
    image_size: int
    in_channels: int = 3
    mean: tuple[float, ...] = ()  # per channel, on [0, 1] pixels; empty -> the family default
    std: tuple[float, ...] = ()
    stem: str = "imagenet"  # resnets: "imagenet" or "cifar"
    patch_size: int = 16  # vits
    num_layers: int = 0  # vits; 0 -> the preset's
    num_heads: int = 0
    hidden_dim: int = 0
    mlp_dim: int = 0

    def __post_init__(self) -> None:
        family = family_of(self.arch)
        if self.in_channels not in (1, 3):
            raise DataError(f"in_channels={self.in_channels}: backbones take 1 or 3", "use 1 or 3")
        if self.image_size < 8:
            raise DataError(f"image_size={self.image_size} is too small", "use at least 8")
        if not self.mean:
            mean, std = (IMAGENET_MEAN, IMAGENET_STD) if self.in_channels == 3 else ((0.5,), (0.5,))
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise DataError(
                f"{self.arch}: mean/std need {self.in_channels} value(s), got {self.mean} / {self.std}",
                "give one mean and std per input channel",
            )
        if family == "vit":
            preset = vit.PRESETS.get(self.arch)
            if preset is None and not all(
                (self.num_layers, self.num_heads, self.hidden_dim, self.mlp_dim)
            ):
                raise DataError(
                    "arch 'vit' needs num_layers, num_heads, hidden_dim and mlp_dim",
                    f"set them, or use a preset: {', '.join(vit.PRESETS)}",
                )
            if preset is not None:
                for name, value in zip(
                    ("num_layers", "num_heads", "hidden_dim", "mlp_dim"), preset
                ):
                    if not getattr(self, name):
                        object.__setattr__(self, name, value)
            if self.image_size % self.patch_size:
                raise DataError(
                    f"{self.arch}: image_size {self.image_size} is not a multiple of patch_size "
                    f"{self.patch_size}",
                    "change image_size or patch_size",
                )
        elif family == "resnet" and self.stem not in ("imagenet", "cifar"):
            raise DataError(f"stem {self.stem!r} is not one of imagenet, cifar", "fix stem")

    @property
    def family(self) -> str:
        return family_of(self.arch)

    @property
    def dim(self) -> int:
        """The feature width D."""
        return FAMILIES[self.family].feature_dim(self)

    def to_json(self) -> dict[str, Any]:
        """Only the fields that matter for this family, so the export's spec reads plainly."""
        keep = {"arch", "image_size", "in_channels", "mean", "std"}
        keep |= FAMILIES[self.family].fields
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k in keep
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str) -> BackboneSpec:
        known = {f.name for f in fields(cls)}
        try:
            values = {k: v for k, v in data.items() if k in known}
            for key in ("mean", "std"):
                if key in values:
                    values[key] = tuple(float(v) for v in values[key])
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise DataError(
                f"{source}: malformed backbone config ({err})", "re-export it"
            ) from None


@dataclass(frozen=True, slots=True)
class Family:
    archs: tuple[str, ...]  # the BackboneConfig.arch names this family builds
    build: Callable[[BackboneSpec], nn.Module]
    feature_dim: Callable[[BackboneSpec], int]
    fields: frozenset[str]  # spec fields this family uses beyond the common ones
    # the backbone's state_dict in torchvision key names (classifier dropped), and its inverse
    state: Callable[[nn.Module], dict[str, torch.Tensor]]
    load: Callable[[nn.Module, dict[str, torch.Tensor]], None]


def _resnet_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}


def _resnet_load(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=True)


RESNET = Family(
    archs=resnet.ARCHS,
    build=lambda s: resnet.build_resnet(s.arch, in_channels=s.in_channels, stem=s.stem),
    feature_dim=lambda s: resnet.feature_dim(s.arch),
    fields=frozenset({"stem"}),
    state=_resnet_state,
    load=_resnet_load,
)
VIT = Family(
    archs=(*vit.PRESETS, "vit"),
    build=lambda s: vit.ViTBackbone(
        image_size=s.image_size,
        patch_size=s.patch_size,
        num_layers=s.num_layers,
        num_heads=s.num_heads,
        hidden_dim=s.hidden_dim,
        mlp_dim=s.mlp_dim,
        in_channels=s.in_channels,
    ),
    feature_dim=lambda s: s.hidden_dim,
    fields=frozenset({"patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim"}),
    state=lambda net: net.backbone_state(),
    load=lambda net, state: net.load_backbone_state(state),
)
EFFICIENTNET_LITE0 = Family(
    archs=efficientnet_lite.ARCHS,
    build=lambda s: efficientnet_lite.EfficientNetLite0(in_channels=s.in_channels),
    feature_dim=lambda s: efficientnet_lite.FEATURE_DIM,
    fields=frozenset(),
    state=efficientnet_lite.backbone_state,
    load=efficientnet_lite.load_backbone_state,
)

# Family name (BackboneSpec.family) -> its Family, imported on first use; the first family whose
# archs hold an arch builds it.
FAMILIES: Registry[Family] = Registry(
    "backbone family",
    {
        "resnet": "suite.models.backbones:RESNET",
        "vit": "suite.models.backbones:VIT",
        "efficientnet_lite0": "suite.models.backbones:EFFICIENTNET_LITE0",
    },
)


def family_of(arch: str) -> str:
    for name in FAMILIES:
        if arch in FAMILIES[name].archs:
            return name
    raise DataError(
        f"backbone arch {arch!r} is not supported",
        f"use one of {', '.join(a for name in FAMILIES for a in FAMILIES[name].archs)}",
    )


def build_backbone(spec: BackboneSpec) -> nn.Module:
    """A freshly initialised backbone (the caller seeds the RNG)."""
    return FAMILIES[spec.family].build(spec)


def backbone_state(net: nn.Module, spec: BackboneSpec) -> dict[str, torch.Tensor]:
    return FAMILIES[spec.family].state(net)


def load_backbone_state(
    net: nn.Module, spec: BackboneSpec, state: dict[str, torch.Tensor], *, source: str
) -> None:
    """Load torchvision-named weights strictly; a mismatch is one error naming the file."""
    try:
        FAMILIES[spec.family].load(net, state)
    except RuntimeError as err:
        raise DataError(
            f"{source} does not match a {spec.arch} backbone ({spec.in_channels} channel(s)): "
            f"{str(err).strip().splitlines()[0]}",
            "export the backbone with torchvision key names; check the arch in its export's spec",
        ) from None


def save_backbone(
    net: nn.Module,
    spec: BackboneSpec,
    folder: str | Path,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write the export folder (built aside, then moved into place whole, replacing an older
    export): the weights and the metadata file with their digest, the spec and ``provenance``."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in backbone_state(net, spec).items()}
    folder = Path(folder)
    write_export(
        folder,
        kind="backbone",
        family=spec.arch,
        write_files=lambda tmp: save_file(state, str(tmp / WEIGHTS_FILE)),
        provenance=provenance or {},
        body={"spec": spec.to_json()},
    )
    return folder


def read_backbone_spec(
    folder: str | Path, *, verify: bool = False
) -> tuple[BackboneSpec, ExportMeta, str]:
    """The spec, metadata and digest of a backbone export (a run folder or its export/ folder),
    its kind checked (and its files' digests with ``verify``), nothing loaded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"backbone folder {folder} does not exist",
            "point at the run folder of `synmed pretrain` (or its export/ folder)",
        )
    where, meta, digest = read_export(folder, "backbone", verify=verify)
    source = str(where / EXPORT_META)
    data = meta.body.get("spec") if isinstance(meta.body, dict) else None
    if not isinstance(data, dict) or WEIGHTS_FILE not in meta.files:
        raise DataError(
            f"{source} is malformed (needs body.spec and the {WEIGHTS_FILE} digest)",
            "re-export the backbone with synmed pretrain",
        )
    spec = BackboneSpec.from_json(data, source=source)
    if spec.arch != meta.family:
        raise DataError(
            f"{source} is malformed: family {meta.family!r} but spec arch {spec.arch!r}",
            "re-export the backbone with synmed pretrain",
        )
    return spec, meta, digest


def backbone_folder(folder: str | Path) -> Path:
    """The export folder itself (``folder``, or a run folder's export/)."""
    return export_folder(Path(folder))


def load_backbone(folder: str | Path, *, verify: bool = True) -> tuple[nn.Module, BackboneSpec]:
    """Build the backbone an export folder describes and load its weights (digests checked)."""
    from safetensors.torch import load_file

    spec, _, _ = read_backbone_spec(folder, verify=verify)
    weights = backbone_folder(folder) / WEIGHTS_FILE
    net = build_backbone(spec)
    load_backbone_state(net, spec, load_file(str(weights)), source=str(weights))
    return net.eval(), spec


def with_input(spec: BackboneSpec, *, image_size: int, in_channels: int) -> BackboneSpec:
    """The same arch for other data (e.g. an ImageNet arch on 1-channel 64 px shards)."""
    mean = spec.mean if in_channels == spec.in_channels else ()
    std = spec.std if in_channels == spec.in_channels else ()
    return replace(spec, image_size=image_size, in_channels=in_channels, mean=mean, std=std)


def _adapt_input_channels(state: dict[str, torch.Tensor], key: str, channels: int) -> None:
    """ImageNet stems take RGB; for grey data sum the filters over colour (the usual adaptation:
    a grey image repeated to RGB gives the same activations)."""
    weight = state.get(key)
    if weight is not None and weight.shape[1] != channels:
        if channels == 1:
            state[key] = weight.sum(dim=1, keepdim=True)
        else:
            state[key] = weight.repeat(1, channels, 1, 1) / channels


def load_init(net: nn.Module, spec: BackboneSpec, init: str) -> dict[str, Any]:
    """Start ``net`` from ``ssl:PATH`` (an export folder) or ``imagenet:PATH`` (a torchvision
    ImageNet ``state_dict`` file, read with ``weights_only=True``). Returns provenance
    (``init_sha256``: the export's digest, or the weights file's).

    Input channels are adapted (RGB filters summed for grey data); a ViT's position embeddings
    are resampled to this spec's patch grid.
    """
    kind, _, path_text = init.partition(":")
    path = Path(path_text)
    if kind == "ssl":
        source_spec, _, digest = read_backbone_spec(path, verify=True)  # kind and digests
        if source_spec.arch != spec.arch:
            raise DataError(
                f"init {init}: the export is a {source_spec.arch}, the config asks for {spec.arch}",
                f"set the backbone arch to {source_spec.arch}",
            )
        from safetensors.torch import load_file

        state = load_file(str(backbone_folder(path) / WEIGHTS_FILE))
    elif kind == "imagenet":
        if not path.is_file():
            raise DataError(
                f"init {init}: {path} is not a file",
                "point at a torchvision ImageNet weights file on a local disk (e.g. "
                "resnet18-f37072fd.pth); nothing is downloaded",
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise DataError(
                f"init {init}: {path} is not a plain state_dict file ({err})",
                "use torchvision's .pth weight files (tensors only)",
            ) from None
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        digest = sha256_file(path)
    else:
        raise DataError(f"init {init!r} is not ssl:PATH or imagenet:PATH", "fix backbone.init")
    state = dict(state)
    _adapt_input_channels(state, "conv1.weight", spec.in_channels)
    _adapt_input_channels(state, "conv_proj.weight", spec.in_channels)
    if spec.family == "vit" and "encoder.pos_embedding" in state:
        pos = state["encoder.pos_embedding"]
        grid = spec.image_size // spec.patch_size
        if pos.shape[1] != grid * grid + 1:
            side = int(round((pos.shape[1] - 1) ** 0.5))
            patches = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
            patches = torch.nn.functional.interpolate(
                patches, size=(grid, grid), mode="bicubic", align_corners=False
            )
            state["encoder.pos_embedding"] = torch.cat(
                [pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1
            )
    load_backbone_state(net, spec, state, source=str(path))
    return {"init": init, "init_sha256": digest}
