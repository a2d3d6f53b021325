"""SSL methods by config kind: to add one, write its module and add a line here."""

from __future__ import annotations

from typing import Any

from suite.ssl.dino import DINO
from suite.ssl.method import SSLMethod
from suite.ssl.simclr import SimCLR

METHODS: dict[str, type[SSLMethod]] = {
    "dino": DINO,
    "simclr": SimCLR,
}


def method_class(cfg: Any) -> type[SSLMethod]:
    return METHODS[cfg.kind]
