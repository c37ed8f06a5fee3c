"""Reference material for checking the decoder: a pyctcdecode peer and simulated emissions.

Used by ``tests/test_decode.py`` and ``bench/decode.py`` (bench code, not part of the package:
``bench/decode.py`` imports it from its own folder, ``tests/conftest.py`` puts ``bench/`` on
``sys.path``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from speechssl.asr.decode import BLANK, DecoderConfig


def simulate_ctc_emissions(
    labellings: Sequence[Sequence[int]],
    vocab_size: int,
    rng: np.random.Generator,
    *,
    margin: tuple[float, float] = (7.5, 1.5),
    noise: float = 1.0,
    frames_per_token: tuple[int, int] = (1, 2),
    blanks_between: tuple[int, int] = (0, 2),
    confusions: dict[int, Sequence[int]] | None = None,
    confusion_rate: float = 0.05,
    confusion_gap: tuple[float, float] = (0.5, 3.0),
) -> list[np.ndarray]:
    """Peaky CTC log-posteriors (T_i, V) for known labellings, for testing decoders without a
    model: each token held for ``frames_per_token`` frames with ``blanks_between`` blank frames
    around (at least one between equal tokens); logits N(0, ``noise``) plus a N(``margin``)
    bump on the frame's label. With probability ``confusion_rate`` a token listed in
    ``confusions`` shows as one of its confusable tokens instead, the true token trailing it by
    U(``confusion_gap``) nats: the errors an LM can undo."""
    confusions = confusions or {}
    out = []
    for labelling in labellings:
        shown, true = [], []
        for i, token in enumerate(labelling):
            blanks = int(rng.integers(blanks_between[0], blanks_between[1] + 1))
            if i > 0 and labelling[i - 1] == token:
                blanks = max(blanks, 1)
            shown += [BLANK] * blanks
            true += [BLANK] * blanks
            seen = token
            if token in confusions and rng.random() < confusion_rate:
                seen = int(rng.choice(confusions[token]))
            hold = int(rng.integers(frames_per_token[0], frames_per_token[1] + 1))
            shown += [seen] * hold
            true += [token] * hold
        tail = int(rng.integers(blanks_between[0], blanks_between[1] + 1))
        shown, true = np.array(shown + [BLANK] * tail), np.array(true + [BLANK] * tail)
        frames = np.arange(len(shown))
        logits = noise * rng.standard_normal((len(shown), vocab_size))
        bump = np.maximum(rng.normal(margin[0], margin[1], len(shown)), 1.0)
        logits[frames, shown] += bump
        confused = shown != true
        gap = rng.uniform(*confusion_gap, confused.sum())
        logits[frames[confused], true[confused]] += bump[confused] - gap
        logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        out.append(logp.astype(np.float32))
    return out


def build_pyctcdecode(
    tokens: Sequence[str],
    arpa: str | os.PathLike | None = None,
    config: DecoderConfig = DecoderConfig(),  # noqa: B008 (a frozen dataclass)
    fix_final_word: bool = True,
):
    """pyctcdecode 0.5.0's decoder for the same tokens, LM and weights: the second
    implementation the tests and ``bench/decode.py`` compare against. Decode with
    ``decode_beams(lp, beam_width=config.beam, beam_prune_logp=config.beam_prune_logp,
    token_min_logp=config.token_min_logp, prune_history=False)``.

    Mapping: blank -> ``""``, ``"|"`` -> ``" "``, ``<unk>`` -> ``"⁇"`` (pyctcdecode's own
    ``▁⁇▁`` sets a break flag shared by all beams); ``unk_score`` -> ``unk_score_offset`` (the
    same units). ``fix_final_word``: 0.5.0 scores the empty word
    left when a text ends in a delimiter as an OOV word (unk offset, beta) at the end of the
    utterance, and merging keeps whichever of two equal texts came first, so a correct text can
    lose to a worse one; the fix scores only ``</s>`` there, as
    :mod:`speechssl.asr.decode` does.
    """
    from pyctcdecode import build_ctcdecoder
    from pyctcdecode.constants import LOG_BASE_CHANGE_FACTOR
    from pyctcdecode.language_model import LanguageModel

    labels = []
    for i, tok in enumerate(tokens):
        labels.append("" if i == BLANK else {"|": " ", "<unk>": "⁇"}.get(tok, tok))
    decoder = build_ctcdecoder(
        labels,
        kenlm_model_path=None if arpa is None else str(arpa),
        alpha=config.alpha,
        beta=config.beta,
        unk_score_offset=config.unk_score,
        lm_score_boundary=config.score_boundary,
    )

    class _FinalWordFixed(LanguageModel):
        def score(self, prev_state, word, is_last_word=False):
            if word == "" and is_last_word:
                end = self._get_raw_end_score(prev_state) * LOG_BASE_CHANGE_FACTOR
                return self.alpha * end, prev_state
            return super().score(prev_state, word, is_last_word)

    if fix_final_word and arpa is not None:
        decoder._language_model.__class__ = _FinalWordFixed
    return decoder
