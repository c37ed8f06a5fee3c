"""The embedded synthetic corpus: real synthetic speech (espeak-ng, flite) for every task.

See ``README.md`` beside this file. Entry points: :func:`build_corpus` and
``speechssl synth`` (:mod:`speechssl.commands.synth`).
"""

from speechssl.data.synth.corpus import DEFAULT_SNRS, SUBSETS, build_corpus, format_summary
from speechssl.data.synth.grammar import Grammar, normalize_text
from speechssl.data.synth.synthesizer import SynthesisError, phonemize, synthesize
from speechssl.data.synth.voices import Voice, VoiceError, default_voices, read_voices

__all__ = [
    "DEFAULT_SNRS",
    "SUBSETS",
    "Grammar",
    "SynthesisError",
    "Voice",
    "VoiceError",
    "build_corpus",
    "default_voices",
    "format_summary",
    "normalize_text",
    "phonemize",
    "read_voices",
    "synthesize",
]
