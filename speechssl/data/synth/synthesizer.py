"""Run espeak-ng and flite, and bring their audio to 16 kHz.

Both synthesizers are deterministic (same arguments -> same bytes), which the corpus relies on.
They run as subprocesses with argument lists (never a shell) and a timeout. espeak-ng reads the
text from stdin and writes a 22.05 kHz WAV to stdout; flite writes a 16 kHz WAV to a temporary
file. espeak-ng silently falls back to its default voice for an unknown variant, and flite to
``kal`` for an unknown voice, so voices are checked against what is installed first.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from speechssl.data.audio import resample_audio
from speechssl.data.synth.voices import Voice
from speechssl.errors import SpeechSSLError

SAMPLE_RATE = 16000
TIMEOUT_S = 60.0


class SynthesisError(SpeechSSLError, RuntimeError):
    """A synthesizer failed; the message names the voice and the text."""


def _error(voice: Voice, text: str, what: str) -> SynthesisError:
    return SynthesisError(f"voice {voice.id}: {what} (text: {text!r})")


@lru_cache(maxsize=1)
def espeak_data_dir() -> Path:
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=30)
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"
    if "Data at:" not in out.stdout:
        raise SynthesisError(f"cannot find espeak-ng's data folder in: {out.stdout!r}")
    return Path(out.stdout.split("Data at:", 1)[1].strip())


@lru_cache(maxsize=1)
def flite_voices() -> tuple[str, ...]:
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30)
    # "Voices available: kal awb_time kal16 awb rms slt"
    return tuple(out.stdout.split(":", 1)[-1].split())


@cache
def check_voice(voice: Voice) -> None:
    """Raise SynthesisError if the voice is not installed (the engines would not say so)."""
    try:
        if voice.engine == "espeak":
            variant = espeak_data_dir() / "voices" / "!v" / voice.variant
            if not variant.is_file():
                raise SynthesisError(
                    f"voice {voice.id}: espeak-ng variant {voice.variant!r} not found in "
                    f"{variant.parent}; pick one of `ls '{variant.parent}'`"
                )
        elif voice.name not in flite_voices():
            raise SynthesisError(
                f"voice {voice.id}: flite voice {voice.name!r} is not built in; "
                f"available: {' '.join(flite_voices())}"
            )
    except FileNotFoundError as e:
        raise SynthesisError(
            f"voice {voice.id}: synthesizer not installed ({e.filename}); "
            "install espeak-ng and flite (tools/install_debian.sh)"
        ) from None


def _run(voice: Voice, text: str, args: list[str], stdin: bytes | None) -> bytes:
    try:
        proc = subprocess.run(
            args, input=stdin, capture_output=True, timeout=TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise _error(voice, text, f"{args[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise _error(voice, text, f"{args[0]} did not finish in {TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-300:]
        raise _error(voice, text, f"{args[0]} exited with {proc.returncode}: {err}")
    return proc.stdout


def _espeak_args(voice: Voice) -> list[str]:
    return [
        "espeak-ng",
        "-v",
        f"{voice.name}+{voice.variant}",
        "-p",
        str(voice.pitch),
        "-s",
        str(voice.rate),
        "-a",
        str(voice.amplitude),
    ]


def synthesize(voice: Voice, text: str) -> np.ndarray:
    """Speak ``text`` with ``voice``; returns float32 samples at 16 kHz (not trimmed)."""
    check_voice(voice)
    if voice.engine == "espeak":
        wav = _run(voice, text, _espeak_args(voice) + ["--stdout", "--stdin"], text.encode())
        # espeak-ng streams its WAV: the header's length fields are placeholders.
        samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    else:
        with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
            out = Path(tmp) / "out.wav"
            args = [
                "flite",
                "-voice",
                voice.name,
                "--setf",
                f"duration_stretch={100 / voice.rate:.4f}",
            ]
            if voice.pitch > 0:
                args += ["--setf", f"int_f0_target_mean={voice.pitch}"]
            _run(voice, text, args + ["-t", text, "-o", str(out)], None)
            if not out.is_file():
                raise _error(voice, text, "flite wrote no audio file")
            samples, rate = sf.read(out, dtype="float32")
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    if samples.size == 0 or not np.any(samples):
        raise _error(voice, text, f"{voice.engine} returned empty or silent audio")
    return resample_audio(samples, rate, SAMPLE_RATE)


def phonemize(voice: Voice, text: str) -> list[str]:
    """espeak-ng's own phonemization of ``text`` with the voice's accent (``-q -x``).

    Phones are espeak-ng's ASCII phoneme mnemonics (``t``, ``aI``, ``@2``, ``3:``...). Stress and
    syllable marks (``'`` ``,`` ``%`` ``=``) and pauses (``_``...) are removed; word boundaries are
    not kept, so the result is a flat phone sequence.
    """
    if voice.engine != "espeak":
        raise SynthesisError(f"voice {voice.id}: phone labels come from espeak-ng voices only")
    check_voice(voice)
    args = _espeak_args(voice) + ["-q", "-x", "--sep= ", "--stdin"]
    out = _run(voice, text, args, text.encode()).decode("utf-8", "replace")
    phones = []
    for token in out.split():
        token = token.strip("'`,%=")
        if token and not token.startswith(("_", "|")):
            phones.append(token)
    if not phones:
        raise _error(voice, text, "espeak-ng returned no phonemes")
    return phones


def trim_silence(
    samples: np.ndarray, keep_s: float = 0.1, top_db: float = 40.0, frame_s: float = 0.01
) -> np.ndarray:
    """Cut leading/trailing silence and leave exactly ``keep_s`` seconds of margin on each side.

    Silence = 10 ms frames more than ``top_db`` below the loudest frame. The margin is taken from
    the signal where there is enough of it and zero-padded where there is not, so every
    utterance starts and ends the same way.
    """
    frame = int(frame_s * SAMPLE_RATE)
    n_frames = max(1, len(samples) // frame)
    energy = np.square(samples[: n_frames * frame].reshape(n_frames, -1)).mean(axis=1)
    level = 10 * np.log10(energy + 1e-12)
    active = np.flatnonzero(level > level.max() - top_db)
    start, end = active[0] * frame, min(len(samples), (active[-1] + 1) * frame)
    keep = int(keep_s * SAMPLE_RATE)
    lo, hi = max(0, start - keep), min(len(samples), end + keep)
    pad = (keep - (start - lo), keep - (hi - end))
    return np.pad(samples[lo:hi], pad).astype(np.float32)


def set_level(samples: np.ndarray, rms_dbfs: float, max_peak: float = 0.9) -> np.ndarray:
    """Scale to an RMS level in dB re full scale; scale down further (never clip) if the peak
    would exceed ``max_peak``."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms == 0:
        return samples.astype(np.float32)
    gain = 10 ** (rms_dbfs / 20) / rms
    peak = float(np.max(np.abs(samples))) * gain
    if peak > max_peak:
        gain *= max_peak / peak
    return (samples * gain).astype(np.float32)
