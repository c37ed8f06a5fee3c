"""Hugging Face and fairseq wav2vec 2.0 checkpoints load as upstreams with identical outputs."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch
from conftest import require_module

from speechssl.nn import layer_norm_waveform
from speechssl.ssl.convert import (
    hf_config,
    hf_state_dict,
    parse_conv_layers,
    to_fairseq_config,
    to_fairseq_state_dict,
)
from speechssl.ssl.wav2vec2 import Wav2Vec2Pretraining, config_from_dict
from speechssl.upstream import SSLUpstream, UpstreamError, load_upstream

transformers = require_module("transformers")
require_module("safetensors")

VARIANTS = [("group", False), ("layer", False), ("group", True), ("layer", True)]


def hf_config_for(norm: str, stable: bool):
    return transformers.Wav2Vec2Config(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        conv_dim=(32, 32, 32),
        conv_kernel=(10, 3, 2),
        conv_stride=(5, 2, 2),
        conv_bias=stable,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm,
        do_stable_layer_norm=stable,
        num_codevectors_per_group=8,
        num_codevector_groups=2,
        codevector_dim=24,
        proj_codevector_dim=20,
    )


def saved(model, folder):
    model.save_pretrained(folder)
    return folder


def waveforms(lengths=(4000, 4000), seed=0):
    g = torch.Generator().manual_seed(seed)
    wavs = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wavs[i, :n] = 0.1 * torch.randn(n, generator=g)
    return wavs, torch.tensor(lengths)


def hf_reference(hf_model, upstream, wavs, lengths, attention_mask=None):
    """HF hidden states on the input our upstream sees (it layer-norms the waveform itself when
    its config says so). Transformers 5 leaves the final LayerNorm of a stable-LN (pre-LN) model
    out of ``hidden_states[-1]``; speechssl's last hidden state is the encoder output *with* it
    (as fairseq's encoder output, s3prl/SUPERB and transformers 4), i.e. ``last_hidden_state``."""
    inputs = wavs
    if upstream.model.cfg.normalize_waveform:
        inputs = layer_norm_waveform(wavs, lengths)
    out = hf_model(inputs, attention_mask=attention_mask, output_hidden_states=True)
    states = list(out.hidden_states)
    if hf_model.config.do_stable_layer_norm:
        states[-1] = out.last_hidden_state
    return states


def assert_same_states(ours, theirs, lengths=None, atol=1e-4):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.shape == b.shape, (i, a.shape, b.shape)
        if lengths is None:
            diff = (a - b).abs().max()
        else:
            diff = max((a[j, :n] - b[j, :n]).abs().max() for j, n in enumerate(lengths.tolist()))
        assert diff <= atol, f"hidden state {i}: max abs diff {float(diff):.2e}"


@pytest.mark.parametrize(("norm", "stable"), VARIANTS)
def test_hf_wav2vec2_model_matches(tmp_path, norm, stable):
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2Model(hf_config_for(norm, stable)).eval()
    upstream = load_upstream(saved(hf, tmp_path / "hf"))
    assert isinstance(upstream, SSLUpstream)
    assert upstream.stride == 20 and upstream.num_layers == 2 and upstream.hidden_size == 48
    # fairseq practice without a preprocessor_config.json: LN-extractor models normalise
    assert upstream.model.cfg.normalize_waveform == (norm == "layer")
    wavs, lengths = waveforms()
    with torch.no_grad():
        ours = upstream(wavs, lengths)
        theirs = hf_reference(hf, upstream, wavs, lengths)
    assert ours.stride == 20 and ours.lengths.tolist() == [199, 199]
    assert_same_states(ours.hidden_states, theirs)


@pytest.mark.parametrize("stable", [False, True])
def test_hf_padded_batch_matches_on_valid_frames(tmp_path, stable):
    """LayerNorm extractor: padding changes nothing, with HF's attention_mask and our lengths."""
    torch.manual_seed(1)
    hf = transformers.Wav2Vec2Model(hf_config_for("layer", stable)).eval()
    upstream = load_upstream(saved(hf, tmp_path / "hf"))
    wavs, lengths = waveforms((4000, 2600))
    mask = torch.arange(wavs.shape[1])[None, :] < lengths[:, None]
    with torch.no_grad():
        ours = upstream(wavs, lengths)
        theirs = hf_reference(hf, upstream, wavs, lengths, attention_mask=mask.long())
    assert ours.lengths.tolist() == [199, 129]
    assert_same_states(ours.hidden_states, theirs, ours.lengths)


def test_preprocessor_config_decides_waveform_normalisation(tmp_path):
    hf = transformers.Wav2Vec2Model(hf_config_for("layer", True))
    folder = saved(hf, tmp_path / "hf")
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    assert load_upstream(folder).model.cfg.normalize_waveform is False


@pytest.mark.parametrize(("norm", "stable"), VARIANTS)
@pytest.mark.parametrize("weight_norm_keys", ["weight_g", "parametrizations"])
def test_fairseq_state_dict_matches(tmp_path, norm, stable, weight_norm_keys):
    torch.manual_seed(2)
    hf = transformers.Wav2Vec2Model(hf_config_for(norm, stable)).eval()
    via_hf = load_upstream(saved(hf, tmp_path / "hf"))
    config = dataclasses.asdict(via_hf.model.cfg)
    state = to_fairseq_state_dict(via_hf.model.state_dict())
    assert "encoder.pos_conv.0.weight_g" in state and "post_extract_proj.weight" in state
    assert ("feature_extractor.conv_layers.1.2.1.weight" in state) == (norm == "layer")
    if weight_norm_keys == "parametrizations":
        for suffix, new in [("weight_g", "original0"), ("weight_v", "original1")]:
            value = state.pop(f"encoder.pos_conv.0.{suffix}")
            state[f"encoder.pos_conv.0.parametrizations.weight.{new}"] = value
    path = tmp_path / "fairseq.pt"
    torch.save({"model": state, "cfg": to_fairseq_config(config)}, path)
    upstream = load_upstream(path)
    assert upstream.model.cfg.normalize_waveform == via_hf.model.cfg.normalize_waveform
    wavs, lengths = waveforms()
    with torch.no_grad():
        ours = upstream(wavs, lengths)
        theirs = hf_reference(hf, upstream, wavs, lengths)
    assert_same_states(ours.hidden_states, theirs)


def test_fairseq_finetuned_layout_and_flat_args(tmp_path):
    """A fine-tuned checkpoint: weights under ``w2v_encoder.w2v_model.``, CTC output layer
    ``w2v_encoder.proj``, pretraining cfg inside ``w2v_args``; and legacy flat ``args``."""
    torch.manual_seed(3)
    hf = transformers.Wav2Vec2Model(hf_config_for("group", False)).eval()
    via_hf = load_upstream(saved(hf, tmp_path / "hf"))
    inner = to_fairseq_config(dataclasses.asdict(via_hf.model.cfg))
    state = {
        f"w2v_encoder.w2v_model.{k}": v
        for k, v in to_fairseq_state_dict(via_hf.model.state_dict()).items()
    }
    state["w2v_encoder.proj.weight"] = torch.randn(30, 48)
    state["w2v_encoder.proj.bias"] = torch.zeros(30)
    finetuned = {"model": {"_name": "wav2vec_ctc", "w2v_args": inner}, "task": {}}
    torch.save({"model": state, "cfg": finetuned}, tmp_path / "ctc.pt")
    flat = {**inner["model"], "arch": "wav2vec2", "normalize": False}
    del flat["_name"]
    plain = to_fairseq_state_dict(via_hf.model.state_dict())
    torch.save({"model": plain, "args": flat}, tmp_path / "args.pt")
    wavs, lengths = waveforms()
    with torch.no_grad():
        theirs = hf_reference(hf, via_hf, wavs, lengths)
        for name in ("ctc.pt", "args.pt"):
            upstream = load_upstream(tmp_path / name)
            assert_same_states(upstream(wavs, lengths).hidden_states, theirs)


def test_hf_pretraining_and_ctc_folders(tmp_path):
    torch.manual_seed(4)
    cfg = hf_config_for("group", False)
    pre = transformers.Wav2Vec2ForPreTraining(cfg).eval()
    ctc = transformers.Wav2Vec2ForCTC(
        transformers.Wav2Vec2Config(**{**cfg.to_dict(), "vocab_size": 12})
    ).eval()
    wavs, lengths = waveforms()
    for name, model, base in [("pre", pre, pre.wav2vec2), ("ctc", ctc, ctc.wav2vec2)]:
        upstream = load_upstream(saved(model, tmp_path / name))
        with torch.no_grad():
            assert_same_states(
                upstream(wavs, lengths).hidden_states, hf_reference(base, upstream, wavs, lengths)
            )
    # the pretraining heads map onto Wav2Vec2Pretraining: same quantized targets and projections
    from safetensors.torch import load_file

    hf_json = json.loads((tmp_path / "pre" / "config.json").read_text())
    ours = Wav2Vec2Pretraining(
        config_from_dict({**hf_config(hf_json), "normalize_waveform": False})
    )
    backbone, heads, unused = hf_state_dict(load_file(tmp_path / "pre" / "model.safetensors"), 2)
    assert set(heads) == {
        "quantizer.weight_proj.weight",
        "quantizer.weight_proj.bias",
        "quantizer.codevectors",
        "project_q.weight",
        "project_q.bias",
        "final_proj.weight",
        "final_proj.bias",
    }
    assert not unused, unused
    ours.load_state_dict({**{f"backbone.{k}": v for k, v in backbone.items()}, **heads})
    ours.eval()
    with torch.no_grad():
        feats = torch.randn(2, 7, 32)
        normed = pre.wav2vec2.feature_projection.layer_norm(feats)
        hf_q, _ = pre.quantizer(normed)
        our_q = ours.quantizer(normed.reshape(14, 32)).quantized.view(2, 7, -1)
        assert torch.allclose(pre.project_q(hf_q), ours.project_q(our_q), atol=1e-5)
        h = torch.randn(2, 7, 48)
        assert torch.allclose(pre.project_hid(h), ours.final_proj(h))
    _, ctc_heads, _ = hf_state_dict(load_file(tmp_path / "ctc" / "model.safetensors"))
    assert ctc_heads["ctc_head.weight"].shape == (12, 48)


def test_pickled_fairseq_checkpoint_gets_a_conversion_hint(tmp_path):
    path = tmp_path / "wav2vec_small.pt"
    torch.save({"model": {}, "args": argparse.Namespace(arch="wav2vec2")}, path)
    with pytest.raises(UpstreamError, match=r"weights_only=True.*\n.*OmegaConf"):
        load_upstream(path)
    with pytest.raises(UpstreamError, match="no such file or folder"):
        load_upstream(tmp_path / "missing")
    torch.save({"something": 1}, tmp_path / "odd.pt")
    with pytest.raises(UpstreamError, match="top-level keys"):
        load_upstream(tmp_path / "odd.pt")


def test_parse_conv_layers():
    spec = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
    layers = parse_conv_layers(spec)
    assert layers == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    with pytest.raises(ValueError, match="unsupported expression"):
        parse_conv_layers("__import__('os').system('true')")
