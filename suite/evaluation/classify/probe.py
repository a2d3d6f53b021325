"""Linear probe: one linear layer trained on frozen, standardised features.

The standard SSL evaluation (e.g. Chen et al., 2020, SimCLR §B.6; Caron et al., 2021, DINO §4):
the backbone is frozen and only a linear classifier learns. Features are standardised with the
training rows' mean and std (an affine map a linear layer could learn, but it makes one learning
rate fit every backbone). The epoch kept is the one with the lowest validation loss; the test rows
are only scored, never looked at for selection.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from suite.evaluation.classify.config import LinearProbeConfig


def standardize(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    mean = train.mean(axis=0, keepdims=True)
    std = train.std(axis=0, keepdims=True) + 1e-6
    return tuple(((x - mean) / std).astype(np.float32) for x in (train, *others))


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if y.ndim == 2:
        return F.binary_cross_entropy_with_logits(logits, y.float())
    return F.cross_entropy(logits, y.long())


def _probs(logits: torch.Tensor, multilabel: bool) -> np.ndarray:
    return (logits.sigmoid() if multilabel else logits.softmax(dim=1)).numpy()


def linear_probe(
    train: np.ndarray,
    train_labels: np.ndarray,
    val: np.ndarray,
    val_labels: np.ndarray,
    test: np.ndarray,
    *,
    num_classes: int,
    cfg: LinearProbeConfig,
    seed: int,
) -> tuple[np.ndarray, dict[str, float]]:
    """Test-row probabilities ``(N_test, K)`` of the best-validation epoch, and what was selected."""
    x_train, x_val, x_test = (torch.from_numpy(a) for a in standardize(train, val, test))
    y_train, y_val = torch.as_tensor(train_labels), torch.as_tensor(val_labels)
    multilabel = y_train.ndim == 2
    torch.manual_seed(seed)
    head = nn.Linear(x_train.shape[1], num_classes)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(seed)
    best = (float("inf"), -1, copy.deepcopy(head.state_dict()))
    for epoch in range(cfg.epochs):
        head.train()
        for batch in torch.randperm(len(x_train), generator=g).split(cfg.batch_size):
            opt.zero_grad(set_to_none=True)
            _loss(head(x_train[batch]), y_train[batch]).backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            val_loss = float(_loss(head(x_val), y_val))
        if val_loss < best[0]:
            best = (val_loss, epoch, copy.deepcopy(head.state_dict()))
    head.load_state_dict(best[2])
    with torch.no_grad():
        probs = _probs(head(x_test), multilabel)
    return probs, {"best_epoch": best[1], "val_loss": best[0]}
