"""The Upstream interface: any speech representation model as ``wavs -> hidden states``.

SUPERB probes, ASR fine-tuning and self-training take an :class:`Upstream`, so every SSL method,
every imported checkpoint and the FBANK baseline are interchangeable. :func:`load_upstream`
accepts:

- ``"fbank"`` / ``"fbank_no_cmvn"``: 80-d Kaldi fbank (:class:`FbankUpstream`);
- a speechssl exported upstream (``{"format": "speechssl-upstream-v1", "family", "config",
  "model"}``) or training checkpoint (``"speechssl-checkpoint-v1"``; its config names the method
  under ``"method"`` and holds the model config under ``"model"`` or at the top level);
- a Hugging Face model folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``);
- a fairseq checkpoint stored as plain data: ``{"model": state_dict, "cfg": dict}`` (or
  ``"args"``: dict).

Every file loads with ``torch.load(..., weights_only=True)``. Model families (wav2vec2 here;
HuBERT and data2vec in their modules) plug in through :func:`register_family`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechssl.features.extract import FeatureConfig, compute_features
from speechssl.nn.conv_encoder import length_mask
from speechssl.ssl.convert import (
    fairseq_config,
    fairseq_model_name,
    fairseq_state_dict,
    hf_config,
    hf_state_dict,
)
from speechssl.ssl.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model, config_from_dict

UPSTREAM_FORMAT = "speechssl-upstream-v1"
CHECKPOINT_FORMAT = "speechssl-checkpoint-v1"


class UpstreamError(ValueError):
    """An upstream spec or file cannot be loaded; the message names it and says what to do."""


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
        feats = []
        for wav, n in zip(wavs, wav_lengths.tolist(), strict=True):
            f = compute_features(wav[: int(n)].float().cpu(), self.feature_config)
            if self.cmvn and f.shape[0] > 0:
                f = (f - f.mean(0)) / f.std(0, unbiased=False).clamp(min=1e-5)
            feats.append(f)
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        out = torch.zeros(len(feats), int(lengths.max()) if feats else 0, self.hidden_size)
        for i, f in enumerate(feats):
            out[i, : f.shape[0]] = f
        return UpstreamOutput([out.to(wavs.device)], lengths.to(wavs.device), self.stride)


class Wav2Vec2Upstream(Upstream):
    """A :class:`~speechssl.ssl.wav2vec2.Wav2Vec2Model` (wav2vec 2.0, HuBERT, data2vec
    backbones): hidden states as HF's ``output_hidden_states`` (``num_layers + 1`` of them)."""

    def __init__(self, model: nn.Module, family: str = "wav2vec2"):
        super().__init__()
        self.model = model
        self.family = family
        self.stride = model.stride

    @property
    def num_layers(self) -> int:
        return self.model.cfg.num_layers

    @property
    def hidden_size(self) -> int:
        return self.model.cfg.hidden_size

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
        return {
            "format": UPSTREAM_FORMAT,
            "family": self.family,
            "config": dataclasses.asdict(self.model.cfg),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }


