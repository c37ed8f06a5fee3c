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
``python -m speechssl.data.corpora <corpus> --root DIR --out DIR [options]`` (also
``speechssl prepare ...``). A missing part of a corpus raises :class:`CorpusError` naming the
file and where to download it.
"""

from __future__ import annotations

import argparse
import sys
import time

from speechssl.data.audio import AudioError
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


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechssl prepare",
        description="Prepare a real corpus as Kaldi data dirs in the synthetic corpus's layout.",
    )
    sub = parser.add_subparsers(dest="corpus", required=True, metavar="CORPUS")

    def corpus(name: str, help: str) -> argparse.ArgumentParser:
        aliases = [name.replace("_", "-")] if "_" in name else []
        p = sub.add_parser(name, help=help, aliases=aliases)
        p.set_defaults(corpus=name)
        p.add_argument("--root", required=True, help="the corpus folder as downloaded")
        p.add_argument("--out", required=True, help="where the data dirs go")
        return p

    p = corpus("librispeech", "ASR and PR dirs")
    p.add_argument("--train-subset", default="train-clean-100")
    p.add_argument("--dev-subset", default="dev-clean")
    p.add_argument("--test-subset", default="test-clean")
    p.add_argument(
        "--unlabeled-subsets", type=_names, default=(), help="comma-separated, e.g. train-clean-360"
    )
    p.add_argument("--subsets", type=_names, default=("asr", "phones"), help="asr,phones")
    p.add_argument("--lexicon", help="'WORD PH1 PH2 ...' (default: librispeech-lexicon.txt)")
    p.add_argument("--strip-stress", action="store_true", help="AH0 AH1 -> AH")
    p.add_argument("--lm-text", help="extra LM sentences (e.g. librispeech-lm-norm.txt.gz)")

    p = corpus("speech_commands", "KS dirs (v0.01, 12 classes)")
    p.add_argument("--test-root", help="speech_commands_test_set_v0.01 (default: next to --root)")
    p.add_argument("--silence-dev-fraction", type=float, default=0.1)

    corpus("fluent_speech_commands", "IC dirs")

    p = corpus("voxceleb1", "SID and SV dirs")
    p.add_argument("--subsets", type=_names, default=("sid", "sv"), help="sid,sv")
    p.add_argument("--iden-split", help="default: <root>/iden_split.txt")
    p.add_argument("--trials", help="default: <root>/veri_test2.txt or voxceleb1_test_v2.txt")
    p.add_argument("--sv-dev-speakers", type=int, default=40, help="held out for SV dev trials")
    p.add_argument("--trials-per-utt", type=int, default=4, help="dev trials of each kind")
    p.add_argument("--seed", type=int, default=0)

    p = corpus("iemocap", "ER dirs, 5 leave-one-session-out folds")
    p.add_argument("--dev-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)

    p = corpus("voicebank_demand", "SE dirs (resampled to 16 kHz)")
    p.add_argument("--dev-speakers", type=_names, default=("p226", "p287"))
    p.add_argument("--nj", type=int, default=1, help="parallel resampling processes")
    return parser


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


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    name, root, out = args.pop("corpus"), args.pop("root"), args.pop("out")
    start = time.time()
    try:
        summary = PREPARERS[name](root, out, **args)
    except (CorpusError, AudioError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    print(f"prepare {name}: data dirs in {out} ({time.time() - start:.1f} s)")
    return 0


__all__ = ["PREPARERS", "CorpusError", "main", *(f.__name__ for f in PREPARERS.values())]
