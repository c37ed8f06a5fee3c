"""Decode a data dir (``speechssl asr-decode``) with a CTC model, optionally with a KenLM, n-best
rescoring with a second LM, and LM-weight tuning on a dev set; then score with jiwer.

The model runs once per utterance; its log-probabilities are cached in ``<out>/logprobs.pt``
so a weight sweep or a rerun with another LM decodes without re-running the network. Beam search
runs in ``--nj`` processes. A decode directory holds:

``text``           the best hypothesis per utterance (Kaldi table)
``nbest.jsonl``    per utterance the n-best list: text, score, am/lm scores, words
``ctm``            word timings: ``<utt> 1 <start> <duration> <word> <confidence>``
``wer.txt`` ...    scoring (:mod:`speechssl.asr.score`) when the data dir has ``text``
``decode.json``    the settings used (model, LM, alpha, beta, beam)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from speechssl.asr.decode import CTCDecoder, DecoderConfig, Hypothesis, rescore_nbest
from speechssl.asr.model import CTCModel, load_model
from speechssl.asr.score import score_dir, score_texts
from speechssl.data.dataset import AudioDataset, LengthBucketSampler, collate
from speechssl.data.kaldi import c_sorted, read_table, write_table
from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_torch_save, atomic_write_text


@torch.no_grad()
def compute_logprobs(
    model: CTCModel, data_dir: str | os.PathLike, batch_seconds: float = 60.0
) -> dict[str, np.ndarray]:
    """``{utt: (T, V) float32 log-probabilities}`` for every utterance of ``data_dir``."""
    dataset = AudioDataset(data_dir, crop=None)
    sampler = LengthBucketSampler(dataset.durations, batch_seconds, shuffle=False)
    device = next(model.parameters()).device
    out: dict[str, np.ndarray] = {}
    for indices in sampler.epoch_batches(0):
        batch = collate(dataset.__getitems__(indices)).to(device)
        logp, lengths = model.logprobs(batch.wavs, batch.lengths)
        for b, utt in enumerate(batch.utt_ids):
            out[utt] = logp[b, : int(lengths[b])].cpu().numpy()
    return out


def cached_logprobs(model_path: str, data_dir: Path, out_dir: Path, device: str):
    """Log-probabilities of ``data_dir``, computed once and kept in ``out_dir/logprobs.pt``
    (keyed by the model file and the data dir's wav.scp, so a changed input recomputes)."""
    key = {
        "model": str(Path(model_path).resolve()),
        "model_mtime": os.path.getmtime(_model_file(model_path)),
        "wav_scp": (data_dir / "wav.scp").read_text(encoding="utf-8"),
    }
    cache = out_dir / "logprobs.pt"
    if cache.is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            logprobs = {u: t.numpy() for u, t in saved["logprobs"].items()}
            return logprobs, saved["tokens"], saved["stride"]
    model = load_model(model_path, device)
    logprobs = compute_logprobs(model, data_dir)
    tensors = {u: torch.from_numpy(a) for u, a in logprobs.items()}  # weights_only-loadable
    atomic_torch_save(
        {"key": key, "logprobs": tensors, "tokens": model.tokens, "stride": model.stride}, cache
    )
    return logprobs, model.tokens, model.stride


def _model_file(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        return p / "model.pt" if (p / "model.pt").is_file() else p / "checkpoints/last.pt"
    return p


def decode_all(
    decoder: CTCDecoder,
    logprobs: dict[str, np.ndarray],
    mode: str,
    nj: int = 1,
    search_device: str | None = None,
) -> dict[str, list[Hypothesis]]:
    """Greedy or beam search over every utterance; ``search_device`` (``cuda``): the batched
    beam search there instead of ``nj`` CPU processes."""
    utts = sorted(logprobs)
    if mode == "greedy":
        return {u: [decoder.greedy(logprobs[u])] for u in utts}
    results = decoder.decode_batch([logprobs[u] for u in utts], nj=nj, device=search_device)
    return dict(zip(utts, results, strict=True))


def tune_weights(
    tokens: list[str],
    lm,
    logprobs: dict[str, np.ndarray],
    refs: dict[str, str],
    config: DecoderConfig,
    alphas: list[float],
    betas: list[float],
    nj: int = 1,
    search_device: str | None = None,
) -> tuple[float, float, list[dict]]:
    """Grid search of (alpha, beta) by WER on ``refs``; returns the best pair and all results."""
    results = []
    for alpha in alphas:
        for beta in betas:
            decoder = CTCDecoder(tokens, lm, replace(config, alpha=alpha, beta=beta, nbest=1))
            hyps = decode_all(decoder, logprobs, "beam", nj, search_device)
            summary, _ = score_texts(refs, {u: h[0].text for u, h in hyps.items()})
            results.append({"alpha": alpha, "beta": beta, "wer": summary.wer})
    best = min(results, key=lambda r: (r["wer"], r["alpha"], r["beta"]))
    return best["alpha"], best["beta"], results


def tune_rescoring(
    first_pass: dict[str, list[Hypothesis]],
    lm,
    refs: dict[str, str],
    alphas: list[float],
    betas: list[float],
) -> tuple[float, float, list[dict]]:
    """Grid search of the rescoring (alpha, beta) on fixed first-pass n-best lists."""
    results = []
    for alpha in alphas:
        for beta in betas:
            best = {u: rescore_nbest(h, lm, alpha, beta)[0].text for u, h in first_pass.items()}
            results.append({"alpha": alpha, "beta": beta, "wer": score_texts(refs, best)[0].wer})
    best = min(results, key=lambda r: (r["wer"], r["alpha"], r["beta"]))
    return best["alpha"], best["beta"], results


def write_decode_dir(out: Path, hyps: dict[str, list[Hypothesis]], stride: int, sr: int = 16000):
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "text", {u: h[0].text for u, h in hyps.items()})
    lines, ctm = [], []
    for utt, nbest in hyps.items():
        entries = [
            {
                "text": h.text,
                "score": h.score,
                "am_score": h.am_score,
                "lm_score": h.lm_score,
                "num_words": h.num_words,
            }
            for h in nbest
        ]
        lines.append(json.dumps({"utt": utt, "nbest": entries}))
        for w in nbest[0].words:
            start = w.start_frame * stride / sr
            dur = (w.end_frame - w.start_frame) * stride / sr
            ctm.append(f"{utt} 1 {start:.2f} {dur:.2f} {w.word} {w.confidence:.3f}")
    atomic_write_text(out / "nbest.jsonl", "\n".join(lines) + "\n")
    atomic_write_text(out / "ctm", "\n".join(ctm) + ("\n" if ctm else ""))


def decode_data_dir(
    model: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    mode: str = "beam",
    config: DecoderConfig | None = None,
    lm: str | None = None,
    rescore_lm: str | None = None,
    weights: str | os.PathLike | None = None,
    tune_alphas: Sequence[float] = (),
    tune_betas: Sequence[float] = (),
    nj: int = 1,
    device: str = "cpu",
):
    """Decode ``data`` into the decode dir ``out`` (see the module docstring); returns the
    scoring summary (:func:`speechssl.asr.score.score_dir`), or None when ``data`` has no text.

    ``mode``: greedy | beam (with ``lm`` for shallow fusion). ``rescore_lm``: a second LM that
    re-ranks the n-best lists. ``weights``: the ``decode.json`` of a tuning run, whose alpha and
    beta (and rescoring weights) replace ``config``'s. ``tune_alphas``: grid-search the weights on
    ``data``'s text (with ``rescore_lm``: the rescoring weights, on the first pass's n-best lists);
    ``tune_betas`` defaults to the beta.
    """
    data, out, config = Path(data), Path(out), config or DecoderConfig()
    logprobs, tokens, stride = cached_logprobs(str(model), data, out, device)
    search_device = device if device.startswith("cuda") else None  # the batched beam search
    tuned: dict = {}
    if weights:  # a tuning run's decode.json: first-pass and (if tuned) rescoring weights
        tuned = json.loads(Path(weights).read_text())
        config = replace(config, alpha=tuned["alpha"], beta=tuned["beta"])
    settings = {"model": str(model), "mode": mode, "lm": lm, **asdict(config)}
    if tune_alphas and (not lm or not (data / "text").is_file()):
        raise ValueError("--tune-alpha needs --lm and a data dir with text")
    refs = read_table(data / "text") if tune_alphas else {}
    tune_betas = list(tune_betas) or [config.beta]
    if tune_alphas and not rescore_lm:  # tune the first pass
        alpha, beta, grid = tune_weights(
            tokens, lm, logprobs, refs, config, list(tune_alphas), tune_betas, nj, search_device
        )
        config = replace(config, alpha=alpha, beta=beta)
        settings.update(alpha=alpha, beta=beta, grid=grid)
    decoder = CTCDecoder(tokens, lm if mode == "beam" else None, config)
    hyps = decode_all(decoder, logprobs, mode, nj, search_device)
    if rescore_lm:
        r_alpha = tuned.get("rescore_alpha", config.alpha)
        r_beta = tuned.get("rescore_beta", config.beta)
        if tune_alphas:  # tune the rescoring weights on these n-best lists
            r_alpha, r_beta, grid = tune_rescoring(
                hyps, rescore_lm, refs, list(tune_alphas), tune_betas
            )
            settings["rescore_grid"] = grid
        hyps = {u: rescore_nbest(h, rescore_lm, r_alpha, r_beta) for u, h in hyps.items()}
        settings.update(rescore_lm=rescore_lm, rescore_alpha=r_alpha, rescore_beta=r_beta)
    write_decode_dir(out, hyps, stride)
    atomic_write_text(out / "decode.json", json.dumps(settings, indent=2, default=str) + "\n")
    if (data / "text").is_file():
        return score_dir(data / "text", out / "text", out)
    return None


def merge_decode_dirs(shards: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """One decode dir from the decode dirs of a data dir's shards (``speechssl data split``):
    ``text``, ``nbest.jsonl`` and ``ctm`` by utterance, ``logprobs.pt`` merged, ``decode.json``
    the shards' (which must agree). An utterance in two shards, or shards decoded with other
    settings or models' tokens, is an error naming the shard."""
    out, shards = Path(out), [Path(s) for s in shards]
    if not shards:
        raise SpeechSSLError("merge-decodes: give the shards' decode dirs")
    text, nbest, ctm, logprobs = {}, {}, {}, {}
    settings = tokens = stride = None
    for d in shards:
        for name in ("text", "nbest.jsonl", "ctm", "decode.json"):
            if not (d / name).is_file():
                raise SpeechSSLError(f"{d}/{name}: missing; is {d} a finished decode dir?")
        s = json.loads((d / "decode.json").read_text())
        settings = s if settings is None else settings
        if s != settings:
            raise SpeechSSLError(f"{d}/decode.json: other settings than {shards[0]}'s")
        part = read_table(d / "text")
        twice = set(part) & set(text)
        if twice:
            raise SpeechSSLError(f"{d}: utterance '{min(twice)}' is in another shard too")
        text.update(part)
        for line in (d / "nbest.jsonl").read_text().splitlines():
            if line.strip():
                nbest[json.loads(line)["utt"]] = line
        for line in (d / "ctm").read_text().splitlines():
            if line.strip():
                ctm.setdefault(line.split(maxsplit=1)[0], []).append(line)
        if (d / "logprobs.pt").is_file():
            saved = torch.load(d / "logprobs.pt", map_location="cpu", weights_only=True)
            if tokens is not None and (saved["tokens"] != tokens or saved["stride"] != stride):
                raise SpeechSSLError(f"{d}/logprobs.pt: other tokens or frame rate")
            tokens, stride = saved["tokens"], saved["stride"]
            logprobs.update(saved["logprobs"])
    out.mkdir(parents=True, exist_ok=True)
    if logprobs:
        key = {"merged": [str(d) for d in shards]}
        payload = {"key": key, "logprobs": logprobs, "tokens": tokens, "stride": stride}
        atomic_torch_save(payload, out / "logprobs.pt")
    utts = c_sorted(text)
    atomic_write_text(out / "nbest.jsonl", "".join(nbest[u] + "\n" for u in utts if u in nbest))
    atomic_write_text(out / "ctm", "".join(line + "\n" for u in utts for line in ctm.get(u, [])))
    atomic_write_text(out / "decode.json", json.dumps(settings, indent=2) + "\n")
    write_table(out / "text", text)
    return out
