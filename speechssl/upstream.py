"""The Upstream interface: any speech representation model as ``wavs -> hidden states``.

SUPERB probes, ASR fine-tuning and self-training take an :class:`Upstream`, so every SSL method,
every imported checkpoint and the FBANK baseline are interchangeable. :func:`load_upstream`
accepts:

- ``"fbank"`` / ``"fbank_no_cmvn"``: 80-d Kaldi fbank (:class:`FbankUpstream`);
- a speechssl exported upstream (``{"format": "speechssl-upstream-v1", "method", "config",
  "model"}``) or training checkpoint (``"speechssl-checkpoint-v1"``; its config names the method
  under ``"method"`` and holds the model config under ``"model"`` or at the top level);
- a Hugging Face model folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``);
- a fairseq checkpoint stored as plain data: ``{"model": state_dict, "cfg": dict}`` (or
  ``"args"``: dict).

Every file loads with ``torch.load(..., weights_only=True)``. Which network a file or folder
holds is asked of the method registry (:mod:`speechssl.ssl`): its name, HF ``model_type`` or
fairseq model name picks the method, whose backbone :class:`SSLUpstream` wraps.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechssl.features.extract import FeatureConfig, batch_features
from speechssl.io import atomic_torch_save
from speechssl.nn.conv_encoder import length_mask
from speechssl.ssl import (
    UPSTREAM_FORMAT,
    SSLMethod,
    UpstreamError,
    export_backbone,
    find_method,
    get_method,
)
from speechssl.ssl.convert import fairseq_model_name
from speechssl.train.checkpoint import CHECKPOINT_FORMAT

__all__ = [
    "FbankUpstream",
    "SSLUpstream",
    "Upstream",
    "UpstreamError",
    "UpstreamOutput",
    "describe_upstream",
    "load_upstream",
    "rebuild_upstream",
    "save_upstream",
]


@dataclass
class UpstreamOutput:
    hidden_states: list[torch.Tensor]  # (B, T, D) each; [0] = transformer input, then layers
    lengths: torch.Tensor  # (B,) valid frames
    stride: int  # input samples per output frame


class Upstream(nn.Module):
    """``forward(wavs (B, S), wav_lengths (B,)) -> UpstreamOutput``. Padded frames of every
    hidden state are zero."""

    stride: int = 1

    def forward(self, wavs: torch.Tensor, wav_lengths: torch.Tensor) -> UpstreamOutput:
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        """Hidden states minus one (the input); 0 for feature baselines."""
        raise NotImplementedError

    @property
    def hidden_size(self) -> int:
        raise NotImplementedError


class FbankUpstream(Upstream):
    """Kaldi fbank (80 mel bins by default), optionally with per-utterance mean/variance
    normalisation. One hidden state; stride 160 (10 ms at 16 kHz)."""

    def __init__(self, feature_config: FeatureConfig | None = None, cmvn: bool = True):
        super().__init__()
        self.feature_config = feature_config or FeatureConfig(kind="fbank", num_mel_bins=80)
        self.cmvn = cmvn
        self.stride = self.feature_config.frame_shift_samples

    @property
    def num_layers(self) -> int:
        return 0

    @property
    def hidden_size(self) -> int:
        return self.feature_config.dim

    @torch.no_grad()
    def forward(self, wavs: torch.Tensor, wav_lengths: torch.Tensor) -> UpstreamOutput:
        out, lengths = batch_features(wavs, wav_lengths, self.feature_config, self.cmvn)
        return UpstreamOutput([out], lengths, self.stride)


class SSLUpstream(Upstream):
    """The backbone of a registered SSL method (see :mod:`speechssl.ssl`): hidden states as
    HF's ``output_hidden_states`` (``num_layers + 1`` of them), padded frames zeroed."""

    def __init__(self, model: nn.Module, method: str = "wav2vec2"):
        super().__init__()
        self.model = model
        self.method = method
        self.stride = model.stride

    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    @property
    def hidden_size(self) -> int:
        return self.model.hidden_size

    def forward(
        self, wavs: torch.Tensor, wav_lengths: torch.Tensor | None = None
    ) -> UpstreamOutput:
        out = self.model(wavs, wav_lengths)
        hidden = out.hidden_states
        if int(out.lengths.min()) < hidden[0].shape[1]:
            keep = length_mask(out.lengths, hidden[0].shape[1]).unsqueeze(-1)
            hidden = [h * keep.to(h.dtype) for h in hidden]
        return UpstreamOutput(list(hidden), out.lengths, self.stride)

    def export(self) -> dict[str, Any]:
        return export_backbone(self.method, self.model.cfg, self.model)


