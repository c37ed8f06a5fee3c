"""Render one planned utterance to 16-bit 16 kHz WAV files (runs in worker processes).

An :class:`UttSpec` says everything about an utterance: text, voice, level, and per-kind settings
(prosody class, 1-second keyword clip, noise mixtures). The only randomness left at render time
(noise samples, clip offsets, babble mixing) comes from ``default_rng(spec.seed)``, so the output
does not depend on which worker renders it. Files are written atomically and an utterance whose
files are all present and valid is not rendered again (a killed run resumes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from speechssl.data.audio import write_wav
from speechssl.data.synth.noise import make_noise, scale_to_snr
from speechssl.data.synth.prosody import apply_quality, emotional_voice, get_emotion
from speechssl.data.synth.synthesizer import (
    SAMPLE_RATE,
    phonemize,
    set_level,
    synthesize,
    trim_silence,
)
from speechssl.data.synth.voices import Voice

MAX_PEAK = 0.9  # mixtures are scaled (never clipped) to keep |x| below this


@dataclass(frozen=True)
class NoiseSpec:
    family: str
    snr_db: float
    talkers: tuple[tuple[Voice, str], ...] = ()  # babble: (voice, display text) per talker


@dataclass(frozen=True)
class UttSpec:
    utt_id: str
    task: str  # folder under wav/
    seed: int
    kind: str  # "speech" | "prosody" | "keyword" | "silence" | "noisy"
    voice: Voice | None = None
    text: str = ""  # display text, what the synthesizer reads
    level_db: float = -26.0  # RMS level, dB re full scale
    emotion: str = ""  # prosody class name
    jitter: float = 0.0  # prosody: in [-1, 1]
    noise: tuple[NoiseSpec, ...] = ()  # noisy: [wav.scp, noisy2.scp]; keyword: background
    phones: bool = False  # also return espeak-ng's phonemes
    outputs: tuple[str, ...] = field(default=("",))  # file suffixes: "" -> <utt>.wav


@dataclass(frozen=True)
class Rendered:
    utt_id: str
    num_samples: int
    phones: tuple[str, ...] = ()


def wav_path(root: Path, task: str, utt_id: str, suffix: str = "") -> Path:
    return root / "wav" / task / f"{utt_id}{suffix}.wav"


def _valid_wav(path: Path) -> int:
    """Number of samples if ``path`` is a complete 16 kHz 16-bit WAV, else 0."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return 0
    ok = info.samplerate == SAMPLE_RATE and info.subtype == "PCM_16" and info.frames > 0
    expected = 44 + 2 * info.frames  # libsndfile's canonical PCM header
    return info.frames if ok and path.stat().st_size >= expected else 0


def _speech(voice: Voice, text: str, level_db: float) -> np.ndarray:
    return set_level(trim_silence(synthesize(voice, text)), level_db)


def _noise_for(spec: NoiseSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    talkers = [trim_silence(synthesize(v, t), keep_s=0.0) for v, t in spec.talkers]
    return make_noise(spec.family, n, rng, talkers)


def _keyword_clip(spec: UttSpec, rng: np.random.Generator) -> np.ndarray:
    """Speech-Commands style: exactly 1 s, the word at a random offset, faint background."""
    n = SAMPLE_RATE
    clip = np.zeros(n, dtype=np.float32)
    if spec.kind == "keyword":
        word = trim_silence(synthesize(spec.voice, spec.text), keep_s=0.02)
        if len(word) > n:  # a slow voice: keep the middle second
            start = (len(word) - n) // 2
            word = word[start : start + n]
        word = set_level(word, spec.level_db)
        offset = int(rng.integers(0, n - len(word) + 1))
        clip[offset : offset + len(word)] = word
    background = make_noise(spec.noise[0].family, n, rng)
    if spec.kind == "keyword":
        background = scale_to_snr(clip, background, spec.noise[0].snr_db)
    else:  # silence: noise alone, at an absolute level (snr_db holds dBFS here)
        background = background * 10 ** (spec.noise[0].snr_db / 20)
    mix = clip + background
    peak = np.max(np.abs(mix))
    return mix * (MAX_PEAK / peak) if peak > MAX_PEAK else mix


def _noisy(spec: UttSpec, rng: np.random.Generator) -> list[np.ndarray]:
    """[noisy, clean, noisy2...] sharing one scale factor, so noisy - clean is exactly the noise."""
    clean = _speech(spec.voice, spec.text, spec.level_db)
    mixtures = []
    for noise_spec in spec.noise:
        noise = _noise_for(noise_spec, len(clean), rng)
        mixtures.append(clean + scale_to_snr(clean, noise, noise_spec.snr_db))
    peak = max(float(np.max(np.abs(x))) for x in mixtures + [clean])
    scale = min(1.0, MAX_PEAK / peak)
    signals = [mixtures[0] * scale, clean * scale] + [m * scale for m in mixtures[1:]]
    return [s.astype(np.float32) for s in signals]


def _render_signals(spec: UttSpec) -> list[np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    if spec.kind == "speech":
        return [_speech(spec.voice, spec.text, spec.level_db)]
    if spec.kind == "prosody":
        emotion = get_emotion(spec.emotion)
        voice = emotional_voice(spec.voice, emotion, spec.jitter)
        speech = apply_quality(trim_silence(synthesize(voice, spec.text)), emotion.quality)
        return [set_level(speech, spec.level_db + emotion.level_db, MAX_PEAK)]
    if spec.kind in ("keyword", "silence"):
        return [_keyword_clip(spec, rng)]
    if spec.kind == "noisy":
        return _noisy(spec, rng)
    raise ValueError(f"{spec.utt_id}: unknown utterance kind {spec.kind!r}")


def render_utterance(spec: UttSpec, root: str | Path) -> Rendered:
    """Render (or find already rendered) every output file of one utterance."""
    root = Path(root)
    paths = [wav_path(root, spec.task, spec.utt_id, s) for s in spec.outputs]
    sizes = [_valid_wav(p) for p in paths]
    if not all(sizes):
        signals = _render_signals(spec)
        if len(signals) != len(paths):
            raise ValueError(f"{spec.utt_id}: {len(signals)} signals for {len(paths)} outputs")
        # write the first (wav.scp) file last: its presence marks the utterance complete
        for path, samples in list(zip(paths, signals))[::-1]:
            write_wav(path, samples, SAMPLE_RATE)
        sizes = [len(s) for s in signals]
    phones = tuple(phonemize(spec.voice, spec.text)) if spec.phones else ()
    return Rendered(spec.utt_id, sizes[0], phones)
