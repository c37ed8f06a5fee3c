"""Import wav2vec 2.0-style checkpoints (HF transformers, fairseq) into speechssl's layout.

speechssl's backbone (:class:`~speechssl.ssl.wav2vec2.Wav2Vec2Model`) keys::

    feature_extractor.conv_layers.{i}.conv / .norm
    feature_projection.layer_norm / .projection           mask_emb
    encoder.pos_conv.conv.{weight_g, weight_v, bias}      (weight-norm style)
    encoder.pos_conv.layers.{i}.conv                      (data2vec's stacked style)
    encoder.layer_norm
    encoder.layers.{i}.attention.{q,k,v,out}_proj / .attention_layer_norm / .fc1 / .fc2
                      / .final_layer_norm

and the pretraining heads ``quantizer.weight_proj``, ``quantizer.codevectors`` ``(G, V, d)``,
``project_q``, ``final_proj`` (plus ``ctc_head`` for a fine-tuned model's output layer, kept
for callers that want it). Key tables: ``reference/ssl-methods.md`` §7.1; configs §7.2.
Weight-norm parameters are accepted as ``weight_g/weight_v`` and as
``parametrizations.weight.original0/1``.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import torch

from speechssl.nn.conv_encoder import WAV2VEC2_CONV_LAYERS

Tensor = torch.Tensor
_WEIGHT_NORM = [
    (r"\.parametrizations\.weight\.original0$", ".weight_g"),
    (r"\.parametrizations\.weight\.original1$", ".weight_v"),
]

_HF_RULES: list[tuple[str, str]] = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.conv."),
    (
        r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.",
        r"feature_extractor.conv_layers.\1.norm.",
    ),
    (r"^feature_projection\.(layer_norm|projection)\.", r"feature_projection.\1."),
    (r"^masked_spec_embed$", "mask_emb"),
    (r"^encoder\.pos_conv_embed\.conv\.", "encoder.pos_conv.conv."),
    (r"^encoder\.pos_conv_embed\.layers\.(\d+)\.conv\.", r"encoder.pos_conv.layers.\1.conv."),
    (r"^encoder\.layer_norm\.", "encoder.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.attention."),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.attention_layer_norm."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
]
_HF_HEAD_RULES: list[tuple[str, str]] = [
    (r"^quantizer\.weight_proj\.", "quantizer.weight_proj."),
    (r"^quantizer\.codevectors$", "quantizer.codevectors"),
    (r"^project_q\.", "project_q."),
    (r"^project_hid\.", "final_proj."),
    (r"^lm_head\.", "ctc_head."),
]

_FAIRSEQ_RULES: list[tuple[str, str]] = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.", r"feature_extractor.conv_layers.\1.norm."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.", r"feature_extractor.conv_layers.\1.norm."),
    (r"^layer_norm\.", "feature_projection.layer_norm."),
    (r"^post_extract_proj\.", "feature_projection.projection."),
    (r"^mask_emb$", "mask_emb"),
    (
        r"^encoder\.pos_conv\.0\.(weight_g|weight_v|bias|parametrizations)",
        r"encoder.pos_conv.conv.\1",
    ),
    (r"^encoder\.pos_conv\.(\d+)\.0\.", r"encoder.pos_conv.layers.\1.conv."),
    (r"^encoder\.layer_norm\.", "encoder.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.", r"encoder.layers.\1.attention."),
    (
        r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.",
        r"encoder.layers.\1.attention_layer_norm.",
    ),
    (r"^encoder\.layers\.(\d+)\.(fc1|fc2|final_layer_norm)\.", r"encoder.layers.\1.\2."),
]
_FAIRSEQ_HEAD_RULES: list[tuple[str, str]] = [
    (r"^quantizer\.weight_proj\.", "quantizer.weight_proj."),
    (r"^quantizer\.vars$", "quantizer.codevectors"),
    (r"^project_q\.", "project_q."),
    (r"^final_proj\.", "final_proj."),
    (r"^proj\.", "ctc_head."),  # w2v_encoder.proj after the prefix is stripped
]


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            for wn_pattern, wn_repl in _WEIGHT_NORM:
                new = re.sub(wn_pattern, wn_repl, new)
            return new
    return None


def _split(
    state: dict[str, Tensor],
    prefixes: tuple[str, ...],
    rules: list[tuple[str, str]],
    head_rules: list[tuple[str, str]],
    num_groups: int | None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], list[str]]:
    backbone: dict[str, Tensor] = {}
    heads: dict[str, Tensor] = {}
    unused: list[str] = []
    for key, value in state.items():
        short = key
        for prefix in prefixes:
            if short.startswith(prefix):
                short = short[len(prefix) :]
                break
        if (new := _rename(short, rules)) is not None:
            backbone[new] = value
        elif (new := _rename(short, head_rules)) is not None:
            if new == "quantizer.codevectors" and num_groups:
                value = value.reshape(num_groups, -1, value.shape[-1])
            heads[new] = value
        else:
            unused.append(key)
    plain = backbone.pop("encoder.pos_conv.conv.weight", None)
    if plain is not None:  # weight norm folded into the weight: split it again (g = ||w||)
        backbone["encoder.pos_conv.conv.weight_v"] = plain
        backbone["encoder.pos_conv.conv.weight_g"] = plain.norm(dim=(0, 1), keepdim=True)
    return backbone, heads, unused


def hf_state_dict(
    state: dict[str, Tensor], num_groups: int | None = None
) -> tuple[dict[str, Tensor], dict[str, Tensor], list[str]]:
    """HF ``Wav2Vec2Model`` / ``ForPreTraining`` / ``ForCTC`` (also HuBERT, data2vec-audio)
    weights -> ``(backbone, heads, unused keys)``. ``num_groups`` reshapes the codevectors."""
    prefixes = ("wav2vec2.", "hubert.", "data2vec_audio.")
    return _split(state, prefixes, _HF_RULES, _HF_HEAD_RULES, num_groups)


def fairseq_state_dict(
    state: dict[str, Tensor], num_groups: int | None = None
) -> tuple[dict[str, Tensor], dict[str, Tensor], list[str]]:
    """fairseq wav2vec 2.0 weights (pretrained, or fine-tuned under ``w2v_encoder.w2v_model.``)
    -> ``(backbone, heads, unused keys)``."""
    state = {
        (k.replace("w2v_encoder.proj.", "proj.") if k.startswith("w2v_encoder.proj.") else k): v
        for k, v in state.items()
    }
    return _split(
        state, ("w2v_encoder.w2v_model.",), _FAIRSEQ_RULES, _FAIRSEQ_HEAD_RULES, num_groups
    )


def to_fairseq_state_dict(
    backbone: dict[str, Tensor], heads: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """speechssl backbone (+ heads) -> fairseq wav2vec 2.0 keys (extractor norm at ``{i}.2`` for
    group mode, ``{i}.2.1`` for layer mode)."""
    layer_mode = sum(k.endswith(".norm.weight") for k in backbone) > 1
    rules = [
        (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
        (
            r"^feature_extractor\.conv_layers\.(\d+)\.norm\.",
            r"feature_extractor.conv_layers.\1.2.1."
            if layer_mode
            else r"feature_extractor.conv_layers.\1.2.",
        ),
        (r"^feature_projection\.layer_norm\.", "layer_norm."),
        (r"^feature_projection\.projection\.", "post_extract_proj."),
        (r"^encoder\.pos_conv\.conv\.", "encoder.pos_conv.0."),
        (r"^encoder\.pos_conv\.layers\.(\d+)\.conv\.", r"encoder.pos_conv.\1.0."),
        (
            r"^encoder\.layers\.(\d+)\.attention_layer_norm\.",
            r"encoder.layers.\1.self_attn_layer_norm.",
        ),
        (r"^encoder\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
        (r"^quantizer\.codevectors$", "quantizer.vars"),
        (r"^ctc_head\.", "w2v_encoder.proj."),
    ]
    out: dict[str, Tensor] = {}
    for key, value in {**backbone, **(heads or {})}.items():
        new = key
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, new)
            if n:
                break
        if new == "quantizer.vars":
            value = value.reshape(1, -1, value.shape[-1])
        out[new] = value
    return out


# ---------------------------------------------------------------------------------------------
# configs


def _require_gelu(value: Any, field: str) -> None:
    if value not in (None, "gelu"):
        raise ValueError(f"{field} is {value!r}; speechssl's wav2vec2 backbone supports gelu only")


def hf_config(hf: dict[str, Any], normalize_waveform: bool | None = None) -> dict[str, Any]:
    """HF ``Wav2Vec2Config`` / ``HubertConfig`` / ``Data2VecAudioConfig`` (``config.json``) ->
    speechssl backbone + quantizer fields (:class:`Wav2Vec2Config` names).

    Masking fields are not taken: HF's ``mask_time_prob`` default (0.05) is a fine-tuning value.
    ``normalize_waveform`` comes from the folder's ``preprocessor_config.json`` (``do_normalize``)
    when given; otherwise it follows fairseq practice: on for LayerNorm-extractor models.
    """
    _require_gelu(hf.get("hidden_act", "gelu"), "hidden_act")
    _require_gelu(hf.get("feat_extract_activation", "gelu"), "feat_extract_activation")
    if hf.get("conv_pos_batch_norm"):
        raise ValueError("HuBERT's conv_pos_batch_norm positional conv is not supported")
    dims = hf.get("conv_dim", [512] * 7)
    kernels = hf.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2])
    strides = hf.get("conv_stride", [5, 2, 2, 2, 2, 2, 2])
    norm = hf.get("feat_extract_norm", "group")
    if norm not in ("group", "layer"):
        raise ValueError(f"feat_extract_norm {norm!r} is not 'group' or 'layer'")
    out: dict[str, Any] = {
        "conv_layers": [tuple(v) for v in zip(dims, kernels, strides, strict=True)],
        "extractor_mode": norm,
        "conv_bias": bool(hf.get("conv_bias", False)),
        "normalize_waveform": (norm == "layer")
        if normalize_waveform is None
        else bool(normalize_waveform),
        "hidden_size": hf.get("hidden_size", 768),
        "num_layers": hf.get("num_hidden_layers", 12),
        "num_heads": hf.get("num_attention_heads", 12),
        "ffn_dim": hf.get("intermediate_size", 3072),
        "layer_norm_first": bool(hf.get("do_stable_layer_norm", False)),
        "layer_norm_eps": float(hf.get("layer_norm_eps", 1e-5)),
        "pos_conv_groups": hf.get("num_conv_pos_embedding_groups", 16),
        "dropout": float(hf.get("hidden_dropout", 0.1)),
        "attention_dropout": float(hf.get("attention_dropout", 0.1)),
        "activation_dropout": float(hf.get("activation_dropout", 0.0)),
        "input_dropout": float(hf.get("feat_proj_dropout", 0.0)),
        "feature_dropout": float(hf.get("feat_quantizer_dropout", 0.0)),
        "layerdrop": float(hf.get("layerdrop", 0.0)),
    }
    if hf.get("model_type") == "data2vec-audio":
        out["pos_conv_style"] = "layer_norm_stack"
        out["pos_conv_kernel"] = hf.get("conv_pos_kernel_size", 19)
        out["pos_conv_depth"] = hf.get("num_conv_pos_embeddings", 5)
    else:
        out["pos_conv_kernel"] = hf.get("num_conv_pos_embeddings", 128)
    if hf.get("model_type") == "hubert":
        out["feature_projection_layer_norm"] = bool(hf.get("feat_proj_layer_norm", True))
    if "num_codevector_groups" in hf:
        out["codebook_groups"] = hf["num_codevector_groups"]
        out["codebook_entries"] = hf.get("num_codevectors_per_group", 320)
        out["codevector_dim"] = hf.get("codevector_dim", 256)
        out["final_dim"] = hf.get("proj_codevector_dim", 256)
        out["num_negatives"] = hf.get("num_negatives", 100)
        out["logit_temperature"] = float(hf.get("contrastive_logits_temperature", 0.1))
        out["diversity_weight"] = float(hf.get("diversity_loss_weight", 0.1))
    return out


def parse_conv_layers(spec: str | list) -> list[tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers`` string, e.g. ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``,
    evaluated safely (lists/tuples of ints with ``+`` and ``*`` only)."""
    if not isinstance(spec, str):
        return [tuple(int(v) for v in t) for t in spec]

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(ev(e) for e in node.elts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            left, right = ev(node.left), ev(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(f"conv_feature_layers {spec!r}: unsupported expression")

    layers = ev(ast.parse(spec, mode="eval"))
    return [tuple(int(v) for v in t) for t in layers]


def _fairseq_model_cfg(cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model cfg of the pretrained network, task cfg)``; descends into ``w2v_args`` of a
    fine-tuned model. Accepts hydra layout (``{"model": ..., "task": ...}``) and flat args."""
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else cfg
    task = cfg.get("task") if isinstance(cfg.get("task"), dict) else cfg
    inner = model.get("w2v_args") if isinstance(model, dict) else None
    if isinstance(inner, dict):
        return _fairseq_model_cfg(inner)
    return model, task


def fairseq_model_name(cfg: dict[str, Any]) -> str | None:
    """The pretrained network's name (``wav2vec2``, ``hubert``, ``data2vec_audio``...)."""
    model, _ = _fairseq_model_cfg(cfg)
    return model.get("_name") or model.get("arch") or cfg.get("arch")


def fairseq_config(cfg: dict[str, Any], backbone: dict[str, Tensor]) -> dict[str, Any]:
    """fairseq ``cfg`` (or flat ``args``) as a plain dict -> :class:`Wav2Vec2Config` fields.
    Sizes are read from the weights (as torchaudio does); strides, heads and norms from cfg."""
    m, task = _fairseq_model_cfg(cfg)
    _require_gelu(m.get("activation_fn", "gelu"), "activation_fn")
    conv = parse_conv_layers(m.get("conv_feature_layers", WAV2VEC2_CONV_LAYERS))
    shapes = [
        backbone[f"feature_extractor.conv_layers.{i}.conv.weight"].shape for i in range(len(conv))
    ]
    conv = [(int(s[0]), int(s[2]), stride) for s, (_, _, stride) in zip(shapes, conv, strict=True)]
    hidden = int(backbone["feature_projection.projection.weight"].shape[0])
    num_layers = 1 + max(int(k.split(".")[2]) for k in backbone if k.startswith("encoder.layers."))
    # the weights say which extractor norm: LayerNorm in every block, or GroupNorm in block 0
    mode = "layer" if "feature_extractor.conv_layers.1.norm.weight" in backbone else "group"
    out: dict[str, Any] = {
        "conv_layers": conv,
        "extractor_mode": mode,
        "conv_bias": "feature_extractor.conv_layers.0.conv.bias" in backbone,
        "normalize_waveform": bool(task.get("normalize", False)),
        "feature_grad_mult": float(m.get("feature_grad_mult", 0.1)),
        "hidden_size": hidden,
        "num_layers": num_layers,
        "num_heads": int(m.get("encoder_attention_heads", max(1, hidden // 64))),
        "ffn_dim": int(backbone["encoder.layers.0.fc1.weight"].shape[0]),
        "layer_norm_first": bool(m.get("layer_norm_first", False)),
        "dropout": float(m.get("dropout", 0.1)),
        "attention_dropout": float(m.get("attention_dropout", 0.1)),
        "activation_dropout": float(m.get("activation_dropout", 0.0)),
        "input_dropout": float(m.get("dropout_input", 0.0)),
        "feature_dropout": float(m.get("dropout_features", 0.0)),
        "layerdrop": float(m.get("encoder_layerdrop", 0.0)),
    }
    if "encoder.pos_conv.layers.0.conv.weight" in backbone:
        weight = backbone["encoder.pos_conv.layers.0.conv.weight"]
        out["pos_conv_style"] = "layer_norm_stack"
        out["pos_conv_depth"] = 1 + max(
            int(k.split(".")[3]) for k in backbone if k.startswith("encoder.pos_conv.layers.")
        )
        out["pos_conv_kernel"] = int(weight.shape[2])
        out["pos_conv_groups"] = hidden // int(weight.shape[1])
    else:
        weight_v = backbone["encoder.pos_conv.conv.weight_v"]
        out["pos_conv_kernel"] = int(weight_v.shape[2])
        out["pos_conv_groups"] = hidden // int(weight_v.shape[1])
    for ours, theirs, cast in [
        ("mask_prob", "mask_prob", float),
        ("mask_length", "mask_length", int),
        ("require_same_masks", "require_same_masks", bool),
        ("mask_dropout", "mask_dropout", float),
        ("mask_channel_prob", "mask_channel_prob", float),
        ("mask_channel_length", "mask_channel_length", int),
        ("codebook_entries", "latent_vars", int),
        ("codebook_groups", "latent_groups", int),
        ("codevector_dim", "latent_dim", int),
        ("final_dim", "final_dim", int),
        ("logit_temperature", "logit_temp", float),
        ("num_negatives", "num_negatives", int),
        ("cross_sample_negatives", "cross_sample_negatives", int),
        ("codebook_negatives", "codebook_negatives", int),
        ("codebook_combine_groups", "combine_groups", bool),
    ]:
        if m.get(theirs) is not None:
            out[ours] = cast(m[theirs])
    if m.get("latent_temp") is not None:
        out["gumbel_temperature"] = tuple(float(v) for v in m["latent_temp"])
    weights = (cfg.get("criterion") or {}).get("loss_weights") if "criterion" in cfg else None
    if weights:
        out["diversity_weight"] = float(weights[0])
        out["feature_penalty_weight"] = float(weights[1]) if len(weights) > 1 else 0.0
    return out


def to_fairseq_config(config: dict[str, Any]) -> dict[str, Any]:
    """speechssl wav2vec2 config -> a fairseq hydra-style ``cfg`` plain dict."""
    conv = " + ".join(f"[{tuple(spec)}]" for spec in config["conv_layers"])
    model = {
        "_name": "wav2vec2",
        "extractor_mode": "default" if config["extractor_mode"] == "group" else "layer_norm",
        "conv_feature_layers": conv,
        "conv_bias": config["conv_bias"],
        "feature_grad_mult": config["feature_grad_mult"],
        "encoder_embed_dim": config["hidden_size"],
        "encoder_layers": config["num_layers"],
        "encoder_attention_heads": config["num_heads"],
        "encoder_ffn_embed_dim": config["ffn_dim"],
        "activation_fn": "gelu",
        "layer_norm_first": config["layer_norm_first"],
        "conv_pos": config["pos_conv_kernel"],
        "conv_pos_groups": config["pos_conv_groups"],
        "dropout": config["dropout"],
        "attention_dropout": config["attention_dropout"],
        "activation_dropout": config["activation_dropout"],
        "dropout_input": config["input_dropout"],
        "dropout_features": config["feature_dropout"],
        "encoder_layerdrop": config["layerdrop"],
        "mask_prob": config["mask_prob"],
        "mask_length": config["mask_length"],
        "require_same_masks": config["require_same_masks"],
        "mask_channel_prob": config["mask_channel_prob"],
        "mask_channel_length": config["mask_channel_length"],
        "latent_vars": config["codebook_entries"],
        "latent_groups": config["codebook_groups"],
        "latent_dim": config["codevector_dim"],
        "final_dim": config["final_dim"],
        "latent_temp": list(config["gumbel_temperature"]),
        "logit_temp": config["logit_temperature"],
        "num_negatives": config["num_negatives"],
        "cross_sample_negatives": config["cross_sample_negatives"],
        "codebook_negatives": config["codebook_negatives"],
        "combine_groups": config["codebook_combine_groups"],
    }
    return {
        "model": model,
        "task": {"_name": "audio_pretraining", "normalize": config["normalize_waveform"]},
        "criterion": {
            "_name": "wav2vec",
            "infonce": True,
            "loss_weights": [config["diversity_weight"], config["feature_penalty_weight"]],
        },
    }


def do_normalize(folder: Path) -> bool | None:
    """``do_normalize`` of an HF folder's ``preprocessor_config.json`` (None: no such file)."""
    pre = folder / "preprocessor_config.json"
    return json.loads(pre.read_text()).get("do_normalize") if pre.is_file() else None


def wav2vec2_from_hf(hf: dict, state: dict, folder: Path) -> tuple[dict, dict]:
    """HF ``config.json`` + weights of ``Wav2Vec2Model``/``ForPreTraining``/``ForCTC`` ->
    (config, backbone)."""
    backbone, _, _ = hf_state_dict(state)
    return hf_config(hf, do_normalize(folder)), backbone


def wav2vec2_from_fairseq(cfg: dict, state: dict) -> tuple[dict, dict]:
    """fairseq ``wav2vec2`` / ``wav2vec_ctc`` (cfg as a plain dict) -> (config, backbone)."""
    backbone, _, _ = fairseq_state_dict(state)
    return fairseq_config(cfg, backbone), backbone
