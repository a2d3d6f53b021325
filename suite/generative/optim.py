"""The optimizer and LR schedule of ``train:`` that the diffusion families share."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from suite.generative.base import OptimizerSpec


def lr_lambda(cfg: Any) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps``, then constant, cosine to ``max_steps``, or cosine
    with warm restarts (Loshchilov & Hutter, arXiv:1608.03983: periods ``lr_restart_steps``
    times ``lr_restart_mult`` to the k, eta_min 0, torch's ``CosineAnnealingWarmRestarts``)."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if cfg.lr_schedule == "cosine_restarts":
            t, period = step - cfg.warmup_steps, cfg.lr_restart_steps
            while t >= period:
                t, period = t - period, period * cfg.lr_restart_mult
            return 0.5 * (1 + math.cos(math.pi * t / period))
        return 1.0

    return factor


def adam_with_schedule(params: Iterable[torch.nn.Parameter], cfg: Any) -> OptimizerSpec:
    """Adam with ``train.lr``, ``adam_betas`` and ``weight_decay``, and the schedule above."""
    optimizer = torch.optim.Adam(
        params, lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay
    )
    return OptimizerSpec(optimizer=optimizer, lr_lambda=lr_lambda(cfg))
