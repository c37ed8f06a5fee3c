"""`speechssl pretrain` / `export` end to end with real SSL models (small dims) and the Trainer:
exact resume of a wav2vec2 run, export to an upstream, HuBERT from k-means labels, data2vec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speechssl.cli import main
from speechssl.train import load_checkpoint
from speechssl.upstream import load_upstream

SMALL = [
    "preset=tiny",
    "model.conv_layers=[[32,10,5],[32,3,2],[32,3,2],[32,2,2],[32,2,2]]",
    "model.hidden_size=32",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.ffn_dim=64",
    "model.pos_conv_kernel=8",
    "model.pos_conv_groups=2",
    "trainer.max_batch_seconds=3.0",
    "trainer.lr=1.0e-3",
    "trainer.warmup_updates=2",
    "trainer.save_every=2",
    "trainer.log_every=1",
    "trainer.progress_bar=false",
    "data.max_samples=16000",
]
W2V = ["model.codebook_entries=16", "model.final_dim=16", "model.num_negatives=5"]


def _pretrain(data_dir: Path, exp: Path, method: str, extra: list[str], *args: str) -> None:
    sets = [x for kv in SMALL + extra for x in ("--set", kv)]
    argv = ["pretrain", "--method", method, "--data", str(data_dir), "--exp", str(exp)]
    assert main(argv + list(args) + sets) == 0


def _params(exp: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(exp / "checkpoints" / "last.pt")["model"]


def test_wav2vec2_resume_is_exact_and_exports(data_dir, tmp_path):
    steps = ["trainer.max_updates=6"]
    _pretrain(data_dir, tmp_path / "full", "wav2vec2", W2V + steps)
    _pretrain(data_dir, tmp_path / "cut", "wav2vec2", W2V + steps + ["trainer.stop_after=3"])
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["num_updates"] == 3
    _pretrain(data_dir, tmp_path / "cut", "wav2vec2", W2V + steps)  # resumes from update 3
    full, cut = _params(tmp_path / "full"), _params(tmp_path / "cut")
    assert full.keys() == cut.keys()
    worst = max(float((full[k].float() - cut[k].float()).abs().max()) for k in full)
    assert worst <= 1e-6, worst
    log = [json.loads(x) for x in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    assert [r["num_updates"] for r in log if "loss" in r] == list(range(1, 7))

    out = tmp_path / "upstream.pt"
    assert main(["export", str(tmp_path / "full" / "checkpoints" / "last.pt"), str(out)]) == 0
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert saved["format"] == "speechssl-upstream-v1" and saved["method"] == "wav2vec2"
    assert not any(k.startswith(("quantizer", "project_q", "final_proj")) for k in saved["model"])
    upstream = load_upstream(out).eval()
    wavs = torch.randn(2, 8000) * 0.1
    with torch.no_grad():
        res = upstream(wavs, torch.tensor([8000, 6000]))
    assert res.stride == 80 and len(res.hidden_states) == 3  # 5*2*2*2*2; input + 2 layers
    assert res.hidden_states[-1].shape[-1] == 32 and res.lengths.tolist()[1] < res.lengths[0]


def test_hubert_from_kmeans_labels(data_dir, tmp_path):
    km, labels = tmp_path / "km", tmp_path / "labels"
    assert main(["kmeans", "fit", "--n-clusters", "8", "--percent", "1.0", "--min-utts", "1",
                 "--n-init", "1", str(data_dir), str(km)]) == 0  # fmt: skip
    assert main(["kmeans", "dump", "--name", "train", str(data_dir), str(km), str(labels)]) == 0
    assert main(["kmeans", "merge", "--name", "train", "--nj", "1", str(km), str(labels)]) == 0
    exp = tmp_path / "hubert"
    _pretrain(
        data_dir, exp, "hubert", ["trainer.max_updates=3"], "--labels", str(labels / "train.km")
    )
    cfg = load_checkpoint(exp / "checkpoints" / "last.pt")["config"]
    assert cfg["method"] == "hubert" and cfg["model"]["num_classes"] == 8
    assert cfg["model"]["label_rate"] == 100.0  # from labels.yaml (MFCC frames)
    # HuBERT without labels is refused with a clear message
    assert main(["pretrain", "--method", "hubert", "--data", str(data_dir),
                 "--exp", str(tmp_path / "nolabels"), "--set", "preset=tiny"]) == 1  # fmt: skip


def test_data2vec_trains(data_dir, tmp_path):
    exp = tmp_path / "d2v"
    _pretrain(data_dir, exp, "data2vec", ["trainer.max_updates=3", "model.average_top_k_layers=2"])
    assert load_checkpoint(exp / "checkpoints" / "last.pt")["num_updates"] == 3
    assert load_upstream(exp / "checkpoints" / "last.pt").num_layers == 2


def test_bad_config_value_is_one_error_line(data_dir, tmp_path, capsys):
    rc = main(["pretrain", "--data", str(data_dir), "--exp", str(tmp_path / "x"),
               "--set", "trainer.lr=fast"])  # fmt: skip
    assert rc == 1
    assert "lr" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["nope"])
def test_unknown_method(data_dir, tmp_path, capsys, method):
    rc = main(["pretrain", "--method", method, "--data", str(data_dir), "--exp", str(tmp_path)])
    assert rc == 1 and "unknown SSL method" in capsys.readouterr().err
