"""``speechssl superb``: SUPERB-style probes of an upstream (``speechssl.superb.runner``).

Settings come from :class:`~speechssl.superb.runner.SuperbConfig`: its defaults <- ``--config``
YAML <- ``--set KEY=VALUE`` (``KEY`` a field, or ``TASK.OPTION`` for ``task_options.TASK.OPTION``)
<- the options below.
"""

from __future__ import annotations

import argparse
import dataclasses

from speechssl.commands import comma_separated
from speechssl.errors import SpeechSSLError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "superb",
        help="SUPERB-style probes of an upstream on eight tasks, results table",
        description="SUPERB-style probing of a frozen upstream: lr sweep, seeds, dev selection.",
    )
    p.add_argument("--upstream", required=True,
                   help="fbank | fbank_no_cmvn | speechssl checkpoint or exported upstream | "
                   "HF model folder | fairseq-format .pt")  # fmt: skip
    p.add_argument("--task", required=True, help="comma-separated: pr,ks,ic,sid,er,asr,se,sv")
    p.add_argument("--data", required=True, help="corpus root (e.g. egs/synth/data)")
    p.add_argument("--exp", required=True, help="experiment folder")
    p.add_argument("--config", help="YAML of SuperbConfig values (fields and task_options)")
    p.add_argument("--lrs", type=comma_separated(float), help="learning rates (default: a grid)")
    p.add_argument("--seeds", type=comma_separated(int), help="seeds (default: 0)")
    p.add_argument("--steps", type=int, help="optimizer updates per run (default: protocol)")
    p.add_argument("--eval-every", type=int, help="dev evaluation interval in updates")
    p.add_argument("--batch-size", type=int, help="utterances per update (default: protocol)")
    p.add_argument("--patience", type=int,
                   help="stop a run after N dev evaluations without a new best (default: none)")  # fmt: skip
    p.add_argument("--layer", type=int, help="probe one hidden state (no weighted sum)")
    # default None: a flag not given leaves the config's value
    p.add_argument("--normalize", action="store_true", default=None, help="layer-norm first")
    p.add_argument("--finetune", action="store_true", default=None, help="train the upstream too")
    p.add_argument("--no-cache", dest="use_cache", action="store_false", default=None,
                   help="run the upstream on every batch")  # fmt: skip
    p.add_argument("--device", help="cpu | cuda (default: cuda if available)")
    p.add_argument("--name", help="upstream name in exp/ and the report (default: from spec)")
    p.add_argument("--cache-dir", help="hidden-state cache (default: <exp>/cache)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a SuperbConfig field (seeds=[0,1]), a task option (asr.hidden_size=64 "
                   "asr.lm=lm.arpa) or a probe setting of one task: asr.steps=1500 "
                   "asr.lrs=[3e-3,1e-2] asr.normalize=true asr.eval_every asr.batch_size asr.patience",
                   )  # fmt: skip
    return p


# options that set a SuperbConfig field when given
FLAGS = ("lrs", "seeds", "steps", "eval_every", "batch_size", "patience", "layer", "normalize",
         "finetune", "use_cache", "device", "name", "cache_dir")  # fmt: skip


def _override(item: str, fields: list[str], tasks: list[str]) -> str:
    """``TASK.OPTION=VALUE`` -> ``task_options.TASK.OPTION=VALUE``; a field's key stays."""
    head = item.partition("=")[0].partition(".")[0]
    if head in fields or "=" not in item:
        return item  # load_config names a bad one
    if head in tasks:
        return f"task_options.{item}"
    raise SpeechSSLError(
        f"--set {item!r}: {head!r} is neither a task ({', '.join(tasks)}) "
        f"nor a field ({', '.join(fields)})"
    )


def run(args: argparse.Namespace) -> int:
    from speechssl.config import load_config
    from speechssl.superb.runner import SuperbConfig, run_superb
    from speechssl.superb.tasks import TASKS

    for flag in ("steps", "eval_every", "batch_size", "patience"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise SpeechSSLError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    fields = [f.name for f in dataclasses.fields(SuperbConfig)]
    overrides = [_override(item, fields, list(TASKS)) for item in args.set]
    cfg = load_config(SuperbConfig, args.config, overrides)
    given = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    cfg = dataclasses.replace(cfg, **given)
    tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    for s in run_superb(cfg, args.upstream, tasks, args.data, args.exp):
        print(f"{s['upstream']} {s['task']} {s['metric']} {s['mean']:.2f} ± {s['std']:.2f} "
              f"(dev lr {s['dev_lr']:.2e}, seeds {s['seeds']})")  # fmt: skip
    return 0
