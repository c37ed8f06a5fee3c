"""Miniature copies of six real corpora, in their exact on-disk layout and file formats.

Each ``build_<corpus>(base)`` writes a few short real audio files per class/speaker (soundfile:
wav, or flac for LibriSpeech) and the corpus's own text files (transcripts, CSVs, split lists,
trial lists, EmoEvaluation files) under ``base`` as the archives unpack, and returns the folder
a user would pass as ``--root`` together with what the test should expect.
"""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf


def write_audio(path: Path, seconds: float = 0.2, rate: int = 16000) -> None:
    """A short chirp plus noise, distinct per file (seeded by its folder and name)."""
    rng = np.random.default_rng(zlib.crc32("/".join(path.parts[-2:]).encode()))
    t = np.arange(int(seconds * rate)) / rate
    f0 = 100 + rng.integers(0, 300)
    wav = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + t)) + 0.02 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav.astype(np.float32), rate, subtype="PCM_16")


def _text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# --- LibriSpeech ------------------------------------------------------------------------------

LIBRI = {
    # subset -> reader -> chapter -> transcripts
    "train-clean-100": {
        "103": {"1240": ["CHAPTER ONE MISSUS RACHEL", "THE BROOK WAS QUIET", "ZYZZYVA IS A WORD"]},
        "1034": {"121119": ["HE HAD NOT SEEN IT", "IT WAS THE DOG'S"]},
    },
    "dev-clean": {"1272": {"128104": ["THE BROOK WAS QUIET", "HE SAW IT"]}},
    "test-clean": {"1089": {"134686": ["HE HOPED THERE WOULD BE STEW"]}},
}
LEXICON = {
    "CHAPTER": "CH AE1 P T ER0", "ONE": "W AH1 N", "MISSUS": "M IH1 S IH0 Z",
    "RACHEL": "R EY1 CH AH0 L", "THE": "DH AH0", "BROOK": "B R UH1 K", "WAS": "W AA1 Z",
    "QUIET": "K W AY1 AH0 T", "IS": "IH1 Z", "A": "AH0", "WORD": "W ER1 D", "HE": "HH IY1",
    "HAD": "HH AE1 D", "NOT": "N AA1 T", "SEEN": "S IY1 N", "IT": "IH1 T", "DOG'S": "D AO1 G Z",
    "SAW": "S AO1", "HOPED": "HH OW1 P T", "THERE": "DH EH1 R", "WOULD": "W UH1 D",
    "BE": "B IY1", "STEW": "S T UW1",
}  # fmt: skip


def build_librispeech(base: Path) -> Path:
    """``base/LibriSpeech/...`` + ``base/librispeech-lexicon.txt``; returns ``base``."""
    root = base / "LibriSpeech"
    for subset, readers in LIBRI.items():
        for reader, chapters in readers.items():
            for chapter, sentences in chapters.items():
                folder = root / subset / reader / chapter
                ids = [f"{reader}-{chapter}-{i:04d}" for i in range(len(sentences))]
                for utt in ids:
                    write_audio(folder / f"{utt}.flac", 0.15)
                _text(
                    folder / f"{reader}-{chapter}.trans.txt",
                    [f"{u} {s}" for u, s in zip(ids, sentences)],
                )
    _text(
        root / "SPEAKERS.TXT",
        [
            "; Some readers appear in more than one subset",
            ";ID  |SEX| SUBSET           |MINUTES| NAME",
            "103  | F | train-clean-100  | 25.03 | Kristen McQuillin",
            "1034 | M | train-clean-100  | 25.03 | Kevin O'Coin",
            "1089 | M | test-clean       |  8.02 | Lord Kestrel",
            "1272 | M | dev-clean        |  8.11 | John Rose",
        ],
    )
    _text(base / "librispeech-lexicon.txt", [f"{w}\t{p}" for w, p in sorted(LEXICON.items())])
    return base


# --- Speech Commands v0.01 --------------------------------------------------------------------

SC_WORDS = ("yes", "no", "bed", "marvin")  # two keywords, two "unknown" words
SC_SPEAKERS = ("0a7c2a8d", "0b09edd3", "1a892463")
SC_DEV = {f"{w}/1a892463_nohash_0.wav" for w in SC_WORDS}
SC_TEST_LIST = {"yes/0b09edd3_nohash_1.wav", "bed/0b09edd3_nohash_1.wav"}
SC_TEST = {
    "yes": ["c0ffee11_nohash_0"],
    "_unknown_": ["d00dfeed_nohash_2"],
    "_silence_": ["silence_0_5"],
}


def build_speech_commands(base: Path) -> Path:
    """``base/speech_commands_v0.01`` (the archive unpacks without a top folder, so the user
    made one) and ``base/speech_commands_test_set_v0.01``; returns the former."""
    root = base / "speech_commands_v0.01"
    for word in SC_WORDS:
        for speaker in SC_SPEAKERS:
            for n in (0, 1):
                write_audio(root / word / f"{speaker}_nohash_{n}.wav", 0.25)
    write_audio(root / "_background_noise_" / "white_noise.wav", 10.5)
    write_audio(root / "_background_noise_" / "running_tap.wav", 3.2)
    _text(root / "_background_noise_" / "README.md", ["noise recordings"])
    _text(root / "validation_list.txt", sorted(SC_DEV))
    _text(root / "testing_list.txt", sorted(SC_TEST_LIST))
    test = base / "speech_commands_test_set_v0.01"
    for label, stems in SC_TEST.items():
        for stem in stems:
            write_audio(test / label / f"{stem}.wav", 0.25)
    return root


# --- Fluent Speech Commands -------------------------------------------------------------------

