"""Audio I/O policy: formats, channels, sample rates, and errors that name the utterance."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechssl.data.audio import AudioError, load_audio, write_wav


@pytest.fixture
def tone():
    t = np.arange(16000) / 16000
    return (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_formats(tmp_path, tone, fmt, subtype):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, tone, 16000, format=fmt, subtype=subtype)
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.shape[0] == pytest.approx(16000, abs=1000)
    tol = 0.05 if fmt == "OGG" else 1e-3  # Vorbis is lossy
    n = min(len(wav), len(tone))
    assert np.abs(wav[:n] - tone[:n]).mean() < tol


def test_multichannel_mix_down_and_pick(tmp_path, tone):
    stereo = np.stack([tone, np.zeros_like(tone)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), tone / 2, atol=1e-6)
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav", channel=0), tone, atol=1e-6)
    with pytest.raises(AudioError, match="channel 2 requested, file has 2"):
        load_audio(tmp_path / "s.wav", channel=2)


def test_sample_rate_policy(tmp_path, tone):
    t8 = np.arange(8000) / 8000
    sf.write(tmp_path / "r.wav", 0.5 * np.sin(2 * np.pi * 220 * t8), 8000)
    with pytest.raises(AudioError, match=r"utterance 'u8'.*8000 Hz, expected 16000"):
        load_audio(tmp_path / "r.wav", utt_id="u8")
    up = load_audio(tmp_path / "r.wav", resample=True)
    assert up.shape == (16000,)
    # the 220 Hz tone survives resampling: peak of the spectrum stays at 220 Hz
    spec = np.abs(np.fft.rfft(up))
    assert abs(np.argmax(spec) * 16000 / len(up) - 220) < 2


def test_bad_files_are_named(tmp_path, tone):
    write_wav(tmp_path / "ok.wav", tone)
    data = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 3])
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00not really a wav" * 20)
    (tmp_path / "empty.wav").write_bytes(b"")
    cases = {
        "trunc.wav": "truncated",
        "corrupt.wav": "cannot decode",
        "empty.wav": "empty file",
        "missing.wav": "not found",
    }
    for name, what in cases.items():
        with pytest.raises(AudioError) as err:
            load_audio(tmp_path / name, utt_id=f"utt-{name}")
        msg = str(err.value)
        assert f"utt-{name}" in msg and str(tmp_path / name) in msg and what in msg


def test_nan_rejected_on_read_and_write(tmp_path, tone):
    bad = tone.copy()
    bad[10] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "nan.wav", utt_id="n1")
    with pytest.raises(AudioError, match="NaN"):
        write_wav(tmp_path / "out.wav", bad)
    assert not (tmp_path / "out.wav").exists()


def test_pipes_need_opt_in(tmp_path, tone):
    write_wav(tmp_path / "p.wav", tone)
    entry = f"cat {tmp_path / 'p.wav'} |"
    with pytest.raises(AudioError, match="explicit opt-in"):
        load_audio(entry, utt_id="p")
    np.testing.assert_allclose(load_audio(entry, allow_pipes=True), tone, atol=1e-4)
    with pytest.raises(AudioError, match="exited with"):
        load_audio("false |", allow_pipes=True)


def test_segment_read(tmp_path, tone):
    write_wav(tmp_path / "a.wav", tone)
    seg = load_audio(tmp_path / "a.wav", start=0.25, end=0.5)
    np.testing.assert_allclose(seg, tone[4000:8000], atol=1e-4)
