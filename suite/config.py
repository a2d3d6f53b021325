"""Typed configs: YAML files validated against dataclasses, with dotted command-line overrides.

A config file is plain YAML (read with ``yaml.safe_load``: nothing in it runs as code). Every key is
checked against a schema (a dataclass) on load; an unknown key, a wrong type, a value outside a fixed
set or a path that does not exist is one :class:`~suite.errors.ConfigError` naming the key, the file
and what is allowed. Overrides use the same keys: ``synmed config show cfg.yaml data.image_size=128``.

This is the engine only: it imports nothing from the suite but three leaf modules (its errors, the
registry type and the one digest helper, standard library only), so any package can use it. The schemas live with the commands that read them (the root one, of
``synmed train generator`` / ``pretrain`` / ``data ingest``, in :mod:`suite.schema`).

Field types: ``bool``, ``int``, ``float``, ``str``, ``Path``, ``Literal``, ``list``, ``tuple``,
``dict``, ``X | None``, nested dataclasses, unions of dataclasses tagged by a ``kind: Literal["name"]``
field, and two registry-backed forms, so that adding an implementation is one registry line:

- ``Annotated[Any, RegistryUnion(REGISTRY)]``: a mapping whose ``kind:`` names a registry entry and
  whose other keys are checked against that entry's config dataclass;
- ``Annotated[str, RegistryName(REGISTRY)]``: a string that must be one of the registry's names.

Value ranges: ``Annotated[int, AtLeast(1)]``, ``Annotated[float, Range(gt=0)]`` and, for a sequence
of numbers, ``Annotated[tuple[...], PositiveSum()]``, checked after the type, on load and on
overrides alike. A float field also takes a string that is a finite float literal (``1e-3``,
``1E-4``, ``.5``): YAML 1.1 reads ``1e-3`` as a string.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from suite.artifacts.digests import sha256_text
from suite.errors import ConfigError
from suite.registry import Registry

T = TypeVar("T")

# A field whose metadata has MUST_EXIST set names a path that has to exist when the config loads.
MUST_EXIST = "must_exist"
# A field whose metadata has ADDED set joined an existing section later (``added_field``): left
# out of the config's digest while at its default, so an upgrade leaves old stage records fresh.
ADDED = "added"


def added_field(default: Any, *, must_exist: bool = False) -> Any:
    """A new option of an existing config section, with its ``default`` (``must_exist``: a
    path that has to exist when the config loads)."""
    return dataclasses.field(default=default, metadata={ADDED: True, MUST_EXIST: must_exist})


@dataclass(frozen=True)
class RegistryUnion:
    """``Annotated[Any, RegistryUnion(REGISTRY)]``: a tagged union whose members are a registry's.

    The mapping's ``kind:`` is looked up in ``registry``; the entry (``attr`` None) or the entry's
    attribute ``attr`` (e.g. ``"config_class"``) is the config dataclass the mapping is checked
    against, a dataclass whose ``kind`` field is ``Literal["<its registry name>"]``. Only the named
    entry is imported, so a registry of torch-free config classes keeps config loading torch-free.
    """

    registry: Registry[Any]
    attr: str | None = None

    def member(self, kind: str) -> type:
        """The config dataclass of registry entry ``kind``."""
        entry = self.registry.get(kind)
        return entry if self.attr is None else getattr(entry, self.attr)


@dataclass(frozen=True)
class RegistryName:
    """``Annotated[str, RegistryName(REGISTRY, extra=("auto",))]``: one of the registry's names
    (after the ``extra`` values), checked like a ``Literal`` but listed in one place only."""

    registry: Registry[Any]
    extra: tuple[str, ...] = ()

    def allowed(self) -> tuple[str, ...]:
        return (*self.extra, *self.registry.names())


@dataclass(frozen=True)
class Range:
    """``Annotated[float, Range(gt=0)]``: a number within bounds (and finite: NaN and inf are
    refused, since no field of the suite means them)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def allows(self, value: Any) -> bool:
        if value is None:
            return True
        if not math.isfinite(value):
            return False
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def describe(self, integer: bool = False) -> str:
        bounds = [
            f"{op} {_number(b)}"
            for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if b is not None
        ]
        what = "an integer" if integer else "a finite number"
        return f"{what} {' and '.join(bounds)}" if bounds else what


