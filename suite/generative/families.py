"""The generator families a config's ``model.kind`` names (torch-free: it is read on config load).

Each entry is, for now, the family's config dataclass itself (``RegistryUnion(GENERATORS)`` in
:mod:`suite.schema`, attr None); adding a family is its file plus one line here.
"""

from __future__ import annotations

from suite.registry import Registry

GENERATORS = Registry(
    "generator",
    {
        "ddpm_lucidrains": "suite.generative.configs:LucidrainsDDPMConfig",
        "ddpm_diffusers": "suite.generative.configs:DiffusersDDPMConfig",
    },
)
