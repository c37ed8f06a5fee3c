"""Enhancement training (``speechssl enhance-train``): one network, five regimes, the one Trainer.

An enhancement YAML holds values only::

    regime: noise2noise        # noise2noise | noisy_as_clean | sure | noise2self | noise2clean
    loss: l2                   # l2 | l1 | stft_l2 | mrstft_sisdr
    model: {kind: mask, hidden_size: 128, ...}   # speechssl.enhance.models.EnhanceModelConfig
    data: {crop_seconds: 2.0, pairs: corpus, ...} # speechssl.enhance.data.EnhanceDataConfig
    trainer: {max_updates: 1000, lr: 1.0e-3, ...} # speechssl.train.TrainerConfig

The losses (each a sum over its units, with the unit count as ``sample_size``):

- ``l2`` / ``l1``: squared / absolute error per sample against the target waveform. L2 against
  a noisy target is minimised by the clean signal in expectation when the target's noise is
  zero-mean and independent of the input (Lehtinen et al. 2018); L1 recovers the median instead,
  robust to impulsive noise (clicks).
- ``stft_l2``: squared error of the complex STFT (linear in the target, so Noise2Noise-safe).
- ``mrstft_sisdr`` (ours, for Noise2Clean): per utterance, spectral convergence + log-magnitude
  L1 at three resolutions (512/128, 1024/256, 256/64) minus 0.1 x SI-SDR in dB. Magnitude losses
  are *biased* under a noisy target (E|s + n| > |s|): use it with clean targets only.
- ``sure`` (regime): Stein's unbiased risk estimate for Gaussian noise of standard deviation
  sigma, ``||f(y) - y||^2 - N sigma^2 + 2 sigma^2 div f(y)``, the divergence by one Monte-Carlo
  probe ``b``: ``div ~ b . (f(y + eps b) - f(y)) / eps`` with ``eps = 1e-3 max|y|`` (Ramani et
  al. 2008; Soltanayev & Chun 2018). Its expectation is the clean MSE, so no target is needed.
- ``noise2self`` (regime): patches of ``mask_patch`` bins x frames around random centres are
  zeroed in the STFT, the waveform resynthesised and enhanced, and the output's STFT compared
  with the noisy STFT at the centres only (Batson & Royer 2019). With a 512-sample window at hop
  128, frames 4 apart share no samples, so the 7-frame patch hides the centre's own noise from
  the network; it holds for noise independent across bins (white), not for colored noise. A mask
  model cannot fill a hidden bin (its output is mask x input, zero there): use ``model.kind: wave``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechssl.enhance.data import REGIMES, EnhanceBatch, EnhanceDataConfig, EnhanceDataset
from speechssl.enhance.models import EnhanceModelConfig, build_model, istft, stft, stft_frames
from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_torch_save
from speechssl.nn.conv_encoder import length_mask
from speechssl.train import ModelOutput, Trainer, TrainerConfig
from speechssl.train.rng import seed_everything

LOSSES = ("l2", "l1", "stft_l2", "mrstft_sisdr")
ENHANCER_FORMAT = "speechssl-enhancer-1"
RESOLUTIONS = ((512, 128), (1024, 256), (256, 64))


class EnhanceConfigError(SpeechSSLError, ValueError):
    """An enhancement config that cannot train (e.g. Noise2Self with a mask model)."""


@dataclass
class EnhanceTrainConfig:
    regime: str = "noise2noise"
    loss: str = "l2"
    model: EnhanceModelConfig = field(default_factory=EnhanceModelConfig)
    data: EnhanceDataConfig = field(default_factory=EnhanceDataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def check(self, where: str = "config") -> None:
        if self.regime not in REGIMES:
            raise EnhanceConfigError(
                f"{where}: regime {self.regime!r}; choose one of {', '.join(REGIMES)}"
            )
        if self.loss not in LOSSES:
            raise EnhanceConfigError(
                f"{where}: loss {self.loss!r}; choose one of {', '.join(LOSSES)}"
            )
        if self.regime == "noise2self" and self.model.kind == "mask":
            raise EnhanceConfigError(
                f"{where}: regime noise2self needs model.kind: wave (a mask on the noisy STFT "
                "cannot fill the hidden bins)"
            )


def _valid(lengths: torch.Tensor, total: int, like: torch.Tensor) -> torch.Tensor:
    return length_mask(lengths, total).to(like.dtype)


def _stft_valid(lengths: torch.Tensor, hop: int, frames: int, like: torch.Tensor) -> torch.Tensor:
    return length_mask(stft_frames(lengths, hop).clamp(max=frames), frames).to(like.dtype)


def _si_sdr(est: torch.Tensor, ref: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    count = valid.sum(-1, keepdim=True).clamp(min=1)
    ref = (ref - (ref * valid).sum(-1, keepdim=True) / count) * valid
    est = (est - (est * valid).sum(-1, keepdim=True) / count) * valid
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.square().sum(-1, keepdim=True) + 1e-8)
    target = alpha * ref
    ratio = (target.square().sum(-1) + 1e-8) / ((est - target).square().sum(-1) + 1e-8)
    return 10 * torch.log10(ratio)


def waveform_loss(
    kind: str, est: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor, n_fft: int, hop: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss sum, unit count)`` of ``est`` against ``target`` (``(B, S)``, valid up to lengths)."""
    valid = _valid(lengths, est.shape[-1], est)
    if kind == "l2":
        return ((est - target).square() * valid).sum(), valid.sum()
    if kind == "l1":
        return ((est - target).abs() * valid).sum(), valid.sum()
    if kind == "stft_l2":
        diff = stft(est, n_fft, hop) - stft(target, n_fft, hop)
        frames = _stft_valid(lengths, hop, diff.shape[-1], est).unsqueeze(1)
        return (diff.abs().square() * frames).sum(), frames.sum() * diff.shape[1]
    if kind == "mrstft_sisdr":
        total = -0.1 * _si_sdr(est, target, valid)
        for size, step in RESOLUTIONS:
            e = stft(est * valid, size, step).abs() + 1e-7
            t = stft(target * valid, size, step).abs() + 1e-7
            frames = _stft_valid(lengths, step, e.shape[-1], est).unsqueeze(1)
            sc = ((t - e).square() * frames).sum((1, 2)).sqrt() / (
                (t.square() * frames).sum((1, 2)).sqrt() + 1e-7
            )
            logmag = ((t.log() - e.log()).abs() * frames).sum((1, 2)) / (
                frames.sum((1, 2)) * e.shape[1]
            )
            total = total + sc + logmag
        return total.sum(), torch.tensor(float(len(est)), device=est.device)
    raise ValueError(f"loss {kind!r}: choose one of {', '.join(LOSSES)}")


