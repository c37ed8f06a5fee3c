"""ER, emotion recognition (IEMOCAP: neutral / happy+excited / angry / sad, 5 folds).

Labels: ``utt2emotion``. Splits: ``prosody/{train,dev,test}``, or one fold per
``prosody/fold*/{train,dev,test}`` when the corpus has folds (the IEMOCAP preparer writes
leave-one-session-out folds ``fold1..5``); the report averages the folds. Dev comes from the
preparer, a fixed list, where SUPERB draws a random 20% of the training sessions per run
(protocol problem 3). Head: Linear(D -> 256), mean pooling, Linear(256 -> 4); cross-entropy;
Adam 1e-4; 30k steps; accuracy.
"""

from __future__ import annotations

import re
from pathlib import Path

from speechssl.superb.tasks.utterance import UtteranceClassification


def _fold_number(path: Path) -> int:
    return int(re.sub(r"\D", "", path.name) or 0)


class EmotionRecognition(UtteranceClassification):
    name = "er"
    label_file = "utt2emotion"
    split_names = {"train": "prosody/train", "dev": "prosody/dev", "test": "prosody/test"}
    default_steps = 30_000

    def splits(self, data: Path) -> list[dict[str, Path]]:
        root = Path(data) / "prosody"
        folds = sorted(
            (p for p in root.glob("fold*") if p.is_dir() and re.fullmatch(r"fold\d+", p.name)),
            key=_fold_number,
        )
        if not folds:
            return super().splits(data)
        return [{split: fold / split for split in ("train", "dev", "test")} for fold in folds]
