"""KS, keyword spotting (Speech Commands v0.01: 10 words + ``_unknown_`` + ``_silence_``).

Labels: ``keywords/{train,dev,test}/utt2keyword``. Head: Linear(D -> 256), mean pooling,
Linear(256 -> 12); cross-entropy; Adam 1e-4; accuracy. Training batches are drawn with a
class-balanced ``WeightedRandomSampler`` as in SUPERB; dev is evaluated on every utterance once
(SUPERB also samples dev at random, which makes model selection noisy: protocol problem 3).
"""

from __future__ import annotations

from speechssl.superb.tasks.utterance import UtteranceClassification


class KeywordSpotting(UtteranceClassification):
    name = "ks"
    label_file = "utt2keyword"
    split_names = {"train": "keywords/train", "dev": "keywords/dev", "test": "keywords/test"}
    balanced_sampling = True
    default_steps = 200_000
