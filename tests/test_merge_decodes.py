"""`speechssl merge-decodes`: the shards' decode dirs of one data dir become one decode dir,
checked against hand-written shards; overlapping shards or other settings are `error:` lines."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from speechssl.cli import main
from speechssl.data.kaldi import read_table


def _shard(d: Path, utts: dict[str, str], beam: int = 8) -> Path:
    d.mkdir(parents=True)
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in sorted(utts.items())))
    nbest = [json.dumps({"utt": u, "nbest": [{"text": t, "score": -1.0}]}) for u, t in utts.items()]
    (d / "nbest.jsonl").write_text("\n".join(nbest) + "\n")
    ctm = [f"{u} 1 {0.1 * i:.2f} 0.10 {w} 0.900" for u, t in utts.items() for i, w in enumerate(t.split())]  # fmt: skip
    (d / "ctm").write_text("\n".join(ctm) + "\n")
    (d / "decode.json").write_text(json.dumps({"beam": beam, "alpha": 0.5}))
    logp = {u: torch.full((3, 2), float(len(t))) for u, t in utts.items()}
    torch.save(
        {"key": {}, "logprobs": logp, "tokens": ["<b>", "a"], "stride": 320}, d / "logprobs.pt"
    )
    return d


def test_shards_merge_into_one_sorted_decode_dir(tmp_path: Path, capsys):
    a = _shard(tmp_path / "1", {"s1-u2": "c d", "s1-u1": "a"})
    b = _shard(tmp_path / "2", {"s0-u1": "b b b"})
    out = tmp_path / "merged"
    assert main(["merge-decodes", "--out", str(out), str(a), str(b)]) == 0
    assert read_table(out / "text") == {"s0-u1": "b b b", "s1-u1": "a", "s1-u2": "c d"}
    utts = [json.loads(line)["utt"] for line in (out / "nbest.jsonl").read_text().splitlines()]
    assert utts == ["s0-u1", "s1-u1", "s1-u2"]
    ctm = (out / "ctm").read_text().splitlines()
    assert [line.split()[4] for line in ctm] == ["b", "b", "b", "a", "c", "d"]
    saved = torch.load(out / "logprobs.pt", weights_only=True)
    assert sorted(saved["logprobs"]) == utts and float(saved["logprobs"]["s0-u1"][0, 0]) == 5.0
    assert json.loads((out / "decode.json").read_text()) == {"beam": 8, "alpha": 0.5}

    capsys.readouterr()
    c = _shard(tmp_path / "3", {"s0-u1": "b"})
    assert main(["merge-decodes", "--out", str(tmp_path / "x"), str(b), str(c)]) == 1
    assert "'s0-u1' is in another shard too" in capsys.readouterr().err
    d = _shard(tmp_path / "4", {"s2-u1": "b"}, beam=16)
    assert main(["merge-decodes", "--out", str(tmp_path / "y"), str(a), str(d)]) == 1
    assert "other settings" in capsys.readouterr().err
