"""The generator families: ``model.kind`` -> its config dataclass -> its family class.

:data:`GENERATORS` lists the torch-free config dataclasses (what a config's ``model:`` section is
loaded as, without importing torch); :data:`FAMILIES` follows each one's ``implementation`` to the
:class:`~suite.generative.base.Generator` subclass, imported only when asked for. Adding a family
is its file under suite/generative/, its config dataclass in suite/generative/configs.py, and one
line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suite.registry import Registry

if TYPE_CHECKING:
    from suite.generative.base import Generator

GENERATORS = Registry(
    "generator",
    {
        "ddpm_lucidrains": "suite.generative.configs:LucidrainsDDPMConfig",
        "ddpm_diffusers": "suite.generative.configs:DiffusersDDPMConfig",
        "dcgan": "suite.generative.configs:DCGANConfig",
        "acgan": "suite.generative.configs:ACGANConfig",
        "pggan": "suite.generative.configs:PGGANConfig",
        "sd_lora": "suite.generative.configs:SDLoRAConfig",
        "sd_dreambooth": "suite.generative.configs:SDDreamBoothConfig",
        "controlnet": "suite.generative.configs:ControlNetConfig",
        "mask_ddpm": "suite.generative.configs:MaskDDPMConfig",
    },
)
FAMILIES: Registry[type[Generator]] = GENERATORS.follow("implementation")


def generator_class(kind: str) -> type[Generator]:
    return FAMILIES.get(kind)


def build_generator(config: Any) -> Generator:
    return generator_class(config.kind)(config)
