"""Speech enhancement metrics: PESQ (wide-band), STOI and SI-SDR, on one utterance at a time.

Every function takes the clean reference first and the signal under test second, as 1-D float
arrays (numpy or torch) of equal length at the same sample rate. PESQ and STOI come from their
reference implementations (the ``pesq`` package: ITU-T P.862.2; ``pystoi``: Taal et al. 2011);
SI-SDR is written out here because it is one line of algebra (Le Roux et al. 2019, eq. 1-3).
"""

from __future__ import annotations

import numpy as np
import torch

from speechssl.errors import SpeechSSLError

EPS = 1e-20  # guards the divisions for all-zero signals
# SI-SDR's ceiling: a perfect estimate (or a scaled copy) scores this, not +inf or a number set
# by floating-point rounding; no real enhancement comes near it.
SI_SDR_CAP = 100.0


class MetricError(SpeechSSLError, ValueError):
    """A metric cannot be computed for these signals; the message says why and what to do."""


def _to_numpy(signal) -> np.ndarray:
    if isinstance(signal, torch.Tensor):
        signal = signal.detach().cpu().numpy()
    return np.asarray(signal, dtype=np.float64)


def _as_pair(reference, estimate, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 numpy arrays of the same shape, or a MetricError."""
    ref, est = _to_numpy(reference), _to_numpy(estimate)
    if ref.shape != est.shape:
        raise MetricError(
            f"{what}: reference has shape {ref.shape} but the estimate has {est.shape}; "
            "trim or pad the estimate to the reference length (e.g. iSTFT with length=)"
        )
    if ref.shape[-1] == 0:
        raise MetricError(f"{what}: empty signals")
    return ref, est


def si_sdr(reference, estimate) -> float | np.ndarray:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., "SDR - half-baked or
    well done?", 2019), after removing each signal's mean.

    With zero-mean ``s`` (reference) and ``ŝ`` (estimate): ``α = <ŝ, s> / ||s||²``,
    ``SI-SDR = 10 log10(||α s||² / ||α s - ŝ||²)``, capped at ``SI_SDR_CAP`` (100 dB).

    Args: reference, estimate: ``(..., S)`` arrays of equal shape.
    Returns: a float for 1-D input, else an array of shape ``(...)``.
    """
    ref, est = _as_pair(reference, estimate, "si_sdr")
    ref = ref - ref.mean(axis=-1, keepdims=True)
    est = est - est.mean(axis=-1, keepdims=True)
    alpha = (est * ref).sum(-1, keepdims=True) / ((ref * ref).sum(-1, keepdims=True) + EPS)
    target = alpha * ref
    distortion = est - target
    value = 10 * np.log10(((target**2).sum(-1) + EPS) / ((distortion**2).sum(-1) + EPS))
    value = np.minimum(value, SI_SDR_CAP)
    return float(value) if np.ndim(value) == 0 else value


def si_sdr_improvement(clean, noisy, enhanced) -> float:
    """SI-SDR of ``enhanced`` minus SI-SDR of ``noisy``, both against ``clean`` (dB); 0 means the
    enhancement did nothing, negative means it made things worse."""
    return float(si_sdr(clean, enhanced) - si_sdr(clean, noisy))


def pesq_wb(clean, enhanced, sr: int = 16000) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO scale, about 1.04 to 4.64) of ``enhanced``
    against ``clean``. Needs 16 kHz audio with speech in the reference."""
    from pesq import NoUtterancesError, PesqError, pesq

    ref, est = _as_pair(clean, enhanced, "pesq")
    if ref.ndim != 1:
        raise MetricError(f"pesq: expected 1-D signals, found shape {ref.shape}")
    if sr != 16000:
        raise MetricError(
            f"pesq: wide-band PESQ is defined at 16000 Hz, found {sr} Hz; resample first"
        )
    silent = (
        "pesq: no speech found in the reference (silent or near-silent clean signal); "
        "PESQ is undefined for it, drop the utterance from the evaluation set"
    )
    if not np.any(ref):
        raise MetricError(silent)
    try:
        return float(pesq(sr, ref, est, "wb"))
    except NoUtterancesError:
        raise MetricError(silent) from None
    except PesqError as e:
        raise MetricError(
            f"pesq: {type(e).__name__} for {ref.shape[0]} samples ({ref.shape[0] / sr:.2f} s); "
            "PESQ needs at least about 0.25 s of audio"
        ) from None


def stoi(clean, enhanced, sr: int = 16000, extended: bool = False) -> float:
    """Short-time objective intelligibility (0 to 1; ESTOI with ``extended=True``) of
    ``enhanced`` against ``clean``. pystoi resamples to 10 kHz itself and removes silent frames
    of the reference; it warns and returns 1e-5 when fewer than 30 frames (~0.4 s) remain."""
    from pystoi import stoi as _stoi

    ref, est = _as_pair(clean, enhanced, "stoi")
    if ref.ndim != 1:
        raise MetricError(f"stoi: expected 1-D signals, found shape {ref.shape}")
    return float(_stoi(ref, est, sr, extended=extended))


def enhancement_scores(clean, noisy, enhanced, sr: int = 16000) -> dict[str, float]:
    """All metrics of one utterance: ``pesq``, ``stoi``, ``si_sdr`` of the enhanced signal, the
    same three of the noisy input (``*_noisy``, the baseline to beat) and ``si_sdri``."""
    scores = {
        "pesq": pesq_wb(clean, enhanced, sr),
        "stoi": stoi(clean, enhanced, sr),
        "si_sdr": si_sdr(clean, enhanced),
        "pesq_noisy": pesq_wb(clean, noisy, sr),
        "stoi_noisy": stoi(clean, noisy, sr),
        "si_sdr_noisy": si_sdr(clean, noisy),
    }
    scores["si_sdri"] = scores["si_sdr"] - scores["si_sdr_noisy"]
    return scores