def AtLeast(n: int) -> Range:  # noqa: N802 (reads as a type annotation)
    """``Annotated[int, AtLeast(1)]``: an integer of at least ``n``."""
    return Range(ge=n)


@dataclass(frozen=True)
class PositiveSum:
    """``Annotated[tuple[float, ...], PositiveSum()]``: numbers whose sum is above 0 (each item
    keeps its own range), e.g. split fractions, of which at least one must be used."""

    def allows(self, value: Any) -> bool:
        return value is None or sum(value) > 0

    def describe(self, integer: bool = False) -> str:
        return "numbers whose sum is above 0 (each within its own range)"


Constraint = Range | PositiveSum

# The ranges most fields need (counts, sizes, rates, probabilities).
PositiveInt = Annotated[int, AtLeast(1)]
NonNegativeInt = Annotated[int, AtLeast(0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]


def require_at_least(values: dict[str, int | None], least: int = 1) -> None:
    """One ConfigError naming the first count given on a command line (``{"--workers": 0}``) that
    is below ``least``; None means not given. Config files get the same rule from their ranges."""
    for flag, value in values.items():
        if value is not None and value < least:
            raise ConfigError(
                f"{flag} is {value}, it must be at least {least}", f"pass {flag} {least} or more"
            )


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


# --------------------------------------------------------------------------------------------------
# loading


def load_config(
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    schema: type[T],
) -> T:
    """Read ``path`` (or start from defaults when None), apply overrides, validate, return ``schema``.

    The root schema's loader, with :class:`~suite.schema.SuiteConfig` as its default, is
    :func:`suite.schema.load_config`.
    """
    source = "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist", "pass the path of a YAML file, e.g. configs/…"
            )
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}", "fix the YAML syntax") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{path}: the top level must be a mapping of sections, got {type(loaded).__name__}",
                f"allowed sections: {', '.join(_field_names(schema))}",
            )
        data = loaded
    for item in overrides:
        apply_override(data, item, schema)
    return from_dict(schema, data, source=source)


def apply_override(data: dict[str, Any], item: str, schema: type) -> None:
    """Set ``a.b.c=value`` in ``data`` (value parsed as YAML), checking the key path against ``schema``."""
    if "=" not in item:
        raise ConfigError(
            f"override {item!r} has no '='",
            "write overrides as dotted.key=value, e.g. data.image_size=128",
        )
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = data
    cls: Any = schema
    for depth, part in enumerate(parts):
        names = _field_names(cls) if dataclasses.is_dataclass(cls) else None
        dotted = ".".join(parts[: depth + 1])
        if names is not None and part not in names:
            raise ConfigError(_unknown_key_message("<command line>", dotted, part, names))
        if depth == len(parts) - 1:
            node[part] = value
            return
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"<command line>: key {dotted!r} is not a section, cannot set {key}")
        node = child
        cls = _dataclass_in(_hints(cls)[part], child) if names is not None else None


