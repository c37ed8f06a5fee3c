"""SID, speaker identification (VoxCeleb1's 1,251 speakers; here every voice of the corpus).

Labels: ``utt2spk`` of ``speakers/sid_{train,dev,test}`` (the same speakers, other utterances).
Head: Linear(D -> 256), mean pooling, Linear(256 -> speakers); cross-entropy; Adam 1e-4;
accuracy. Training utterances are cropped at random to 8 s (``max_timestep: 128000``).
"""

from __future__ import annotations

from speechssl.superb.tasks.utterance import UtteranceClassification


class SpeakerIdentification(UtteranceClassification):
    name = "sid"
    label_file = "utt2spk"
    split_names = {
        "train": "speakers/sid_train",
        "dev": "speakers/sid_dev",
        "test": "speakers/sid_test",
    }
    max_train_seconds = 8.0
    default_steps = 200_000
