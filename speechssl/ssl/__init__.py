"""Self-supervised methods, one module each, and the registry ``name -> method``.

A method module calls :func:`register_method` at import; :data:`METHOD_MODULES` says which module
provides a name, so a method is imported only when it is asked for. To add a method, write
``speechssl/ssl/<name>.py`` that registers itself and add a line to :data:`METHOD_MODULES`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

METHOD_MODULES: dict[str, str] = {
    "wav2vec2": "speechssl.ssl.wav2vec2",
    "hubert": "speechssl.ssl.hubert",
    "data2vec": "speechssl.ssl.data2vec",
}


@dataclass(frozen=True)
class SSLMethod:
    name: str
    config_cls: type  # dataclass of the method's settings (values only)
    model_cls: type[nn.Module]  # built as model_cls(config); forward(batch) -> ModelOutput
    make_config: Callable[..., Any] | None = None  # (preset, **overrides) -> config


_METHODS: dict[str, SSLMethod] = {}


def register_method(
    name: str,
    config_cls: type,
    model_cls: type[nn.Module],
    make_config: Callable[..., Any] | None = None,
) -> None:
    _METHODS[name] = SSLMethod(name, config_cls, model_cls, make_config)


def available_methods() -> list[str]:
    return sorted(set(METHOD_MODULES) | set(_METHODS))


def get_method(name: str) -> SSLMethod:
    if name not in _METHODS and name in METHOD_MODULES:
        importlib.import_module(METHOD_MODULES[name])
    if name not in _METHODS:
        raise KeyError(f"unknown SSL method {name!r}; known: {', '.join(available_methods())}")
    return _METHODS[name]


def build_model(
    name: str, config: Any = None, preset: str | None = None, **overrides: Any
) -> nn.Module:
    """The pretraining model of method ``name`` from a config dataclass, a plain dict of its
    fields, or a preset (+ overrides)."""
    method = get_method(name)
    if config is None:
        if method.make_config is not None:
            config = method.make_config(preset or "base", **overrides)
        else:
            config = method.config_cls(**overrides)
    elif isinstance(config, dict):
        from speechssl.config import from_dict

        config = from_dict(method.config_cls, {**config, **overrides}, f"{name} config")
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    return method.model_cls(config)
