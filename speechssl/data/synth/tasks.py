"""Plan every task's utterances: which voice says what, with which labels, in which data dir.

Planning is cheap and runs in the main process; rendering (``render.py``) runs in workers. Every
utterance draws from its own generator, ``default_rng(utt_seed(seed, task, split, index))``, so
an utterance does not change when the scale, the job count or another task changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from speechssl.data.synth.grammar import Grammar, normalize_text
from speechssl.data.synth.intents import INTENTS, intent_label, intent_utterance
from speechssl.data.synth.noise import FAMILIES
from speechssl.data.synth.prosody import EMOTION_NAMES
from speechssl.data.synth.render import NoiseSpec, UttSpec
from speechssl.data.synth.sizes import Sizes
from speechssl.data.synth.voices import Voice

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
KEYWORD_CLASSES = KEYWORDS + ("_unknown_", "_silence_")
SILENCE_SPEAKER = "noise"


def utt_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed from the corpus seed and a path of names/indices (stable across runs)."""
    key = "/".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


def utt_rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(utt_seed(seed, *parts))


@dataclass
class DirPlan:
    """One Kaldi data dir to write once its audio exists."""

    name: str  # relative to the corpus root, e.g. "asr/train_labeled"
    task: str  # folder under wav/
    utt2spk: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] | None = None  # transcript form
    tables: dict[str, dict[str, str]] = field(default_factory=dict)  # utt2keyword, utt2snr, ...
    scp: dict[str, str] = field(default_factory=dict)  # e.g. {"clean.scp": ".clean"}
    files: dict[str, str] = field(default_factory=dict)  # whole files, e.g. {"trials": ...}
    phones: bool = False  # write utt2phones

    def add(self, spec: UttSpec, speaker: str, text: str | None = None, **labels: str) -> None:
        self.utt2spk[spec.utt_id] = speaker
        if text is not None:
            self.text = self.text if self.text is not None else {}
            self.text[spec.utt_id] = text
        for table, value in labels.items():
            self.tables.setdefault(table, {})[spec.utt_id] = value


@dataclass
class Plan:
    specs: dict[str, UttSpec] = field(default_factory=dict)  # by utt id
    dirs: list[DirPlan] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # corpus-level files: path -> content

    def add(self, spec: UttSpec) -> UttSpec:
        if self.specs.setdefault(spec.utt_id, spec) != spec:
            raise ValueError(f"utterance id {spec.utt_id} planned twice with different content")
        return spec


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _split_voices(voices: list[Voice], rng: np.random.Generator, frac: float = 0.2):
    """Disjoint (train, dev, test) voice groups; dev and test get ``frac`` each (at least 2)."""
    order = [voices[i] for i in rng.permutation(len(voices))]
    n_held = max(2, int(round(frac * len(voices))))
    if len(voices) < 3 * n_held:
        raise ValueError(
            f"need at least {3 * n_held} voices for disjoint splits, have {len(voices)}"
        )
    dev, test, train = order[:n_held], order[n_held : 2 * n_held], order[2 * n_held :]
    return (
        sorted(train, key=lambda v: v.id),
        sorted(dev, key=lambda v: v.id),
        sorted(test, key=lambda v: v.id),
    )


def _uid(speaker: str, task: str, split: str, index: int) -> str:
    return f"{speaker}-{task}-{split}-{index:06d}"


def _spec(
    seed: int, task: str, split: str, i: int, voice: Voice, text: str, level_db: float, **kw
) -> UttSpec:
    """A plain speech utterance (``kind`` and other fields can be overridden in ``kw``)."""
    kw.setdefault("kind", "speech")
    render_seed = utt_seed(seed, task, split, i, "render")
    return UttSpec(
        _uid(voice.id, task, split, i),
        task,
        render_seed,
        voice=voice,
        text=text,
        level_db=level_db,
        **kw,
    )


def plan_asr(plan: Plan, grammar: Grammar, voices: list[Voice], sizes: Sizes, seed: int) -> None:
    splits = (
        ("train_labeled", "lab", sizes.asr_labeled),
        ("train_unlabeled", "unlab", sizes.asr_unlabeled),
        ("dev", "dev", sizes.asr_dev),
        ("test", "test", sizes.asr_test),
    )
    held_out: set[str] = set()
    for name, split, count in splits:
        d = DirPlan(f"asr/{name}", "asr")
        for i in range(count):
            rng = utt_rng(seed, "asr", split, i)
            voice, text = _pick(rng, voices), grammar.sentence(rng, sizes.max_words)
            spec = _spec(seed, "asr", split, i, voice, text, float(rng.uniform(-30, -20)))
            d.add(plan.add(spec), voice.id, normalize_text(text))
            if split in ("dev", "test"):
                held_out.add(normalize_text(text))
        plan.dirs.append(d)
    plan.files["asr/lm_text.txt"] = "".join(
        s + "\n" for s in lm_text(grammar, sizes, seed, held_out)
    )


