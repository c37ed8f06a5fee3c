"""The SUPERB runner end to end: lr sweep x seeds, dev-based lr selection, resumable runs, the
merged report, the command line and its errors, and an HF model folder as the upstream."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import sys

import matplotlib.image
import pytest
import torch
from conftest import require_module

from speechssl.cli import command_main
from speechssl.superb.runner import SuperbConfig, lr_grid, run_superb, upstream_name
from speechssl.upstream import load_upstream

main = command_main("superb")  # speechssl superb ARGV


def run_results(task_dir):
    return [json.loads(p.read_text()) for p in sorted(task_dir.glob("lr*/seed*/result.json"))]


def test_lr_grid_and_upstream_names(tmp_path):
    assert lr_grid(1e-4) == [1e-5, 3.16e-5, 1e-4, 3.16e-4, 1e-3]
    assert upstream_name("fbank") == "fbank"
    (tmp_path / "ssl" / "wav2vec2_tiny").mkdir(parents=True)
    (tmp_path / "ssl" / "wav2vec2_tiny" / "upstream.pt").touch()
    assert upstream_name(tmp_path / "ssl" / "wav2vec2_tiny" / "upstream.pt") == "wav2vec2_tiny"
    (tmp_path / "hubert_b.pt").touch()
    assert upstream_name(tmp_path / "hubert_b.pt") == "hubert_b"


def test_two_tasks_two_lrs_two_seeds_end_to_end(synth_corpus, tmp_path, capsys):
    exp = tmp_path / "exp"
    argv = ["--upstream", "fbank_no_cmvn", "--task", "sid,er", "--data", str(synth_corpus),
            "--exp", str(exp), "--lrs", "1e-3,1e-2", "--seeds", "0,1", "--steps", "12",
            "--eval-every", "4", "--batch-size", "16", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((exp / "results.csv").open()))
    assert [r["task"] for r in rows] == ["sid", "er"]
    for task, row in zip(("sid", "er"), rows, strict=True):
        results = run_results(exp / "fbank_no_cmvn" / task)
        assert len(results) == 4 and {(r["lr"], r["seed"]) for r in results} == {
            (lr, s) for lr in (1e-3, 1e-2) for s in (0, 1)
        }
        # the reported lr has the best mean dev accuracy; the value is its test mean ± std
        dev = {lr: statistics.fmean(r["dev"]["accuracy"] for r in results if r["lr"] == lr)
               for lr in (1e-3, 1e-2)}  # fmt: skip
        best = max(dev, key=lambda lr: (dev[lr], lr == 1e-3))  # ties: the first in the grid
        test = [r["test"]["accuracy"] for r in sorted(results, key=lambda r: r["seed"])
                if r["lr"] == best]  # fmt: skip
        assert row["dev lr"] == f"{best:.2e}" and row["seeds"] == "0 1"
        assert row["value"] == f"{statistics.fmean(test):.2f} ± {statistics.stdev(test):.2f}"
        assert row["metric"] == "accuracy" and row["upstream"] == "fbank_no_cmvn"
        assert row["upstream parameters"] == "0" and float(row["probe time (s)"]) > 0
        assert f"fbank_no_cmvn {task} accuracy {row['value']}" in printed
        for r in results:  # best-dev checkpoint: its step is one of the evaluations
            assert r["best_step"] in (4, 8, 12) and 0 <= r["test"]["accuracy"] <= 100
        run = exp / "fbank_no_cmvn" / task / f"lr{best:.2e}" / "seed0"
        assert json.loads((run / "layer_weights.json").read_text())["layer_weights"] == [1.0]
        state = torch.load(run / "best.pt", weights_only=True)
        assert state["task"] == task and "head" in state
    md = (exp / "results.md").read_text()
    assert "| sid | accuracy |" in md and "(selected)" in md and " ± " in md
    assert matplotlib.image.imread(exp / "results.png").shape[0] > 100

    # a rerun finds every run finished; a second upstream is merged into the same report
    before = (exp / "results.csv").read_text()
    assert main(argv) == 0
    assert "done already" in (exp / "fbank_no_cmvn" / "er" / "log.txt").read_text()
    assert (exp / "results.csv").read_text() == before
    run_superb(SuperbConfig(lrs=[1e-3], steps=2, device="cpu"), "fbank", ["er"], synth_corpus, exp)
    rows = list(csv.DictReader((exp / "results.csv").open()))
    assert [(r["task"], r["upstream"]) for r in rows] == [
        ("sid", "fbank_no_cmvn"), ("er", "fbank"), ("er", "fbank_no_cmvn")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--task": "ks,xyz"}, "error: unknown task 'xyz'; choose from pr, ks"),
        ({"--data": "{tmp}/nowhere"}, "error: --data {tmp}/nowhere: no such folder"),
        ({"--upstream": "{tmp}/missing.pt"}, "error: upstream '{tmp}/missing.pt': not 'fbank'"),
        ({"--task": "ks", "--data": "{tmp}"}, "error: task ks: data dir {tmp}/keywords/train is"),
        ({"--lrs": "0.1,abc"}, "error: argument --lrs: expected comma-separated numbers"),
        ({"--steps": "0"}, "error: --steps must be >= 1"),
        ({"--set": "asr.nope=1"}, "error: task asr: bad option"),
        ({"--layer": "3"}, "error: --layer 3: the upstream has 1 hidden states"),
        ({"--set": "asr.steps=0"}, "error: --set asr.steps=0: expected a positive integer"),
        ({"--set": "asr.lrs=[x]"}, "error: --set asr.lrs=['x']: expected a list of numbers"),
        ({"--set": "asr.normalize=2"}, "error: --set asr.normalize=2: expected true or false"),
    ],
)
def test_cli_errors_are_one_line(synth_corpus, tmp_path, capsys, change, message):
    args = {"--upstream": "fbank", "--task": "asr", "--data": str(synth_corpus),
            "--exp": str(tmp_path / "exp"), "--steps": "1"}  # fmt: skip
    args.update({k: v.format(tmp=tmp_path) for k, v in change.items()})
    argv = [x for kv in args.items() for x in kv]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(message.format(tmp=tmp_path)), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "exp").exists()


def test_per_task_probe_settings_override_the_arguments(synth_corpus, tmp_path):
    """``--set er.steps=4 --set er.lrs=[1e-2] --set er.normalize=true`` changes ER's probe only."""
    exp = tmp_path / "exp"
    argv = ["--upstream", "fbank_no_cmvn", "--task", "sid,er", "--data", str(synth_corpus),
            "--exp", str(exp), "--lrs", "1e-3", "--steps", "2", "--device", "cpu",
            "--set", "er.steps=4", "--set", "er.lrs=[1e-2,3e-2]", "--set", "er.normalize=true",
            "--set", "er.eval_every=2"]  # fmt: skip
    assert main(argv) == 0
    sid, er = run_results(exp / "fbank_no_cmvn" / "sid"), run_results(exp / "fbank_no_cmvn" / "er")
    assert [(r["lr"], r["steps"]) for r in sid] == [(1e-3, 2)]
    assert [(r["lr"], r["steps"]) for r in er] == [(1e-2, 4), (3e-2, 4)]
    assert [c["step"] for c in er[0]["curve"]] == [2, 4]
    weights = exp / "fbank_no_cmvn" / "er" / "lr1.00e-02" / "seed0" / "layer_weights.json"
    assert json.loads(weights.read_text())["normalize"] is True
    assert "4 steps, batch 32, layer-normed" in (exp / "fbank_no_cmvn/er/log.txt").read_text()
    assert "layer-normed" not in (exp / "fbank_no_cmvn/sid/log.txt").read_text()


