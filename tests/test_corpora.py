"""Real-corpus preparers on miniature corpora in the exact layout (tests/corpora_layout.py):
utterance counts, labels, speakers, folds and trials, valid data dirs, byte-identical reruns,
and clear errors when a part of a corpus is missing."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import corpora_layout as layout
import numpy as np
import pytest
import soundfile as sf

from speechssl.cli import command_main
from speechssl.data.audio import load_audio
from speechssl.data.corpora import (
    CorpusError,
    prepare_fluent_speech_commands,
    prepare_iemocap,
    prepare_librispeech,
    prepare_speech_commands,
    prepare_voicebank_demand,
    prepare_voxceleb1,
)
from speechssl.data.kaldi import DataDir, read_table
from speechssl.data.validate import validate

main = command_main("prepare")  # speechssl prepare ARGV

ROOT = Path(__file__).resolve().parents[1]


def _digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def _check_outputs(prepare, root: Path, out: Path, summary: dict, **options) -> None:
    """Every data dir validates without errors, a rerun changes no byte, and a fresh output
    folder gets the same bytes."""
    dirs = [out / name for name in summary if (out / name).is_dir()]
    assert dirs
    for d in dirs:
        errors = [str(i) for i in validate(d) if i.severity == "error"]
        assert not errors, errors
        assert summary[str(d.relative_to(out))]["utterances"] == len(read_table(d / "utt2spk"))
    first = _digest(out)
    assert prepare(root, out, **options) == summary
    assert _digest(out) == first
    other = out.parent / (out.name + "_again")
    prepare(root, other, **options)
    assert _digest(other) == first


def _table(d: Path, name: str) -> dict[str, str]:
    return read_table(d / name)


# --- LibriSpeech ------------------------------------------------------------------------------


def test_librispeech_asr_and_phone_dirs(tmp_path, capsys):
    base = layout.build_librispeech(tmp_path / "corpus")
    out = tmp_path / "data"
    summary = prepare_librispeech(base, out)
    train = out / "asr" / "train_labeled"
    sentences = {
        f"{r}-{c}-{i:04d}": s
        for r, chapters in layout.LIBRI["train-clean-100"].items()
        for c, lines in chapters.items()
        for i, s in enumerate(lines)
    }
    assert _table(train, "text") == {u: s.lower() for u, s in sentences.items()}
    assert set(_table(train, "utt2spk").values()) == {"103", "1034"}
    assert _table(train, "spk2gender") == {"103": "f", "1034": "m"}
    scp = _table(train, "wav.scp")
    assert all(Path(p).is_absolute() and p.endswith(".flac") for p in scp.values())
    assert DataDir.load(train).load_audio("103-1240-0000").shape == (int(0.15 * 16000),)

    # phones: the utterance with a word missing from the lexicon is left out, with a warning
    phones = _table(out / "phones" / "train", "utt2phones")
    oov = [u for u, s in sentences.items() if any(w not in layout.LEXICON for w in s.split())]
    assert set(phones) == set(sentences) - set(oov) and oov
    assert summary["phones/train"]["skipped_oov"] == len(oov)
    assert "ZYZZYVA" in capsys.readouterr().err
    words = sentences["103-1240-0001"].split()
    assert phones["103-1240-0001"] == " ".join(layout.LEXICON[w] for w in words)

    # LM text: training transcripts, never a dev or test one
    dev_test = {s.lower() for sub in ("dev-clean", "test-clean") for r in layout.LIBRI[sub].values() for ss in r.values() for s in ss}  # fmt: skip
    lm = (out / "asr" / "lm_text.txt").read_text().splitlines()
    assert lm == [
        sentences[u].lower() for u in sorted(sentences) if sentences[u].lower() not in dev_test
    ]
    assert len(lm) < len(sentences)
    assert summary["asr/dev"]["utterances"] == 2 and summary["asr/test"]["utterances"] == 1
    _check_outputs(prepare_librispeech, base, out, summary)


def test_librispeech_strip_stress(tmp_path):
    base = layout.build_librispeech(tmp_path / "corpus")
    out = tmp_path / "data"
    prepare_librispeech(base / "LibriSpeech", out, subsets=("phones",), strip_stress=True)
    assert not (out / "asr").exists()
    assert _table(out / "phones" / "test", "utt2phones")["1089-134686-0000"].startswith(
        "HH IY HH OW P T DH EH R"
    )


# --- Speech Commands --------------------------------------------------------------------------


def test_speech_commands_twelve_classes(tmp_path):
    root = layout.build_speech_commands(tmp_path / "corpus")
    out = tmp_path / "data"
    summary = prepare_speech_commands(root, out)

    def label(word):
        return word if word in ("yes", "no") else "_unknown_"

    files = {f"{w}/{s}_nohash_{n}.wav" for w in layout.SC_WORDS for s in layout.SC_SPEAKERS for n in (0, 1)}  # fmt: skip
    windows = {"white_noise": 10, "running_tap": 3}  # 10.5 s and 3.2 s of noise
    dev_windows = {name: round(0.1 * n) for name, n in windows.items()}
    expected = {
        "train": [label(f.split("/")[0]) for f in files - layout.SC_DEV - layout.SC_TEST_LIST]
        + ["_silence_"] * sum(windows[k] - dev_windows[k] for k in windows),
        "dev": [label(f.split("/")[0]) for f in layout.SC_DEV] + ["_silence_"] * 1,
        "test": list(layout.SC_TEST),
    }
    for split, labels in expected.items():
        d = out / "keywords" / split
        assert sorted(_table(d, "utt2keyword").values()) == sorted(labels), split
    train = out / "keywords" / "train"
    keyword = _table(train, "utt2keyword")
    assert keyword["0a7c2a8d-yes-0"] == "yes" and keyword["0a7c2a8d-marvin-1"] == "_unknown_"
    assert _table(train, "utt2spk")["0a7c2a8d-yes-0"] == "0a7c2a8d"

    # silence: 1 s clips written under out/wav, listed relative to the data dir; the last window
    # of a recording is dev's, so no dev clip overlaps a training clip
    silence = [u for u, k in keyword.items() if k == "_silence_"]
    assert all(_table(train, "utt2spk")[u] == "noise" for u in silence)
    assert not Path(_table(train, "wav.scp")[silence[0]]).is_absolute()
    assert DataDir.load(train).load_audio(silence[0]).shape == (16000,)
    dev_keyword = _table(out / "keywords" / "dev", "utt2keyword")
    assert [u for u, k in dev_keyword.items() if k == "_silence_"] == ["noise-white_noise-0009"]
    assert "noise-white_noise-0009" not in keyword and "noise-white_noise-0008" in keyword
    test_spk = _table(out / "keywords" / "test", "utt2spk")
    assert test_spk == {
        "c0ffee11-yes-0": "c0ffee11",
        "d00dfeed-_unknown_-2": "d00dfeed",
        "noise-_silence_-silence_0_5": "noise",
    }
    assert summary["keywords/train"]["labels"]["_silence_"] == 12
    _check_outputs(prepare_speech_commands, root, out, summary)


def test_speech_commands_test_set_inside_the_corpus_folder(tmp_path):
    root = layout.build_speech_commands(tmp_path / "corpus")
    beside = prepare_speech_commands(root, tmp_path / "beside")
    (root.parent / "speech_commands_test_set_v0.01").rename(root / "speech_commands_test_set_v0.01")
    inside = prepare_speech_commands(root, tmp_path / "inside")
    assert inside == beside  # the test set folder is not taken for a word folder
    assert _table(tmp_path / "inside/keywords/test", "utt2keyword") == _table(
        tmp_path / "beside/keywords/test", "utt2keyword"
    )


def test_keyword_classes_match_the_synthetic_corpus():
    from speechssl.data.corpora.speech_commands import CLASSES
    from speechssl.data.synth.tasks import KEYWORD_CLASSES

    assert CLASSES == KEYWORD_CLASSES


# --- Fluent Speech Commands -------------------------------------------------------------------


def test_fluent_speech_commands_intents(tmp_path):
    base = layout.build_fluent_speech_commands(tmp_path / "corpus")
    out = tmp_path / "data"
    summary = prepare_fluent_speech_commands(base, out)
    from speechssl.data.synth.intents import ACTIONS, LOCATIONS, OBJECTS

    for split, csv_name in (("train", "train_data.csv"), ("dev", "valid_data.csv"), ("test", "test_data.csv")):  # fmt: skip
        d = out / "intents" / split
        rows = layout.FSC[csv_name]
        intents = _table(d, "utt2intent")
        assert len(intents) == len(rows)
        assert set(_table(d, "utt2spk").values()) == {r[0] for r in rows}
        for action, obj, location in (v.split() for v in intents.values()):
            assert action in ACTIONS and obj in OBJECTS and location in LOCATIONS
    train = _table(out / "intents" / "train", "utt2intent")
    assert sorted(train.values()) == sorted(
        [
            "change_language none none",
            "change_language chinese none",
            "activate lights none",
            "increase heat kitchen",
        ]  # fmt: skip
    )
    assert all(u.startswith(("2BqVo8kVB2Skwgyb-", "4aGjX3AG5xcxeL7a-")) for u in train)
    assert list(_table(out / "intents" / "dev", "text").values()) == ["i can't hear that"]
    _check_outputs(prepare_fluent_speech_commands, base, out, summary)


# --- VoxCeleb1 --------------------------------------------------------------------------------


def test_voxceleb1_sid_and_sv(tmp_path):
    root = layout.build_voxceleb1(tmp_path / "corpus")
    out = tmp_path / "data"
    options = {"sv_dev_speakers": 2, "trials_per_utt": 2, "seed": 3}
    summary = prepare_voxceleb1(root, out, **options)
    speakers = out / "speakers"
    all_speakers = set(layout.VOX_DEV_SPEAKERS + layout.VOX_TEST_SPEAKERS)
    for split, per_speaker in (("train", 2), ("dev", 1), ("test", 1)):
        utt2spk = _table(speakers / f"sid_{split}", "utt2spk")
        assert len(utt2spk) == per_speaker * len(all_speakers)
        assert set(utt2spk.values()) == all_speakers
        assert all(u.startswith(f"{s}-") for u, s in utt2spk.items())
    assert "id10001--2Uc1s8I6p4-00001" in _table(speakers / "sid_train", "utt2spk")

    sv = {s: _table(speakers / f"sv_{s}", "utt2spk") for s in ("train", "dev", "test")}
    spk = {s: set(v.values()) for s, v in sv.items()}
    assert spk["test"] == set(layout.VOX_TEST_SPEAKERS)
    assert spk["train"] | spk["dev"] == set(layout.VOX_DEV_SPEAKERS)
    assert not spk["train"] & spk["dev"] and len(spk["dev"]) == 2
    assert len(sv["train"]) == 4 * 4 and len(sv["dev"]) == 2 * 4

    # official test trials, in the synthetic corpus's format, on sv_test's utterances
    official = [line.split() for line in (root / "veri_test2.txt").read_text().splitlines()]
    test_trials = (speakers / "sv_test" / "trials").read_text().splitlines()
    assert sorted(test_trials) == test_trials
    expected = {
        f"{a[:-4].replace('/', '-')} {b[:-4].replace('/', '-')} {'target' if t == '1' else 'nontarget'}"
        for t, a, b in official
    }
    assert set(test_trials) == expected

    # dev trials: generated on held-out speakers, targets across videos, 2 of each kind per utt
    for line in (speakers / "sv_dev" / "trials").read_text().splitlines():
        a, b, kind = line.split()
        assert a in sv["dev"] and b in sv["dev"]
        assert (sv["dev"][a] == sv["dev"][b]) == (kind == "target")
        if kind == "target":
            assert a.split("-")[1:-1] != b.split("-")[1:-1]
    assert summary["speakers/sv_dev"]["trials"] == len(sv["dev"]) * 2 * 2
    _check_outputs(prepare_voxceleb1, root, out, summary, **options)


# --- IEMOCAP ----------------------------------------------------------------------------------


def test_iemocap_leave_one_session_out(tmp_path):
    base = layout.build_iemocap(tmp_path / "corpus")
    out = tmp_path / "data"
    summary = prepare_iemocap(base, out)
    from speechssl.data.synth.prosody import EMOTION_NAMES

    kept = [(t, e) for t, e in layout.IEMOCAP_TURNS if e in ("neu", "hap", "exc", "ang", "sad")]
    per_speaker = {g: sum(t.startswith(g) for t, _ in kept) for g in "FM"}
    for fold in range(1, 6):
        d = out / "prosody" / f"fold{fold}"
        test = _table(d / "test", "utt2emotion")
        assert {u.split("-")[0] for u in test} == {f"Ses0{fold}F", f"Ses0{fold}M"}
        assert len(test) == len(kept)
        assert test[f"Ses0{fold}M-Ses0{fold}F_impro01_M000"] == "angry"
        assert test[f"Ses0{fold}F-Ses0{fold}F_impro01_F002"] == "happy"  # exc -> happy
        assert set(test.values()) <= set(EMOTION_NAMES)
        train, dev = _table(d / "train", "utt2spk"), _table(d / "dev", "utt2spk")
        assert not set(train) & set(dev)
        assert len(train) + len(dev) == 4 * len(kept)
        assert {s[:5] for s in {**train, **dev}.values()} == {f"Ses0{s}" for s in range(1, 6) if s != fold}  # fmt: skip
        dev_per_speaker = {s: list(dev.values()).count(s) for s in set(train.values())}
        assert all(dev_per_speaker[s] == round(0.2 * per_speaker[s[-1]]) for s in dev_per_speaker)
    assert summary["prosody/fold1/test"]["labels"] == {
        "angry": 1,
        "happy": 2,
        "neutral": 1,
        "sad": 1,
    }
    _check_outputs(prepare_iemocap, base, out, summary)


# --- VoiceBank-DEMAND -------------------------------------------------------------------------


def test_voicebank_demand_resampled_pairs(tmp_path):
    root = layout.build_voicebank_demand(tmp_path / "corpus")
    out = tmp_path / "data"
    summary = prepare_voicebank_demand(tmp_path / "corpus", out)
    expected = {
        "train": set(layout.VB_TRAIN_SPEAKERS) - {"p226", "p287"},
        "dev": {"p226", "p287"},
        "test": set(layout.VB_TEST_SPEAKERS),
    }
    for split, speakers in expected.items():
        d = DataDir.load(out / "noisy" / split)
        assert set(d.utt2spk.values()) == speakers and len(d.utt2spk) == 2 * len(speakers)
        clean = d.tables["clean.scp"]
        for utt in d.utt_ids:
            for entry in (d.wav_scp[utt], clean[utt]):
                info = sf.info(d.resolve(entry))
                assert info.samplerate == 16000 and info.frames == layout.VB_SECONDS * 16000
        assert d.text and set(d.text.values()) == {"please call stella"}
        assert d.wav_scp[utt].endswith(f"noisy_{'test' if split == 'test' else 'train'}/{utt}.wav")
        noisy, clean_wav = d.load_audio(utt), load_audio(d.resolve(clean[utt]))
        assert noisy.shape == clean_wav.shape and not np.allclose(noisy, clean_wav)
    _check_outputs(prepare_voicebank_demand, root, out, summary)
    # parallel resampling writes the same bytes
    other = tmp_path / "parallel"
    prepare_voicebank_demand(root, other, nj=2)
    assert _digest(other) == _digest(out)


# --- errors -----------------------------------------------------------------------------------

PREPARERS = {
    "librispeech": (prepare_librispeech, "openslr.org/12"),
    "speech_commands": (prepare_speech_commands, "speech_commands_v0.01.tar.gz"),
    "fluent_speech_commands": (prepare_fluent_speech_commands, "fluent.ai"),
    "voxceleb1": (prepare_voxceleb1, "robots.ox.ac.uk"),
    "iemocap": (prepare_iemocap, "sail.usc.edu/iemocap"),
    "voicebank_demand": (prepare_voicebank_demand, "datashare.ed.ac.uk"),
}


@pytest.mark.parametrize("corpus", sorted(PREPARERS))
def test_wrong_folder_names_the_corpus_and_its_url(tmp_path, corpus):
    prepare, url = PREPARERS[corpus]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="not a .* folder") as err:
        prepare(tmp_path / "empty", tmp_path / "out")
    assert url in str(err.value) and str(tmp_path / "empty") in str(err.value)
    with pytest.raises(CorpusError, match="no such folder"):
        prepare(tmp_path / "absent", tmp_path / "out")


def _remove(path: Path) -> Path:
    if path.is_dir():
        for p in sorted(path.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        path.rmdir()
    else:
        path.unlink()
    return path


def test_missing_parts_are_named(tmp_path):
    cases = [
        (
            layout.build_librispeech,
            "librispeech-lexicon.txt",
            prepare_librispeech,
            "resources/11/librispeech-lexicon.txt",
        ),  # fmt: skip
        (
            layout.build_librispeech,
            "LibriSpeech/dev-clean",
            prepare_librispeech,
            "dev-clean.tar.gz",
        ),  # fmt: skip
        (
            layout.build_speech_commands,
            "../speech_commands_test_set_v0.01",
            prepare_speech_commands,
            "speech_commands_test_set_v0.01.tar.gz",
        ),  # fmt: skip
        (
            layout.build_fluent_speech_commands,
            "fluent_speech_commands_dataset/data/test_data.csv",
            prepare_fluent_speech_commands,
            "test_data.csv",
        ),  # fmt: skip
        (layout.build_voxceleb1, "veri_test2.txt", prepare_voxceleb1, "meta/"),
        (layout.build_voxceleb1, "vox1_test_wav", prepare_voxceleb1, "id10270/"),
        (
            layout.build_iemocap,
            "IEMOCAP_full_release/Session3/sentences/wav/Ses03F_impro01/Ses03F_impro01_M001.wav",
            prepare_iemocap,
            "Ses03F_impro01_M001.wav",
        ),  # fmt: skip
        (
            layout.build_voicebank_demand,
            "clean_testset_wav/p257_002.wav",
            prepare_voicebank_demand,
            "p257_002.wav",
        ),  # fmt: skip
    ]
    for i, (build, part, prepare, named) in enumerate(cases):
        root = build(tmp_path / f"corpus{i}")
        _remove((root / part).resolve())
        with pytest.raises(CorpusError) as err:
            prepare(root, tmp_path / f"out{i}")
        assert named in str(err.value), (part, str(err.value))


def test_voicebank_dev_speakers_must_be_training_speakers(tmp_path):
    root = layout.build_voicebank_demand(tmp_path / "corpus")
    with pytest.raises(CorpusError, match="not found: p999"):
        prepare_voicebank_demand(root, tmp_path / "out", dev_speakers=("p226", "p999"))


# --- command line and recipes -----------------------------------------------------------------


def test_cli(tmp_path, capsys):
    base = layout.build_iemocap(tmp_path / "corpus")
    assert (
        main(["iemocap", "--root", str(base), "--out", str(tmp_path / "data"), "--seed", "1"]) == 0
    )
    assert "prosody/fold5/test" in capsys.readouterr().out
    assert main(["voicebank-demand", "--root", str(tmp_path / "nowhere"), "--out", "x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nowhere" in err[0]


def test_recipe_data_stage(tmp_path):
    base = layout.build_fluent_speech_commands(tmp_path / "corpus")
    run = ROOT / "egs" / "fluent_speech_commands" / "run.sh"
    cmd = ["bash", str(run), "--stop-stage", "1", "--corpus", str(base), "--data", str(tmp_path / "data")]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "data" / "intents" / "test" / "utt2intent").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "skipping" in again.stderr
    unset = subprocess.run(
        ["bash", str(run), "--stop-stage", "1", "--data", str(tmp_path / "d2")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert unset.returncode == 1 and "db.sh" in unset.stderr


@pytest.mark.parametrize(
    "corpus",
    [
        "librispeech",
        "speech_commands",
        "fluent_speech_commands",
        "voxceleb1",
        "iemocap",
        "voicebank_demand",
    ],  # fmt: skip
)
def test_recipes_parse_their_options(corpus):
    for script in (ROOT / "egs" / corpus / "run.sh", ROOT / "recipes" / "corpus.sh"):
        proc = subprocess.run(
            ["bash", str(script), "--help"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        assert "--corpus" in proc.stdout + proc.stderr
