"""One optimizer step under Accelerate, for a family that owns the order of its optimizers.

A trainer's ``train_step`` (a generator family's, or the single-optimizer default) calls
:meth:`StepContext.accumulate` for each objective it trains and :meth:`StepContext.step` for
each optimizer, in its own order; a GAN accumulates and steps D, then G. The context owns what
must be the same for every family: micro-batches under ``no_sync`` except the last (so DDP
all-reduces once per step), autocast, the loss scaled by the accumulation count, gradient
clipping, the non-finite check before any weight changes, and the LR schedule of each optimizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator

from suite.errors import SynmedError
from suite.train.state import TrainState


class TrainingError(SynmedError):
    """Training cannot go on (a non-finite loss, a data set too small for the batch)."""


@dataclass(slots=True)
class StepContext:
    """What one step of ``train_step`` works with.

    ``model`` is the prepared (DDP-wrapped) module whose ``forward(batch, objective)`` returns the
    loss of one micro-batch; ``micro_batches`` are this step's ``grad_accum`` batches, already on
    the device; ``optimizers`` and ``schedules`` are named alike; ``state`` is the run's train
    state (a family's phase and named RNGs live there).
    """

    accelerator: Accelerator
    model: torch.nn.Module
    micro_batches: list[dict[str, Any]]
    optimizers: dict[str, torch.optim.Optimizer]
    schedules: dict[str, torch.optim.lr_scheduler.LRScheduler]
    step_number: int  # the step being taken, counted from 1
    max_grad_norm: float | None
    state: TrainState = field(default_factory=TrainState)
    last_checkpoint: Callable[[], Any] = field(default=lambda: None)
    #: the fix a diverged step prints (the loop's: a lower learning rate and the resume command)
    fix: Callable[[], str] = field(
        default=lambda: "lower train.lr, set train.max_grad_norm, or check the data"
    )
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    grad_norms: dict[str, float] = field(default_factory=dict)

    @property
    def optimizer_names(self) -> tuple[str, ...]:
        return tuple(self.optimizers)

    def accumulate(
        self, objective: str, loss_fn: Callable[[dict[str, Any]], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Forward and backward of ``objective`` over every micro-batch; returns its mean loss
        (detached). ``loss_fn(batch)`` replaces ``model(batch, objective)`` where a family needs
        more than the loss call (it must still go through ``model`` for DDP)."""
        acc, n = self.accelerator, len(self.micro_batches)
        total = torch.zeros((), device=acc.device)
        for i, batch in enumerate(self.micro_batches):
            sync = contextlib.nullcontext() if i == n - 1 else acc.no_sync(self.model)
            with sync, acc.autocast():
                loss = loss_fn(batch) if loss_fn else self.model(batch, objective)
            acc.backward(loss / n)
            total += loss.detach().float()
        mean = total / n
        self.losses[objective] = mean
        return mean

    def zero_grad(self, name: str) -> None:
        """Clear optimizer ``name``'s gradients (every optimizer's are clear when a step
        starts; a family that backpropagates through one network twice in a step clears
        between)."""
        self.optimizers[name].zero_grad(set_to_none=True)

    def step(self, name: str) -> None:
        """Clip, check and apply optimizer ``name``'s gradients, then clear them and advance its
        LR schedule. Gradients are all-reduced by then, so every rank sees the same norm; a
        non-finite norm (with ``train.max_grad_norm`` set), or a non-finite loss of the objective
        of the same name on any rank, stops every rank before any weight changes. An fp16 grad
        scaler skips steps with inf gradients by design, so it owns that case."""
        acc, optimizer = self.accelerator, self.optimizers[name]
        finite = True
        if self.max_grad_norm is not None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            norm = acc.clip_grad_norm_(params, self.max_grad_norm)
            self.grad_norms[name] = float(norm)
            finite = bool(torch.isfinite(norm))
        # Without clipping no norm is computed: a scan of every gradient made the small DINO step
        # of benchmarks/bench_ssl.py 0.89x lightly's loop (1.05x without); the loss check below
        # catches a non-finite step then.
        loss = self.losses.get(name)
        if loss is not None:
            # A loss can be non-finite with finite gradients (a NaN weight whose own gradient is
            # its input); which ranks see it may differ, so they agree on it first.
            flag = (~torch.isfinite(loss)).float()
            if acc.num_processes > 1:
                flag = acc.reduce(flag, reduction="sum")
            finite = finite and not bool(flag > 0)
        if not finite and acc.scaler is None:
            losses = ", ".join(f"{k} {v.item()}" for k, v in self.losses.items())
            raise TrainingError(
                f"the training loss became non-finite or its gradients did ({losses}) at step "
                f"{self.step_number} (optimizer {name}); weights were not updated; last good "
                f"checkpoint: {self.last_checkpoint() or 'none yet'}",
                self.fix(),
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if name in self.schedules:
            self.schedules[name].step()
