"""Config dataclasses from plain dicts, checked against their fields' type hints.

`from_dict` builds a (nested) config dataclass from a mapping such as a JSON file: every key must
be a field, a field whose type is itself a dataclass is built from its own mapping, and every other
value is checked against its type hint (int, float, bool, str, list[...], tuple[...], dict[...],
X | None) and coerced where that loses nothing (an int for a float field, a whole float for an int
field, a list for a tuple). NaN and infinite floats are refused. `override` applies dotted keys
("stop.max_rounds") to a copy of a config the same way.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], data: Mapping, label: str) -> T:
    """An instance of the dataclass `cls` from `data`; ValueError names any unknown or ill-typed key.
    `label` names the config in messages ("Safe-CB config")."""
    return _build(cls, data, label, "")


def override(config: T, changes: Mapping[str, Any], label: str) -> T:
    """A new config: `config` with `changes` applied. Keys are dotted field paths ("stop.max_rounds");
    a mapping given for a section ("stop": {...}) changes only the keys it names. Values are checked
    as by `from_dict`; the new config is not validated (callers run their own `validate`)."""
    data = dataclasses.asdict(config)
    for key, value in changes.items():
        _assign(type(config), data, key, value, label)
    return from_dict(type(config), data, label)


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _is_section(hint) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _assign(cls, data: dict, key: str, value, label: str, prefix: str = "") -> None:
    """Put `value` at the dotted `key` of `data` (the asdict form of a `cls` found at `prefix` of the
    whole config), checking that every part of the key names a field."""
    full_key = _join(prefix, key)
    *sections, name = key.split(".")
    for part in sections:
        hint = _field_hint(cls, part, prefix, full_key, label)
        if not _is_section(hint):
            raise ValueError(f"{label} key {full_key!r}: {_join(prefix, part)!r} is a value, not a section")
        cls, data, prefix = hint, data[part], _join(prefix, part)
    hint = _field_hint(cls, name, prefix, full_key, label)
    if _is_section(hint) and isinstance(value, Mapping):
        for sub, sub_value in value.items():
            _assign(hint, data[name], str(sub), sub_value, label, _join(prefix, name))
    else:
        data[name] = dataclasses.asdict(value) if _is_section(hint) and isinstance(value, hint) else value


def _field_hint(cls, name: str, prefix: str, full_key: str, label: str):
    """The type hint of `cls`'s field `name`; ValueError naming `full_key` and the valid keys when there is none."""
    fields = _fields(cls)
    if name not in fields:
        where = f" under {prefix!r}" if prefix else ""
        raise ValueError(f"unknown {label} key {full_key!r}; valid keys{where}: {', '.join(sorted(fields))}")
    return typing.get_type_hints(cls)[name]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _build(cls, data, label: str, prefix: str):
    if not isinstance(data, Mapping):
        raise ValueError(f"{label} section {prefix!r} must be a mapping, got {type(data).__name__}")
    fields = _fields(cls)
    unknown = sorted(str(k) for k in set(data) - set(fields))
    if unknown:
        where = f" in section {prefix!r}" if prefix else ""
        raise ValueError(f"unknown {label} keys{where}: {unknown}; valid keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _coerce(value, hints[name], label, _join(prefix, name)) for name, value in data.items()})


def _coerce(value, hint, label: str, key: str):
    """`value` as the type `hint` describes; ValueError (naming `key`) when it is not one."""
    if _is_section(hint):
        return _build(hint, dataclasses.asdict(value) if isinstance(value, hint) else value, label, key)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, label, key)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else f"{label} key {key!r}: no type fits {value!r}")
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(label, key, "true or false", value)
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _wrong(label, key, "a whole number", value)
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"{label} key {key!r} must be a finite number, got {value!r}")
            return number
        raise _wrong(label, key, "a number", value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _wrong(label, key, "a string", value)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _wrong(label, key, "a list", value)
        if not args:
            items = list(value)
        elif origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ValueError(f"{label} key {key!r} must have {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, label, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            items = [_coerce(v, args[0], label, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or hint) is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise _wrong(label, key, "a mapping", value)
        if not args:
            return dict(value)
        return {_coerce(k, args[0], label, f"{key} key"): _coerce(v, args[1], label, f"{key}[{k!r}]")
                for k, v in value.items()}
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _wrong(label, key, hint.__name__, value)
    return value  # a hint this module does not check (e.g. a Literal or a callable)


def _wrong(label: str, key: str, expected: str, value) -> ValueError:
    return ValueError(f"{label} key {key!r} must be {expected}, got {value!r}")
