"""`speechssl pretrain` reads its YAML and `--set` values through the one typed config path:
numbers written as YAML 1.1 strings become numbers, and a misspelt key, a wrong type or a bad
`--set` is one `error:` line naming the key and the file (exit 1), before any training."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechssl.cli import main
from speechssl.train import load_checkpoint

TINY = """\
method: wav2vec2
preset: tiny
model:
  conv_layers: [[16, 10, 5], [16, 3, 2], [16, 3, 2], [16, 2, 2], [16, 2, 2]]
  hidden_size: 16
  num_layers: 1
  num_heads: 2
  ffn_dim: 32
  pos_conv_kernel: 8
  pos_conv_groups: 2
  codebook_entries: 8
  final_dim: 8
  num_negatives: 3
  mask_prob: 1e-1
  mask_length: 2
trainer: {max_updates: 2, save_every: 2, progress_bar: false, max_batch_seconds: 3.0}
data: {max_samples: 16000}
"""


def _run(data_dir: Path, exp: Path, yaml_text: str, *sets: str) -> int:
    conf = exp.parent / f"{exp.name}.yaml"
    conf.write_text(yaml_text)
    argv = ["pretrain", "--config", str(conf), "--data", str(data_dir), "--exp", str(exp)]
    return main(argv + [x for kv in sets for x in ("--set", kv)])


def test_yaml_1e_minus_1_trains_with_the_float(data_dir, tmp_path):
    assert isinstance(__import__("yaml").safe_load("x: 1e-1")["x"], str)  # why this matters
    assert _run(data_dir, tmp_path / "ok", TINY) == 0
    saved = load_checkpoint(tmp_path / "ok" / "checkpoints" / "last.pt")["config"]["model"]
    assert saved["mask_prob"] == 0.1 and isinstance(saved["mask_prob"], float)
    assert "mask_prob: 0.1" in (tmp_path / "ok" / "config.yaml").read_text()


@pytest.mark.parametrize(
    ("yaml_text", "sets", "key"),
    [
        (TINY.replace("mask_length:", "mask_lenght:"), [], "mask_lenght"),
        (TINY.replace("num_heads: 2", "num_heads: two"), [], "num_heads"),
        (TINY.replace("max_updates: 2", "max_updates: 2, lr: abc"), [], "lr"),
        (TINY, ["model.num_layrs=2"], "num_layrs"),
        (TINY, ["trainer.lr=abc"], "lr"),
        (TINY, ["trainer.lr"], "trainer.lr"),
        (TINY, ["preset=huge"], "huge"),
        (TINY.replace("method: wav2vec2", "method: wav2vec3"), [], "wav2vec3"),
    ],
    ids=[
        "misspelt-model-key",
        "wrong-model-type",
        "wrong-trainer-type",
        "bad-set-key",
        "bad-set-type",
        "set-without-value",
        "unknown-preset",
        "unknown-method",
    ],  # fmt: skip
)
def test_config_errors_are_one_line_naming_key_and_file(
    data_dir, tmp_path, capsys, yaml_text, sets, key
):
    exp = tmp_path / "bad"
    assert _run(data_dir, exp, yaml_text, *sets) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert key in err[0] and str(tmp_path / "bad.yaml") in err[0], err[0]
    assert not (exp / "checkpoints").exists()  # nothing trained


def test_misspelt_key_lists_the_allowed_fields(data_dir, tmp_path, capsys):
    assert _run(data_dir, tmp_path / "bad", TINY.replace("mask_length:", "mask_lenght:")) == 1
    assert "mask_length" in capsys.readouterr().err  # the field the user meant is offered


CONF = Path(__file__).resolve().parents[1] / "egs" / "synth" / "conf" / "ssl"
# YAMLs that deliberately differ from their preset: data2vec has no LARGE preset, its YAML
# sets the LARGE dims over the BASE preset (data2vec_large.yaml's header); the CPU-sized HuBERT
# takes the log-Mel front end (hubert_tiny.yaml's header: the same minutes buy 5x the updates)
OVER_PRESET = {
    "data2vec_large.yaml": {"hidden_size", "num_layers", "num_heads", "ffn_dim"},
    "hubert_tiny.yaml": {"frontend"},
}


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_yaml_agrees_with_its_preset(path):
    """A YAML's model values are the preset's (written out for the reader), so a value that
    drifts from the method's reference preset (HuBERT LARGE once kept BASE's dropouts) fails."""
    import dataclasses

    import yaml

    from speechssl.ssl import get_method

    doc = yaml.safe_load(path.read_text())
    method = get_method(doc["method"])
    preset = dataclasses.asdict(method.make_config(doc.get("preset", "base")))
    plain = lambda v: [plain(x) for x in v] if isinstance(v, list | tuple) else v  # noqa: E731
    differ = {k for k, v in (doc.get("model") or {}).items() if plain(v) != plain(preset[k])}
    assert differ == OVER_PRESET.get(path.name, set()), path.name