def save_upstream(exported: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write an exported upstream dict (``Wav2Vec2Upstream.export()``,
    ``Wav2Vec2Pretraining.export_upstream()``) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(exported, tmp)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# families

Builder = Callable[[dict[str, Any], dict[str, torch.Tensor]], Upstream]
HFConverter = Callable[[dict[str, Any], dict[str, torch.Tensor], Path], tuple[dict, dict]]
FairseqConverter = Callable[[dict[str, Any], dict[str, torch.Tensor]], tuple[dict, dict]]


@dataclass(frozen=True)
class UpstreamFamily:
    """How to build and import one model family.

    builder(config, backbone_state) -> Upstream (weights loaded).
    hf_converter(config.json dict, weights, folder) -> (config, backbone_state).
    fairseq_converter(cfg dict, weights) -> (config, backbone_state).
    hf_model_types: ``model_type`` values of HF ``config.json`` this family reads.
    fairseq_models: fairseq model names (``cfg.model._name`` / ``args.arch``, of the
    pretrained network inside a fine-tuned one).
    config_cls: the family's config dataclass, to pick its fields out of a training config.
    """

    name: str
    builder: Builder
    hf_converter: HFConverter | None = None
    fairseq_converter: FairseqConverter | None = None
    hf_model_types: tuple[str, ...] = ()
    fairseq_models: tuple[str, ...] = ()
    config_cls: type | None = None


_FAMILIES: dict[str, UpstreamFamily] = {}
# modules that register a family when imported (looked up on a miss, if they exist)
FAMILY_MODULES = ("speechssl.ssl.hubert", "speechssl.ssl.data2vec")


def register_family(
    name: str,
    builder: Builder,
    hf_converter: HFConverter | None = None,
    fairseq_converter: FairseqConverter | None = None,
    *,
    hf_model_types: tuple[str, ...] = (),
    fairseq_models: tuple[str, ...] = (),
    config_cls: type | None = None,
) -> None:
    _FAMILIES[name] = UpstreamFamily(
        name, builder, hf_converter, fairseq_converter, hf_model_types, fairseq_models, config_cls
    )


def _import_family_modules() -> None:
    for module in FAMILY_MODULES:
        if module not in sys.modules and importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def _find_family(where: str, predicate: Callable[[UpstreamFamily], bool], what: str):
    for attempt in range(2):
        for family in _FAMILIES.values():
            if predicate(family):
                return family
        if attempt == 0:
            _import_family_modules()
    raise UpstreamError(
        f"{where}: no upstream family handles {what}; known families: "
        f"{', '.join(sorted(_FAMILIES))}"
    )


def get_family(name: str, where: str = "upstream") -> UpstreamFamily:
    return _find_family(where, lambda f: f.name == name, f"family {name!r}")


def load_backbone_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
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
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            k, found, expected = wrong[0]
            parts.append(f"{k} has shape {found}, the config expects {expected}")
        raise UpstreamError(f"{where}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)


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
    name = ckpt.get("family") or config.get("method") or config.get("family")
    if not name:
        raise UpstreamError(
            f"{path}: training checkpoint config names no method (expected config['method'])"
        )
    family = get_family(name, str(path))
    model_cfg = config.get("model") if isinstance(config.get("model"), dict) else config
    if family.config_cls is not None:
        fields = {f.name for f in dataclasses.fields(family.config_cls)}
        model_cfg = {k: v for k, v in model_cfg.items() if k in fields}
    state = _strip_prefixes(ckpt["model"], ("module.", "_orig_mod."))
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    return family.builder(model_cfg, backbone or state)


def _load_file(path: Path) -> Upstream:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError and friends from disallowed globals
        raise _fairseq_error(path, err) from err
    if not isinstance(ckpt, dict):
        raise UpstreamError(f"{path}: expected a dict checkpoint, found {type(ckpt).__name__}")
    fmt = ckpt.get("format")
    if fmt == UPSTREAM_FORMAT:
        family = get_family(ckpt["family"], str(path))
        return family.builder(ckpt["config"], ckpt["model"])
    if fmt == CHECKPOINT_FORMAT:
        return _from_training_checkpoint(path, ckpt)
    cfg = ckpt.get("cfg") if ckpt.get("cfg") is not None else ckpt.get("args")
    if "model" in ckpt and isinstance(cfg, dict):
        name = fairseq_model_name(cfg)
        family = _find_family(
            str(path),
            lambda f: name in f.fairseq_models and f.fairseq_converter is not None,
            f"fairseq model {name!r}",
        )
        config, backbone = family.fairseq_converter(cfg, ckpt["model"])
        return family.builder(config, backbone)
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
    family = _find_family(
        str(folder),
        lambda f: model_type in f.hf_model_types and f.hf_converter is not None,
        f"HF model_type {model_type!r}",
    )
    config, backbone = family.hf_converter(hf, read_hf_weights(folder), folder)
    return family.builder(config, backbone)


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


# ---------------------------------------------------------------------------------------------
# the wav2vec2 family


def _build_wav2vec2(config: dict[str, Any], state: dict[str, torch.Tensor]) -> Upstream:
    model = Wav2Vec2Model(config_from_dict(dict(config)))
    load_backbone_state(model, state, "wav2vec2 upstream")
    return Wav2Vec2Upstream(model, "wav2vec2")


def _wav2vec2_from_hf(hf: dict, state: dict, folder: Path) -> tuple[dict, dict]:
    normalize = None
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        normalize = json.loads(pre.read_text()).get("do_normalize")
    backbone, _, _ = hf_state_dict(state)
    return hf_config(hf, normalize), backbone


def _wav2vec2_from_fairseq(cfg: dict, state: dict) -> tuple[dict, dict]:
    backbone, _, _ = fairseq_state_dict(state)
    return fairseq_config(cfg, backbone), backbone


register_family(
    "wav2vec2",
    _build_wav2vec2,
    _wav2vec2_from_hf,
    _wav2vec2_from_fairseq,
    hf_model_types=("wav2vec2",),
    fairseq_models=("wav2vec2",),
    config_cls=Wav2Vec2Config,
)
