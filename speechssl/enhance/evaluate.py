"""Score an enhancer on a data dir with clean references (``speechssl enhance-eval``).

For every utterance: PESQ (wide-band), STOI and SI-SDR of the enhanced signal and of the noisy
input against ``clean.scp``, and the SI-SDR improvement; means overall, per input SNR
(``utt2snr``) and per noise family (``utt2noise``); a PNG of noisy / enhanced / clean
spectrograms for the first few utterances. ``extra_noise`` adds one more noise of that family
to every input (seeded per utterance; e.g. ``hum``, to show what a model trained with the same
hum on both copies of its pairs leaves in place).

Outputs in ``out_dir``: ``scores.jsonl`` (one line per utterance), ``summary.json``,
``summary.md`` and ``spectrograms.png``, each written atomically.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from speechssl.data.audio import SAMPLE_RATE, load_audio
from speechssl.data.kaldi import DataDir, DataDirError
from speechssl.data.synth.noise import scale_to_snr
from speechssl.enhance.infer import Enhancer
from speechssl.enhance.metrics import MetricError, enhancement_scores
from speechssl.enhance.simulate import NoiseBank
from speechssl.io import atomic_path, atomic_write_json, atomic_write_text

# recipes/enhance.sh's models, in the order the table lists them
TABLE_ORDER = (
    "noise2noise",
    "noisy_as_clean",
    "sure",
    "noise2self",
    "noise2clean",
    "n2n_shared_hum",
)
METRICS = ("pesq", "stoi", "si_sdr", "si_sdri", "pesq_noisy", "stoi_noisy", "si_sdr_noisy")


def _scores(args: tuple[str, np.ndarray, np.ndarray, np.ndarray]) -> tuple[str, dict | str]:
    utt, clean, noisy, enhanced = args
    try:
        return utt, enhancement_scores(clean, noisy, enhanced, SAMPLE_RATE)
    except MetricError as e:
        return utt, str(e)


def _mean(rows: list[dict]) -> dict[str, float]:
    out = {k: float(np.mean([r[k] for r in rows])) for k in METRICS}
    out["utterances"] = len(rows)
    return out


def noisy_inputs(
    data: DataDir, extra_noise: str | None, extra_snr: float, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``utt -> (clean, noisy input)``, the extra noise (if any) added to the noisy recording."""
    if "clean.scp" not in data.tables:
        raise DataDirError(f"{data.path}: no clean.scp; scoring needs the clean references")
    bank = NoiseBank((extra_noise,)) if extra_noise else None
    pairs = {}
    for k, utt in enumerate(data.utt_ids):
        noisy = data.load_audio(utt, sample_rate=SAMPLE_RATE)
        entry = data.tables["clean.scp"].get(utt)
        if entry is None:
            raise DataDirError(f"{data.path}/clean.scp: no entry for utterance '{utt}'")
        clean = load_audio(data.resolve(entry), SAMPLE_RATE, utt_id=utt)
        n = min(len(clean), len(noisy))
        clean, noisy = clean[:n], noisy[:n]
        if bank is not None:
            noise = bank.sample(n, np.random.default_rng([seed, k]))
            noisy = noisy + scale_to_snr(noisy, noise, extra_snr)
        pairs[utt] = (clean, noisy.astype(np.float32))
    return pairs


