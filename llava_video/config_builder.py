"""Typed config dataclasses from mappings (YAML sections, config.json): the one builder every config uses.

``build_config(cls, data)`` names unknown and missing keys, checks scalar types (YAML reads ``1e-3`` as a
string), Literals, lists, tuples and mappings, and recurses into nested dataclass sections; the dataclasses'
``__post_init__`` then check what depends on values. Used by the model config (``llava_video.config``), the
training recipes (``llava_video.train.config``) and the demo recipe.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from llava_video.errors import ConfigError

__all__ = ["build_config", "check_literal"]


def check_literal(name: str, value: Any, literal: Any) -> None:
    """``value`` must be one of ``Literal[...]`` ``literal``'s options; the error names ``name`` and them."""
    if value not in get_args(literal):
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, get_args(literal)))}")


def build_config(cls: type, data: Any, *, prefix: str = "") -> Any:
    """Dataclass ``cls`` from a mapping (a YAML section), recursing into nested sections: unknown keys and
    required keys that are missing are named, scalar types, Literals, lists and tuples are checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    where = f"{prefix}." if prefix else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(where + k for k in unknown)}")
    missing = sorted(name for name, f in fields.items() if f.init and name not in data
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"missing config key(s): {', '.join(where + k for k in missing)}")
    kwargs = {}
    hints = _type_hints(cls)
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, prefix=f"{prefix}.{name}" if prefix else name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(hint: Any, value: Any, *, prefix: str) -> Any:
    """Nested dataclasses from dicts, and light checks of scalar types (YAML reads 1e-3 as a string)."""
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build_config(hint, value, prefix=prefix)
    if origin is Literal:
        check_literal(prefix, value, hint)
        return value
    if origin is list and value is not None:
        (item,) = get_args(hint) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"{prefix} must be a list, got {value!r}")
        return [_coerce(item, v, prefix=f"{prefix}[{i}]") for i, v in enumerate(value)]
    if origin is dict and value is not None:  # dict[K, V]: a YAML mapping
        key_hint, value_hint = get_args(hint) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{prefix} must be a mapping, got {value!r}")
        return {_coerce(key_hint, k, prefix=f"{prefix}"): _coerce(value_hint, v, prefix=f"{prefix}.{k}") for k, v in value.items()}
    if origin is tuple and value is not None:  # tuple[X, ...]: a YAML list
        item = get_args(hint)[0] if get_args(hint) else Any
        if not isinstance(value, list):
            raise ConfigError(f"{prefix} must be a list, got {value!r}")
        return tuple(_coerce(item, v, prefix=f"{prefix}[{i}]") for i, v in enumerate(value))
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(opt, value, prefix=prefix)
            except ConfigError:
                continue
        raise ConfigError(f"{prefix}={value!r} has the wrong type (expected {hint})")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{prefix}={value!r} must be a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{prefix}={value!r} must be a number") from None
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{prefix}={value!r} must be an integer")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{prefix}={value!r} must be true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{prefix}={value!r} must be a string")
        return value
    return value
