"""Real-corpus preparers: a corpus as released -> Kaldi data dirs laid out like the synthetic
corpus's, so every SUPERB task reads real and synthetic data the same way.

============================  =====================================  ===========
corpus                        data dirs written under ``--out``      SUPERB task
============================  =====================================  ===========
``librispeech``               asr/{train_labeled,dev,test},          asr, pr
                              asr/lm_text.txt, phones/{train,dev,test}
``speech_commands`` (v0.01)   keywords/{train,dev,test}              ks
``fluent_speech_commands``    intents/{train,dev,test}               ic
``voxceleb1``                 speakers/sid_*, speakers/sv_* + trials  sid, sv
``iemocap``                   prosody/fold{1..5}/{train,dev,test}    er
``voicebank_demand``          noisy/{train,dev,test} + clean.scp     se
============================  =====================================  ===========

Python: ``prepare_<corpus>(corpus_root, out_dir, **options) -> {data dir: summary}``; shell:
``speechssl prepare <corpus> --root DIR --out DIR [options]``. A missing part of a corpus raises
:class:`CorpusError` naming the file and where to download it.
"""

from __future__ import annotations

from speechssl.data.corpora.corpus import CorpusError
from speechssl.data.corpora.fluent_speech_commands import prepare_fluent_speech_commands
from speechssl.data.corpora.iemocap import prepare_iemocap
from speechssl.data.corpora.librispeech import prepare_librispeech
from speechssl.data.corpora.speech_commands import prepare_speech_commands
from speechssl.data.corpora.voicebank_demand import prepare_voicebank_demand
from speechssl.data.corpora.voxceleb1 import prepare_voxceleb1

PREPARERS = {
    "librispeech": prepare_librispeech,
    "speech_commands": prepare_speech_commands,
    "fluent_speech_commands": prepare_fluent_speech_commands,
    "voxceleb1": prepare_voxceleb1,
    "iemocap": prepare_iemocap,
    "voicebank_demand": prepare_voicebank_demand,
}


def format_summary(summary: dict[str, dict[str, object]]) -> str:
    lines = [f"{'data dir':<28} {'utts':>7} {'hours':>8} {'spk':>5}  notes"]
    for name, info in summary.items():
        if "utterances" not in info:
            lines.append(f"{name:<28} {', '.join(f'{k} {v}' for k, v in info.items())}")
            continue
        notes = [
            f"{k} {v}" for k, v in info.items() if k not in ("utterances", "hours", "speakers")
        ]
        line = (
            f"{name:<28} {info['utterances']:>7} {float(info['hours']):>8.3f} {info['speakers']:>5}"
        )
        lines.append(f"{line}  {'; '.join(notes)}".rstrip())
    return "\n".join(lines)


__all__ = ["PREPARERS", "CorpusError", "format_summary", *(f.__name__ for f in PREPARERS.values())]
