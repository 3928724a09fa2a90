"""Building frozen config dataclasses from plain mappings, strictly.

Kept apart from `weightmom.config` so the pruner configs (which `TrainConfig` validates its `pruner`
mapping against) can be built the same way without an import cycle.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from weightmom.errors import UsageError, require

Rule = tuple[Callable[[Any], bool], str]   # (holds for the value, what the value must be, in words)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a dataclass field's type, converting only where lossless."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        hint = options[0]
    if typing.get_origin(hint) is tuple:
        return _coerce_sequence(value, typing.get_args(hint)[0], key)
    expected = getattr(hint, "__name__", str(hint))
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    if hint is str and isinstance(value, str):
        return value
    if hint is dict and isinstance(value, dict):
        return value
    raise UsageError(f"{key}: expected {expected}, got {value!r}")


def _coerce_sequence(value: Any, item: Any, key: str) -> tuple:
    """A `tuple[X, ...]` field takes a list, one X, or (as search spaces hold only scalars) a string "x1,x2"."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
        if item is int:
            value = [int(part) if part.lstrip("+-").isdigit() else part for part in value]
    items = value if isinstance(value, (list, tuple)) else [value]
    try:
        return tuple(coerce(v, item, key) for v in items)
    except UsageError:
        raise UsageError(f"{key}: expected a list of {item.__name__}, got {value!r}") from None


def check_rule(key: str, name: str, value: Any, rules: Mapping[str, Rule],
               choices: Mapping[str, tuple[str, ...]]) -> None:
    """Field `name`'s own rule, with `key` (`lr`, `pruner.window`) naming it in the message: one of its
    `choices`, or what its entry in `rules` asks. A field in neither has no rule of its own."""
    if name in choices:
        require(value in choices[name], f"unknown {key} {value!r}; choose from: {', '.join(choices[name])}")
    elif name in rules:
        holds, expected = rules[name]
        shown = list(value) if isinstance(value, tuple) else value   # as the user writes it: [1, 3]
        require(holds(value), f"{key} {expected} (got {shown})")


def field_types(cls: type) -> dict[str, Any]:
    """The type hint of each init field of dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Construct dataclass `cls` from a mapping, naming any unknown or mistyped key."""
    hints = field_types(cls)
    for key in values:
        if key not in hints:
            raise UsageError(f"unknown config key '{prefix}{key}'; known keys: {', '.join(sorted(hints))}")
    return cls(**{k: coerce(v, hints[k], f"{prefix}{k}") for k, v in values.items()})
