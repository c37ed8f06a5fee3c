"""Word n-gram language models with KenLM: build (``lmplz``, ``build_binary``) and score.

KenLM's Python module scores but cannot estimate; ``lmplz`` (modified Kneser-Ney) and
``build_binary`` are compiled into ``tools/bin`` by ``tools/install_kenlm.sh``. KenLM reports
log10 probabilities; everything here returns natural logs so that LM scores add to CTC
log-probabilities without a base change at the call site.

    speechssl lm build --text lm_text --order 3 [--prune 0 0 1] [--binary] --out exp/lm
    speechssl lm score --lm exp/lm/lm.arpa --text data/test/lm_text
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import kenlm

from speechssl.io import atomic_path

log = logging.getLogger("speechssl.asr.lm")

LN10 = math.log(10.0)  # log10 -> natural log: ln p = log10 p * ln 10
BOUNDARY_WORDS = frozenset({"<s>", "</s>", "<unk>"})
_REPO_ROOT = Path(__file__).resolve().parents[2]


def find_kenlm_program(name: str, program: str | os.PathLike | None = None) -> Path:
    """The KenLM program ``name`` (``lmplz``, ``build_binary``): ``program`` if given, else
    ``tools/bin/<name>`` of this checkout, else the one on PATH."""
    candidates = [Path(program)] if program else [_REPO_ROOT / "tools" / "bin" / name]
    if not program and shutil.which(name):
        candidates.append(Path(shutil.which(name)))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        f"KenLM's {name} not found (looked for {', '.join(map(str, candidates))} and on PATH); "
        f"build it with tools/install_kenlm.sh"
    )


def _check_text(text: Path) -> None:
    if not text.is_file():
        raise FileNotFoundError(f"LM training text {text} does not exist")
    with open(text, encoding="utf-8") as f:
        if not any(line.strip() for line in f):
            raise ValueError(f"LM training text {text} is empty (one sentence per line expected)")


def _run_kenlm(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _last_lines(stderr: str, n: int = 4) -> str:
    return " | ".join(line.strip() for line in stderr.strip().splitlines()[-n:])


def build_arpa(
    text: str | os.PathLike,
    arpa: str | os.PathLike,
    order: int = 3,
    prune: list[int] | None = None,
    discount_fallback: bool | None = None,
    lmplz: str | os.PathLike | None = None,
    memory: str = "10%",
) -> Path:
    """Estimate a modified Kneser-Ney ``order``-gram LM from ``text`` (one normalized sentence per
    line) with ``lmplz`` and write it to ``arpa`` atomically.

    ``prune``: lmplz's per-order count thresholds (e.g. ``[0, 0, 1]`` drops singleton 3-grams).
    ``discount_fallback``: ``None`` retries with ``--discount_fallback`` when lmplz cannot estimate
    the discounts (``BadDiscountException``, typical of small or artificial text) and logs it;
    ``True``/``False`` force it on/off. ``memory``: lmplz's ``-S`` (sorting memory).
    """
    text, arpa = Path(text), Path(arpa)
    _check_text(text)
    if order < 1:
        raise ValueError(f"LM order must be >= 1, got {order}")
    if prune is not None and (len(prune) > order or any(p < 0 for p in prune)):
        raise ValueError(f"--prune takes at most {order} non-negative counts, got {prune}")
    program = find_kenlm_program("lmplz", lmplz)
    arpa.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(arpa) as tmp:
        cmd = [str(program), "-o", str(order), "-S", memory, "-T", f"{arpa.parent}/"]
        cmd += ["--text", str(text), "--arpa", str(tmp)]
        if prune:
            cmd += ["--prune", *map(str, prune)]
        result = _run_kenlm(cmd + (["--discount_fallback"] if discount_fallback else []))
        if (
            result.returncode != 0
            and discount_fallback is None
            and "BadDiscountException" in result.stderr
        ):
            log.warning(
                "lmplz could not estimate Kneser-Ney discounts from %s (small or artificial "
                "text); rerunning with --discount_fallback",
                text,
            )
            result = _run_kenlm(cmd + ["--discount_fallback"])
        if result.returncode != 0:
            raise ValueError(
                f"lmplz failed on {text} (exit {result.returncode}): {_last_lines(result.stderr)}"
            )
    return arpa


def build_binary(
    arpa: str | os.PathLike, out: str | os.PathLike, program: str | os.PathLike | None = None
) -> Path:
    """Convert ``arpa`` to KenLM's binary trie format (loads faster, smaller) at ``out``,
    atomically."""
    arpa, out = Path(arpa), Path(out)
    if not arpa.is_file():
        raise FileNotFoundError(f"ARPA file {arpa} does not exist")
    tool = find_kenlm_program("build_binary", program)
    with atomic_path(out) as tmp:
        result = _run_kenlm([str(tool), "trie", str(arpa), str(tmp)])
        if result.returncode != 0:
            raise ValueError(
                f"build_binary failed on {arpa} (exit {result.returncode}): "
                f"{_last_lines(result.stderr)}"
            )
    return out


def read_arpa_unigrams(arpa: str | os.PathLike) -> frozenset[str]:
    """The words of an ARPA file's ``\\1-grams:`` section, without ``<s>``, ``</s>``, ``<unk>``."""
    words = set()
    in_unigrams = False
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif line.startswith("\\") and in_unigrams:
                break
            elif in_unigrams and line:
                fields = line.split("\t")
                if len(fields) >= 2:
                    words.add(fields[1])
    if not words:
        raise ValueError(f"{arpa} has no 1-grams: not an ARPA language model")
    return frozenset(words - BOUNDARY_WORDS)


