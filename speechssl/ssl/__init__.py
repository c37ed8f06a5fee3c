"""Self-supervised methods, one module each, and the one registry ``name -> SSLMethod``.

A method module ends with ``register_method(SSLMethod(...))``: its config dataclass, presets,
pretraining model, inference backbone and import/export converters in one record.
:data:`METHOD_MODULES` says which module provides a name, so a method is imported only when it
is asked for. To add a method, write ``speechssl/ssl/<name>.py`` and add a line to
:data:`METHOD_MODULES` (or, outside the package, import your module before asking for it).

What the registry asks of a method:

- ``model_cls(config)``: the pretraining model, ``forward(batch) -> ModelOutput`` (the Trainer's
  protocol), with ``.backbone`` (the part an exported upstream holds) and ``export_upstream()``;
- ``backbone_cls(config)``: the inference network, ``forward(wavs (B, S), wav_lengths (B,))``
  returning an object with ``hidden_states`` (list of ``(B, T, D)``, input first) and
  ``lengths`` ``(B,)``, and attributes ``stride`` (samples per frame), ``num_layers`` and
  ``hidden_size``. :mod:`speechssl.upstream` wraps it into the ``Upstream`` interface.

Nothing here imports :mod:`speechssl.upstream`; it asks this registry.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechssl.config import from_dict
from speechssl.errors import SpeechSSLError

METHOD_MODULES: dict[str, str] = {
    "wav2vec2": "speechssl.ssl.wav2vec2",
    "hubert": "speechssl.ssl.hubert",
    "data2vec": "speechssl.ssl.data2vec",
    "tera": "speechssl.ssl.tera",
    "mockingjay": "speechssl.ssl.tera",
    "apc": "speechssl.ssl.apc",
    "cpc": "speechssl.ssl.cpc",
}
UPSTREAM_FORMAT = "speechssl-upstream-v1"

Tensor = torch.Tensor
# (HF config.json, weights, model folder) -> (config dict, backbone state)
HFConverter = Callable[[dict[str, Any], dict[str, Tensor], Path], tuple[dict, dict]]
# (fairseq cfg dict, weights) -> (config dict, backbone state)
FairseqConverter = Callable[[dict[str, Any], dict[str, Tensor]], tuple[dict, dict]]


class UpstreamError(SpeechSSLError, ValueError):
    """An upstream spec, file or conversion cannot be loaded; the message names it."""


class UnknownMethodError(UpstreamError, KeyError):
    """No registered method has that name."""

    __str__ = Exception.__str__  # the message, not KeyError's repr of it


@dataclass(frozen=True)
class SSLMethod:
    name: str
    config_cls: type  # dataclass of the method's settings (values only)
    model_cls: type[nn.Module]  # pretraining model, built as model_cls(config)
    backbone_cls: type[nn.Module]  # inference network, built as backbone_cls(config)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> field values
    hf_model_types: tuple[str, ...] = ()  # ``model_type`` values of HF config.json it reads
    from_hf: HFConverter | None = None
    fairseq_models: tuple[str, ...] = ()  # fairseq ``_name``/``arch`` of the pretrained net
    from_fairseq: FairseqConverter | None = None

    def make_config(self, preset: str = "base", /, **values: Any) -> Any:
        """The preset's config with field ``values`` on top, type-checked."""
        if preset not in self.presets:
            raise ValueError(
                f"unknown {self.name} preset {preset!r}; known: {', '.join(sorted(self.presets))}"
            )
        return from_dict(self.config_cls, {**self.presets[preset], **values}, f"{self.name} model")

    def config_from_dict(self, values: dict[str, Any], where: str) -> Any:
        """A config from saved values; fields the config does not have are dropped (a training
        checkpoint's config may hold a subclass's)."""
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        return from_dict(self.config_cls, {k: v for k, v in values.items() if k in names}, where)

    def build_backbone(
        self, config: dict[str, Any], state: dict[str, Tensor], where: str = "upstream"
    ) -> nn.Module:
        """The inference backbone with ``state`` loaded strictly (the first problem named)."""
        backbone = self.backbone_cls(self.config_from_dict(dict(config), f"{where} config"))
        load_state_strict(backbone, state, where)
        return backbone


_METHODS: dict[str, SSLMethod] = {}


def register_method(method: SSLMethod) -> None:
    _METHODS[method.name] = method


def available_methods() -> list[str]:
    return sorted(set(METHOD_MODULES) | set(_METHODS))


def get_method(name: str, where: str = "SSL method") -> SSLMethod:
    if name not in _METHODS and name in METHOD_MODULES:
        importlib.import_module(METHOD_MODULES[name])
    if name not in _METHODS:
        known = ", ".join(available_methods())
        raise UnknownMethodError(f"{where}: unknown SSL method {name!r}; known: {known}")
    return _METHODS[name]


def find_method(where: str, predicate: Callable[[SSLMethod], bool], what: str) -> SSLMethod:
    """The first registered method for which ``predicate`` holds (all modules imported)."""
    for name in METHOD_MODULES:
        get_method(name)
    for method in _METHODS.values():
        if predicate(method):
            return method
    raise UpstreamError(f"{where}: no SSL method handles {what}; known: {available_methods()}")


def build_model(
    name: str, config: Any = None, preset: str | None = None, **overrides: Any
) -> nn.Module:
    """The pretraining model of method ``name`` from a config dataclass, a plain dict of its
    fields, or a preset (+ overrides)."""
    method = get_method(name)
    if config is None:
        config = method.make_config(preset or "base", **overrides)
    elif isinstance(config, dict):
        config = from_dict(method.config_cls, {**config, **overrides}, f"{name} config")
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    return method.model_cls(config)


def export_backbone(method: str, config: Any, backbone: nn.Module) -> dict[str, Any]:
    """What an exported upstream file holds: format, method, config values and weights."""
    return {
        "format": UPSTREAM_FORMAT,
        "method": method,
        "config": dataclasses.asdict(config),
        "model": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
    }


def load_state_strict(model: nn.Module, state: dict[str, Tensor], where: str) -> None:
    """Strict load that names the first problem; a missing ``mask_emb`` keeps its init (HF
    models trained without time masking have none)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and k != "mask_emb"]
    unexpected = [k for k in state if k not in own]
    wrong = [
        (k, tuple(v.shape), tuple(own[k].shape))
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if wrong:
        k, found, expected = wrong[0]
        parts.append(f"{k} has shape {found}, the config expects {expected}")
    if parts:
        raise UpstreamError(f"{where}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)
