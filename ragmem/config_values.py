"""A config value against its field's annotation: whether it fits (``Literal``, unions,
``int`` not ``bool``), how to say what would, and how to read it from an environment
string. ``ragmem.config`` holds the fields and their defaults; this holds no default.

    >>> coerce("8", int | None, "RAGMEM_RETRIEVAL_TOP_K"), coerce("none", int | None, "X")
    (8, None)
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ragmem.errors import ConfigError


def keys(section: object) -> list[str]:
    return [f.name for f in fields(section)]  # type: ignore[arg-type]


_HINTS: dict[type, dict[str, Any]] = {}


def field_hints(cls: type) -> dict[str, Any]:
    """Each field's annotation, resolved (``Mode`` -> ``Literal[...]``); once per class."""
    if cls not in _HINTS:
        names = {f.name for f in fields(cls)}
        _HINTS[cls] = {k: v for k, v in get_type_hints(cls).items() if k in names}
    return _HINTS[cls]


def check_value(name: str, value: Any, hint: Any) -> None:
    if not _fits(value, hint):
        if get_origin(hint) is Literal:
            valid = ", ".join(repr(a) for a in get_args(hint))
            raise ConfigError(f"{name} must be one of {valid}; got {value!r}")
        raise ConfigError(f"{name} must be {_describe(hint)}; got {value!r}")


def _fits(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin is Literal:
        return value in get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, h) for h in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_describe(h) for h in get_args(hint))
    if hint is type(None):
        return "None"
    return f"{'an' if hint.__name__[0] in 'aeiou' else 'a'} {hint.__name__}"


def coerce(raw: str, hint: Any, key: str) -> Any:
    """An environment string as the field's type: ``"8"`` -> 8, ``"none"`` -> None."""
    options = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    if type(None) in options and raw.strip().lower() in {"", "none", "null"}:
        return None
    for option in options:
        if option is bool:
            if raw.strip().lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.strip().lower() in {"0", "false", "no", "off"}:
                return False
        elif option in (int, float):
            try:
                return option(raw)
            except ValueError:
                continue
        elif option is not type(None):
            return raw  # a str or a Literal: checked when the section is made
    raise ConfigError(f"{key}={raw!r} is not {_describe(hint)}")


def env_overrides(config: Any, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``{"retrieval": {"top_k": 8}}`` from ``RAGMEM_RETRIEVAL_TOP_K=8``: each variable
    named after a section and a field of ``config``, coerced to the field's type and
    checked; one that names a section but none of its fields is an error."""
    data: dict[str, dict[str, Any]] = {}
    for f in fields(config):
        sub = getattr(config, f.name)
        prefix = f"RAGMEM_{f.name}_".upper()
        hints = field_hints(type(sub))
        known = {f"{prefix}{k.upper()}": k for k in keys(sub)}
        for key, raw in environ.items():
            if not key.startswith(prefix):
                continue
            if key not in known:
                raise ConfigError(f"unknown environment variable {key}; valid ones for "
                                  f"{f.name}: {', '.join(known)}")
            name = known[key]
            value = coerce(raw, hints[name], key)
            check_value(key, value, hints[name])  # named as the user wrote it
            data.setdefault(f.name, {})[name] = value
    return data
