"""Full fine-tuning of a backbone plus a linear head, and the exported classifier.

Seed 001's protocol (dvtiendat/contrastive-synthesis-medcls): AdamW (Loshchilov & Hutter, 2019),
ReduceLROnPlateau on the validation loss, early stopping when it stops improving, and the weights
of the best validation epoch kept. Selection uses the validation split only; the test split is
scored once, at the end (DiffBoost, seed 002, selected its epoch on the test files).

The kept classifier is an export of kind ``classifier`` (:mod:`suite.artifacts.exports`):
``classifier.safetensors`` (weights only: nothing in it runs as code) plus the metadata file
``synmed-export.json`` (family ``finetune``; the weights' sha256, provenance, and as body the
backbone spec, input size, class names, multilabel and the data shape), which ``synmed evaluate
self-validate`` loads after checking its kind and digests.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from suite.artifacts.exports import EXPORT_META, export_folder, read_export, write_export
from suite.errors import DataError
from suite.evaluation.classify.backbone import ResolvedBackbone
from suite.evaluation.classify.config import FinetuneConfig
from suite.evaluation.classify.data import RowsSubset
from suite.evaluation.classify.features import Preprocess, loader
from suite.models.backbones import BackboneSpec, build_backbone

WEIGHTS = "classifier.safetensors"
HISTORY = "history.json"
FAMILY = "finetune"  # the protocol that makes it; :func:`load_classifier` is its loader


class Classifier(nn.Module):
    """uint8 images -> logits: preprocessing, backbone, linear head."""

    def __init__(self, preprocess: Preprocess, backbone: nn.Module, dim: int, classes: int) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.backbone = backbone
        self.head = nn.Linear(dim, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.preprocess(images)).flatten(1))


def make_preprocess(backbone: ResolvedBackbone) -> Preprocess:
    spec = backbone.spec
    return Preprocess(
        in_channels=spec.in_channels, size=backbone.input_size, mean=spec.mean, std=spec.std
    )


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if y.ndim == 2:
        return F.binary_cross_entropy_with_logits(logits, y.float(), reduction="sum")
    return F.cross_entropy(logits, y.long(), reduction="sum")


@torch.no_grad()
def predict(model: Classifier, rows: RowsSubset, batch_size: int) -> tuple[np.ndarray, float]:
    """Probabilities ``(N, K)`` (softmax, or sigmoid for multi-label) and the mean loss."""
    model.eval()
    probs, total = [], 0.0
    for images, y in loader([rows], batch_size):
        logits = model(images)
        total += float(_loss(logits, y))
        probs.append((logits.sigmoid() if y.ndim == 2 else logits.softmax(dim=1)).numpy())
    return np.concatenate(probs), total / max(len(rows.positions), 1)


def finetune(
    backbone: ResolvedBackbone,
    train_parts: list[RowsSubset],
    val: RowsSubset,
    *,
    num_classes: int,
    cfg: FinetuneConfig,
    seed: int,
) -> tuple[Classifier, dict[str, Any]]:
    """Train every weight; return the classifier of the best validation epoch and its record."""
    torch.manual_seed(seed)
    model = Classifier(make_preprocess(backbone), backbone.build(), backbone.spec.dim, num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    best_loss, best_epoch, best_state = float("inf"), -1, copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    for epoch in range(cfg.epochs):
        model.train()
        seen, running = 0, 0.0
        for images, y in loader(
            train_parts, cfg.batch_size, shuffle=True, seed=seed * 1000 + epoch
        ):
            opt.zero_grad(set_to_none=True)
            loss = _loss(model(images), y)
            (loss / len(y)).backward()
            opt.step()
            running += float(loss.detach())
            seen += len(y)
        _, val_loss = predict(model, val, cfg.batch_size)
        plateau.step(val_loss)
        history.append({"epoch": epoch, "train_loss": running / max(seen, 1), "val_loss": val_loss})
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break  # early stopping on the validation loss
    model.load_state_dict(best_state)
    return model, {"best_epoch": best_epoch, "val_loss": best_loss, "epochs_run": len(history),
                   "history": history}  # fmt: skip


def export_classifier(
    model: Classifier,
    backbone: ResolvedBackbone,
    folder: Path,
    *,
    class_names: list[str],
    multilabel: bool,
    data_shape: tuple[int, ...],
    provenance: dict[str, Any],
    history: list[dict[str, Any]] | None = None,
) -> Path:
    """Write the classifier export (weights and the per-epoch ``history.json``, then the
    metadata file with their digests)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}

    def write_files(tmp: Path) -> None:
        save_file(state, str(tmp / WEIGHTS))
        if history is not None:
            (tmp / HISTORY).write_text(json.dumps(history))

    write_export(
        folder,
        kind="classifier",
        family=FAMILY,
        write_files=write_files,
        provenance=provenance,
        body={
            "backbone": backbone.spec.to_json(),
            "input_size": backbone.input_size,
            "class_names": class_names,
            "multilabel": multilabel,
            "data_shape": list(data_shape),  # (C, H, W) of the shard images it was trained on
        },
    )
    return folder


def load_classifier(
    folder: str | Path, *, option: str = "--classifier"
) -> tuple[Classifier, dict[str, Any], str]:
    """An exported classifier, its kind and digests checked and its weights loaded strictly.
    Returns the model, the export's body (class names, input size, ...) and its digest.
    ``option`` is the flag that named the folder, for the messages."""
    from safetensors.torch import load_file

    folder = Path(folder)
    fix = f"point {option} at a finetune/seed-N folder written by synmed evaluate classify"
    if not folder.is_dir():
        raise DataError(f"{option}: classifier folder {folder} does not exist", fix)
    if not (export_folder(folder) / EXPORT_META).is_file():
        # read_export's fix names a run folder; a classifier lives in OUT/finetune/seed-N
        raise DataError(f"{option}: {folder} is not a classifier export (no {EXPORT_META})", fix)
    folder, meta, digest = read_export(folder, "classifier")
    source = folder / EXPORT_META
    try:
        config = dict(meta.body)
        spec = BackboneSpec.from_json(config["backbone"], source=str(source))
        names, size = list(config["class_names"]), int(config["input_size"])
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{source} is malformed ({err!r})", fix) from None
    preprocess = Preprocess(in_channels=spec.in_channels, size=size, mean=spec.mean, std=spec.std)
    model = Classifier(preprocess, build_backbone(spec), spec.dim, len(names))
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
    except (RuntimeError, OSError) as err:
        raise DataError(
            f"{folder / WEIGHTS} does not fit the classifier its {EXPORT_META} describes: "
            f"{str(err).splitlines()[0]}",
            "export the classifier again",
        ) from None
    return model.eval(), {**config, "provenance": meta.provenance}, digest
