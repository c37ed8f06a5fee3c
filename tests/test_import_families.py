"""HuBERT and data2vec imports: randomly initialised HF models (saved with save_pretrained) and
fairseq-format state dicts give every hidden state within 1e-4 of HF's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import require_module

transformers = require_module("transformers")

from speechssl.nn.conv_encoder import layer_norm_waveform  # noqa: E402
from speechssl.ssl.convert_families import data2vec_to_fairseq, hubert_to_fairseq  # noqa: E402
from speechssl.upstream import UpstreamError, load_upstream  # noqa: E402

ATOL = 1e-4
COMMON = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(32, 32, 32),
    conv_kernel=(10, 3, 2),
    conv_stride=(5, 2, 2),
)


def _wavs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    wavs = 0.1 * torch.randn(2, 4000, generator=g) + 0.05
    return wavs, torch.tensor([4000, 4000])


def _hf_hidden(model, wavs: torch.Tensor) -> list[torch.Tensor]:
    """HF hidden states, the last one being ``last_hidden_state``: for pre-LN (stable) models
    transformers 5.x records ``hidden_states[-1]`` before the encoder's final LayerNorm while
    ``last_hidden_state`` (and speechssl's last state, and HF 4.x's) has it."""
    with torch.no_grad():
        out = model.base_model(wavs, output_hidden_states=True)  # ForCTC: the inner model
    return [*out.hidden_states[:-1], out.last_hidden_state]


def _assert_close(ours, theirs) -> None:
    assert len(ours.hidden_states) == len(theirs)
    for i, (a, b) in enumerate(zip(ours.hidden_states, theirs, strict=True)):
        assert a.shape == b.shape, i
        err = (a - b).abs().max().item()
        assert err < ATOL, f"hidden state {i}: max abs error {err:.2e}"


def _save_hf(model, folder: Path) -> Path:
    torch.manual_seed(1)
    model.eval().save_pretrained(folder)
    return folder


def _fairseq_file(upstream, to_fairseq, path: Path) -> Path:
    model = upstream.model
    torch.save(to_fairseq(model.cfg, model.state_dict()), path)
    return path


@pytest.mark.parametrize("stable", [False, True], ids=["post_ln", "stable_ln"])
def test_hubert_hf_and_fairseq(tmp_path: Path, stable: bool):
    cfg = transformers.HubertConfig(
        **COMMON,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=stable,
        feat_extract_norm="layer" if stable else "group",
        conv_bias=stable,
    )
    torch.manual_seed(0)
    hf = transformers.HubertModel(cfg).eval()
    folder = _save_hf(hf, tmp_path / "hf")
    wavs, lengths = _wavs()
    expected = _hf_hidden(hf, wavs)
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    upstream = load_upstream(folder)
    assert upstream.method == "hubert" and upstream.stride == 20
    with torch.no_grad():
        _assert_close(upstream(wavs, lengths), expected)
        fs = load_upstream(_fairseq_file(upstream, hubert_to_fairseq, tmp_path / "fs.pt"))
        assert fs.method == "hubert"
        _assert_close(fs(wavs, lengths), expected)


def test_hubert_for_ctc(tmp_path: Path):
    cfg = transformers.HubertConfig(
        **COMMON, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=12
    )
    torch.manual_seed(0)
    hf = transformers.HubertForCTC(cfg).eval()
    folder = _save_hf(hf, tmp_path / "hf")
    wavs, lengths = _wavs()
    with torch.no_grad():
        expected = _hf_hidden(hf, wavs)
        _assert_close(load_upstream(folder)(wavs, lengths), expected)


def test_hubert_without_feature_projection_norm(tmp_path: Path):
    cfg = transformers.HubertConfig(
        **COMMON,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_proj_layer_norm=False,
    )
    torch.manual_seed(0)
    hf = transformers.HubertModel(cfg).eval()
    folder = _save_hf(hf, tmp_path / "hf")
    wavs, lengths = _wavs()
    with torch.no_grad():
        _assert_close(load_upstream(folder)(wavs, lengths), _hf_hidden(hf, wavs))


def test_hubert_batch_norm_pos_conv_refused(tmp_path: Path):
    cfg = transformers.HubertConfig(
        **COMMON,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        conv_pos_batch_norm=True,
    )
    folder = _save_hf(transformers.HubertModel(cfg), tmp_path / "hf")
    with pytest.raises(UpstreamError, match="conv_pos_batch_norm"):
        load_upstream(folder)


@pytest.mark.parametrize("ctc", [False, True], ids=["model", "for_ctc"])
def test_data2vec_hf_and_fairseq(tmp_path: Path, ctc: bool):
    cfg = transformers.Data2VecAudioConfig(
        **COMMON,
        conv_pos_kernel_size=5,
        num_conv_pos_embeddings=3,
        num_conv_pos_embedding_groups=2,
        vocab_size=12,
    )
    torch.manual_seed(0)
    cls = transformers.Data2VecAudioForCTC if ctc else transformers.Data2VecAudioModel
    hf = cls(cfg).eval()
    folder = _save_hf(hf, tmp_path / "hf")
    wavs, lengths = _wavs()
    # HF models get the waveform normalised by their feature extractor; ours normalise inside
    expected = _hf_hidden(hf, layer_norm_waveform(wavs, lengths))
    upstream = load_upstream(folder)
    assert upstream.method == "data2vec"
    cfg_ours = upstream.model.cfg
    assert (cfg_ours.extractor_mode, cfg_ours.pos_conv_depth, cfg_ours.pos_conv_kernel) == (
        "layer",
        3,
        5,
    )
    assert cfg_ours.normalize_waveform
    with torch.no_grad():
        _assert_close(upstream(wavs, lengths), expected)
        fs_file = _fairseq_file(upstream, data2vec_to_fairseq, tmp_path / "fs.pt")
        fs = load_upstream(fs_file)
        assert fs.method == "data2vec"
        _assert_close(fs(wavs, lengths), expected)


def test_fairseq_fine_tuned_prefix_and_teacher_skipped(tmp_path: Path):
    cfg = transformers.Data2VecAudioConfig(
        **COMMON, conv_pos_kernel_size=5, num_conv_pos_embeddings=2, num_conv_pos_embedding_groups=2
    )
    torch.manual_seed(0)
    hf = transformers.Data2VecAudioModel(cfg).eval()
    upstream = load_upstream(_save_hf(hf, tmp_path / "hf"))
    exported = data2vec_to_fairseq(upstream.model.cfg, upstream.model.state_dict())
    state = {f"w2v_encoder.w2v_model.{k}": v for k, v in exported["model"].items()}
    state["w2v_encoder.proj.weight"] = torch.zeros(12, 32)
    state["w2v_encoder.w2v_model._ema"] = {"encoder.layers.0.fc1.weight": torch.zeros(64, 32)}
    cfg_ft = {"model": {"_name": "wav2vec_ctc", "w2v_args": exported["cfg"]}, "task": {}}
    torch.save({"model": state, "cfg": cfg_ft}, tmp_path / "ft.pt")
    wavs, lengths = _wavs()
    with torch.no_grad():
        expected = _hf_hidden(hf, layer_norm_waveform(wavs, lengths))
        _assert_close(load_upstream(tmp_path / "ft.pt")(wavs, lengths), expected)
