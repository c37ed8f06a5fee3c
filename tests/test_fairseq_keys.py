"""fairseq wav2vec 2.0 import against a checkpoint written out by hand with fairseq's own key
names and config fields (``../shared/reference/ssl-methods.md`` §7; fairseq ``Wav2Vec2Model``),
not produced by the project's inverse mapping: a mapping error made the same way in both
directions (a swapped key, a misread field) fails here."""

from __future__ import annotations

import torch

from speechssl.upstream import load_upstream

D, C, FFN, K, GROUPS = 48, 32, 96, 16, 4  # width, conv channels, FFN, pos-conv kernel, groups


def fairseq_checkpoint() -> tuple[dict[str, torch.Tensor], dict]:
    """fairseq's keys -> distinct random tensors; cfg as fairseq's hydra dict."""
    g = torch.Generator().manual_seed(0)
    shapes = {
        "feature_extractor.conv_layers.0.0.weight": (C, 1, 10),
        "feature_extractor.conv_layers.0.2.weight": (C,),  # GroupNorm of the default mode
        "feature_extractor.conv_layers.0.2.bias": (C,),
        "feature_extractor.conv_layers.1.0.weight": (C, C, 3),
        "feature_extractor.conv_layers.2.0.weight": (C, C, 2),
        "layer_norm.weight": (C,),
        "layer_norm.bias": (C,),
        "post_extract_proj.weight": (D, C),
        "post_extract_proj.bias": (D,),
        "mask_emb": (D,),
        "encoder.pos_conv.0.bias": (D,),
        "encoder.pos_conv.0.weight_g": (1, 1, K),
        "encoder.pos_conv.0.weight_v": (D, D // GROUPS, K),
        "encoder.layer_norm.weight": (D,),
        "encoder.layer_norm.bias": (D,),
        "quantizer.vars": (1, 2 * 8, 8),  # pretraining heads: not in an upstream
        "quantizer.weight_proj.weight": (16, C),
        "quantizer.weight_proj.bias": (16,),
        "project_q.weight": (16, 16),
        "project_q.bias": (16,),
        "final_proj.weight": (16, D),
        "final_proj.bias": (16,),
    }
    for i in range(2):
        p = f"encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{name}.weight"] = (D, D)
            shapes[p + f"self_attn.{name}.bias"] = (D,)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            shapes[p + f"{norm}.weight"] = (D,)
            shapes[p + f"{norm}.bias"] = (D,)
        shapes[p + "fc1.weight"], shapes[p + "fc1.bias"] = (FFN, D), (FFN,)
        shapes[p + "fc2.weight"], shapes[p + "fc2.bias"] = (D, FFN), (D,)
    state = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    state["encoder.pos_conv.0.weight_g"] = state["encoder.pos_conv.0.weight_g"].abs() + 0.5
    cfg = {
        "model": {
            "_name": "wav2vec2",
            "extractor_mode": "default",
            "conv_feature_layers": f"[({C}, 10, 5)] + [({C}, 3, 2)] + [({C}, 2, 2)]",
            "conv_bias": False,
            "encoder_embed_dim": D,
            "encoder_layers": 2,
            "encoder_attention_heads": 4,
            "encoder_ffn_embed_dim": FFN,
            "activation_fn": "gelu",
            "layer_norm_first": False,
            "conv_pos": K,
            "conv_pos_groups": GROUPS,
            "dropout": 0.1,
            "attention_dropout": 0.1,
            "activation_dropout": 0.0,
            "encoder_layerdrop": 0.05,
            "dropout_input": 0.1,
            "dropout_features": 0.1,
            "mask_prob": 0.65,
            "latent_vars": 8,
            "latent_groups": 2,
            "final_dim": 16,
        },
        "task": {"_name": "audio_pretraining", "normalize": True},
    }
    return state, cfg


# fairseq key -> the backbone key it must land in, written out here (not from convert.py)
EXPECTED = {
    "feature_extractor.conv_layers.0.0.weight": "feature_extractor.conv_layers.0.conv.weight",
    "feature_extractor.conv_layers.0.2.weight": "feature_extractor.conv_layers.0.norm.weight",
    "feature_extractor.conv_layers.0.2.bias": "feature_extractor.conv_layers.0.norm.bias",
    "feature_extractor.conv_layers.1.0.weight": "feature_extractor.conv_layers.1.conv.weight",
    "feature_extractor.conv_layers.2.0.weight": "feature_extractor.conv_layers.2.conv.weight",
    "layer_norm.weight": "feature_projection.layer_norm.weight",
    "layer_norm.bias": "feature_projection.layer_norm.bias",
    "post_extract_proj.weight": "feature_projection.projection.weight",
    "post_extract_proj.bias": "feature_projection.projection.bias",
    "mask_emb": "mask_emb",
    "encoder.pos_conv.0.bias": "encoder.pos_conv.conv.bias",
    "encoder.pos_conv.0.weight_g": "encoder.pos_conv.conv.weight_g",
    "encoder.pos_conv.0.weight_v": "encoder.pos_conv.conv.weight_v",
    "encoder.layer_norm.weight": "encoder.layer_norm.weight",
    "encoder.layer_norm.bias": "encoder.layer_norm.bias",
}
for _i in range(2):
    _f, _o = f"encoder.layers.{_i}.", f"encoder.layers.{_i}."
    for _name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        for _t in ("weight", "bias"):
            EXPECTED[f"{_f}self_attn.{_name}.{_t}"] = f"{_o}attention.{_name}.{_t}"
    for _t in ("weight", "bias"):
        EXPECTED[f"{_f}self_attn_layer_norm.{_t}"] = f"{_o}attention_layer_norm.{_t}"
        EXPECTED[f"{_f}final_layer_norm.{_t}"] = f"{_o}final_layer_norm.{_t}"
        EXPECTED[f"{_f}fc1.{_t}"] = f"{_o}fc1.{_t}"
        EXPECTED[f"{_f}fc2.{_t}"] = f"{_o}fc2.{_t}"


def test_hand_written_fairseq_checkpoint_lands_key_by_key(tmp_path):
    state, cfg = fairseq_checkpoint()
    torch.save({"model": state, "cfg": cfg}, tmp_path / "fairseq.pt")
    upstream = load_upstream(tmp_path / "fairseq.pt")
    ours = upstream.model.state_dict()
    assert set(ours) == set(EXPECTED.values())  # every backbone tensor from one fairseq key
    for theirs, mine in EXPECTED.items():
        assert torch.equal(ours[mine], state[theirs]), (theirs, mine)


def test_hand_written_fairseq_config_fields_are_read():
    state, cfg = fairseq_checkpoint()
    from speechssl.ssl.convert import fairseq_config, fairseq_state_dict

    got = fairseq_config(cfg, fairseq_state_dict(state)[0])  # sizes are read from the weights
    assert got["conv_layers"] == [(C, 10, 5), (C, 3, 2), (C, 2, 2)]
    assert (got["hidden_size"], got["num_layers"], got["num_heads"], got["ffn_dim"]) == (
        D, 2, 4, FFN
    )  # fmt: skip
    assert (got["pos_conv_kernel"], got["pos_conv_groups"]) == (K, GROUPS)
    assert got["extractor_mode"] == "group" and got["conv_bias"] is False
    assert got["normalize_waveform"] is True and got["layer_norm_first"] is False
    assert (got["dropout"], got["layerdrop"], got["input_dropout"]) == (0.1, 0.05, 0.1)
    assert (got["codebook_entries"], got["codebook_groups"], got["final_dim"]) == (8, 2, 16)
