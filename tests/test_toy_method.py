"""A method registered from outside the package, in this file alone, goes through the whole
chain: `speechssl pretrain` -> `speechssl export` -> `load_upstream` -> a SUPERB probe.

The toy method is APC-like: a strided conv frame encoder and a GRU stack predicting the frame
encoder's output two frames ahead (L1). Nothing outside this file knows about it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from speechssl.cli import main
from speechssl.ssl import SSLMethod, available_methods, export_backbone, register_method
from speechssl.train.protocol import ModelOutput
from speechssl.upstream import load_upstream


@dataclass
class ToyConfig:
    hidden_size: int = 32
    num_layers: int = 2
    shift: int = 2  # predict the frame this many steps ahead


class ToyBackbone(nn.Module):
    stride = 160  # 10 ms frames

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.frames = nn.Conv1d(1, cfg.hidden_size, kernel_size=400, stride=self.stride)
        self.rnns = nn.ModuleList(
            nn.GRU(cfg.hidden_size, cfg.hidden_size, batch_first=True)
            for _ in range(cfg.num_layers)
        )

    num_layers = property(lambda self: self.cfg.num_layers)
    hidden_size = property(lambda self: self.cfg.hidden_size)

    def forward(self, wavs: torch.Tensor, wav_lengths: torch.Tensor | None = None):
        if wav_lengths is None:
            wav_lengths = torch.full((wavs.shape[0],), wavs.shape[1])
        lengths = ((wav_lengths - 400) // self.stride + 1).clamp(min=0)
        x = self.frames(wavs.unsqueeze(1)).transpose(1, 2)
        hidden = [x]
        for rnn in self.rnns:
            hidden.append(rnn(hidden[-1])[0])
        return SimpleNamespace(hidden_states=hidden, lengths=lengths)


class ToyPretraining(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ToyBackbone(cfg)
        self.head = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, batch) -> ModelOutput:
        out = self.backbone(batch.wavs, batch.lengths)
        k = self.cfg.shift
        pred = self.head(out.hidden_states[-1][:, :-k])
        target = out.hidden_states[0][:, k:].detach()
        valid = torch.arange(pred.shape[1])[None] < (out.lengths - k)[:, None]
        loss = (F.l1_loss(pred, target, reduction="none").mean(-1) * valid).sum()
        return ModelOutput(loss=loss, sample_size=int(valid.sum()))

    def export_upstream(self) -> dict:
        return export_backbone("toy", self.cfg, self.backbone)


register_method(SSLMethod("toy", ToyConfig, ToyPretraining, ToyBackbone, {"base": {}, "tiny": {}}))


def test_a_method_registered_here_pretrains_exports_loads_and_probes(synth_corpus, tmp_path):
    assert "toy" in available_methods()
    exp = tmp_path / "toy"
    sets = ["preset=tiny", "model.hidden_size=24", "trainer.max_updates=8", "trainer.lr=3e-3"]
    sets += ["trainer.save_every=8", "trainer.progress_bar=false", "trainer.max_batch_seconds=8"]
    argv = ["pretrain", "--method", "toy", "--data", str(synth_corpus / "asr/train_unlabeled")]
    argv += ["--exp", str(exp)] + [x for kv in sets for x in ("--set", kv)]
    assert main(argv) == 0
    log = [json.loads(x) for x in (exp / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0]  # it learned something

    upstream_file = tmp_path / "toy_upstream.pt"
    assert main(["export", str(exp / "checkpoints/last.pt"), str(upstream_file)]) == 0
    saved = torch.load(upstream_file, weights_only=True)
    assert saved["method"] == "toy" and saved["config"]["hidden_size"] == 24
    assert not any(k.startswith("head.") for k in saved["model"])  # inference part only
    upstream = load_upstream(upstream_file)
    assert upstream.num_layers == 2 and upstream.hidden_size == 24 and upstream.stride == 160
    wavs = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        out = upstream(wavs, torch.tensor([16000, 8000]))
    assert len(out.hidden_states) == 3 and out.lengths.tolist() == [98, 48]
    assert float(out.hidden_states[-1][1, 48:].abs().max()) == 0.0  # padding zeroed

    superb = tmp_path / "superb"
    argv = ["superb", "--upstream", str(upstream_file), "--task", "ks", "--data",
            str(synth_corpus), "--exp", str(superb), "--lrs", "1e-2", "--steps", "6",
            "--eval-every", "3", "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((superb / "toy_upstream/ks/summary.json").read_text())
    params = sum(p.numel() for p in upstream.parameters())
    assert summary["task"] == "ks" and summary["upstream_params"] == params
    weights = json.loads(next((superb / "toy_upstream/ks").glob("lr*/seed0/layer_weights.json"))
                         .read_text())["layer_weights"]  # fmt: skip
    assert len(weights) == 3  # the probe saw the toy's three hidden states
