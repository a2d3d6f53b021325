"""Weighted k-nearest-neighbour classification on frozen features.

The non-parametric protocol of Wu et al. (CVPR 2018, "Unsupervised feature learning via
non-parametric instance discrimination", eq. 7) that DINO reports (Caron et al., 2021,
``eval_knn.py``): L2-normalised features, cosine similarity, the k most similar training rows, each
voting for its class with weight ``exp(similarity / T)``. The votes, normalised, are the class
scores (so AUC is defined); multi-label rows vote with their label vectors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CHUNK = 1024  # query rows per similarity block: bounds memory at CHUNK x N_train floats


def knn_scores(
    train: np.ndarray,
    train_labels: np.ndarray,
    query: np.ndarray,
    *,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> np.ndarray:
    """``(N_query, num_classes)`` vote shares; each row sums to 1."""
    bank = F.normalize(torch.as_tensor(train, dtype=torch.float32), dim=1)
    labels = torch.as_tensor(train_labels)
    # one-hot votes for single-label rows; multi-label rows vote with their label vectors
    one_hot = labels.ndim == 1
    targets = F.one_hot(labels.long(), num_classes).float() if one_hot else labels.float()
    k = min(k, len(bank))
    out = []
    for start in range(0, len(query), CHUNK):
        q = F.normalize(torch.as_tensor(query[start : start + CHUNK], dtype=torch.float32), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        # shifted by the row's top similarity: the shares are unchanged, and exp cannot overflow
        # at small temperatures (exp(1 / 0.01) is beyond float32)
        weights = ((sim - sim[:, :1]) / temperature).exp()
        votes = (weights.unsqueeze(-1) * targets[idx]).sum(dim=1)
        out.append(votes / weights.sum(dim=1, keepdim=True))
    return torch.cat(out).numpy() if out else np.zeros((0, num_classes), np.float32)
