"""CTC tokenizers: characters with a word-boundary symbol, or sentencepiece unigram/BPE pieces.

Both put the CTC blank ``"<blank>"`` at index 0 and are saved as one ``tokens.txt`` beside the
model (``<token> <id>`` per line, as k2/icefall write it); a sentencepiece tokenizer also keeps its
``.model`` file beside ``tokens.txt``. Text is normalised with the same
:func:`speechssl.data.text.normalize_text` that data preparation uses, so the training targets,
the LM text and the scored references agree on what a word is.

The decoder (:mod:`speechssl.asr.decode`) reads the vocabulary kind from the tokens: ``"|"``
separates words in a character vocabulary; a piece starting with ``"▁"`` begins a word in a
sentencepiece vocabulary.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from speechssl.data.text import normalize_text
from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_write_bytes, atomic_write_text

BLANK = "<blank>"
WORD_BOUNDARY = "|"
SP_WORD_START = "\u2581"  # "▁"
CHAR_UNK = "<unk>"


class TokenizerError(SpeechSSLError, ValueError):
    """Bad tokenizer files or text a tokenizer cannot encode."""


class CharTokenizer:
    """Characters of the normalised text; ``|`` between words; ``<unk>`` for unseen characters."""

    kind = "char"

    def __init__(self, tokens: list[str]):
        if not tokens or tokens[0] != BLANK or WORD_BOUNDARY not in tokens:
            raise TokenizerError(f"a character vocabulary starts with {BLANK} and has '|'")
        self.tokens = list(tokens)
        self._index = {t: i for i, t in enumerate(self.tokens)}
        self._unk = self._index.get(CHAR_UNK)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        chars = sorted({c for text in texts for c in normalize_text(text) if c != " "})
        if not chars:
            raise TokenizerError("no characters in the training text; is it empty?")
        return cls([BLANK, WORD_BOUNDARY, *chars, CHAR_UNK])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        ids = []
        for c in normalize_text(text).replace(" ", WORD_BOUNDARY):
            i = self._index.get(c, self._unk)
            if i is None:
                raise TokenizerError(f"character {c!r} is not in the vocabulary (no <unk>)")
            ids.append(i)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        pieces = [self.tokens[i] for i in ids if i != 0]
        text = "".join(p for p in pieces if p != CHAR_UNK)
        return " ".join(text.replace(WORD_BOUNDARY, " ").split())

    def save(self, folder: str | os.PathLike) -> Path:
        return write_tokens(self.tokens, Path(folder) / "tokens.txt")


class SentencePieceTokenizer:
    """sentencepiece unigram or BPE pieces; CTC id = piece id + 1 (the blank takes id 0)."""

    kind = "sentencepiece"

    def __init__(self, model_file: str | os.PathLike):
        import sentencepiece as spm

        self.model_file = Path(model_file)
        if not self.model_file.is_file():
            raise TokenizerError(f"{self.model_file}: sentencepiece model not found")
        self.sp = spm.SentencePieceProcessor(model_file=str(self.model_file))
        pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        self.tokens = [BLANK, *pieces]

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        folder: str | os.PathLike,
        vocab_size: int = 256,
        model_type: str = "unigram",
    ) -> SentencePieceTokenizer:
        """Train on the normalised ``texts``; writes ``folder/sp.model`` and ``tokens.txt``."""
        import sentencepiece as spm

        if model_type not in ("unigram", "bpe"):
            raise TokenizerError(f"model_type must be unigram or bpe, found {model_type!r}")
        lines = [t for t in (normalize_text(x) for x in texts) if t]
        if not lines:
            raise TokenizerError("no text to train sentencepiece on")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            corpus = Path(tmp) / "text.txt"
            corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
            spm.SentencePieceTrainer.train(
                input=str(corpus),
                model_prefix=str(Path(tmp) / "sp"),
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=1.0,
                bos_id=-1,
                eos_id=-1,
                unk_id=0,
                hard_vocab_limit=False,  # tiny texts: fewer pieces rather than an error
                num_threads=1,  # deterministic
                minloglevel=2,
            )
            atomic_write_bytes(folder / "sp.model", (Path(tmp) / "sp.model").read_bytes())
        tokenizer = cls(folder / "sp.model")
        tokenizer.save(folder)
        return tokenizer

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self.sp.encode(normalize_text(text))]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i - 1 for i in ids if i != 0])

    def save(self, folder: str | os.PathLike) -> Path:
        return write_tokens(self.tokens, Path(folder) / "tokens.txt")


Tokenizer = CharTokenizer | SentencePieceTokenizer


def write_tokens(tokens: list[str], path: Path) -> Path:
    atomic_write_text(path, "".join(f"{t} {i}\n" for i, t in enumerate(tokens)))
    return path


def read_tokens(path: str | os.PathLike) -> list[str]:
    """``tokens.txt`` (``<token> <id>`` per line, ids 0..V-1 in order)."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: tokens file not found")
    tokens = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.rsplit(" ", 1)
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) != len(tokens):
            raise TokenizerError(f"{path}:{n}: expected '<token> {len(tokens)}', found {line!r}")
        tokens.append(parts[0])
    return tokens


def build_tokenizer(
    kind: str, texts: list[str], folder: str | os.PathLike, vocab_size: int = 256
) -> Tokenizer:
    """Train a tokenizer of ``kind`` (``char``, ``unigram`` or ``bpe``) and save it in ``folder``."""
    if kind == "char":
        tokenizer = CharTokenizer.from_texts(texts)
        tokenizer.save(folder)
        return tokenizer
    if kind in ("unigram", "bpe"):
        return SentencePieceTokenizer.train(texts, folder, vocab_size, model_type=kind)
    raise TokenizerError(f"tokenizer kind must be char, unigram or bpe; found {kind!r}")


def load_tokenizer(folder: str | os.PathLike) -> Tokenizer:
    """The tokenizer saved in ``folder`` (``sp.model`` + ``tokens.txt``, or ``tokens.txt``)."""
    folder = Path(folder)
    if (folder / "sp.model").is_file():
        tokenizer = SentencePieceTokenizer(folder / "sp.model")
        saved = read_tokens(folder / "tokens.txt") if (folder / "tokens.txt").is_file() else None
        if saved is not None and saved != tokenizer.tokens:
            raise TokenizerError(f"{folder}: tokens.txt does not match sp.model")
        return tokenizer
    return CharTokenizer(read_tokens(folder / "tokens.txt"))