def test_patience_stops_a_run_that_no_longer_improves(synth_corpus, tmp_path):
    """lr 1e-12 leaves the probe where it starts: the first dev evaluation stays the best, so
    patience 2 stops the run at the third evaluation; without patience it runs every step."""
    exp = tmp_path / "exp"
    argv = ["--upstream", "fbank_no_cmvn", "--task", "sid,er", "--data", str(synth_corpus),
            "--exp", str(exp), "--lrs", "1e-12", "--steps", "40", "--eval-every", "2",
            "--device", "cpu", "--set", "sid.patience=2"]  # fmt: skip
    assert main(argv) == 0
    [sid], [er] = (
        run_results(exp / "fbank_no_cmvn" / "sid"),
        run_results(exp / "fbank_no_cmvn" / "er"),
    )
    assert [c["step"] for c in sid["curve"]] == [2, 4, 6]
    assert (sid["steps_run"], sid["best_step"]) == (6, 2)
    assert er["steps_run"] == 40 and len(er["curve"]) == 20
    assert "early stop at step 6" in (exp / "fbank_no_cmvn/sid/log.txt").read_text()


def tiny_hf_wav2vec2(folder):
    transformers = require_module("transformers")  # only this test needs it
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    return folder


def test_hf_model_folder_as_upstream(synth_corpus, tmp_path):
    folder = tiny_hf_wav2vec2(tmp_path / "tiny_w2v2")
    cfg = SuperbConfig(lrs=[1e-3], steps=3, device="cpu")
    [summary] = run_superb(cfg, folder, ["er"], synth_corpus, tmp_path / "exp")
    assert summary["upstream"] == "tiny_w2v2" and summary["upstream_params"] > 10_000
    run = tmp_path / "exp" / "tiny_w2v2" / "er" / "lr1.00e-03" / "seed0"
    weights = json.loads((run / "layer_weights.json").read_text())["layer_weights"]
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0, abs=1e-5)  # input + 2 layers
    assert weights != [pytest.approx(1 / 3)] * 3  # the weights were trained
    [entry, *_] = (tmp_path / "exp" / "cache").iterdir()
    index = json.loads((entry / "index.json").read_text())
    assert (index["num_hidden_states"], index["dim"], index["stride"]) == (3, 32, 80)

    # one layer: a cache entry of that layer only; fine-tuning: no cache, the upstream trains
    cfg = SuperbConfig(lrs=[1e-3], steps=2, layer=-1, device="cpu", report=False)
    run_superb(cfg, folder, ["er"], synth_corpus, tmp_path / "one")
    entries = list((tmp_path / "one" / "cache").iterdir())  # train, dev, test
    assert len(entries) == 3
    for entry in entries:
        assert json.loads((entry / "index.json").read_text())["layers"] == [2]
    upstream = load_upstream(folder)
    original = {k: v.clone() for k, v in upstream.state_dict().items()}
    cfg = SuperbConfig(lrs=[1e-3, 1e-2], steps=2, finetune=True, name="tiny_w2v2", device="cpu",
                       report=False)  # fmt: skip
    run_superb(cfg, upstream, ["er"], synth_corpus, tmp_path / "ft")
    assert not (tmp_path / "ft" / "cache").exists()
    for lr in ("1.00e-03", "1.00e-02"):
        best = tmp_path / f"ft/tiny_w2v2/er/lr{lr}/seed0/best.pt"
        state = torch.load(best, weights_only=True)["upstream"]
        changed = [k for k, v in state.items() if not torch.equal(v, original[k])]
        assert len(changed) > 10  # the upstream's weights were updated
    # each (lr, seed) started from the pretrained weights, which are back in place
    assert all(torch.equal(v, original[k]) for k, v in upstream.state_dict().items())


