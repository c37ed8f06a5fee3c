"""``speechssl transcribe``: inputs (files of any rate/channels, folders, wav.scp), windowing and
stitching of long audio, energy VAD, text/JSON output, and errors for bad files.

One tiny CTC model is trained per module on "pitch-spelled" toy speech: each letter is a 0.1 s
tone ('a' 300 Hz, 'b' 1200 Hz), words alternate letters and are separated by 0.2 s pauses, so
recognition is reliable and tests can check exact words and their times.
"""

from __future__ import annotations

import json
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch
from toy_asr import LETTER, PAUSE, WORDS, random_sentence, tones, utterance

from speechssl.asr.decode import CTCDecoder
from speechssl.asr.model import load_model
from speechssl.asr.transcribe import (
    TranscribeError,
    TranscriptResult,
    VADConfig,
    collect_inputs,
    energy_vad,
    split_windows,
    transcribe_files,
)
from speechssl.cli import command_main
from speechssl.data.audio import write_wav
from speechssl.data.kaldi import write_data_dir, write_table

main = command_main("transcribe")  # speechssl transcribe ARGV


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A model this small runs fastest on one thread (thread sync costs more than it saves,
    above all on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_path(toy_asr_model: Path) -> Path:
    return toy_asr_model


@pytest.fixture(scope="module")
def model(model_path: Path):
    return load_model(model_path)


@pytest.fixture(scope="module")
def decoder(model) -> CTCDecoder:
    return CTCDecoder(model.tokens)


def _only(results) -> TranscriptResult:
    assert len(results) == 1 and isinstance(results[0], TranscriptResult), results
    return results[0]


def _check_times(result: TranscriptResult) -> None:
    times = [t for w in result.words for t in (w.start, w.end)]
    assert times == sorted(times), times
    assert all(0.0 <= t <= result.duration for t in times)
    assert all(0.0 <= w.confidence <= 1.0 for w in result.words)


def test_recognises_16k_wav_with_word_times(tmp_path: Path, model, decoder):
    words = ["abab", "ba", "bab"]
    write_wav(tmp_path / "x.wav", utterance(words, seed=100))
    r = _only(transcribe_files(model, [str(tmp_path / "x.wav")], decoder))
    assert r.id == "x" and r.text == "abab ba bab"
    assert r.duration == pytest.approx(len(utterance(words)) / 16000)
    _check_times(r)
    # CTC emits peaks, so a word's frames lie inside the time it is spoken (20 ms frames)
    start = PAUSE
    for w, spoken in zip(r.words, words, strict=True):
        end = start + LETTER * len(spoken)
        assert start - 0.041 <= w.start < w.end <= end + 0.041, (w, start, end)
        start = end + PAUSE


def test_any_rate_and_channels_give_the_same_transcript(tmp_path: Path, model, decoder):
    words = ["ba", "abab", "aba"]
    write_wav(tmp_path / "mono16k.wav", utterance(words, 16000, seed=7))
    stereo = utterance(words, 44100, seed=7)
    sf.write(tmp_path / "stereo44k.flac", np.stack([stereo, 0.8 * stereo], 1), 44100)
    sf.write(tmp_path / "mono8k.wav", utterance(words, 8000, seed=7), 8000, subtype="PCM_16")
    paths = [str(tmp_path / n) for n in ("mono16k.wav", "stereo44k.flac", "mono8k.wav")]
    results = transcribe_files(model, paths, decoder)
    assert [r.text for r in results] == ["ba abab aba"] * 3
    ref = results[0]
    for r in results[1:]:
        assert r.duration == pytest.approx(ref.duration, abs=1e-3)
        for w, v in zip(r.words, ref.words, strict=True):
            assert w.start == pytest.approx(v.start, abs=0.041)
            assert w.end == pytest.approx(v.end, abs=0.041)


def _long_recording(seconds: float, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    parts, words = [], []
    while sum(len(p) for p in parts) < seconds * 16000:
        sentence = random_sentence(rng)
        parts.append(utterance(sentence, seed=len(parts)))
        words += sentence
    return np.concatenate(parts), words


def test_long_file_is_windowed_without_duplicates_at_seams(tmp_path: Path, model, decoder):
    wav, words = _long_recording(60.0, seed=3)
    write_wav(tmp_path / "long.wav", wav)
    # the same model on the whole file in one window: the errors that are the model's, not a seam's
    whole = _only(transcribe_files(model, [str(tmp_path / "long.wav")], decoder, window=120))
    rows = []
    forward = model.logprobs

    def counting(wavs, lengths):
        rows.append(wavs.shape[0])
        return forward(wavs, lengths)

    model.logprobs = counting
    try:
        r = _only(transcribe_files(model, [str(tmp_path / "long.wav")], decoder))
        # 10 s windows: seams every 9 s, several of them inside words
        short = _only(transcribe_files(model, [str(tmp_path / "long.wav")], decoder, window=10))
    finally:
        del model.logprobs
    assert r.duration > 60 and rows[0] == len(split_windows(0, r.duration, 30, 1)) == 3
    assert sum(rows[1:]) == len(split_windows(0, r.duration, 10, 1)) >= 7

    def lost_or_doubled(text: str) -> int:
        out = jiwer.process_words(" ".join(words), text)
        return out.deletions + out.insertions

    for result in (r, short):
        # no word lost or written twice at a seam: no more deletions and insertions than the
        # one-window decode has (at most 1 here, while each of the >= 7 seams could add one)
        assert lost_or_doubled(result.text) <= min(lost_or_doubled(whole.text), 1)
        assert jiwer.wer(" ".join(words), result.text) <= 0.05
        _check_times(result)
    assert jiwer.wer(r.text, short.text) <= 0.05  # the two windowings agree but for model errors


def test_windows_batched_across_files_match_one_at_a_time(tmp_path: Path, model, decoder):
    paths = []
    for i, seconds in enumerate((3.0, 14.0, 7.0)):
        wav, _ = _long_recording(seconds, seed=10 + i)
        write_wav(tmp_path / f"f{i}.wav", wav)
        paths.append(str(tmp_path / f"f{i}.wav"))
    batched = transcribe_files(model, paths, decoder, window=5, batch_seconds=60)
    single = transcribe_files(model, paths, decoder, window=5, batch_seconds=1)
    assert [r.id for r in batched] == ["f0", "f1", "f2"]
    for a, b in zip(batched, single, strict=True):
        assert a.text == b.text
        assert [w.start for w in a.words] == pytest.approx([w.start for w in b.words])


def test_split_windows_cover_the_audio():
    assert split_windows(0.0, 20.0, 30.0, 1.0) == [(0.0, 20.0)]
    windows = split_windows(0.0, 65.0, 30.0, 1.0)
    assert windows == [(0.0, 30.0), (29.0, 59.0), (58.0, 65.0)]
    # the last window is never a sliver shorter than the overlap
    assert split_windows(0.0, 59.5, 30.0, 1.0)[-1] == (58.0, 59.5)
    assert split_windows(2.0, 4.0, 1.5, 0.5) == [(2.0, 3.5), (3.0, 4.0)]
    with pytest.raises(ValueError, match="overlap"):
        split_windows(0.0, 10.0, 1.0, 1.0)


def test_energy_vad_finds_the_speech(tmp_path: Path, model, decoder):
    sr, silence = 16000, np.zeros(32000, np.float32)
    speech = [tones("abab", sr), tones("bab", sr), tones("ba", sr)]
    wav = np.concatenate([silence, speech[0], silence, speech[1], silence, speech[2], silence])
    wav = wav + 0.003 * np.random.default_rng(0).standard_normal(len(wav)).astype(np.float32)
    segments = energy_vad(wav, VADConfig(padding=0.1))
    expected = [(2.0, 2.4), (4.4, 4.7), (6.7, 6.9)]
    assert len(segments) == 3
    for (a, b), (x, y) in zip(segments, expected, strict=True):
        assert a == pytest.approx(x - 0.1, abs=0.03) and b == pytest.approx(y + 0.1, abs=0.03)
    assert energy_vad(np.zeros(16000, np.float32)) == []  # digital silence: no speech
    write_wav(tmp_path / "gaps.wav", wav)
    r = _only(transcribe_files(model, [str(tmp_path / "gaps.wav")], decoder, vad=True))
    assert r.text == "abab bab ba"
    _check_times(r)
    for w, (x, y) in zip(r.words, expected, strict=True):  # offsets added back
        assert x - 0.06 <= w.start < w.end <= y + 0.06


def test_cli_errors_are_named_and_other_files_still_written(
    tmp_path: Path, model_path: Path, capsys
):
    write_wav(tmp_path / "good1.wav", utterance(["ab", "bab"], seed=1))
    write_wav(tmp_path / "good2.wav", utterance(["baba"], seed=2))
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "nosamples.wav", np.zeros(0, np.float32), 16000)
    (tmp_path / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 4)
    inputs = ["good1.wav", "empty.wav", "nosamples.wav", "corrupt.flac", "missing.wav", "good2.wav"]
    rc = main(["--model", str(model_path), *(str(tmp_path / n) for n in inputs)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert out.splitlines() == ["good1 ab bab", "good2 baba"]
    errors = err.strip().splitlines()
    assert len(errors) == 4
    for line, name, reason in zip(
        errors,
        ["empty.wav", "nosamples.wav", "corrupt.flac", "missing.wav"],
        ["empty file", "no samples", "cannot decode", "no such file"],
        strict=True,
    ):
        # the utterance id (the file's stem) and the file; a missing file has no utterance yet
        named = f"error: utterance '{Path(name).stem}' ({tmp_path / name}): "
        if name == "missing.wav":
            named = f"error: {tmp_path / name}: "
        assert line.startswith(named) and reason in line, line


def test_cli_bad_model_is_a_clear_error(tmp_path: Path, capsys):
    write_wav(tmp_path / "x.wav", utterance(["ab"]))
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    for bad in (tmp_path / "nothing", tmp_path / "garbage.pt"):
        assert main(["--model", str(bad), str(tmp_path / "x.wav")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --model {bad}") and "\n" not in err


def test_wav_scp_and_folder_inputs(tmp_path: Path, model_path: Path, capsys):
    audio = tmp_path / "audio"
    write_wav(audio / "one.wav", utterance(["ab", "ba"], seed=1))
    (audio / "sub").mkdir()
    sf.write(audio / "sub" / "two.flac", utterance(["bab"], seed=2), 16000)
    (audio / "notes.txt").write_text("not audio")
    items = collect_inputs([str(audio)])
    assert [i.id for i in items] == ["one", "sub/two"]
    scp_dir = tmp_path / "list"
    write_table(
        scp_dir / "wav.scp", {"utt-b": "../audio/sub/two.flac", "utt-a": str(audio / "one.wav")}
    )
    rc = main(["--model", str(model_path), str(scp_dir / "wav.scp"), str(audio)])
    assert rc == 0
    assert capsys.readouterr().out.splitlines() == [
        "utt-a ab ba",
        "utt-b bab",
        "one ab ba",
        "sub/two bab",
    ]


def test_json_output_schema_and_nbest(tmp_path: Path, model_path: Path):
    write_wav(tmp_path / "a.wav", utterance(["baba", "ab"], seed=4))
    wav, _ = _long_recording(12.0, seed=5)
    write_wav(tmp_path / "b.wav", wav)
    out = tmp_path / "out" / "hyp.jsonl"
    args = ["--model", str(model_path), "--format", "json", "--nbest", "3", "--window", "5"]
    assert (
        main([*args, "--output", str(out), str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]) == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["id"] for d in lines] == ["a", "b"]
    for d in lines:
        assert set(d) == {"id", "path", "duration", "text", "words", "nbest"}
        assert d["text"] == " ".join(w["word"] for w in d["words"])
        for w in d["words"]:
            assert set(w) == {"word", "start", "end", "confidence"}
            assert 0 <= w["start"] <= w["end"] <= d["duration"]
        starts = [w["start"] for w in d["words"]]
        assert starts == sorted(starts)
        nbest = d["nbest"]
        assert 1 <= len(nbest) <= 3 and nbest[0]["text"] == d["text"]
        assert all(set(e) == {"text", "score", "am_score", "lm_score"} for e in nbest)
        scores = [e["score"] for e in nbest]
        assert scores == sorted(scores, reverse=True)
        assert len({e["text"] for e in nbest}) == len(nbest)
    assert lines[0]["text"] == "baba ab"


def test_missing_input_and_bad_window_via_api(tmp_path: Path, model, decoder):
    results = transcribe_files(model, [str(tmp_path / "nope.wav")], decoder)
    assert isinstance(results[0], TranscribeError) and "no such file" in results[0].reason
    with pytest.raises(ValueError, match="overlap"):
        transcribe_files(model, [], decoder, window=1.0, overlap=2.0)
    assert torch.is_grad_enabled()  # inference mode does not leak


def test_beam_search_with_kenlm_through_the_speechssl_command(tmp_path: Path, model_path, capsys):
    from speechssl.cli import main as speechssl_main

    # a bigram ARPA over the toy words (log10 probabilities, backoff weights 0 = log10 1)
    unigrams = ["-1.0\t<unk>\t0", "-99\t<s>\t0", "-0.9\t</s>"]
    unigrams += [f"-0.8\t{w}\t0" for w in WORDS]
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(
        f"\\data\\\nngram 1={len(unigrams)}\nngram 2=1\n\n\\1-grams:\n"
        + "\n".join(unigrams)
        + "\n\n\\2-grams:\n-0.3\t<s> ab\n\n\\end\\\n"
    )
    write_wav(tmp_path / "x.wav", utterance(["bab", "abab"], seed=9))
    args = ["transcribe", "--model", str(model_path), "--format", "json", "--nbest", "2"]
    assert speechssl_main([*args, "--lm", str(arpa), str(tmp_path / "x.wav")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["text"] == "bab abab"
    best = d["nbest"][0]
    # ln P_lm of two words and </s>: 3 * -0.8/-0.9 log10 units
    assert best["lm_score"] == pytest.approx((-0.8 - 0.8 - 0.9) * np.log(10), abs=1e-3)
    assert best["score"] == pytest.approx(best["am_score"] + 0.5 * best["lm_score"] + 2.0)
    assert speechssl_main([*args, "--lm", str(tmp_path / "no.arpa"), str(tmp_path / "x.wav")]) == 1
    assert capsys.readouterr().err.startswith("error: --lm ")


def test_nbest_of_windows_is_the_k_best_combinations():
    import itertools

    from speechssl.asr.transcribe import WordTiming, _best_combinations, _Piece

    rng = np.random.default_rng(0)

    def piece(word: str, t: float) -> _Piece:
        score = float(rng.normal())
        return _Piece([WordTiming(word, t, t + 0.1, 1.0)], score, score - 1.0, 0.5)

    per_window = [[piece(w, i) for w in "xyz"[: 1 + i % 3]] for i in range(4)]
    worse_copy = _Piece(per_window[1][0].words, -100.0)  # same text as another piece, worse
    combos = _best_combinations([*per_window[:1], per_window[1] + [worse_copy], *per_window[2:]], 5)
    brute = sorted(
        (
            (sum(p.score for p in c), " ".join(p.text for p in c))
            for c in itertools.product(*per_window)
        ),
        reverse=True,
    )[:5]
    assert [c.text for c in combos] == [text for _, text in brute]
    assert [c.score for c in combos] == pytest.approx([score for score, _ in brute])
    assert all(c.am_score == pytest.approx(c.score - 4.0) for c in combos)
    assert all(c.lm_score == pytest.approx(2.0) for c in combos)


def test_data_dir_input_follows_segments(tmp_path: Path, model, decoder):
    first, second = utterance(["ab", "bab"], seed=1), utterance(["abab"], seed=2)
    write_wav(tmp_path / "rec.wav", np.concatenate([first, second]))
    split, end = len(first) / 16000, (len(first) + len(second)) / 16000
    write_data_dir(
        tmp_path / "data",
        {"rec": "../rec.wav"},
        {"rec-1": "spk", "rec-2": "spk"},
        extra={"segments": {"rec-1": f"rec 0 {split:.3f}", "rec-2": f"rec {split:.3f} {end:.3f}"}},
    )
    results = transcribe_files(model, [str(tmp_path / "data")], decoder)
    assert [(r.id, r.text) for r in results] == [("rec-1", "ab bab"), ("rec-2", "abab")]
    assert results[1].duration == pytest.approx(end - split, abs=1e-3)


def test_an_exp_dir_decodes_with_its_dev_tuned_settings(tmp_path: Path, model_path, capsys):
    """--model EXP_DIR with recipes/asr.sh's decode/dev_beam_lm/decode.json: beam search with
    its LM, alpha, beta and beam (the LM path written relative to the recipe folder), the same
    as giving them by hand; --greedy overrides."""
    import shutil

    from speechssl.cli import main as speechssl_main

    exp = tmp_path / "exp" / "asr" / "toy"
    (exp / "lm" / "2gram").mkdir(parents=True)
    shutil.copy(model_path, exp / "model.pt")
    for extra in ("tokens.txt",):
        if (model_path.parent / extra).is_file():
            shutil.copy(model_path.parent / extra, exp / extra)
    unigrams = ["-1.0\t<unk>\t0", "-99\t<s>\t0", "-0.9\t</s>"] + [f"-0.8\t{w}\t0" for w in WORDS]
    arpa = exp / "lm" / "2gram" / "lm.arpa"
    arpa.write_text(
        f"\\data\\\nngram 1={len(unigrams)}\nngram 2=1\n\n\\1-grams:\n"
        + "\n".join(unigrams)
        + "\n\n\\2-grams:\n-0.3\t<s> ab\n\n\\end\\\n"
    )  # a bigram ARPA (KenLM needs one) over the toy words
    (exp / "decode" / "dev_beam_lm").mkdir(parents=True)
    tuned = {"lm": "exp/asr/toy/lm/2gram/lm.arpa", "alpha": 0.7, "beta": 1.5, "beam": 8}
    (exp / "decode" / "dev_beam_lm" / "decode.json").write_text(json.dumps(tuned))
    write_wav(tmp_path / "x.wav", utterance(["bab", "abab"], seed=11))
    wav = str(tmp_path / "x.wav")
    fmt = ["--format", "json"]
    assert speechssl_main(["transcribe", "--model", str(exp), *fmt, wav]) == 0
    out = capsys.readouterr()
    assert "dev_beam_lm/decode.json: beam 8" in out.err and "alpha 0.7" in out.err
    by_hand = ["transcribe", "--model", str(exp / "model.pt"), "--lm", str(arpa), "--alpha",
               "0.7", "--beta", "1.5", "--beam", "8", *fmt, wav]  # fmt: skip
    assert speechssl_main(by_hand) == 0
    assert json.loads(out.out) == json.loads(capsys.readouterr().out)
    assert speechssl_main(["transcribe", "--model", str(exp), "--greedy", *fmt, wav]) == 0
    greedy = capsys.readouterr()
    assert "decode.json" not in greedy.err
    assert speechssl_main(["transcribe", "--model", str(exp / "model.pt"), *fmt, wav]) == 0
    assert json.loads(greedy.out) == json.loads(capsys.readouterr().out)
