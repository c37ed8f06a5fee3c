"""How many utterances each task gets at a given scale.

``scale`` is the hours of audio in ``asr/train_labeled`` + ``asr/train_unlabeled``; every other
subset is proportional to it, with minimums so that even the ``test`` preset has every class,
every voice and both trial types, and enough utterances for every SUPERB probe to beat chance
in a few CPU minutes (128 labeled ASR sentences and 48 each for dev and test, 192
phone-labelled sentences, 160 commands covering the 31 intents 5 times, 8 clips per keyword, 32
per emotion, 6 utterances per voice). Presets:

``test``     0.01 h asked for, about 0.35 h of ASR training audio after the minimums (128 + 384
             sentences of at most 5 words); the whole corpus is under an hour of audio and
             renders in about 20 s on 2 cores (unit tests, the test-scale SUPERB acceptance).
``default``  sized so the whole corpus renders in about 3-4 minutes on 2 CPU cores
             (``egs/synth`` default run).
a number     hours, e.g. ``20`` for a GPU run.
"""

from __future__ import annotations

from dataclasses import dataclass

PRESETS = {"test": 0.01, "default": 3.0}
AVG_SENTENCE_S = 2.3  # measured mean duration of a grammar sentence after trimming


@dataclass(frozen=True)
class Sizes:
    asr_labeled: int
    asr_unlabeled: int
    asr_dev: int
    asr_test: int
    lm_sentences: int
    phones_train: int
    phones_dev: int
    phones_test: int
    keywords_train: int  # clips per class (12 classes)
    keywords_dev: int
    keywords_test: int
    intents_train: int
    intents_dev: int
    intents_test: int
    speaker_utts: tuple[int, int, int]  # per voice: sid train, dev, test
    prosody_train: int
    prosody_dev: int
    prosody_test: int
    noisy_train: int
    noisy_dev: int
    noisy_test: int
    max_words: int | None = None  # cap on sentence length (test preset only)


def scale_hours(scale: str | float) -> float:
    if isinstance(scale, str):
        if scale in PRESETS:
            return PRESETS[scale]
        try:
            scale = float(scale)
        except ValueError:
            raise ValueError(
                f"scale {scale!r}: expected {' or '.join(PRESETS)} or a number of hours"
            ) from None
    if not scale > 0:
        raise ValueError(f"scale must be a positive number of hours, found {scale}")
    return float(scale)


def sizes_for_scale(scale: str | float, num_voices: int) -> Sizes:
    hours = scale_hours(scale)
    n = max(16, round(hours * 3600 / AVG_SENTENCE_S))  # ASR training utterances

    def part(frac: float, minimum: int) -> int:
        return max(minimum, round(frac * n))

    labeled = part(0.25, 128)
    per_voice = max(6, round(0.2 * n / num_voices))
    held = max(1, round(0.2 * per_voice))
    keywords = max(8, round(0.1 * hours * 3600 / 12))  # 1 s clips: 10% of the ASR hours
    return Sizes(
        asr_labeled=labeled,
        asr_unlabeled=max(384, n - labeled),
        asr_dev=part(0.05, 48),
        asr_test=part(0.05, 48),
        lm_sentences=max(1000, 20 * labeled),  # 20x the labeled sentences
        phones_train=part(0.25, 192),
        phones_dev=part(0.04, 24),
        phones_test=part(0.04, 24),
        keywords_train=keywords,
        keywords_dev=max(4, round(keywords / 8)),
        keywords_test=max(4, round(keywords / 8)),
        intents_train=part(0.15, 160),
        intents_dev=part(0.03, 31),
        intents_test=part(0.03, 31),
        speaker_utts=(per_voice - 2 * held, held, held),
        prosody_train=4 * max(32, round(0.1 * n / 4)),
        prosody_dev=4 * max(8, round(0.025 * n / 4)),
        prosody_test=4 * max(8, round(0.025 * n / 4)),
        noisy_train=part(0.1, 6),
        noisy_dev=part(0.025, 4),
        noisy_test=part(0.025, 4),
        max_words=5 if scale == "test" else None,
    )
