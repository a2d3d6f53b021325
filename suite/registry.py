"""Named implementations, imported only when used: the one registry style of the suite.

A registry maps a name (what a config's ``kind:`` or a command-line spec says) to a
``"module:object"`` reference. Nothing is imported when the registry is built, so a registry can
sit in a torch-free module and list torch-heavy implementations; :meth:`Registry.get` imports an
entry the first time it is asked for. Adding an implementation is its file plus one line in the
registry that lists it.

This module is part of the engine layer: it imports nothing from the suite but its errors.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from suite.errors import ConfigError

T = TypeVar("T")


def import_object(ref: str) -> Any:
    """The object a ``"module:object"`` reference names (``object`` may be dotted: ``Cls.attr``)."""
    module_name, sep, qualname = ref.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"{ref!r} is not a 'module:object' reference")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            # a registry line that points nowhere is a bug in the suite, not the user's input
            raise ImportError(f"{ref!r}: module {module_name} has no {qualname}") from None
    return obj


class Registry(Generic[T]):
    """``what`` names the kind of thing listed (for messages): "SSL method", "encoder" ...

    ``entries`` maps each name to ``"module:object"``; its order is kept (it is the order names
    are listed in messages and, where it matters, tried in: ``--format auto``). ``registry[name]``
    is ``registry.get(name)`` and ``dict(registry)`` imports every entry, so a registry can stand
    where a plain ``{name: object}`` dict stood.
    """

    def __init__(self, what: str, entries: Mapping[str, str]) -> None:
        for name, ref in entries.items():
            # checked now, so a malformed line fails when its module is imported, not when used
            if ref.count(":") != 1 or ref.startswith(":") or ref.endswith(":"):
                raise ValueError(f"{what} {name!r}: {ref!r} is not a 'module:object' reference")
        self.what = what
        self._entries = dict(entries)
        self._loaded: dict[str, T] = {}

    def names(self) -> list[str]:
        """Every registered name, in registry order."""
        return list(self._entries)

    def ref(self, name: str) -> str:
        """The ``"module:object"`` reference of ``name`` (nothing is imported)."""
        self._check(name)
        return self._entries[name]

    def get(self, name: str) -> T:
        """The object registered as ``name``, imported on first use and cached.

        An unknown name is one :class:`~suite.errors.ConfigError` listing the known names.
        """
        self._check(name)
        if name not in self._loaded:
            self._loaded[name] = import_object(self._entries[name])
        return self._loaded[name]

    def follow(self, attr: str) -> Registry[Any]:
        """A registry of the same names whose entries are each entry's ``attr``, itself a
        ``"module:object"`` reference: e.g. from torch-free config classes to the torch modules
        they configure, with nothing imported until an entry is asked for."""
        return _Followed(self, attr)

    def _check(self, name: str) -> None:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.what} {name!r}",
                f"use one of: {', '.join(self._entries)}",
            )

    # the read-only mapping protocol (dict(registry), `name in registry`, iteration over names)
    def keys(self) -> list[str]:
        return self.names()

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {self._entries!r})"


class _Followed(Registry[Any]):
    """What :meth:`Registry.follow` returns: names and order from the base registry."""

    def __init__(self, base: Registry[Any], attr: str) -> None:
        self.what = base.what
        self._entries = base._entries
        self._loaded = {}
        self._base = base
        self._attr = attr

    def ref(self, name: str) -> str:
        return getattr(self._base.get(name), self._attr)

    def get(self, name: str) -> Any:
        self._check(name)
        if name not in self._loaded:
            self._loaded[name] = import_object(self.ref(name))
        return self._loaded[name]