class EnhanceTraining(nn.Module):
    """The Trainer's model: ``net`` (an enhancement network) trained with ``regime``'s loss."""

    def __init__(self, net: nn.Module, cfg: EnhanceTrainConfig):
        super().__init__()
        self.net, self.cfg = net, cfg

    def forward(self, batch: EnhanceBatch) -> ModelOutput:
        regime, m = self.cfg.regime, self.cfg.model
        y, lengths = batch.wavs, batch.lengths
        if regime == "sure":
            return self._sure(batch)
        if regime == "noise2self":
            return self._noise2self(batch)
        est = self.net(y, lengths)
        loss, count = waveform_loss(self.cfg.loss, est, batch.targets, lengths, m.n_fft, m.hop)
        return ModelOutput(loss, count)

    def _sure(self, batch: EnhanceBatch) -> ModelOutput:
        y, lengths, b = batch.wavs, batch.lengths, batch.probes
        valid = _valid(lengths, y.shape[-1], y)
        sigma2 = batch.sigmas.square()
        eps = 1e-3 * (y.abs() * valid).amax(-1).clamp(min=1e-6)
        est = self.net(y, lengths)
        est_probe = self.net(y + eps[:, None] * b * valid, lengths)
        divergence = (b * (est_probe - est) * valid).sum(-1) / eps
        residual = ((est - y).square() * valid).sum(-1)
        count = valid.sum(-1)
        risk = residual - count * sigma2 + 2 * sigma2 * divergence
        mse_noisy = residual.sum() / count.sum()
        return ModelOutput(risk.sum(), count.sum(), {"mse_to_noisy": mse_noisy.detach()})

    def _noise2self(self, batch: EnhanceBatch) -> ModelOutput:
        m = self.cfg.model
        y, lengths, centres = batch.wavs, batch.lengths, batch.centres
        spec = stft(y, m.n_fft, m.hop)
        centres = centres[..., : spec.shape[-1]] & (
            _stft_valid(lengths, m.hop, spec.shape[-1], y).unsqueeze(1) > 0
        )
        bins, frames = self.cfg.data.mask_patch
        hidden = F.max_pool2d(
            centres[:, None].float(), (bins, frames), stride=1, padding=(bins // 2, frames // 2)
        )[:, 0, : spec.shape[1], : spec.shape[2]]
        blind = istft(spec * (1 - hidden), m.n_fft, m.hop, y.shape[-1])
        est = stft(self.net(blind * _valid(lengths, y.shape[-1], y), lengths), m.n_fft, m.hop)
        loss = ((est - spec).abs().square() * centres).sum()
        return ModelOutput(loss, centres.sum(), {"hidden_fraction": hidden.mean().detach()})


def enhancer_config(cfg: EnhanceTrainConfig) -> dict[str, Any]:
    return {
        "task": "enhance",
        "regime": cfg.regime,
        "loss": cfg.loss,
        "model": dataclasses.asdict(cfg.model),
    }


def save_enhancer(net: nn.Module, cfg: EnhanceTrainConfig, path: str | os.PathLike) -> Path:
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    return atomic_torch_save(
        {"format": ENHANCER_FORMAT, "config": enhancer_config(cfg), "model": state}, path
    )


def enhance_train(
    cfg: EnhanceTrainConfig,
    train_dir: str | os.PathLike,
    exp_dir: str | os.PathLike,
    resume: bool = True,
) -> dict[str, Any]:
    """Train ``cfg.regime`` on ``train_dir``; writes ``<exp>/model.pt`` when training is done.
    Returns the Trainer's summary plus ``model``. (No validation set: the regimes' losses are
    against noisy targets; ``speechssl enhance-eval`` measures against the clean references.)"""
    cfg.check()
    exp_dir = Path(exp_dir)
    seed_everything(cfg.trainer.seed)
    stft_settings = (cfg.model.n_fft, cfg.model.hop)
    train_set = EnhanceDataset(train_dir, cfg.regime, cfg.data, stft=stft_settings)
    net = build_model(cfg.model)
    model = EnhanceTraining(net, cfg)
    trainer = Trainer(
        model,
        train_set,
        cfg.trainer,
        exp_dir,
        collate_fn=train_set.collate,
        config=enhancer_config(cfg),
    )
    result = trainer.train(resume=resume)
    if trainer.dist.is_main and trainer.num_updates >= cfg.trainer.max_updates:
        result["model"] = str(save_enhancer(net, cfg, exp_dir / "model.pt"))
    return result