def save_upstream(exported: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write an exported upstream dict (``SSLUpstream.export()``, a pretraining model's
    ``export_upstream()``) atomically."""
    return atomic_torch_save(exported, path)


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the inference-only upstream (backbone weights + config) of a training checkpoint."""
    return save_upstream(load_upstream(checkpoint).export(), out)


def _build(method: SSLMethod, config: dict[str, Any], state: dict, where: str) -> Upstream:
    return SSLUpstream(method.build_backbone(config, state, where), method.name)


def describe_upstream(upstream: Upstream) -> dict[str, Any]:
    """The upstream's architecture as plain data (no weights), to rebuild it at load time."""
    if isinstance(upstream, FbankUpstream):
        return {
            "kind": "fbank",
            "feature_config": dataclasses.asdict(upstream.feature_config),
            "cmvn": upstream.cmvn,
        }
    if isinstance(upstream, SSLUpstream):
        exported = upstream.export()
        return {"kind": "method", "method": exported["method"], "config": exported["config"]}
    raise UpstreamError(f"cannot describe a {type(upstream).__name__} upstream for saving")


def rebuild_upstream(
    desc: dict[str, Any], state: dict[str, torch.Tensor], prefix: str = ""
) -> Upstream:
    """Inverse of :func:`describe_upstream`: ``state`` holds the backbone's weights under
    ``prefix`` (e.g. ``"upstream.model."`` in an ASR model)."""
    if desc["kind"] == "fbank":
        return FbankUpstream(FeatureConfig(**desc["feature_config"]), cmvn=desc["cmvn"])
    backbone = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    name = desc.get("method") or desc["family"]  # "family": files written before 2026-12
    return _build(get_method(name), desc["config"], backbone, f"{name} upstream")


# ---------------------------------------------------------------------------------------------
# loading


def _fairseq_error(path: Path, err: Exception) -> UpstreamError:
    return UpstreamError(
        f"{path}: cannot be read with torch.load(weights_only=True) ({type(err).__name__}: "
        f"{str(err).splitlines()[0] if str(err) else ''}). Original fairseq checkpoints pickle "
        "argparse/omegaconf objects; speechssl reads fairseq-format state dicts stored as plain "
        "data. Convert once, in an environment where you trust the file (fairseq/omegaconf "
        "installed):\n"
        '  python -c "import torch; from omegaconf import OmegaConf; '
        f"ck = torch.load('{path}', weights_only=False); "
        "cfg = OmegaConf.to_container(ck['cfg'], resolve=True) if ck.get('cfg') is not None "
        "else vars(ck['args']); "
        f"torch.save({{'model': ck['model'], 'cfg': cfg}}, '{path.with_suffix('.sd.pt')}')\"\n"
        "then load the .sd.pt file."
    )


def _strip_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict:
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def _from_training_checkpoint(path: Path, ckpt: dict) -> Upstream:
    config = ckpt.get("config") or {}
    name = config.get("method")
    if not name:
        raise UpstreamError(
            f"{path}: training checkpoint config names no method (expected config['method'])"
        )
    method = get_method(name, str(path))
    model_cfg = config.get("model") if isinstance(config.get("model"), dict) else config
    state = _strip_prefixes(ckpt["model"], ("module.", "_orig_mod."))
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    return _build(method, model_cfg, backbone or state, str(path))


def _load_file(path: Path) -> Upstream:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError and friends from disallowed globals
        raise _fairseq_error(path, err) from err
    if not isinstance(ckpt, dict):
        raise UpstreamError(f"{path}: expected a dict checkpoint, found {type(ckpt).__name__}")
    fmt = ckpt.get("format")
    if fmt == UPSTREAM_FORMAT:
        name = ckpt.get("method") or ckpt["family"]  # "family": files written before 2026-12
        return _build(get_method(name, str(path)), ckpt["config"], ckpt["model"], str(path))
    if fmt == CHECKPOINT_FORMAT:
        return _from_training_checkpoint(path, ckpt)
    cfg = ckpt.get("cfg") if ckpt.get("cfg") is not None else ckpt.get("args")
    if "model" in ckpt and isinstance(cfg, dict):
        name = fairseq_model_name(cfg)
        method = find_method(
            str(path),
            lambda m: name in m.fairseq_models and m.from_fairseq is not None,
            f"fairseq model {name!r}",
        )
        config, backbone = method.from_fairseq(cfg, ckpt["model"])
        return _build(method, config, backbone, str(path))
    raise UpstreamError(
        f"{path}: not a speechssl upstream/checkpoint nor a fairseq-format state dict "
        f"(top-level keys: {sorted(ckpt)[:10]}); expected 'format' = {UPSTREAM_FORMAT!r}, or "
        "'model' with 'cfg'/'args' as plain dicts"
    )


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """``model.safetensors`` (single or sharded) or ``pytorch_model.bin`` of an HF folder."""
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file() or index.is_file():
        from safetensors.torch import load_file

        if single.is_file():
            return load_file(single)
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(folder / shard))
        return state
    binary = folder / "pytorch_model.bin"
    if binary.is_file():
        return torch.load(binary, map_location="cpu", weights_only=True)
    raise UpstreamError(
        f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin"
    )


def _load_hf(folder: Path) -> Upstream:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UpstreamError(f"{folder}: a Hugging Face model folder needs config.json")
    hf = json.loads(config_file.read_text())
    model_type = hf.get("model_type", "")
    method = find_method(
        str(folder),
        lambda m: model_type in m.hf_model_types and m.from_hf is not None,
        f"HF model_type {model_type!r}",
    )
    config, backbone = method.from_hf(hf, read_hf_weights(folder), folder)
    return _build(method, config, backbone, str(folder))


def load_upstream(spec: str | os.PathLike, device: str | torch.device | None = None) -> Upstream:
    """An :class:`Upstream` in eval mode from ``"fbank"``, a ``.pt`` file or an HF folder."""
    if str(spec) in ("fbank", "fbank_no_cmvn"):
        upstream: Upstream = FbankUpstream(cmvn=str(spec) == "fbank")
    else:
        path = Path(spec)
        if path.is_dir():
            upstream = _load_hf(path)
        elif path.is_file():
            upstream = _load_file(path)
        else:
            raise UpstreamError(
                f"upstream {str(spec)!r}: not 'fbank', and no such file or folder (give a "
                "speechssl .pt, a fairseq-format .pt or a Hugging Face model folder)"
            )
    if device is not None:
        upstream = upstream.to(device)
    return upstream.eval()