def from_dict(cls: type[T], data: Any, *, source: str, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, validating every key and value."""
    where = prefix or "top level"
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: {where} must be a mapping, got {type(data).__name__} {data!r}",
            f"allowed keys: {', '.join(_field_names(cls))}",
        )
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(_unknown_key_message(source, dotted, str(key), list(fields)))
        kwargs[key] = _convert(hints[key], value, source=source, key=dotted)
        if fields[key].metadata.get(MUST_EXIST) and kwargs[key] is not None:
            _check_exists(kwargs[key], source, dotted)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """A config as plain YAML/JSON-able data (paths as strings, tuples as lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=None)


def config_digest(obj: Any) -> str:
    """sha256 of the canonical JSON of a config: stages record it to know when inputs changed."""
    blob = json.dumps(digest_body(obj), sort_keys=True, separators=(",", ":"))
    return sha256_text(blob)


def digest_body(obj: Any) -> Any:
    """:func:`to_dict` without the :func:`added_field` options that are at their default."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: digest_body(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.metadata.get(ADDED) and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, dict):
        return {str(k): digest_body(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [digest_body(v) for v in obj]
    return to_dict(obj)


# --------------------------------------------------------------------------------------------------
# validation helpers


def _field_names(cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _hints(cls: Any) -> dict[str, Any]:
    # include_extras keeps Annotated[..., RegistryUnion(...)]: without it the metadata is dropped
    return get_type_hints(cls, include_extras=True)


def _registry_meta(tp: Any) -> RegistryUnion | RegistryName | None:
    """The registry metadata of an ``Annotated`` type, if any."""
    if get_origin(tp) is not Annotated:
        return None
    return next((m for m in tp.__metadata__ if isinstance(m, RegistryUnion | RegistryName)), None)


def _kind_of(value: Any) -> Any:
    return value.get("kind") if isinstance(value, dict) else None


def _dataclass_in(tp: Any, value: Any = None) -> Any:
    """The dataclass inside ``tp``: itself, the non-None arm of an Optional, or the arm of a tagged
    union that ``value["kind"]`` names (None when no single arm is known yet)."""
    if dataclasses.is_dataclass(tp):
        return tp
    if get_origin(tp) is Annotated:
        meta = _registry_meta(tp)
        if isinstance(meta, RegistryUnion):
            kind = _kind_of(value)
            return meta.member(kind) if isinstance(kind, str) and kind in meta.registry else None
        return None if meta is not None else _dataclass_in(get_args(tp)[0], value)
    arms = [a for a in get_args(tp) if dataclasses.is_dataclass(a)]
    if len(arms) == 1:
        return arms[0]
    tagged = _tagged_arms(tp)
    if tagged and isinstance(value, dict) and value.get("kind") in tagged:
        return tagged[value["kind"]]
    annotated = [a for a in get_args(tp) if get_origin(a) is Annotated]
    if len(annotated) == 1:  # X | None where X is a registry union
        return _dataclass_in(annotated[0], value)
    return None


def _tagged_arms(tp: Any) -> dict[str, Any]:
    """For a union of dataclasses that each have ``kind: Literal["name"]``: {name: dataclass}."""
    arms = [a for a in get_args(tp) if a is not type(None)]
    out: dict[str, Any] = {}
    for arm in arms:
        if not dataclasses.is_dataclass(arm):
            return {}
        kind = get_type_hints(arm).get("kind")
        if kind is None or get_origin(kind) is not Literal or len(get_args(kind)) != 1:
            return {}
        out[get_args(kind)[0]] = arm
    return out if len(out) > 1 else {}


def _unknown_key_message(source: str, dotted: str, key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{source}: unknown key {dotted!r}{hint}; allowed keys here: {', '.join(allowed)}"


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        meta = _registry_meta(tp)
        if isinstance(meta, RegistryUnion):
            names = ", ".join(repr(k) for k in meta.registry.names())
            return f"a mapping whose kind is one of {names}"
        if isinstance(meta, RegistryName):
            return "one of " + ", ".join(repr(a) for a in meta.allowed())
        return _type_name(get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple, dict):
        return (
            f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(tp) if a is not ...)}]"
        )
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


class _OutOfRange(ConfigError):
    """A value of the right type outside its range: its own message beats a union's."""


def _fail(source: str, key: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(
        f"{source}: key {key!r} = {value!r} ({type(value).__name__}) has the wrong type",
        f"expected {_type_name(tp)}",
    )


def _convert(tp: Any, value: Any, *, source: str, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        meta = _registry_meta(tp)
        if isinstance(meta, RegistryUnion):
            return _convert_registry_union(meta, value, source=source, key=key, tp=tp)
        if isinstance(meta, RegistryName):
            return _check_allowed(meta.allowed(), value, source=source, key=key)
        inner = get_args(tp)[0]
        converted = _convert(inner, value, source=source, key=key)
        for rule in tp.__metadata__:
            if isinstance(rule, Constraint) and not rule.allows(converted):
                raise _OutOfRange(
                    f"{source}: key {key!r} = {value!r} is out of range",
                    f"set {key} to {rule.describe(integer=inner is int)}",
                )
        return converted
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, source=source, prefix=key)
    if origin is Literal:
        return _check_allowed(get_args(tp), value, source=source, key=key)
    if origin in (typing.Union, types.UnionType):
        arms = get_args(tp)
        if value is None:
            if type(None) in arms:
                return None
            raise _fail(source, key, value, tp)
        tagged = _tagged_arms(tp)
        if tagged:  # a tagged union: `kind` picks the schema, so errors name that schema's keys
            kind = value.get("kind") if isinstance(value, dict) else None
            if kind not in tagged:
                raise ConfigError(
                    f"{source}: key {key + '.kind'!r} = {kind!r} is not a known kind",
                    f"set {key}.kind to one of: {', '.join(repr(k) for k in tagged)}",
                )
            return from_dict(tagged[kind], value, source=source, prefix=key)
        errors: list[ConfigError] = []
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return _convert(arm, value, source=source, key=key)
            except ConfigError as err:
                errors.append(err)
        non_null = [a for a in arms if a is not type(None)]
        precise = isinstance(errors[0], _OutOfRange) or (
            get_origin(non_null[0]) not in (None, Annotated)
            or _registry_meta(non_null[0]) is not None
            or dataclasses.is_dataclass(non_null[0])
        )
        if len(errors) == 1 and precise:
            raise errors[0]  # the arm's own message is more precise (allowed values, nested key)
        raise _fail(source, key, value, tp)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise _fail(source, key, value, tp)
        (item_tp,) = get_args(tp)
        return [_convert(item_tp, v, source=source, key=f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise _fail(source, key, value, tp)
        if len(args) == 2 and args[1] is ...:
            return tuple(
                _convert(args[0], v, source=source, key=f"{key}[{i}]") for i, v in enumerate(value)
            )
        if len(value) != len(args):
            raise ConfigError(
                f"{source}: key {key!r} = {value!r} has {len(value)} items",
                f"expected exactly {len(args)}: {_type_name(tp)}",
            )
        return tuple(
            _convert(a, v, source=source, key=f"{key}[{i}]")
            for i, (a, v) in enumerate(zip(args, value))
        )
    if origin is dict:
        k_tp, v_tp = get_args(tp)
        if not isinstance(value, dict):
            raise _fail(source, key, value, tp)
        return {
            _convert(k_tp, k, source=source, key=key): _convert(
                v_tp, v, source=source, key=f"{key}.{k}"
            )
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(source, key, value, tp)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(source, key, value, tp)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value.strip()):
            return float(value)
        raise _fail(source, key, value, tp)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _fail(source, key, value, tp)
    if tp is Path:
        if isinstance(value, str | Path):
            return Path(value).expanduser()
        raise _fail(source, key, value, tp)
    raise TypeError(f"config schema type {tp!r} at {key} is not supported")  # a bug in the schema


# What YAML 1.1 leaves a string but is plainly a number: 1e-3, 1E-4, 5.e2, .5 (not inf or nan).
_FLOAT_LITERAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _check_allowed(allowed: tuple[Any, ...], value: Any, *, source: str, key: str) -> Any:
    if value in allowed and not (isinstance(value, bool) and True in allowed):
        return value
    raise ConfigError(
        f"{source}: key {key!r} = {value!r} is not allowed",
        "allowed values: " + ", ".join(repr(a) for a in allowed),
    )


def _convert_registry_union(
    union: RegistryUnion, value: Any, *, source: str, key: str, tp: Any
) -> Any:
    """``kind`` picks the registry entry, so errors name that entry's keys (as tagged unions do)."""
    if value is None:
        raise _fail(source, key, value, tp)
    kind = _kind_of(value)
    names = union.registry.names()
    if not isinstance(kind, str) or kind not in names:
        raise ConfigError(
            f"{source}: key {key + '.kind'!r} = {kind!r} is not a known kind",
            f"set {key}.kind to one of: {', '.join(repr(k) for k in names)}",
        )
    return from_dict(union.member(kind), value, source=source, prefix=key)


def _check_exists(value: Any, source: str, key: str) -> None:
    paths = value if isinstance(value, list | tuple) else [value]
    for p in paths:
        if isinstance(p, Path) and not p.exists():
            raise ConfigError(
                f"{source}: key {key!r}: path {str(p)!r} does not exist",
                "fix the path (relative paths are taken from the directory you run synmed in)",
            )
