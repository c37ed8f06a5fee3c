"""Build the synthetic corpus: plan, render in parallel, then write the Kaldi data dirs.

Layout under ``out_dir``::

    wav/<task>/<utt>.wav                  audio (16 kHz, 16-bit PCM); noisy also <utt>.clean.wav,
                                          and in train <utt>.noisy2.wav
    asr/{train_labeled,train_unlabeled,dev,test}/   asr/lm_text.txt
    phones/{train,dev,test}/              + utt2phones
    keywords/{train,dev,test}/            + utt2keyword
    intents/{train,dev,test}/             + utt2intent ("action object location")
    speakers/sid_{train,dev,test}/        speaker identification (same voices, other utterances)
    speakers/sv_{train,dev,test}/         verification: disjoint voice groups; dev/test + trials
    prosody/{train,dev,test}/             + utt2emotion (dev and test voices unseen in train)
    noisy/{train,dev,test}/               + clean.scp utt2snr utt2noise (train: + noisy2.scp
                                          utt2snr2 utt2noise2)
    voices.txt                            the voice list used

``wav.scp`` paths are relative to the data dir, so the corpus can be moved and two builds with
the same seed are byte-identical wherever they are written. Data-dir files are written (each
atomically) only after all audio they list exists.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from speechssl.data.kaldi import write_data_dir
from speechssl.data.synth import tasks
from speechssl.data.synth.grammar import Grammar
from speechssl.data.synth.render import Rendered, UttSpec, render_utterance, wav_path
from speechssl.data.synth.sizes import sizes_for_scale
from speechssl.data.synth.synthesizer import SAMPLE_RATE, check_voice
from speechssl.data.synth.voices import Voice, default_voices, write_voices
from speechssl.io import atomic_write_text, remove_stale_temp_files

SUBSETS = ("asr", "phones", "keywords", "intents", "speakers", "prosody", "noisy")
DEFAULT_SNRS = (0.0, 5.0, 10.0, 15.0)
MIN_SPEAKER_VOICES = 40


def plan_corpus(
    seed: int,
    scale: str | float,
    voices: list[Voice],
    snrs: tuple[float, ...],
    subsets: tuple[str, ...],
) -> tasks.Plan:
    grammar = Grammar()
    sizes = sizes_for_scale(scale, len(voices))
    plan = tasks.Plan()
    planners = {
        "asr": tasks.plan_asr,
        "phones": tasks.plan_phones,
        "keywords": tasks.plan_keywords,
        "intents": tasks.plan_intents,
        "speakers": tasks.plan_speakers,
        "prosody": tasks.plan_prosody,
        "noisy": partial(tasks.plan_noisy, snrs=snrs),
    }
    for subset in subsets:
        planners[subset](plan, grammar, voices, sizes, seed)
    return plan


def _render_all(specs: list[UttSpec], out_dir: Path, nj: int) -> dict[str, Rendered]:
    render = partial(render_utterance, root=out_dir)
    results: dict[str, Rendered] = {}
    progress = _Progress(len(specs))
    if nj <= 1:
        for spec in specs:
            results[spec.utt_id] = render(spec)
            progress.step()
    else:
        with ProcessPoolExecutor(max_workers=nj) as pool:
            for result in pool.map(render, specs, chunksize=16):
                results[result.utt_id] = result
                progress.step()
    return results


class _Progress:
    """A line on stderr every 10% (tqdm-free so logs of non-interactive runs stay short)."""

    def __init__(self, total: int):
        self.total, self.count, self.start, self.next = total, 0, time.time(), 0.1

    def step(self) -> None:
        self.count += 1
        if self.total and self.count / self.total >= self.next:
            elapsed = time.time() - self.start
            print(
                f"synth: rendered {self.count}/{self.total} utterances ({elapsed:.0f} s)",
                file=sys.stderr,
            )
            self.next += 0.1


def _write_dir(out_dir: Path, d: tasks.DirPlan, results: dict[str, Rendered]) -> dict[str, object]:
    path = out_dir / d.name
    utts = list(d.utt2spk)

    def rel(utt: str, suffix: str = "") -> str:
        return os.path.relpath(wav_path(out_dir, d.task, utt, suffix), path)

    extra: dict[str, dict[str, object]] = {
        "utt2dur": {u: f"{results[u].num_samples / SAMPLE_RATE:.4f}" for u in utts},
        **{name: {u: rel(u, suffix) for u in utts} for name, suffix in d.scp.items()},
        **d.tables,
    }
    if d.phones:
        extra["utt2phones"] = {u: " ".join(results[u].phones) for u in utts}
    write_data_dir(path, {u: rel(u) for u in utts}, d.utt2spk, d.text, extra)
    for name, content in d.files.items():
        atomic_write_text(path / name, content)
    seconds = sum(results[u].num_samples for u in utts) / SAMPLE_RATE
    return {
        "utterances": len(utts),
        "hours": seconds / 3600,
        "voices": len(set(d.utt2spk.values())),
    }


def _check_settings(
    out_dir: Path, seed: int, scale: str | float, voices: list[Voice], snrs: tuple[float, ...]
) -> None:
    """Record what decides each utterance's content; refuse to resume a corpus built otherwise
    (utterance ids would be reused for different audio). Scale may change: it only adds or
    drops utterances (except the ``test`` preset, which also shortens sentences)."""
    max_words = sizes_for_scale(scale, len(voices)).max_words
    settings = (
        f"seed {seed}\nmax_words {max_words}\nsnrs {','.join(f'{s:g}' for s in snrs)}\n"
        f"voices {' '.join(v.id for v in voices)}\n"
    )
    stamp = out_dir / "settings.txt"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") != settings:
        old = dict(line.split(" ", 1) for line in stamp.read_text(encoding="utf-8").splitlines())
        new = dict(line.split(" ", 1) for line in settings.splitlines())
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k])
        raise ValueError(
            f"{out_dir} holds a corpus built with other settings ({diff[:300]}); "
            "use another --out or remove it"
        )
    atomic_write_text(stamp, settings)


def build_corpus(
    out_dir: str | os.PathLike,
    seed: int = 0,
    scale: str | float = "default",
    nj: int = 2,
    voices: list[Voice] | None = None,
    snrs: list[float] | tuple[float, ...] | None = None,
    subsets: list[str] | tuple[str, ...] | None = None,
) -> dict[str, dict[str, object]]:
    """Render the corpus into ``out_dir``; returns ``{data dir name: {utterances, hours,
    voices}}``. Reruns skip audio that exists, so a killed build resumes."""
    out_dir = Path(out_dir)
    voices = list(voices) if voices is not None else default_voices()
    snrs = tuple(float(s) for s in (snrs if snrs is not None else DEFAULT_SNRS))
    subsets = tuple(subsets) if subsets is not None else SUBSETS
    unknown = sorted(set(subsets) - set(SUBSETS))
    if unknown:
        raise ValueError(f"unknown subsets {unknown}; choose from {', '.join(SUBSETS)}")
    if not snrs:
        raise ValueError("snrs: give at least one SNR in dB")
    if len({v.id for v in voices}) != len(voices):
        raise ValueError("voices: the list has duplicate voice ids")
    if "speakers" in subsets and len(voices) < MIN_SPEAKER_VOICES:
        print(
            f"synth: warning: {len(voices)} voices; the speakers task is meant to have "
            f"at least {MIN_SPEAKER_VOICES}",
            file=sys.stderr,
        )
    for voice in voices:  # fail before any rendering if a voice is not installed
        check_voice(voice)

    _check_settings(out_dir, seed, scale, voices, snrs)
    if out_dir.is_dir():
        remove_stale_temp_files(out_dir)  # left by a killed run
    plan = plan_corpus(seed, scale, voices, snrs, subsets)
    results = _render_all(list(plan.specs.values()), out_dir, max(1, nj))
    summary = {d.name: _write_dir(out_dir, d, results) for d in plan.dirs}
    for name, content in plan.files.items():
        atomic_write_text(out_dir / name, content)
    write_voices(out_dir / "voices.txt", voices)
    return summary


def format_summary(summary: dict[str, dict[str, object]]) -> str:
    lines = [f"{'data dir':<26} {'utts':>7} {'hours':>8} {'voices':>7}"]
    for name, info in summary.items():
        lines.append(
            f"{name:<26} {info['utterances']:>7} {info['hours']:>8.3f} {info['voices']:>7}"
        )
    total_h = sum(float(i["hours"]) for i in summary.values())
    lines.append(f"{'total (shared audio counted per dir)':<26} {'':>7} {total_h:>8.3f}")
    return "\n".join(lines)
