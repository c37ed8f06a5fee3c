"""Speech enhancement without clean targets (speechssl.enhance): the training pairs, SURE's risk,
Noise2Noise learning, resume, `speechssl enhance` on files of any rate and channel count, and
enhance -> transcribe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechssl.cli import main
from speechssl.data.audio import load_audio
from speechssl.data.dataset import BatchIndices
from speechssl.data.kaldi import DataDir
from speechssl.enhance.data import EnhanceBatch, EnhanceDataConfig, EnhanceDataset, sigma_from_snr
from speechssl.enhance.evaluate import evaluate
from speechssl.enhance.infer import enhance_data_dir, load_enhancer
from speechssl.enhance.models import EnhanceModelConfig, build_model
from speechssl.enhance.train import EnhanceTrainConfig, EnhanceTraining, enhance_train
from speechssl.train import TrainerConfig


def _train_cfg(regime: str = "noise2noise", updates: int = 4, **trainer) -> EnhanceTrainConfig:
    trainer = {"max_updates": updates, "lr": 2e-3, "max_batch_seconds": 8.0, "log_every": 100,
               "save_every": 1000, "progress_bar": False, **trainer}  # fmt: skip
    return EnhanceTrainConfig(
        regime=regime,
        model=EnhanceModelConfig(hidden_size=32, num_layers=1),
        trainer=TrainerConfig(**trainer),
    )


@pytest.fixture(scope="module")
def noisy_train(synth_corpus: Path) -> Path:
    return synth_corpus / "noisy" / "train"


def _clean(data: DataDir, utt: str) -> np.ndarray:
    return load_audio(data.resolve(data.tables["clean.scp"][utt]))


def test_noise2noise_pairs_are_the_two_recordings_with_independent_noise(noisy_train):
    data = DataDir.load(noisy_train)
    ds = EnhanceDataset(noisy_train, "noise2noise", EnhanceDataConfig(), crop=False)
    swapped = 0
    for i, utt in enumerate(ds.utt_ids):
        item = ds.__getitems__(BatchIndices([i], seed=7))[0]
        clean = _clean(data, utt)[: len(item.input)]
        first = load_audio(data.resolve(data.wav_scp[utt]))[: len(item.input)]
        n_in, n_out = item.input - clean, item.target - clean
        # both sides are noisy (noise energy well above zero) and their noises are uncorrelated
        assert np.mean(n_in**2) > 1e-3 * np.mean(clean**2)
        corr = np.dot(n_in, n_out) / np.sqrt(np.dot(n_in, n_in) * np.dot(n_out, n_out))
        assert abs(corr) < 0.3, (utt, corr)
        swapped += not np.allclose(item.input, first)
    assert 0 < swapped < len(ds)  # either recording may be the input


def test_shared_hum_is_on_both_sides_and_cancels_in_the_difference(noisy_train):
    plain = EnhanceDataset(noisy_train, "noise2noise", EnhanceDataConfig(), crop=False)
    hum = EnhanceDataset(
        noisy_train,
        "noise2noise",
        EnhanceDataConfig(shared_noise="hum", shared_snr=0.0),
        crop=False,
    )
    a = plain.__getitems__(BatchIndices([0], seed=3))[0]
    b = hum.__getitems__(BatchIndices([0], seed=3))[0]
    added_in, added_out = b.input - a.input, b.target - a.target
    assert np.mean(added_in**2) > 0.3 * np.mean(a.input**2)  # 0 dB of hum was added
    np.testing.assert_allclose(added_in, added_out, atol=1e-6)  # the same realisation on both
    spectrum = np.abs(np.fft.rfft(added_in))
    peak_hz = np.argmax(spectrum) * 16000 / len(added_in)
    assert 40 < peak_hz < 700  # mains hum: 50/60 Hz and harmonics


def test_sigma_from_snr_recovers_the_noise_level():
    rng = np.random.default_rng(0)
    speech = np.sin(np.arange(32000) / 7.0) * 0.1
    noise = 0.05 * rng.standard_normal(32000)
    snr = 10 * np.log10(np.sum(speech**2) / np.sum(noise**2))
    assert sigma_from_snr(speech + noise, snr) == pytest.approx(0.05, rel=0.02)


def test_sure_estimates_the_clean_mse_without_the_clean_signal():
    """For a fixed network and Gaussian noise of known sigma, the mean SURE over noise draws
    equals the mean squared error against the clean signal (which SURE never sees)."""
    torch.manual_seed(0)
    cfg = _train_cfg("sure")
    model = EnhanceTraining(build_model(cfg.model), cfg).eval()
    for p in model.parameters():  # a non-trivial, non-identity map
        p.data.normal_(0, 0.3)
    rng = np.random.default_rng(1)
    t = np.arange(8000) / 16000
    clean = torch.tensor(0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(8000), dtype=torch.float32)
    sigma = 0.05
    sure, mse = [], []
    with torch.no_grad():
        for _ in range(24):
            y = clean + sigma * torch.tensor(rng.standard_normal(8000), dtype=torch.float32)
            batch = EnhanceBatch(
                y[None], y[None], torch.tensor([8000]), ["u"], torch.tensor([sigma]),
                torch.tensor(rng.standard_normal((1, 8000)), dtype=torch.float32),
            )  # fmt: skip
            out = model(batch)
            sure.append(float(out.loss) / out.sample_size)
            est = model.net(y[None], torch.tensor([8000]))[0]
            mse.append(float((est - clean).square().mean()))
    assert np.mean(sure) == pytest.approx(np.mean(mse), rel=0.1)


def test_noise2noise_training_improves_si_sdr_over_the_noisy_input(noisy_train, tmp_path):
    """Trained on pairs of noisy recordings only, the enhancer's output is closer to the clean
    speech (which training never read) than the noisy input is."""
    cfg = _train_cfg("noise2noise", updates=120, lr=3e-3)
    result = enhance_train(cfg, noisy_train, tmp_path / "n2n")
    enhancer = load_enhancer(result["model"])
    summary = evaluate(enhancer, noisy_train, tmp_path / "eval", pictures=1)
    assert summary["all"]["si_sdri"] > 0.5, summary["all"]
    assert (tmp_path / "eval" / "spectrograms.png").stat().st_size > 1000
    lines = (tmp_path / "eval" / "scores.jsonl").read_text().splitlines()
    assert len(lines) == len(DataDir.load(noisy_train).utt_ids)


def test_resume_repeats_an_uninterrupted_run(noisy_train, tmp_path):
    whole = enhance_train(_train_cfg(updates=6), noisy_train, tmp_path / "whole")
    enhance_train(_train_cfg(updates=6, stop_after=3, save_every=3), noisy_train, tmp_path / "cut")
    resumed = enhance_train(_train_cfg(updates=6, save_every=3), noisy_train, tmp_path / "cut")
    a = torch.load(whole["model"], weights_only=True)["model"]
    b = torch.load(resumed["model"], weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_noise2self_with_a_mask_model_is_a_config_error(noisy_train, tmp_path, capsys):
    code = main(["enhance-train", "--data", str(noisy_train), "--exp", str(tmp_path / "x"),
                 "--regime", "noise2self"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "model.kind: wave" in err[0]


@pytest.fixture(scope="module")
def enhancer_path(noisy_train, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("enhancer")
    return Path(enhance_train(_train_cfg(updates=2), noisy_train, root)["model"])


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
@pytest.mark.parametrize("channels", [1, 2])
def test_enhance_keeps_length_rate_and_channels(enhancer_path, tmp_path, rate, channels):
    rng = np.random.default_rng(rate + channels)
    n = int(1.3 * rate) + 7  # not a multiple of any hop
    samples = (0.1 * rng.standard_normal((n, channels))).astype(np.float32)
    src = tmp_path / "in" / "a.wav"
    src.parent.mkdir()
    sf.write(src, samples[:, 0] if channels == 1 else samples, rate, subtype="PCM_16")
    assert (
        main(
            ["enhance", str(src), "--model", str(enhancer_path), "--out-dir", str(tmp_path / "out")]
        )
        == 0
    )
    out = tmp_path / "out" / "a.wav"
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (
        rate,
        channels,
        n,
        "PCM_16",
    )
    enhanced, _ = sf.read(out)
    assert np.std(enhanced) > 0  # not silence


def test_enhance_names_an_unreadable_file_and_still_does_the_others(
    enhancer_path, tmp_path, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "good.wav", np.zeros(16000, dtype=np.float32) + 0.01, 16000)
    (folder / "bad.wav").write_bytes(b"RIFF not audio at all")
    code = main(
        ["enhance", str(folder), "--model", str(enhancer_path), "--out-dir", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("error:") and "bad.wav" in err[0]
    assert (tmp_path / "out" / "good.wav").is_file() and not (tmp_path / "out" / "bad.wav").exists()


def test_transcribe_enhance_equals_transcribing_the_enhanced_file(
    enhancer_path, toy_asr_model, tmp_path, capsys
):
    """`transcribe --enhance` gives the transcript of the audio `speechssl enhance` writes."""
    from tests.toy_asr import utterance

    src = tmp_path / "in" / "u.wav"
    src.parent.mkdir()
    sf.write(src, utterance(["ab", "bab"], seed=3), 16000, subtype="FLOAT")
    model = str(toy_asr_model)
    assert main(["transcribe", str(src), "--model", model, "--enhance", str(enhancer_path)]) == 0
    fused = capsys.readouterr().out
    assert (
        main(["enhance", str(src), "--model", str(enhancer_path), "--out-dir", str(tmp_path / "e")])
        == 0
    )
    capsys.readouterr()
    assert main(["transcribe", str(tmp_path / "e" / "u.wav"), "--model", model]) == 0
    assert capsys.readouterr().out == fused


def test_asr_decode_enhance_writes_an_enhanced_data_dir(enhancer_path, noisy_train, tmp_path):
    data = DataDir.load(noisy_train)
    out, errors = enhance_data_dir(load_enhancer(enhancer_path), noisy_train, tmp_path / "enh")
    assert not errors
    enhanced = DataDir.load(out)
    assert enhanced.utt_ids == data.utt_ids and enhanced.text == data.text
    for utt in data.utt_ids:
        assert len(enhanced.load_audio(utt)) == len(data.load_audio(utt))
        assert Path(enhanced.tables["clean.scp"][utt]).is_absolute()


def test_a_data_dir_without_utt2dur_takes_lengths_from_the_audio(noisy_train, tmp_path):
    from speechssl.data.kaldi import write_data_dir

    data = DataDir.load(noisy_train)
    scp = {u: data.resolve(data.wav_scp[u]) for u in data.utt_ids}
    noisy2 = {u: data.resolve(data.tables["noisy2.scp"][u]) for u in data.utt_ids}
    write_data_dir(tmp_path / "d", scp, data.utt2spk, extra={"noisy2.scp": noisy2})
    ds = EnhanceDataset(tmp_path / "d", "noise2noise", EnhanceDataConfig(), crop=False)
    expected = data.durations()
    assert ds.durations == pytest.approx([expected[u] for u in ds.utt_ids], abs=0.01)