def test_same_seed_same_run_other_seed_other_run(synth_corpus, tmp_path):
    """KS samples class-balanced batches; SID crops 8 s windows (none here: < 8 s). Same seed:
    the same curve and result; another seed: another curve."""
    common = dict(lrs=[1e-2], steps=6, eval_every=2, device="cpu", report=False)
    for exp, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = SuperbConfig(seeds=(seed,), **common)
        run_superb(cfg, "fbank_no_cmvn", ["ks"], synth_corpus, tmp_path / exp)
    a, b, c = (run_results(tmp_path / x / "fbank_no_cmvn" / "ks")[0] for x in "abc")
    assert a["curve"] == b["curve"] and a["test"] == b["test"]
    assert a["curve"] != c["curve"]


def test_a_terminal_sees_a_moving_progress_line(synth_corpus, tmp_path, monkeypatch):
    """On a terminal each probe run is one tqdm line (task k/N, run j/M, updates); the
    per-evaluation lines go to the task's log.txt and not to the terminal."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["--upstream", "fbank_no_cmvn", "--task", "er", "--data", str(synth_corpus)]
    argv += ["--exp", str(tmp_path), "--steps", "4", "--lrs", "1e-3,1e-2", "--eval-every", "2"]
    assert main(argv + ["--device", "cpu"]) == 0
    shown = terminal.getvalue()
    assert "fbank_no_cmvn er (task 1/1) run 1/2" in shown and "run 2/2" in shown
    assert re.search(r" \d/4 ", shown) and "\r" in shown  # tqdm's updates/total, redrawn
    assert " step 2: train loss" not in shown
    assert " step 2: train loss" in (tmp_path / "fbank_no_cmvn" / "er" / "log.txt").read_text()


def test_side_by_side_table_marks_the_best_and_counts_wins_over_fbank():
    from speechssl.superb.report import side_by_side

    def s(task, up, mean, higher=True):
        return {"task": task, "upstream": up, "mean": mean, "higher_is_better": higher,
                "metric": "per" if not higher else "accuracy", "normalize": up == "ssl"}  # fmt: skip

    rows = side_by_side([s("pr", "fbank", 40.0, False), s("pr", "ssl", 50.0, False),
                         s("ks", "fbank", 30.0), s("ks", "ssl", 60.0)])  # fmt: skip
    # each column says how the probe saw its input: the protocol's or our layer norm
    assert rows[0] == "| task | fbank: as is (protocol) | ssl: layer-normed (ours) |"
    assert rows[2] == "| pr (per ↓) | **40.00** | 50.00 |"
    assert rows[3] == "| ks (accuracy) | 30.00 | **60.00** |"
    assert rows[-1] == "Tasks where an upstream beats fbank: ssl 1/2."
