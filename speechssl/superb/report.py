"""The SUPERB report: every ``<exp>/<upstream>/<task>/summary.json`` of an experiment folder
as ``results.md`` (table + the lr sweeps), ``results.csv`` and ``results.png`` (grouped bars per
task, one bar per upstream; lower-is-better metrics marked with a down arrow). Also the name of
an upstream's folder (:func:`upstream_name`), light to import for the recipe.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

from speechssl.io import atomic_path, atomic_write_text

COLUMNS = (
    "task",
    "metric",
    "value",
    "dev lr",
    "seeds",
    "upstream",
    "input",
    "upstream parameters",
    "probe time (s)",
    "chance",
)
TASK_ORDER = ("pr", "ks", "ic", "sid", "er", "asr", "se", "sv")
GENERIC_NAMES = re.compile(r"(upstream|last|best|checkpoints?|model|pytorch_model|iter\d+)")


def upstream_name(spec: str | Path) -> str:
    """A folder name for an upstream: ``fbank``; the file's stem, or its first non-generic
    parent folder for ``exp/ssl/wav2vec2_tiny/upstream.pt`` (-> ``wav2vec2_tiny``)."""
    path = Path(spec)
    parts = [path.stem if path.suffix in (".pt", ".bin", ".ckpt") else path.name]
    parts += [p.name for p in path.resolve().parents if p.name] if path.exists() else []
    for part in parts:
        if part and not GENERIC_NAMES.fullmatch(part):
            return re.sub(r"[^\w.+-]", "_", part)
    return re.sub(r"[^\w.+-]", "_", parts[0]) or "upstream"


def read_summaries(exp: str | os.PathLike) -> list[dict]:
    """Summaries of every upstream and task under ``exp``, in task then upstream order."""
    summaries = []
    for path in sorted(Path(exp).glob("*/*/summary.json")):
        try:
            summaries.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: unreadable summary ({e}); rerun the task") from None
    order = {t: i for i, t in enumerate(TASK_ORDER)}
    return sorted(summaries, key=lambda s: (order.get(s["task"], len(order)), s["upstream"]))


def input_label(s: dict) -> str:
    """How the probe saw the hidden states: SUPERB's protocol feeds them to the weighted sum
    as they are; ``--normalize`` layer-norms each first, a change of ours."""
    return "layer-normed (ours)" if s.get("normalize") else "as is (protocol)"


def _row(s: dict) -> dict[str, str]:
    arrow = "" if s["higher_is_better"] else " ↓"
    return {
        "task": s["task"],
        "metric": s["metric"] + arrow,
        "value": f"{s['mean']:.2f} ± {s['std']:.2f}",
        "dev lr": f"{s['dev_lr']:.2e}",
        "seeds": " ".join(str(x) for x in s["seeds"]),
        "upstream": s["upstream"],
        "input": input_label(s),
        "upstream parameters": str(s["upstream_params"]),
        "probe time (s)": f"{s['probe_seconds']:.1f}",
        "chance": f"{s['chance']:.2f}",
    }


def side_by_side(summaries: list[dict]) -> list[str]:
    """One row per task, one column per upstream (test means; the best of each row in bold),
    then each upstream's count of tasks where it beats the first upstream named ``fbank*``."""
    upstreams = sorted({s["upstream"] for s in summaries})
    tasks = list(dict.fromkeys(s["task"] for s in summaries))
    by = {(s["task"], s["upstream"]): s for s in summaries}
    inputs = {u: {input_label(s) for s in summaries if s["upstream"] == u} for u in upstreams}
    heads = [f"{u}: {' / '.join(sorted(inputs[u]))}" for u in upstreams]
    lines = ["| task | " + " | ".join(heads) + " |", "|---" * (len(upstreams) + 1) + "|"]
    for task in tasks:
        row = [by.get((task, u)) for u in upstreams]
        present = [r for r in row if r is not None]
        higher = present[0]["higher_is_better"]
        best = (max if higher else min)(r["mean"] for r in present)
        cells = [
            "-"
            if r is None
            else (f"**{r['mean']:.2f}**" if r["mean"] == best else f"{r['mean']:.2f}")
            for r in row
        ]
        metric = present[0]["metric"] + ("" if higher else " ↓")
        lines.append(f"| {task} ({metric}) | " + " | ".join(cells) + " |")
    baseline = next((u for u in upstreams if u.startswith("fbank")), None)
    if baseline is not None:
        wins = []
        for u in upstreams:
            if u == baseline:
                continue
            pairs = [
                (by[(t, u)], by[(t, baseline)])
                for t in tasks
                if (t, u) in by and (t, baseline) in by
            ]
            won = sum(
                (a["mean"] > b["mean"]) if a["higher_is_better"] else (a["mean"] < b["mean"])
                for a, b in pairs
            )
            wins.append(f"{u} {won}/{len(pairs)}")
        lines += ["", f"Tasks where an upstream beats {baseline}: " + ", ".join(wins) + "."]
    return lines


