"""Transcript normalisation shared by data preparation, tokenizers, LM text and scoring.

One function so that the synthetic corpus, real-corpus preparers, the LM training text and the
reference/hypothesis pairs that jiwer scores all agree on what a word is.
"""

from __future__ import annotations

import re

_NOT_TRANSCRIPT = re.compile(r"[^a-z' ]+")


def normalize_text(display: str) -> str:
    """Transcript form: lower-case ``[a-z' ]`` only, single spaces, no leading/trailing space.
    Hyphens become word breaks; digits and other symbols are removed (corpora spell numbers out
    before this)."""
    text = display.lower().replace("-", " ")
    text = _NOT_TRANSCRIPT.sub(" ", text)
    return " ".join(text.split())