def lm_text(grammar: Grammar, sizes: Sizes, seed: int, held_out: set[str]) -> list[str]:
    """LM training sentences, none of which is a dev or test transcript (skipped when drawn)."""
    sentences: list[str] = []
    i = 0
    while len(sentences) < sizes.lm_sentences:
        sentence = normalize_text(grammar.sentence(utt_rng(seed, "lm", i)))
        if sentence not in held_out:
            sentences.append(sentence)
        i += 1
    if not held_out.isdisjoint(sentences):  # by construction; checked because it matters
        raise RuntimeError("LM text overlaps the ASR dev/test transcripts")
    return sentences


def plan_phones(plan: Plan, grammar: Grammar, voices: list[Voice], sizes: Sizes, seed: int) -> None:
    espeak = [v for v in voices if v.engine == "espeak"]
    if not espeak:
        raise ValueError(
            "the phones task needs espeak-ng voices (phone labels come from espeak-ng)"
        )
    for split, count in (
        ("train", sizes.phones_train),
        ("dev", sizes.phones_dev),
        ("test", sizes.phones_test),
    ):
        d = DirPlan(f"phones/{split}", "phones", phones=True)
        for i in range(count):
            rng = utt_rng(seed, "phones", split, i)
            voice, text = _pick(rng, espeak), grammar.sentence(rng, sizes.max_words)
            spec = _spec(
                seed, "phones", split, i, voice, text, float(rng.uniform(-30, -20)), phones=True
            )
            d.add(plan.add(spec), voice.id, normalize_text(text))
        plan.dirs.append(d)


def plan_keywords(
    plan: Plan, grammar: Grammar, voices: list[Voice], sizes: Sizes, seed: int
) -> None:
    unknown = [w for w in grammar.single_words() if w not in KEYWORDS]
    for split, per_class in (
        ("train", sizes.keywords_train),
        ("dev", sizes.keywords_dev),
        ("test", sizes.keywords_test),
    ):
        d = DirPlan(f"keywords/{split}", "keywords")
        for i in range(per_class * len(KEYWORD_CLASSES)):
            rng = utt_rng(seed, "keywords", split, i)
            label = KEYWORD_CLASSES[i % len(KEYWORD_CLASSES)]
            render_seed = utt_seed(seed, "keywords", split, i, "render")
            if label == "_silence_":
                floor = NoiseSpec(
                    _pick(rng, ("white", "pink", "brown", "hum")), float(rng.uniform(-60, -35))
                )
                spec = UttSpec(
                    _uid(SILENCE_SPEAKER, "keywords", split, i),
                    "keywords",
                    render_seed,
                    "silence",
                    noise=(floor,),
                )
                d.add(plan.add(spec), SILENCE_SPEAKER, utt2keyword=label)
                continue
            voice = _pick(rng, voices)
            word = label if label in KEYWORDS else _pick(rng, unknown)
            background = NoiseSpec(
                _pick(rng, ("white", "pink", "brown")), float(rng.uniform(20, 40))
            )
            level = float(rng.uniform(-32, -20))
            spec = _spec(
                seed, "keywords", split, i, voice, word, level, kind="keyword", noise=(background,)
            )
            d.add(plan.add(spec), voice.id, utt2keyword=label)
        plan.dirs.append(d)


def plan_intents(
    plan: Plan, grammar: Grammar, voices: list[Voice], sizes: Sizes, seed: int
) -> None:
    for split, count in (
        ("train", sizes.intents_train),
        ("dev", sizes.intents_dev),
        ("test", sizes.intents_test),
    ):
        d = DirPlan(f"intents/{split}", "intents")
        offset = utt_seed(seed, "intents", split) % len(INTENTS)  # small splits cover other intents
        for i in range(count):
            rng = utt_rng(seed, "intents", split, i)
            intent = INTENTS[(i + offset) % len(INTENTS)]
            voice, text = _pick(rng, voices), intent_utterance(intent, rng)
            spec = _spec(seed, "intents", split, i, voice, text, float(rng.uniform(-30, -20)))
            d.add(plan.add(spec), voice.id, normalize_text(text), utt2intent=intent_label(intent))
        plan.dirs.append(d)


def _trials(utt2spk: dict[str, str], rng: np.random.Generator) -> str:
    """Per utterance as enrollment: one target trial (same voice) and one nontarget trial."""
    by_spk: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        by_spk.setdefault(utt2spk[utt], []).append(utt)
    lines = set()
    for utt in sorted(utt2spk):
        same = [u for u in by_spk[utt2spk[utt]] if u != utt]
        other = [u for u in sorted(utt2spk) if utt2spk[u] != utt2spk[utt]]
        if same:
            lines.add(f"{utt} {_pick(rng, same)} target")
        if other:
            lines.add(f"{utt} {_pick(rng, other)} nontarget")
    return "".join(line + "\n" for line in sorted(lines, key=lambda s: s.encode()))


