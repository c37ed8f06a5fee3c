"""Emotion-like prosody classes: pitch, speaking rate, loudness and voice quality.

Each class changes the voice before synthesis (pitch and rate) and the audio after it (level and
a voice-quality filter):

========= ======= ====== ======== =====================================================
class     pitch   rate   level    voice quality
========= ======= ====== ======== =====================================================
neutral   x1.00   x1.00  +0 dB    unchanged
happy     x1.30   x1.15  +4 dB    bright: high frequencies boosted (+ high-pass copy)
sad       x0.75   x0.78  -8 dB    dull/soft: low-pass at 2.2 kHz
angry     x1.10   x1.22  +7 dB    harsh/tense: tanh overdrive, then a 1 kHz+ boost
========= ======= ====== ======== =====================================================

(espeak-ng pitch is its 0..99 setting, clamped; flite pitch is the f0 target in Hz.) Each
utterance also gets a small random jitter on every factor so the classes overlap a little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from speechssl.data.synth.voices import Voice

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Emotion:
    name: str
    pitch_scale: float
    rate_scale: float
    level_db: float
    quality: str  # "none", "bright", "dull", "harsh"


EMOTIONS = (
    Emotion("neutral", 1.00, 1.00, 0.0, "none"),
    Emotion("happy", 1.30, 1.15, 4.0, "bright"),
    Emotion("sad", 0.75, 0.78, -8.0, "dull"),
    Emotion("angry", 1.10, 1.22, 7.0, "harsh"),
)
EMOTION_NAMES = tuple(e.name for e in EMOTIONS)


def get_emotion(name: str) -> Emotion:
    for emotion in EMOTIONS:
        if emotion.name == name:
            return emotion
    raise ValueError(f"unknown emotion {name!r}; known: {', '.join(EMOTION_NAMES)}")


def emotional_voice(voice: Voice, emotion: Emotion, jitter: float = 0.0) -> Voice:
    """The voice with the class's pitch and rate; ``jitter`` in [-1, 1] shifts both by up to 5%."""
    scale = 1 + 0.05 * jitter
    return voice.scaled(emotion.pitch_scale * scale, emotion.rate_scale * scale)


def _highpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    sos = signal.butter(2, cutoff, btype="highpass", fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, x)


def apply_quality(samples: np.ndarray, quality: str) -> np.ndarray:
    """Voice-quality colouring, level-independent (the caller sets the level afterwards)."""
    x = samples.astype(np.float64)
    if quality == "none":
        pass
    elif quality == "bright":
        x = x + 1.0 * _highpass(x, 2000.0)
    elif quality == "dull":
        sos = signal.butter(4, 2200.0, btype="lowpass", fs=SAMPLE_RATE, output="sos")
        x = signal.sosfilt(sos, x)
    elif quality == "harsh":
        peak = np.max(np.abs(x)) or 1.0
        x = np.tanh(4.0 * x / peak)
        x = x + 0.5 * _highpass(x, 1000.0)
    else:
        raise ValueError(f"unknown voice quality {quality!r}")
    return x.astype(np.float32)
