"""model.kind -> generator family. Adding a family: its file (with its config) and one line here."""

from __future__ import annotations

import importlib
from typing import Any

from suite.generative.base import Generator

GENERATORS: dict[str, str] = {
    "ddpm_lucidrains": "suite.generative.ddpm_lucidrains:LucidrainsDDPM",
    "ddpm_diffusers": "suite.generative.ddpm_diffusers:DiffusersDDPM",
}


def generator_class(kind: str) -> type[Generator]:
    module, _, name = GENERATORS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def build_generator(config: Any) -> Generator:
    return generator_class(config.kind)(config)