def plan_speakers(
    plan: Plan, grammar: Grammar, voices: list[Voice], sizes: Sizes, seed: int
) -> None:
    """One pool of utterances per voice, shared by speaker identification (sid_*: all voices,
    disjoint utterances) and verification (sv_*: disjoint voice groups, with trials)."""
    k_train, k_dev, k_test = sizes.speaker_utts
    sid = {s: DirPlan(f"speakers/sid_{s}", "speakers") for s in ("train", "dev", "test")}
    pools: dict[str, list[tuple[UttSpec, str]]] = {}
    for voice in voices:
        for j in range(k_train + k_dev + k_test):
            rng = utt_rng(seed, "speakers", voice.id, j)
            text = grammar.sentence(rng, sizes.max_words)
            render_seed = utt_seed(seed, "speakers", voice.id, j, "render")
            spec = UttSpec(
                f"{voice.id}-speakers-{j:06d}",
                "speakers",
                render_seed,
                "speech",
                voice,
                text,
                level_db=float(rng.uniform(-30, -20)),
            )
            split = "train" if j < k_train else "dev" if j < k_train + k_dev else "test"
            sid[split].add(plan.add(spec), voice.id, normalize_text(text))
            pools.setdefault(voice.id, []).append((spec, normalize_text(text)))
    plan.dirs.extend(sid.values())
    groups = _split_voices(voices, utt_rng(seed, "speakers", "sv-groups"))
    for split, group in zip(("train", "dev", "test"), groups):
        d = DirPlan(f"speakers/sv_{split}", "speakers")
        for voice in group:
            for spec, text in pools[voice.id]:
                d.add(spec, voice.id, text)
        if split != "train":
            d.files["trials"] = _trials(d.utt2spk, utt_rng(seed, "speakers", "trials", split))
        plan.dirs.append(d)


def plan_prosody(
    plan: Plan, grammar: Grammar, voices: list[Voice], sizes: Sizes, seed: int
) -> None:
    groups = _split_voices(voices, utt_rng(seed, "prosody", "groups"))
    counts = (sizes.prosody_train, sizes.prosody_dev, sizes.prosody_test)
    for split, group, count in zip(("train", "dev", "test"), groups, counts):
        d = DirPlan(f"prosody/{split}", "prosody")
        for i in range(count):
            rng = utt_rng(seed, "prosody", split, i)
            emotion = EMOTION_NAMES[i % len(EMOTION_NAMES)]
            voice, text = _pick(rng, group), grammar.sentence(rng, sizes.max_words)
            level, jitter = float(rng.uniform(-28, -24)), float(rng.uniform(-1, 1))
            spec = _spec(
                seed,
                "prosody",
                split,
                i,
                voice,
                text,
                level,
                kind="prosody",
                emotion=emotion,
                jitter=jitter,
            )
            d.add(plan.add(spec), voice.id, normalize_text(text), utt2emotion=emotion)
        plan.dirs.append(d)


def _noise_spec(
    rng, grammar: Grammar, voices: list[Voice], speaker: Voice, snr: float, sizes: Sizes
) -> NoiseSpec:
    family = _pick(rng, FAMILIES)
    talkers = ()
    if family == "babble":
        others = [v for v in voices if v != speaker] or voices
        talkers = tuple(
            (_pick(rng, others), grammar.sentence(rng, sizes.max_words))
            for _ in range(int(rng.integers(3, 6)))
        )
    return NoiseSpec(family, snr, talkers)


def plan_noisy(
    plan: Plan,
    grammar: Grammar,
    voices: list[Voice],
    sizes: Sizes,
    seed: int,
    snrs: tuple[float, ...],
) -> None:
    for split, count in (
        ("train", sizes.noisy_train),
        ("dev", sizes.noisy_dev),
        ("test", sizes.noisy_test),
    ):
        pair = split == "train"  # Noise2Noise trains on two independent noisy copies
        d = DirPlan(f"noisy/{split}", "noisy", scp={"clean.scp": ".clean"})
        if pair:
            d.scp["noisy2.scp"] = ".noisy2"
        for i in range(count):
            rng = utt_rng(seed, "noisy", split, i)
            voice, text = _pick(rng, voices), grammar.sentence(rng, sizes.max_words)
            first = _noise_spec(rng, grammar, voices, voice, snrs[i % len(snrs)], sizes)
            noise = (
                (first, _noise_spec(rng, grammar, voices, voice, _pick(rng, snrs), sizes))
                if pair
                else (first,)
            )
            outputs = ("", ".clean", ".noisy2") if pair else ("", ".clean")
            level = float(rng.uniform(-29, -23))
            spec = _spec(
                seed,
                "noisy",
                split,
                i,
                voice,
                text,
                level,
                kind="noisy",
                noise=noise,
                outputs=outputs,
            )
            labels = {"utt2snr": f"{first.snr_db:g}", "utt2noise": first.family}
            if pair:
                labels |= {"utt2snr2": f"{noise[1].snr_db:g}", "utt2noise2": noise[1].family}
            d.add(plan.add(spec), voice.id, normalize_text(text), **labels)
        plan.dirs.append(d)