class KenLM:
    """A word n-gram LM (ARPA or KenLM binary) scored in natural log.

    ``vocab``: the LM's words (for prefix checks during lexicon-free decoding); by default the
    ARPA's 1-grams, or for a binary file those of a sibling ``<stem>.arpa`` if there is one,
    else ``None`` (OOV detection still works through KenLM itself).
    """

    def __init__(self, path: str | os.PathLike, vocab: Iterable[str] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"language model {self.path} does not exist")
        config = kenlm.Config()
        config.show_progress = False
        config.arpa_complain = kenlm.ARPALoadComplain.NONE
        try:
            self.model = kenlm.Model(str(self.path), config)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"cannot load language model {self.path}: {e}") from e
        if vocab is None:
            arpa = self.arpa
            vocab = None if arpa is None else read_arpa_unigrams(arpa)
        self.vocab = None if vocab is None else frozenset(vocab)
        self._prefixes: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"KenLM({str(self.path)!r}, order={self.order})"

    @property
    def arpa(self) -> Path | None:
        """The LM's ARPA file: its own path, or for a binary file a sibling ``<stem>.arpa``."""
        arpa = self.path if _is_arpa(self.path) else self.path.with_suffix(".arpa")
        return arpa if arpa.is_file() and _is_arpa(arpa) else None

    @property
    def order(self) -> int:
        return int(self.model.order)

    @property
    def word_prefixes(self) -> frozenset[str] | None:
        """Every prefix of every vocabulary word (``None`` without a vocabulary)."""
        if self._prefixes is None and self.vocab is not None:
            self._prefixes = frozenset(w[:i] for w in self.vocab for i in range(1, len(w) + 1))
        return self._prefixes

    def begin_state(self) -> kenlm.State:
        """The ``<s>`` context (start of a sentence)."""
        state = kenlm.State()
        self.model.BeginSentenceWrite(state)
        return state

    def null_state(self) -> kenlm.State:
        """No context (scoring a fragment that need not start a sentence)."""
        state = kenlm.State()
        self.model.NullContextWrite(state)
        return state

    def score(self, state: kenlm.State, word: str) -> tuple[float, kenlm.State]:
        """(ln P(word | state), the state after ``word``). OOV words get KenLM's ``<unk>`` score."""
        out = kenlm.State()
        return self.model.BaseScore(state, word, out) * LN10, out

    def end_score(self, state: kenlm.State) -> float:
        """ln P(</s> | state)."""
        return self.model.BaseScore(state, "</s>", kenlm.State()) * LN10

    def is_oov(self, word: str) -> bool:
        return word not in self.model

    def sentence_score(self, words: Iterable[str], bos: bool = True, eos: bool = True) -> float:
        """ln P(words): the sum of the per-word scores (and ``</s>`` when ``eos``)."""
        state = self.begin_state() if bos else self.null_state()
        total = 0.0
        for word in words:
            logp, state = self.score(state, word)
            total += logp
        return total + (self.end_score(state) if eos else 0.0)


def _is_arpa(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(64).lstrip().startswith(b"\\data\\")


def load_lm(lm: KenLM | str | os.PathLike) -> KenLM:
    """``lm`` itself, or the LM at that path; loaded once per path (and file version), so callers
    may pass a path per utterance."""
    if isinstance(lm, KenLM):
        return lm
    path = Path(lm).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"language model {lm} does not exist")
    stat = path.stat()
    return _load_cached(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path, mtime_ns: int, size: int) -> KenLM:
    return KenLM(path)


def _sentences(text: Path) -> Iterator[list[str]]:
    with open(text, encoding="utf-8") as f:
        for line in f:
            words = line.split()
            if words:
                yield words


def perplexity(lm: KenLM, text: str | os.PathLike) -> dict[str, float]:
    """Per-word perplexity of ``text`` (one sentence a line) counting ``</s>`` as a word and
    OOV words at KenLM's ``<unk>`` probability; with the sentence, word and OOV counts."""
    text = Path(text)
    if not text.is_file():
        raise FileNotFoundError(f"text {text} does not exist")
    total, sentences, words, oov = 0.0, 0, 0, 0
    for sentence in _sentences(text):
        total += lm.sentence_score(sentence)
        sentences += 1
        words += len(sentence)
        oov += sum(lm.is_oov(w) for w in sentence)
    if sentences == 0:
        raise ValueError(f"text {text} is empty (one sentence per line expected)")
    ppl = math.exp(-total / (words + sentences))
    return {"perplexity": ppl, "sentences": sentences, "words": words, "oov": oov}
