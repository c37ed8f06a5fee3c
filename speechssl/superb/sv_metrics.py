"""Speaker-verification scoring: trial lists, cosine scores of utterance embeddings, EER and
minDCF.

EER and minDCF follow ``speechbrain.utils.metric_stats.EER`` / ``minDCF`` (same operating points,
same EER convention (FAR + FRR) / 2 at the closest crossing; the tests check agreement) but read
the operating points off scikit-learn's ``roc_curve``, an O(N log N) sort: speechbrain's
``minDCF`` builds a thresholds x trials matrix, which for VoxCeleb1-O (37,720 trials) took 83 s
and several GB of memory, and its ``EER`` loops over every threshold in Python (9 s).

A trial list (Kaldi's VoxCeleb recipe format; the synthetic corpus and the VoxCeleb1 preparer
write it as ``<data dir>/trials``) has one trial per line::

    <enrollment utt> <test utt> target|nontarget
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from speechssl.errors import SpeechSSLError

P_TARGET = 0.01  # minDCF prior (NIST SRE 2008-10 / VoxCeleb1 convention, speechbrain's default)


class TrialsError(SpeechSSLError, ValueError):
    """A trial list is malformed or names unknown utterances; the message names file and line."""


@dataclass(frozen=True)
class Trial:
    enrollment: str
    test: str
    target: bool


def read_trials(path: str | os.PathLike, known_utts: Collection[str] | None = None) -> list[Trial]:
    """Parse a trial list; with ``known_utts``, every utterance it names must be among them."""
    path = Path(path)
    if not path.is_file():
        raise TrialsError(
            f"{path}: missing; speaker verification needs a trial list "
            "('<enrollment utt> <test utt> target|nontarget' per line) in the dev/test data dir"
        )
    trials = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or fields[2] not in ("target", "nontarget"):
                raise TrialsError(
                    f"{path}:{lineno}: expected '<enrollment utt> <test utt> target|nontarget', "
                    f"found {line.strip()!r}"
                )
            if known_utts is not None:
                for utt in fields[:2]:
                    if utt not in known_utts:
                        raise TrialsError(
                            f"{path}:{lineno}: utterance '{utt}' is not in the data dir "
                            f"{path.parent} (utt2spk); fix the trial list or the data dir"
                        )
            trials.append(Trial(fields[0], fields[1], fields[2] == "target"))
    kinds = {t.target for t in trials}
    if kinds != {True, False}:
        raise TrialsError(
            f"{path}: needs both target and nontarget trials to compute an EER, found "
            f"{len(trials)} trials of kind(s) {sorted('target' if k else 'nontarget' for k in kinds)}"
        )
    return trials


def cosine_scores(
    embeddings: Mapping[str, torch.Tensor], trials: list[Trial], where: str = "trials"
) -> torch.Tensor:
    """``(N,)`` cosine similarity of each trial's enrollment and test embeddings."""
    missing = [u for t in trials for u in (t.enrollment, t.test) if u not in embeddings]
    if missing:
        raise TrialsError(
            f"{where}: no embedding for utterance '{missing[0]}' ({len(set(missing))} missing); "
            "every utterance of the trial list must be in the evaluated data"
        )
    enrollment = torch.stack([embeddings[t.enrollment] for t in trials]).float()
    test = torch.stack([embeddings[t.test] for t in trials]).float()
    return F.cosine_similarity(enrollment, test, dim=-1)


def verification_metrics(
    scores: torch.Tensor, trials: list[Trial], p_target: float = P_TARGET
) -> dict[str, float]:
    """``eer`` (percent), ``min_dcf`` (at ``p_target``, C_miss = C_fa = 1, normalised) and the
    trial counts.

    minDCF is normalised by the cost of the best trivial system, ``min(p_target, 1 - p_target)``,
    as Kaldi's ``compute_min_dcf.py`` and the VoxSRC scorer report it (1.0 = no better than always
    rejecting); speechbrain's ``minDCF`` is the unnormalised cost (this times 0.01 at p = 0.01).
    The EER is (FAR + FRR) / 2 where they are closest; when two operating points tie exactly
    (possible with few trials), the one at the lower threshold is taken.
    """
    labels = np.array([t.target for t in trials])
    far, frr = error_rates(scores.detach().cpu().double().numpy(), labels)
    closest = int(np.argmin(np.abs(far - frr)))
    dcf = frr * p_target + far * (1 - p_target)
    return {
        "eer": 100.0 * float(far[closest] + frr[closest]) / 2,
        "min_dcf": float(dcf.min()) / min(p_target, 1 - p_target),
        "target_trials": float(labels.sum()),
        "nontarget_trials": float((~labels).sum()),
    }


def error_rates(scores: np.ndarray, is_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False-acceptance and false-rejection rates at every operating point "accept scores above
    a threshold", thresholds ascending (speechbrain's candidate set: every distinct score)."""
    from sklearn.metrics import roc_curve

    far, tpr, _ = roc_curve(is_target, scores, drop_intermediate=False)
    # roc_curve runs from "accept none" to "accept all"; speechbrain has no "accept all"
    # point (its lowest threshold is the lowest score, which is rejected), so drop it
    far, frr = far[:-1][::-1], (1 - tpr[:-1])[::-1]
    return far, frr
