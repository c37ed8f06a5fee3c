"""The embedded synthetic corpus (speechssl.data.synth) at the ``test`` scale."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechssl.data.audio import load_audio
from speechssl.data.kaldi import DataDir, c_sorted, read_table
from speechssl.data.synth import (
    Grammar,
    SynthesisError,
    Voice,
    build_corpus,
    default_voices,
    normalize_text,
    synthesize,
)
from speechssl.data.synth.intents import ACTIONS, INTENTS, LOCATIONS, OBJECTS
from speechssl.data.synth.noise import measured_snr
from speechssl.data.synth.tasks import KEYWORD_CLASSES
from speechssl.data.validate import validate

# espeak-ng and flite are installed by tools/install_debian.sh; without them these tests fail
# (with a SynthesisError naming the missing program) rather than skip.

DATA_DIRS = (
    [f"asr/{s}" for s in ("train_labeled", "train_unlabeled", "dev", "test")]
    + [
        f"{t}/{s}"
        for t in ("phones", "keywords", "intents", "prosody", "noisy")
        for s in ("train", "dev", "test")
    ]
    + [f"speakers/{k}_{s}" for k in ("sid", "sv") for s in ("train", "dev", "test")]
)


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    summary = build_corpus(out, seed=0, scale="test", nj=2)
    assert set(summary) == set(DATA_DIRS)
    return out


def load(corpus: Path, name: str) -> DataDir:
    return DataDir.load(corpus / name)


def test_data_dirs_valid_sorted_and_consistent(corpus):
    for name in DATA_DIRS:
        path = corpus / name
        assert validate(path) == [], name
        utts = set(read_table(path / "utt2spk"))
        assert utts, name
        for table in path.iterdir():
            if table.name == "trials":
                continue
            keys = [line.split(" ", 1)[0] for line in table.read_text().splitlines()]
            assert keys == c_sorted(keys), f"{name}/{table.name} not in C order"
            if table.name != "spk2utt":
                assert set(keys) == utts, f"{name}/{table.name} ids differ from utt2spk"
        for utt, spk in read_table(path / "utt2spk").items():
            assert utt.startswith(spk + "-") and "_" not in utt, utt
        for file in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
            assert (path / file).is_file(), f"{name}/{file}"


def test_wav_scp_relative_and_audio_is_speech(corpus):
    data = load(corpus, "asr/train_labeled")
    for utt in data.utt_ids:
        entry = data.wav_scp[utt]
        assert not entry.startswith("/") and entry.startswith("../../wav/asr/")
        info = sf.info(data.resolve(entry))
        assert info.samplerate == 16000 and info.subtype == "PCM_16"
        wav = data.load_audio(utt)
        rms_db = 20 * np.log10(np.sqrt(np.mean(wav**2)))
        assert rms_db > -40 and np.max(np.abs(wav)) < 1.0, utt
        assert abs(len(wav) / 16000 - float(data.tables["utt2dur"][utt])) < 1e-3
        # speech-like: energy fluctuates (syllables), unlike stationary noise or silence
        frames = wav[: len(wav) // 320 * 320].reshape(-1, 320)
        energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
        assert np.percentile(energy_db, 90) - np.percentile(energy_db, 10) > 15, utt


def test_text_is_normalized(corpus):
    for name in DATA_DIRS:
        text = corpus / name / "text"
        if text.is_file():
            for utt, words in read_table(text).items():
                assert re.fullmatch(r"[a-z']+( [a-z']+)*", words), f"{name}: {utt} {words!r}"


def test_lm_text_is_disjoint_from_dev_and_test(corpus):
    lm = (corpus / "asr/lm_text.txt").read_text().splitlines()
    held_out = set(load(corpus, "asr/dev").text.values()) | set(
        load(corpus, "asr/test").text.values()
    )
    assert len(lm) >= 10 * len(load(corpus, "asr/train_labeled").utt_ids)
    assert held_out.isdisjoint(lm)
    assert all(re.fullmatch(r"[a-z']+( [a-z']+)*", s) for s in lm)


def test_grammar_vocabulary():
    grammar = Grammar()
    vocab = grammar.vocabulary()
    assert len(vocab) >= 2000
    rng = np.random.default_rng(0)
    used = set()
    for _ in range(3000):
        words = normalize_text(grammar.sentence(rng)).split()
        assert words and set(words) <= vocab, set(words) - vocab
        used.update(words)
    assert len(used) >= 1500  # the word lists are really used


def test_speakers(corpus):
    sid = [load(corpus, f"speakers/sid_{s}") for s in ("train", "dev", "test")]
    voices = set(sid[0].utt2spk.values())
    assert len(voices) >= 40
    assert all(set(d.utt2spk.values()) == voices for d in sid)
    assert len({u for d in sid for u in d.utt_ids}) == sum(len(d.utt_ids) for d in sid)
    sv_train = set(load(corpus, "speakers/sv_train").utt2spk.values())
    seen = set(sv_train)
    for split in ("dev", "test"):
        data = load(corpus, f"speakers/sv_{split}")
        spk = data.utt2spk
        assert seen.isdisjoint(spk.values()), split
        seen |= set(spk.values())
        trials = [line.split() for line in (data.path / "trials").read_text().splitlines()]
        labels = [t[2] for t in trials]
        assert {"target", "nontarget"} == set(labels)
        assert 0.3 < labels.count("target") / len(labels) < 0.7
        for enroll, test, label in trials:
            assert (spk[enroll] == spk[test]) == (label == "target") and enroll != test


def test_phones(corpus):
    for split in ("train", "dev", "test"):
        data = load(corpus, f"phones/{split}")
        phones = data.tables["utt2phones"]
        assert set(phones) == set(data.utt_ids)
        for utt, seq in phones.items():
            tokens = seq.split()
            assert tokens, utt
            assert all(
                re.fullmatch(r"[!-~]+", t) and not t.startswith(("'", ",", "_")) for t in tokens
            )
            assert utt.startswith("espeak-")


def test_keywords(corpus):
    labels = set()
    for split in ("train", "dev", "test"):
        data = load(corpus, f"keywords/{split}")
        for utt in data.utt_ids:
            assert sf.info(data.resolve(data.wav_scp[utt])).frames == 16000
        labels |= set(data.tables["utt2keyword"].values())
    assert labels == set(KEYWORD_CLASSES)


def test_intents(corpus):
    for split in ("train", "dev", "test"):
        data = load(corpus, f"intents/{split}")
        for utt, label in data.tables["utt2intent"].items():
            action, obj, location = label.split(" ")
            assert action in ACTIONS and obj in OBJECTS and location in LOCATIONS
            assert (action, obj, location) in INTENTS
            assert data.text[utt]


def test_prosody_test_voices_unseen(corpus):
    splits = {s: load(corpus, f"prosody/{s}") for s in ("train", "dev", "test")}
    train_voices = set(splits["train"].utt2spk.values())
    for split in ("dev", "test"):
        assert train_voices.isdisjoint(splits[split].utt2spk.values())
    assert set(splits["train"].tables["utt2emotion"].values()) == {
        "neutral",
        "happy",
        "sad",
        "angry",
    }


def test_noisy_snr_and_noise2noise_pairs(corpus):
    for split in ("train", "dev", "test"):
        data = load(corpus, f"noisy/{split}")
        for utt in data.utt_ids:
            noisy = data.load_audio(utt)
            clean = _load_scp(data, "clean.scp", utt)
            assert np.max(np.abs(noisy)) < 1.0
            assert abs(measured_snr(clean, noisy) - float(data.tables["utt2snr"][utt])) < 0.5, utt
            if split == "train":
                noisy2 = _load_scp(data, "noisy2.scp", utt)
                assert abs(measured_snr(clean, noisy2) - float(data.tables["utt2snr2"][utt])) < 0.5
                # an independent noise draw: the two noise signals really differ
                n1, n2 = noisy - clean, noisy2 - clean
                assert np.std(n1 - n2) > 0.1 * max(np.std(n1), np.std(n2)), utt
        assert ("noisy2.scp" in data.tables) == (split == "train")


def _load_scp(data: DataDir, scp: str, utt: str) -> np.ndarray:
    return load_audio(data.resolve(data.tables[scp][utt]), utt_id=utt)


def test_same_seed_is_byte_identical_and_other_seed_differs(corpus, tmp_path):
    again = tmp_path / "again"
    build_corpus(again, seed=0, scale="test", nj=1)
    assert tree_hashes(again) == tree_hashes(corpus)
    other = tmp_path / "other"
    build_corpus(other, seed=1, scale="test", nj=2, subsets=["asr"])
    assert (other / "asr/train_labeled/text").read_bytes() != (
        corpus / "asr/train_labeled/text"
    ).read_bytes()


def test_resume_after_kill_is_byte_identical(corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    wavs = sorted((copy / "wav").rglob("*.wav"))
    for wav in wavs[::40]:
        wav.unlink()
    next((copy / "wav/noisy").glob("*.noisy2.wav")).unlink()  # one file of a noisy triple
    (copy / "phones/dev/utt2phones").unlink()
    (copy / "asr/dev/text").unlink()
    build_corpus(copy, seed=0, scale="test", nj=2)
    assert tree_hashes(copy) == tree_hashes(corpus)


def test_refuses_to_resume_with_other_settings(corpus):
    with pytest.raises(ValueError, match="seed"):
        build_corpus(corpus, seed=5, scale="test", subsets=["asr"])


def test_voices():
    voices = default_voices()
    ids = [v.id for v in voices]
    assert len(set(ids)) == len(ids) >= 40
    assert all(re.fullmatch(r"[a-z0-9-]+", i) for i in ids)
    assert all(Voice.from_id(v.id) == v for v in voices)
    assert {v.engine for v in voices} == {"espeak", "flite"}


def test_failing_synthesizer_names_the_voice():
    bad = Voice("espeak", "en-us", "nosuchvariant")
    with pytest.raises(SynthesisError, match=bad.id):
        synthesize(bad, "hello there")
    bad_flite = Voice("flite", "nosuchvoice", pitch=0, rate=100)
    with pytest.raises(SynthesisError, match=bad_flite.id):
        synthesize(bad_flite, "hello there")
    with pytest.raises(SynthesisError, match="nosuchvariant"):
        build_corpus("/nonexistent/never-written", scale="test", voices=[bad])
