"""HuBERT and data2vec-audio checkpoints: HF and fairseq-format imports and exports.

Both are wav2vec 2.0 backbones, so the key tables of :mod:`speechssl.ssl.convert` apply
(``reference/ssl-methods.md`` §7.1); what differs (§7.1-7.3):

- HuBERT (HF ``HubertModel`` / ``HubertForCTC``, prefix ``hubert.``; fairseq ``hubert`` and
  ``hubert_ctc``): the positional conv is ``pos_conv_embed.conv`` (HF) / ``pos_conv.0``
  (fairseq) as in wav2vec 2.0; HF's feature-projection LayerNorm is optional
  (``feat_proj_layer_norm``, True for fairseq-converted models); fairseq's ``loss_weights``
  is ``[feature penalty]`` (no diversity term); ``label_embs_concat``/``final_proj`` are heads.
  HF's ``conv_pos_batch_norm`` variant is refused.
- data2vec (HF ``Data2VecAudioModel`` / ``ForCTC``, prefix ``data2vec_audio.``; fairseq
  ``data2vec_audio``): a LayerNorm in every conv block (HF's config has no
  ``feat_extract_norm``), the stacked positional conv ``pos_conv_embed.layers.{i}.conv`` /
  ``pos_conv.{i}.0`` (kernel ``conv_pos_kernel_size``, depth ``num_conv_pos_embeddings`` in HF;
  fairseq ``max(3, conv_pos // pos_conv_depth)``), waveform normalisation on unless the
  folder's ``preprocessor_config.json`` says otherwise. The EMA teacher (``_ema``) and
  ``final_proj`` of a fairseq checkpoint are not part of the upstream.

HF models take the waveform already normalised by their feature extractor ((x-μ)/√(σ²+1e-7));
speechssl normalises inside the model (fairseq's eps 1e-5).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from speechssl.ssl import UpstreamError
from speechssl.ssl.convert import (
    _fairseq_model_cfg,
    do_normalize,
    fairseq_config,
    fairseq_state_dict,
    hf_config,
    hf_state_dict,
    to_fairseq_config,
    to_fairseq_state_dict,
)

Tensor = torch.Tensor


def _check_model_type(hf: dict[str, Any], expected: str, folder: Path) -> None:
    if hf.get("model_type") != expected:
        raise UpstreamError(
            f"{folder}/config.json: model_type {hf.get('model_type')!r}, expected {expected!r}"
        )


# ---------------------------------------------------------------------------------------------
# HuBERT


def hubert_from_hf(hf: dict, state: dict, folder: Path) -> tuple[dict, dict]:
    """HF ``config.json`` + weights of ``HubertModel``/``HubertForCTC`` -> (config, backbone)."""
    _check_model_type(hf, "hubert", folder)
    try:
        config = hf_config(hf, do_normalize(folder))
    except ValueError as e:
        raise UpstreamError(f"{folder}: {e}") from None
    backbone, _, _ = hf_state_dict(state)
    return config, backbone


def _criterion(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg.get("criterion") if isinstance(cfg.get("criterion"), dict) else cfg


def hubert_from_fairseq(cfg: dict, state: dict) -> tuple[dict, dict]:
    """fairseq ``hubert`` / ``hubert_ctc`` (cfg as a plain dict) -> (config, backbone)."""
    backbone, heads, _ = fairseq_state_dict(state)
    config = fairseq_config({k: v for k, v in cfg.items() if k != "criterion"}, backbone)
    model, task = _fairseq_model_cfg(cfg)
    config["untie_final_proj"] = bool(model.get("untie_final_proj", False))
    rate = model.get("label_rate", task.get("label_rate"))
    if rate is not None:
        config["label_rate"] = float(rate)
    if "label_embs_concat" in heads:
        config["num_classes"] = int(heads["label_embs_concat"].shape[0])
    crit = _criterion(cfg)
    for ours in ("pred_masked_weight", "pred_nomask_weight"):
        if crit.get(ours) is not None:
            config[ours] = float(crit[ours])
    if crit.get("loss_weights"):
        config["feature_penalty_weight"] = float(crit["loss_weights"][0])
    return config, backbone


def hubert_to_fairseq(
    config: Any, backbone: dict[str, Tensor], heads: dict[str, Tensor] | None = None
) -> dict[str, Any]:
    """A HuBERT config + backbone (+ ``final_proj``/``label_embs_concat``) as a fairseq-format
    ``{"model": state_dict, "cfg": dict}`` (plain data, loads with ``weights_only=True``)."""
    values = dataclasses.asdict(config)
    cfg = to_fairseq_config(values)
    cfg["model"].update(
        _name="hubert",
        untie_final_proj=values["untie_final_proj"],
        label_rate=values["label_rate"],
        final_dim=values["final_dim"],
    )
    cfg["task"].update(_name="hubert_pretraining", label_rate=values["label_rate"])
    cfg["criterion"] = {
        "_name": "hubert",
        "pred_masked_weight": values["pred_masked_weight"],
        "pred_nomask_weight": values["pred_nomask_weight"],
        "loss_weights": [values["feature_penalty_weight"]],
    }
    return {"model": to_fairseq_state_dict(backbone, heads), "cfg": cfg}


# ---------------------------------------------------------------------------------------------
# data2vec


def data2vec_from_hf(hf: dict, state: dict, folder: Path) -> tuple[dict, dict]:
    """HF ``config.json`` + weights of ``Data2VecAudioModel``/``ForCTC`` -> (config, backbone)."""
    _check_model_type(hf, "data2vec-audio", folder)
    normalize = do_normalize(folder)
    config = hf_config(hf, True if normalize is None else normalize)
    config["extractor_mode"] = "layer"  # Data2VecAudioConvLayer: LayerNorm in every block
    backbone, _, _ = hf_state_dict(state)
    return config, backbone


_DATA2VEC_FIELDS = {
    # fairseq data2vec_audio field -> (speechssl field, cast); min_masks is 1 in fairseq's code
    "average_top_k_layers": ("average_top_k_layers", int),
    "loss_beta": ("loss_beta", float),
    "loss_scale": ("loss_scale", float),
    "ema_decay": ("ema_decay", float),
    "ema_end_decay": ("ema_end_decay", float),
    "ema_anneal_end_step": ("ema_anneal_end_step", int),
    "instance_norm_target_layer": ("instance_norm_targets", bool),
    "min_target_var": ("min_target_var", float),
    "min_pred_var": ("min_pred_var", float),
}


def data2vec_from_fairseq(cfg: dict, state: dict) -> tuple[dict, dict]:
    """fairseq ``data2vec_audio`` (pretrained or fine-tuned; cfg as a plain dict) ->
    (config, backbone). Reads the student; the EMA teacher (``_ema``) is skipped."""
    state = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    backbone, _, _ = fairseq_state_dict(state)
    config = fairseq_config({k: v for k, v in cfg.items() if k != "criterion"}, backbone)
    if config.get("pos_conv_style") != "layer_norm_stack":
        raise UpstreamError(
            "data2vec_audio checkpoint without the stacked positional conv "
            "(encoder.pos_conv.{i}.0); is it a wav2vec2 checkpoint?"
        )
    model, task = _fairseq_model_cfg(cfg)
    config["normalize_waveform"] = bool(task.get("normalize", True))
    for theirs, (ours, cast) in _DATA2VEC_FIELDS.items():
        if model.get(theirs) is not None:
            config[ours] = cast(model[theirs])
    return config, backbone


def data2vec_to_fairseq(config: Any, backbone: dict[str, Tensor]) -> dict[str, Any]:
    """A data2vec config + backbone as a fairseq-format ``{"model", "cfg"}`` plain dict."""
    values = dataclasses.asdict(config)
    cfg = to_fairseq_config(values)
    cfg["model"].update(
        _name="data2vec_audio",
        extractor_mode="layer_norm" if values["extractor_mode"] == "layer" else "default",
        pos_conv_depth=values["pos_conv_depth"],
        conv_pos=values["pos_conv_kernel"] * values["pos_conv_depth"],
        average_top_k_layers=values["average_top_k_layers"],
        loss_beta=values["loss_beta"],
        loss_scale=values["loss_scale"],
        ema_decay=values["ema_decay"],
        ema_end_decay=values["ema_end_decay"],
        ema_anneal_end_step=values["ema_anneal_end_step"],
        instance_norm_target_layer=values["instance_norm_targets"],
    )
    cfg["criterion"] = {"_name": "model", "log_keys": ["ema_decay", "target_var", "pred_var"]}
    return {"model": to_fairseq_state_dict(backbone), "cfg": cfg}