def markdown(summaries: list[dict]) -> str:
    lines = [
        "# SUPERB results",
        "",
        "Test metric at the best-dev checkpoint of each seed, for the learning rate with the "
        "best mean dev metric; mean ± std over seeds (folds averaged first). ↓: lower is better.",
        "Input: SUPERB's protocol gives the weighted sum the hidden states as they are "
        "(`as is (protocol)`); `layer-normed (ours)` layer-norms each hidden state first "
        "(`--normalize`), which SUPERB does not.",
        "",
        *(side_by_side(summaries) + [""] if summaries else []),
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_row(s)[c] for c in COLUMNS) + " |" for s in summaries]
    lines += ["", "## Learning-rate sweeps (mean over seeds and folds)", ""]
    for s in summaries:
        lines.append(f"**{s['upstream']} / {s['task']}** ({s['metric']})")
        lines.append("")
        lines.append("| lr | dev | test |")
        lines.append("|---|---|---|")
        for point in s["sweep"]:
            mark = " (selected)" if point["lr"] == s["dev_lr"] else ""
            lines.append(f"| {point['lr']:.2e}{mark} | {point['dev']:.2f} | {point['test']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def csv_text(summaries: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for s in summaries:
        writer.writerow(_row(s))
    return out.getvalue()


def plot(summaries: list[dict], path: Path) -> Path:
    """Grouped bars: one group per task, one bar (mean, std as error bar) per upstream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(s["task"] for s in summaries))
    upstreams = list(dict.fromkeys(s["upstream"] for s in summaries))
    by_key = {(s["task"], s["upstream"]): s for s in summaries}
    width = 0.8 / max(len(upstreams), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(tasks) + 2), 3.4))
    for j, up in enumerate(upstreams):
        xs, ys, errs = [], [], []
        for i, task in enumerate(tasks):
            if (task, up) in by_key:
                s = by_key[(task, up)]
                xs.append(i + (j - (len(upstreams) - 1) / 2) * width)
                ys.append(s["mean"])
                errs.append(s["std"])
        ax.bar(xs, ys, width, yerr=errs, capsize=2, label=up)
    labels = []
    for i, task in enumerate(tasks):
        s = next(x for x in summaries if x["task"] == task)
        labels.append(f"{task}\n{s['metric']}{'' if s['higher_is_better'] else ' ↓'}")
        ax.hlines(s["chance"], i - 0.45, i + 0.45, colors="black", linestyles=":",
                  label="chance" if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("test metric (↓: lower is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def write_report(exp: str | os.PathLike) -> list[Path]:
    """Write ``results.md``, ``results.csv`` and ``results.png`` into ``exp``."""
    exp = Path(exp)
    summaries = read_summaries(exp)
    if not summaries:
        raise ValueError(f"{exp}: no */*/summary.json; run `speechssl superb` first")
    atomic_write_text(exp / "results.md", markdown(summaries) + "\n")
    atomic_write_text(exp / "results.csv", csv_text(summaries))
    return [exp / "results.md", exp / "results.csv", plot(summaries, exp / "results.png")]
