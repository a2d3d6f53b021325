"""The train state: where a run is, saved and restored with the weights.

Beyond the step, a family keeps its schedule here (PGGAN's resolution phase and fade-in alpha
live in ``phase`` and ``values``), so modules and optimizers never change shape mid-run and a
resumed run continues mid-fade. ``generators`` are named RNGs a family draws from outside the
global RNG (which the run state saves per rank on its own); they are saved with rank 0's state, so
a family uses them only for draws every rank makes alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(slots=True)
class TrainState:
    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the epoch the next step reads from
    phase: str = ""
    values: dict[str, float | int | str] = field(default_factory=dict)
    generators: dict[str, torch.Generator] = field(default_factory=dict)

    def generator(self, name: str, seed: int) -> torch.Generator:
        """The named CPU generator, created from ``seed`` on first use (restored on resume)."""
        if name not in self.generators:
            self.generators[name] = torch.Generator(device="cpu").manual_seed(seed)
        return self.generators[name]

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "phase": self.phase,
            "values": dict(self.values),
            "generators": {n: g.get_state() for n, g in self.generators.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.phase = str(state["phase"])
        self.values = dict(state["values"])
        for name, rng in state["generators"].items():
            self.generators.setdefault(name, torch.Generator(device="cpu")).set_state(rng)
