"""Typed dataclass configs <-> YAML, with dotted overrides from the shell.

YAML files hold values only (``yaml.safe_load``); an override ``a.b=3`` is parsed as a YAML
scalar, never evaluated as code, and must name an existing field.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_write_text

T = TypeVar("T")


class ConfigError(SpeechSSLError, ValueError):
    """A config file or override does not fit the config's fields or types."""


def _coerce(value: Any, annotation: Any, where: str, key: str) -> Any:
    def error(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: expected {expected}, found {value!r}")

    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise error("a mapping")
        return from_dict(annotation, value, where, f"{key}.")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; ".join(errors))
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise error("a list")
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        items = [_coerce(v, item, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or annotation is Any:
        return value
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        # PyYAML reads "1e-3" (no dot) as a string (YAML 1.1); accept numeric strings only
        try:
            return float(value)
        except ValueError:
            raise error("a number") from None
    if annotation in (int, str, bool) and type(value) is not annotation:
        raise error(annotation.__name__)
    return value


def from_dict(cls: type[T], values: dict[str, Any], where: str = "config", _prefix: str = "") -> T:
    """Build dataclass ``cls`` from a plain dict, checking field names and types; an error
    names ``where`` (the file, ``--set``), the dotted key and the allowed fields."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = set(values) - set(names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {sorted(unknown)}{' in ' + _prefix[:-1] if _prefix else ''}"
            f" for {cls.__name__}; allowed: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], where, f"{_prefix}{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:  # the class's own checks (__post_init__)
        raise ConfigError(f"{where}: {_prefix[:-1] + ': ' if _prefix else ''}{e}") from None


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (value parsed as a YAML scalar) to a nested dict."""
    out = dict(values)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def load_config(
    cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | None = None
) -> T:
    """Defaults of ``cls`` <- YAML file ``path`` <- dotted ``overrides``; an error names the
    file, or ``--set`` when the file was fine and an override is not."""
    values: dict[str, Any] = to_dict(cls())
    where = cls.__name__
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        values, where = _merge(values, loaded), str(path)
    try:
        final = apply_overrides(values, overrides or [])
    except ConfigError as e:
        raise ConfigError(f"{e} (over {path})" if path else str(e)) from None
    try:
        return from_dict(cls, final, where)
    except ConfigError:
        if not overrides:
            raise
        from_dict(cls, values, where)  # the file's own error names the file ...
        return from_dict(cls, final, f"--set (over {path})" if path else "--set")  # ... or --set


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def save_config(config: Any, path: str | os.PathLike) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
