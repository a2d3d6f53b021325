"""SSL methods by config ``kind``: to add one, write its module and add one line to CONFIGS.

Each entry is the method's config dataclass, kept torch-free in :mod:`suite.ssl.config` so that
loading a config (``pretrain.method.kind`` picks the entry) imports no torch; the config class
names its method class with ``implementation = "module:Class"``, which :data:`METHODS` imports
only when a run builds the method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suite.registry import Registry

if TYPE_CHECKING:
    from suite.ssl.method import SSLMethod

CONFIGS: Registry[type] = Registry(
    "SSL method",
    {
        "dino": "suite.ssl.config:DINOConfig",
        "simclr": "suite.ssl.config:SimCLRConfig",
    },
)

# name -> SSLMethod subclass, through each config's `implementation`
METHODS: Registry[type[SSLMethod]] = CONFIGS.follow("implementation")


def method_class(cfg: Any) -> type[SSLMethod]:
    """The method class of a method config (DINOConfig -> DINO ...)."""
    return METHODS.get(cfg.kind)
