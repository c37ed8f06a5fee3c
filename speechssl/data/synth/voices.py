"""Synthetic voices: which synthesizer, which voice, and how it is set.

A :class:`Voice` is one "speaker" of the corpus. Its ``id`` is stable and parseable
(:meth:`Voice.from_id`), uses only ``[a-z0-9-]`` (no ``_``, which would break the Kaldi rule that
utterance ids sort together with their speaker-id prefix), and becomes the speaker id.

Units are each engine's own:

======== ============================================ =========================================
engine   pitch                                        rate
======== ============================================ =========================================
espeak   ``-p`` 0..99 (50 = voice default)             ``-s`` words per minute (175 = default)
flite    ``int_f0_target_mean`` in Hz (0 = default)   speed in percent (``duration_stretch`` =
                                                      100 / rate; 100 = default)
======== ============================================ =========================================

``default_voices()`` lists 48 voices: 40 espeak-ng voices (8 English accents x 21 variants,
paired so that no pair repeats, with pitch and rate spread over 5 steps each) and 8 flite voices
(kal16, awb, rms, slt, each at its default and one modified setting). A voices file (``--voices``)
holds one voice id a line; ``#`` starts a comment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_write_text

ENGINES = ("espeak", "flite")

ESPEAK_ACCENTS = (
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-029",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us-nyc",
)
ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "croak", "klatt", "klatt2", "klatt3", "klatt4", "linda", "steph", "paul", "max",
)  # fmt: skip
ESPEAK_PITCHES = (50, 40, 60, 45, 55)
ESPEAK_RATES = (175, 160, 190, 168, 182)

FLITE_VOICES = ("kal16", "awb", "rms", "slt")
# Approximate median f0 (Hz) of each flite voice, used to scale pitch when the voice's own
# setting is 0 (default). rms ignores int_f0_target_mean; its pitch stays put.
FLITE_DEFAULT_F0 = {"kal16": 105, "awb": 130, "rms": 100, "slt": 170}

_ID_RE = re.compile(r"^(espeak|flite)-([a-z0-9-]+?)(?:-([a-z0-9]+))?-p(\d+)-r(\d+)(?:-a(\d+))?$")


class VoiceError(SpeechSSLError, ValueError):
    """A voice id or voices file is malformed."""


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak" or "flite"
    name: str  # espeak language/accent ("en-us") or flite voice ("slt")
    variant: str = ""  # espeak voice variant ("m3", "f1", "croak", "klatt"); "" for flite
    pitch: int = 50  # espeak -p 0..99; flite f0 target mean in Hz (0 = the voice's own)
    rate: int = 175  # espeak -s words/minute; flite speed percent (100 = the voice's own)
    amplitude: int = 100  # espeak -a 0..200; ignored by flite

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise VoiceError(f"voice engine must be one of {ENGINES}, found {self.engine!r}")
        for field_name in ("name", "variant"):
            value = getattr(self, field_name)
            if not re.fullmatch(r"[a-z0-9-]*", value):
                raise VoiceError(f"voice {field_name} {value!r}: only [a-z0-9-] allowed")
        if self.engine == "espeak" and not self.variant:
            raise VoiceError(f"espeak voice {self.name!r} needs a variant (e.g. m1)")
        if self.engine == "flite" and self.variant:
            raise VoiceError(f"flite voice {self.name!r} takes no variant")
        if self.rate <= 0:
            raise VoiceError(f"voice {self.name!r}: rate must be positive, found {self.rate}")

    @property
    def id(self) -> str:
        parts = [self.engine, self.name] + ([self.variant] if self.variant else [])
        parts += [f"p{self.pitch}", f"r{self.rate}"]
        if self.amplitude != 100:
            parts.append(f"a{self.amplitude}")
        return "-".join(parts)

    @classmethod
    def from_id(cls, voice_id: str) -> Voice:
        match = _ID_RE.match(voice_id.strip())
        if not match:
            raise VoiceError(
                f"voice id {voice_id!r} is not '<engine>-<name>[-<variant>]-p<pitch>-r<rate>[-a<amp>]',"
                " e.g. espeak-en-us-m3-p50-r175 or flite-slt-p0-r100"
            )
        engine, name, variant, pitch, rate, amp = match.groups()
        if engine == "flite" and variant:  # flite names have no variant: "flite-slt-p0-r100"
            name, variant = f"{name}-{variant}", None
        return cls(engine, name, variant or "", int(pitch), int(rate), int(amp or 100))

    def scaled(self, pitch_scale: float = 1.0, rate_scale: float = 1.0) -> Voice:
        """The same voice with pitch and speaking rate scaled (prosody classes).

        espeak-ng's pitch setting is a 0..99 knob, not Hz, and moves f0 only mildly, so a scale
        ``s`` shifts it by ``100 * (s - 1)`` steps (clamped): x1.3 -> +30.
        """
        if self.engine == "espeak":
            pitch = int(round(min(99, max(0, self.pitch + 100 * (pitch_scale - 1)))))
        else:
            base = self.pitch or FLITE_DEFAULT_F0.get(self.name, 120)
            pitch = int(round(base * pitch_scale))
        return replace(self, pitch=pitch, rate=max(1, int(round(self.rate * rate_scale))))


def default_voices() -> list[Voice]:
    """The documented default voice list (48 voices); see the module docstring."""
    voices = []
    for i in range(40):
        voices.append(
            Voice(
                "espeak",
                ESPEAK_ACCENTS[i % len(ESPEAK_ACCENTS)],
                ESPEAK_VARIANTS[i % len(ESPEAK_VARIANTS)],
                pitch=ESPEAK_PITCHES[i % 5],
                rate=ESPEAK_RATES[(i // 5) % 5],
            )
        )
    for name, modified in (
        ("kal16", (140, 90)),
        ("awb", (110, 112)),
        ("rms", (0, 88)),
        ("slt", (210, 110)),
    ):
        voices.append(Voice("flite", name, pitch=0, rate=100))
        voices.append(Voice("flite", name, pitch=modified[0], rate=modified[1]))
    return voices


def read_voices(path: str | os.PathLike) -> list[Voice]:
    """Read a voices file: one voice id a line, ``#`` comments; errors name file and line."""
    voices = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            voices.append(Voice.from_id(line))
        except VoiceError as e:
            raise VoiceError(f"{path}:{lineno}: {e}") from None
    if not voices:
        raise VoiceError(f"{path}: no voices listed")
    ids = [v.id for v in voices]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise VoiceError(f"{path}: duplicate voices {dup}")
    return voices


def write_voices(path: str | os.PathLike, voices: list[Voice]) -> None:
    atomic_write_text(path, "".join(v.id + "\n" for v in voices))