FSC = {
    "train_data.csv": [
        ("2BqVo8kVB2Skwgyb", "Change language", "change language", "none", "none"),
        ("2BqVo8kVB2Skwgyb", "Switch to Chinese", "change language", "Chinese", "none"),
        ("4aGjX3AG5xcxeL7a", "Turn on the lights", "activate", "lights", "none"),
        ("4aGjX3AG5xcxeL7a", "Heat up the kitchen", "increase", "heat", "kitchen"),
    ],
    "valid_data.csv": [
        ("52XVOeXMXYuaElyw", "I can\u2019t hear that", "increase", "volume", "none")
    ],
    "test_data.csv": [
        ("7B4XmNppyrCK977p", "Bring me my shoes", "bring", "shoes", "none"),
        ("7B4XmNppyrCK977p", "Washroom lights off", "deactivate", "lights", "washroom"),
    ],
}


def build_fluent_speech_commands(base: Path) -> Path:
    root = base / "fluent_speech_commands_dataset"
    index = 0
    for name, rows in FSC.items():
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(
                ["", "path", "speakerId", "transcription", "action", "object", "location"]
            )
            for speaker, transcription, action, obj, location in rows:
                wav = f"wavs/speakers/{speaker}/{index:08x}-4474-11e9-a9a5-5dbec3b8816a.wav"
                write_audio(root / wav, 0.2)
                writer.writerow([index, wav, speaker, transcription, action, obj, location])
                index += 1
    return base


# --- VoxCeleb1 --------------------------------------------------------------------------------

VOX_DEV_SPEAKERS = ("id10001", "id10002", "id10003", "id10004", "id10005", "id10006")
VOX_TEST_SPEAKERS = ("id10270", "id10271")
VOX_VIDEOS = ("1zcIwhmdeo4", "-2Uc1s8I6p4")  # YouTube ids may start with '-'


def vox_files(speaker: str) -> list[str]:
    return [f"{speaker}/{v}/{n:05d}.wav" for v in VOX_VIDEOS for n in (1, 2)]


def build_voxceleb1(base: Path) -> Path:
    """dev and test archives unpacked side by side (vox1_dev_wav/wav, vox1_test_wav/wav), with
    iden_split.txt and veri_test2.txt beside them."""
    root = base / "VoxCeleb1"
    iden = []
    for part, speakers in (
        ("vox1_dev_wav", VOX_DEV_SPEAKERS),
        ("vox1_test_wav", VOX_TEST_SPEAKERS),
    ):
        for speaker in speakers:
            files = vox_files(speaker)
            for rel in files:
                write_audio(root / part / "wav" / rel, 0.2)
            iden += [f"1 {files[0]}", f"1 {files[2]}", f"2 {files[1]}", f"3 {files[3]}"]
    _text(root / "iden_split.txt", iden)
    a, b = vox_files("id10270"), vox_files("id10271")
    _text(
        root / "veri_test2.txt",
        [f"1 {a[0]} {a[2]}", f"0 {a[0]} {b[1]}", f"1 {b[0]} {b[3]}", f"0 {b[2]} {a[3]}"],
    )
    return root


# --- IEMOCAP ----------------------------------------------------------------------------------

IEMOCAP_TURNS = [("F000", "neu"), ("F001", "hap"), ("F002", "exc"), ("M000", "ang"), ("M001", "sad"), ("M002", "fru")]  # fmt: skip


def build_iemocap(base: Path) -> Path:
    root = base / "IEMOCAP_full_release"
    for session in range(1, 6):
        dialog = f"Ses0{session}F_impro01"
        folder = root / f"Session{session}"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for i, (turn, label) in enumerate(IEMOCAP_TURNS):
            utt = f"{dialog}_{turn}"
            write_audio(folder / "sentences" / "wav" / dialog / f"{utt}.wav", 0.2)
            start = 6.2901 + 3 * i
            lines += [
                f"[{start:.4f} - {start + 1.9456:.4f}]\t{utt}\t{label}\t[2.5000, 2.5000, 2.5000]",
                "C-E2:\tNeutral;\t()",
                "A-E3:\tval 3; act 2; dom  2;\t()",
                "",
            ]
        evaluation = folder / "dialog" / "EmoEvaluation"
        _text(evaluation / f"{dialog}.txt", lines)
        _text(evaluation / "Categorical" / f"{dialog}_e2_cat.txt", [f"{dialog}_F000 :Neutral; ()"])
        (evaluation / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    return base


# --- VoiceBank-DEMAND -------------------------------------------------------------------------

VB_TRAIN_SPEAKERS = ("p226", "p227", "p228", "p287")
VB_TEST_SPEAKERS = ("p232", "p257")
VB_SECONDS = 0.3


def build_voicebank_demand(base: Path) -> Path:
    """The four 48 kHz folders and the two transcript folders (DataShare's DS_10283_2791)."""
    root = base / "DS_10283_2791"
    parts = (
        (
            VB_TRAIN_SPEAKERS,
            "clean_trainset_28spk_wav",
            "noisy_trainset_28spk_wav",
            "trainset_28spk_txt",
        ),
        (VB_TEST_SPEAKERS, "clean_testset_wav", "noisy_testset_wav", "testset_txt"),
    )
    for speakers, clean, noisy, txt in parts:
        for speaker in speakers:
            for n in (1, 2):
                utt = f"{speaker}_{n:03d}"
                write_audio(root / clean / f"{utt}.wav", VB_SECONDS, 48000)
                write_audio(root / noisy / f"{utt}.wav", VB_SECONDS, 48000)
                _text(root / txt / f"{utt}.txt", ["Please call Stella."])
    return root
