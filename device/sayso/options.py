"""How a setting is declared and checked: a default, a doc line, a range or choices, validated once.

The settings dataclasses in config.py declare each field with `opt`; reading a
TOML table checks every value against that declaration, and the error names the
key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import field
from typing import Any, cast, get_type_hints

from sayso.errors import ConfigError


def opt(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
        choices: tuple[str, ...] | None = None) -> Any:
    """A setting: its default, the line that documents it, and the range or choices it must be in."""
    return field(default=default, metadata={"doc": doc, "lo": lo, "hi": hi, "choices": choices})


def _type_name(tp: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[tp]


def _check_value(key: str, value: Any, tp: type, meta: dict[str, Any]) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key} = {value!r} ({type(value).__name__}): expected {_type_name(tp)}. "
                          f"{meta['doc']}")
    if tp is float and not math.isfinite(cast(float, value)):
        raise ConfigError(f"{key} = {value!r}: must be a finite number. {meta['doc']}")
    lo, hi, choices = meta["lo"], meta["hi"], meta["choices"]
    if choices is not None and value not in choices:
        raise ConfigError(f"{key} = {value!r}: allowed values are {', '.join(map(repr, choices))}.")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key} = {value!r}: must be between {lo:g} and {hi:g}. {meta['doc']}")
    return value


def unknown(key: str, allowed: list[str]) -> ConfigError:
    """The error for a key that is not a setting, with the nearest one that is."""
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], allowed, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown key {key!r}.{hint} Allowed here: {', '.join(allowed)}.")


def build_section(name: str, cls: type, raw: Any) -> Any:
    """One TOML table as the settings dataclass `cls`; ConfigError names the first key that is wrong."""
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table, not {type(raw).__name__} {raw!r}.")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise unknown(f"{name}.{key}", sorted(fields))
        values[key] = _check_value(f"{name}.{key}", value, hints[key], dict(fields[key].metadata))
    return cls(**values)
