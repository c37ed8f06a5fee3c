"""Apply a trained enhancer to audio of any rate and channel count (``speechssl enhance``).

The networks run at 16 kHz mono. Each channel of the input is resampled to 16 kHz (soxr),
enhanced, resampled back to the input's rate and cut or zero-padded to the input's length, so
the output has the input's length, rate and channel count; it is written in the input's
soundfile subtype (PCM_16 stays PCM_16).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from speechssl.data.audio import SAMPLE_RATE, AudioError, resample_audio
from speechssl.enhance.models import EnhanceModelConfig, build_model
from speechssl.enhance.train import ENHANCER_FORMAT
from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_path

# tables of a data dir that describe its features or segments, not the new audio
DERIVED = ("feats.scp", "cmvn.scp", "utt2num_frames", "frame_shift", "feats.yaml")
MAX_CHUNK_SECONDS = 60.0  # longer inputs are enhanced in chunks with a 1 s overlap-add seam


class EnhancerError(SpeechSSLError, ValueError):
    """Not an enhancement model, or one that cannot be loaded."""


@dataclass
class Enhancer:
    net: nn.Module
    config: dict
    device: torch.device

    @torch.no_grad()
    def enhance_16k(self, wav: np.ndarray) -> np.ndarray:
        """One 16 kHz mono signal ``(S,)`` -> enhanced ``(S,)`` float32."""
        chunk = int(MAX_CHUNK_SECONDS * SAMPLE_RATE)
        if len(wav) <= chunk:
            return self._run(wav)
        overlap, out = SAMPLE_RATE, np.zeros(len(wav), dtype=np.float32)
        weight = np.zeros(len(wav), dtype=np.float32)
        step = chunk - overlap
        for start in range(0, len(wav), step):
            piece = self._run(wav[start : start + chunk])
            ramp = np.ones(len(piece), dtype=np.float32)
            fade = min(overlap, len(piece))
            if start > 0:
                ramp[:fade] = np.linspace(0, 1, fade, dtype=np.float32)
            out[start : start + len(piece)] += piece * ramp
            weight[start : start + len(piece)] += ramp
            if start + chunk >= len(wav):
                break
        return out / np.maximum(weight, 1e-6)

    def _run(self, wav: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None].to(self.device)
        lengths = torch.tensor([x.shape[1]], device=self.device)
        return self.net(x, lengths)[0].float().cpu().numpy()

    def enhance(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """``(S,)`` or ``(S, C)`` at ``sample_rate`` -> the same shape, enhanced."""
        mono = samples.ndim == 1
        channels = samples[:, None] if mono else samples
        out = np.zeros(channels.shape, dtype=np.float32)
        for c in range(channels.shape[1]):
            x = resample_audio(channels[:, c].astype(np.float32), sample_rate, SAMPLE_RATE)
            y = resample_audio(self.enhance_16k(x), SAMPLE_RATE, sample_rate)
            n = min(len(y), len(out))
            out[:n, c] = y[:n]
        return out[:, 0] if mono else out


def load_enhancer(path: str | os.PathLike, device: str | torch.device = "cpu") -> Enhancer:
    """An enhancer from ``model.pt``, a training checkpoint, or an experiment folder."""
    from speechssl.config import from_dict
    from speechssl.train.checkpoint import CheckpointError, load_checkpoint

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").is_file() else path / "checkpoints/last.pt"
    if not path.is_file():
        raise EnhancerError(
            f"{path}: no enhancement model here; train one with `speechssl enhance-train`"
        )
    try:
        state = load_checkpoint(path, expect_format=None)
    except CheckpointError as e:
        raise EnhancerError(str(e)) from None
    config = state.get("config") if isinstance(state, dict) else None
    if not isinstance(config, dict) or config.get("task") != "enhance":
        raise EnhancerError(
            f"{path}: not an enhancement model (task {None if config is None else config.get('task')!r}); "
            "pass the model.pt of `speechssl enhance-train`"
        )
    weights = state["model"]
    if state.get("format") != ENHANCER_FORMAT:  # a training checkpoint: EnhanceTraining's keys
        weights = {k.removeprefix("net."): v for k, v in weights.items() if k.startswith("net.")}
    net = build_model(from_dict(EnhanceModelConfig, config["model"], str(path)))
    net.load_state_dict(weights)
    device = torch.device(device)
    return Enhancer(net.to(device).eval(), config, device)


def read_any(path: str | os.PathLike) -> tuple[np.ndarray, int, str]:
    """``(samples (S,) or (S, C) float32, rate, subtype)`` of an audio file; AudioError names it."""
    try:
        samples, rate = sf.read(str(path), dtype="float32")
        subtype = sf.info(str(path)).subtype
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({e}); convert it to wav/flac") from None
    if len(samples) == 0:
        raise AudioError(f"{path}: no samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: contains NaN or Inf samples")
    return samples, rate, subtype


def enhance_file(enhancer: Enhancer, source: str | os.PathLike, target: str | os.PathLike) -> float:
    """Enhance one file into ``target`` (atomically; same rate, channels, length, subtype).
    Returns its duration in seconds."""
    samples, rate, subtype = read_any(source)
    out = enhancer.enhance(samples, rate)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".flac": "FLAC", ".ogg": "OGG"}.get(target.suffix.lower(), "WAV")
    with atomic_path(target) as tmp:
        sf.write(
            str(tmp),
            out,
            rate,
            subtype=subtype if sf.check_format(fmt, subtype) else None,
            format=fmt,
        )
    return len(samples) / rate


def enhance_data_dir(
    enhancer: Enhancer,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    allow_pipes: bool = False,
) -> tuple[Path, dict[str, str]]:
    """Enhance every utterance of a data dir into ``out_dir/wav/<utt>.wav`` (16 kHz mono, a
    rerun skips the files already written) and write ``out_dir`` as a data dir of them, with the
    source's per-utterance tables (text, utt2spk, utt2dur, clean.scp made absolute ...).
    Returns ``(out_dir, {utt: error})`` for utterances that could not be read."""
    from speechssl.data.audio import write_wav
    from speechssl.data.kaldi import DataDir, is_table_file, write_data_dir

    data, out = DataDir.load(data_dir), Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    wav_scp, errors = {}, {}
    for utt in data.utt_ids:
        target = out / "wav" / f"{utt}.wav"
        if not target.is_file():
            try:
                wav = data.load_audio(
                    utt, sample_rate=SAMPLE_RATE, resample=True, allow_pipes=allow_pipes
                )
            except AudioError as e:
                errors[utt] = str(e)
                continue
            write_wav(target, enhancer.enhance_16k(wav), SAMPLE_RATE)  # atomic
        wav_scp[utt] = str(target.resolve())
    keep = set(wav_scp)
    extra = {}
    for name, table in data.tables.items():
        if name in DERIVED or not is_table_file(name):
            continue
        if name.endswith(".scp"):  # other audio (clean.scp, noisy2.scp): absolute paths
            table = {u: data.resolve(v) for u, v in table.items()}
        extra[name] = {u: v for u, v in table.items() if u in keep}
    text = data.text
    write_data_dir(
        out,
        wav_scp,
        {u: s for u, s in data.utt2spk.items() if u in keep},
        None if text is None else {u: t for u, t in text.items() if u in keep},
        extra,
    )
    return out, errors