def evaluate(
    enhancer: Enhancer,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    extra_noise: str | None = None,
    extra_snr: float = 5.0,
    seed: int = 0,
    nj: int = 1,
    pictures: int = 3,
    label: str = "",
) -> dict:
    """Enhance and score every utterance of ``data_dir``; returns the summary (also written)."""
    data, out = DataDir.load(data_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = noisy_inputs(data, extra_noise, extra_snr, seed)
    enhanced = {utt: enhancer.enhance_16k(noisy) for utt, (_, noisy) in pairs.items()}
    jobs = [(utt, clean, noisy, enhanced[utt]) for utt, (clean, noisy) in pairs.items()]
    if nj > 1:
        with ProcessPoolExecutor(nj) as pool:
            results = list(pool.map(_scores, jobs, chunksize=4))
    else:
        results = [_scores(job) for job in jobs]
    rows, skipped = [], {}
    snr, family = data.tables.get("utt2snr", {}), data.tables.get("utt2noise", {})
    for utt, scores in results:
        if isinstance(scores, str):
            skipped[utt] = scores
            continue
        rows.append({"utt": utt, "snr": snr.get(utt), "noise": family.get(utt), **scores})
    if not rows:
        raise MetricError(
            f"{data.path}: no utterance could be scored ({next(iter(skipped.values()), '')})"
        )
    summary = {
        "data": str(data.path),
        "label": label,
        "model": enhancer.config.get("regime"),
        "extra_noise": extra_noise,
        "extra_snr": extra_snr if extra_noise else None,
        "all": _mean(rows),
        "snr_0_5": _mean(low) if (low := [r for r in rows if _low_snr(r["snr"])]) else None,
        "by_snr": _grouped(rows, "snr"),
        "by_noise": _grouped(rows, "noise"),
        "skipped": skipped,
    }
    with atomic_path(out / "scores.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    if pictures > 0:
        spectrograms(
            [(utt, pairs[utt][1], enhanced[utt], pairs[utt][0]) for utt in list(pairs)[:pictures]],
            out / "spectrograms.png",
        )
    return summary


def _low_snr(snr: str | None) -> bool:
    """Input SNR in the 0-5 dB band the acceptance tables report."""
    return snr is not None and _is_number(snr) and 0.0 <= float(snr) <= 5.0


def _grouped(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r[key] is not None:
            groups[str(r[key])].append(r)
    order = sorted(groups, key=lambda g: (float(g) if _is_number(g) else 0.0, g))
    return {g: _mean(groups[g]) for g in order}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _row(name: str, m: dict) -> str:
    return (
        f"| {name} | {m['utterances']} | {m['pesq_noisy']:.2f} → {m['pesq']:.2f} | "
        f"{m['stoi_noisy']:.3f} → {m['stoi']:.3f} | {m['si_sdr_noisy']:.2f} → {m['si_sdr']:.2f} "
        f"| {m['si_sdri']:+.2f} |"
    )


HEADER = (
    "| {what} | utts | PESQ noisy → enhanced | STOI | SI-SDR (dB) | SI-SDRi (dB) |\n"
    "| --- | ---: | --- | --- | --- | ---: |"
)


def summary_markdown(summary: dict) -> str:
    lines = [
        f"# Enhancement scores: {summary['label'] or summary['model']} on {summary['data']}",
        "",
    ]
    if summary["extra_noise"]:
        lines += [
            f"Inputs: the noisy recordings plus {summary['extra_noise']} at {summary['extra_snr']:g} dB.",
            "",
        ]
    lines += [HEADER.format(what="set"), _row("all", summary["all"])]
    if summary.get("snr_0_5"):
        lines += [_row("input SNR 0-5 dB", summary["snr_0_5"])]
    lines += [""]
    for key, what in (("by_snr", "input SNR (dB)"), ("by_noise", "noise")):
        if summary[key]:
            lines += [HEADER.format(what=what)]
            lines += [_row(g, m) for g, m in summary[key].items()] + [""]
    if summary["skipped"]:
        lines += [f"Not scored: {len(summary['skipped'])} utterance(s) (see summary.json)", ""]
    return "\n".join(lines)


def _cell(summary: dict | None, key: str, fmt: str = "{:+.2f}") -> str:
    return "-" if not summary else fmt.format(summary[key])


def write_results(exp: str | os.PathLike) -> Path:
    """``<exp>/RESULTS.md`` from the recipe's layout: ``<exp>/<model>/test/summary.json`` (one row
    each), ``<exp>/<model>/test_hum/`` (the failure case) and ``<exp>/asr/<variant>/summary.json``
    (WER of the test set decoded raw and enhanced)."""
    exp = Path(exp)
    found = {p.parent.parent.name for p in exp.glob("*/test/summary.json")}
    models = [m for m in TABLE_ORDER if m in found] + sorted(found - set(TABLE_ORDER))
    if not models:
        raise DataDirError(f"{exp}: no <model>/test/summary.json; run the scoring step first")

    def load(*parts: str) -> dict:
        return json.loads(exp.joinpath(*parts).read_text())

    tests = {name: load(name, "test", "summary.json") for name in models}
    lines = [f"# Speech enhancement: {exp}", ""]
    test = tests[models[0]]["data"]
    lines += [
        f"Test set {test}; every model the same network size and number of updates. SI-SDRi is "
        "the SI-SDR improvement over the noisy input (dB); the last columns are SI-SDRi on the "
        "input-SNR 0-5 dB utterances and on the white-noise ones (SURE's subset).",
        "",
        "| model | utts | PESQ noisy → enhanced | STOI | SI-SDR (dB) | SI-SDRi (dB) "
        "| SI-SDRi 0-5 dB | SI-SDRi white |",
        "| --- | ---: | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for name, s in tests.items():
        white = s["by_noise"].get("white")
        lines.append(
            _row(name, s["all"])
            + f" {_cell(s.get('snr_0_5'), 'si_sdri')} | {_cell(white, 'si_sdri')} |"
        )
    low = [(n, s["snr_0_5"]) for n, s in tests.items() if s.get("snr_0_5")]
    if low:
        lines += [
            "",
            "The same on the input-SNR 0-5 dB utterances:",
            "",
            HEADER.format(what="model"),
        ]
        lines += [_row(n, s) for n, s in low]
    hum = [n for n in models if (exp / n / "test_hum" / "summary.json").is_file()]
    if hum:
        snr = load(hum[0], "test_hum", "summary.json")["extra_snr"]
        lines += [
            "",
            f"The failure case: the test inputs plus hum at {snr:g} dB. n2n_shared_hum was "
            "trained on Noise2Noise pairs that carry the same hum in both copies, so the hum is "
            "part of what the target predicts and stays in its output.",
            "",
            HEADER.format(what="model"),
            *(_row(n, load(n, "test_hum", "summary.json")["all"]) for n in hum),
        ]
    asr = sorted(p.parent.name for p in exp.glob("asr/*/summary.json"))
    if asr:
        lines += ["", "ASR on the test set (beam + LM, the ASR model's dev-tuned weights):", ""]
        lines += ["| input | WER % | CER % |", "| --- | ---: | ---: |"]
        for v in sorted(asr, key=lambda v: v != "raw"):
            s = load("asr", v, "summary.json")
            what = "noisy (raw)" if v == "raw" else f"enhanced by {v}"
            lines.append(f"| {what} | {s['wer']:.2f} | {s.get('cer', float('nan')):.2f} |")
    path = exp / "RESULTS.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def spectrograms(items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: Path) -> Path:
    """A grid of log-power spectrograms: a row per utterance, columns noisy / enhanced / clean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    fig, axes = plt.subplots(len(items), 3, figsize=(12, 2.6 * len(items)), squeeze=False)
    window = torch.hann_window(512)
    for r, (utt, *signals) in enumerate(items):
        for c, (title, x) in enumerate(zip(("noisy", "enhanced", "clean"), signals, strict=True)):
            spec = torch.stft(
                torch.from_numpy(np.asarray(x, dtype=np.float32)),
                512,
                128,
                window=window,
                return_complex=True,
            )
            db = 10 * torch.log10(spec.abs().square() + 1e-10).numpy()
            ax = axes[r][c]
            ax.imshow(
                db,
                origin="lower",
                aspect="auto",
                vmin=db.max() - 80,
                vmax=db.max(),
                extent=(0, len(x) / SAMPLE_RATE, 0, 8),
            )
            ax.set_title(f"{title}: {utt[-24:]}", fontsize=8)
            ax.set_xlabel("s", fontsize=7)
            ax.set_ylabel("kHz", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path
