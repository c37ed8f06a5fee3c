"""The report of a ``recipes/selftrain.sh`` exp dir: WER per generation, pseudo-labels, WRR.

Layout read (the recipe writes it)::

    <exp>/gen<k>/teachers.txt    the generation's teacher exp dirs, one per line
    <exp>/gen<k>/pseudo/pseudo_label.json
    <exp>/gen<k>/student/decode/<set>_<greedy|beam_lm|beam_lm_rescore>/summary.json
    <exp>/oracle/decode/...      optional: trained on the unlabeled set's true text

Written: ``RESULTS.md``, ``results.json`` and ``wer_per_generation.png``. The word recovery
rate of a generation's student on one decode is ``(B - S) / (B - O)`` with ``B`` the lowest
WER of the first generation's teachers on that decode (the strongest baseline, so the rate is
never flattered by a weak seed), ``S`` the student's and ``O`` the oracle's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from speechssl.errors import SpeechSSLError
from speechssl.io import atomic_path, atomic_write_json, atomic_write_text

DECODES = ("greedy", "beam_lm", "beam_lm_rescore")
DECODE_NAMES = {"greedy": "greedy", "beam_lm": "beam + LM", "beam_lm_rescore": "rescored"}


def _wer(model: Path, decode: str) -> float | None:
    f = model / "decode" / decode / "summary.json"
    return float(json.loads(f.read_text())["wer"]) if f.is_file() else None


def _sets(models: list[Path]) -> list[str]:
    """Data sets decoded by any model (dev first), from ``<set>_beam_lm`` decode dirs."""
    names = {p.parent.name[: -len("_beam_lm")] for m in models for p in m.glob("decode/*_beam_lm/summary.json")}  # fmt: skip
    return sorted(names, key=lambda n: (not n.startswith("dev"), n))


def generations(exp: Path) -> list[int]:
    found = [int(m.group(1)) for p in exp.glob("gen*") if (m := re.fullmatch(r"gen(\d+)", p.name))]
    return sorted(found)


def collect(exp: str | os.PathLike) -> dict:
    """Every number of the report, as a JSON-ready dict."""
    exp = Path(exp)
    gens = generations(exp)
    if not gens or not (exp / "gen1" / "teachers.txt").is_file():
        raise SpeechSSLError(f"{exp}: no gen1/teachers.txt; run recipes/selftrain.sh first")
    teachers = [Path(t) for t in (exp / "gen1" / "teachers.txt").read_text().split()]
    students = [(k, exp / f"gen{k}" / "student") for k in gens]
    oracle = exp / "oracle" if (exp / "oracle" / "decode").is_dir() else None
    models = (
        [(t.name if t.name.startswith("teacher") else f"teacher {t.name}", t) for t in teachers]
        + [(f"gen{k} student", s) for k, s in students]
        + ([("oracle", oracle)] if oracle else [])
    )
    sets = _sets([m for _, m in models])
    columns = [f"{s}_{d}" for s in sets for d in DECODES]
    rows = [
        {"model": name, "path": str(m), **{c: _wer(m, c) for c in columns}} for name, m in models
    ]
    baseline = {}
    for c in columns:
        values = [r[c] for r in rows[: len(teachers)] if r[c] is not None]
        baseline[c] = min(values) if values else None
    for r in rows[len(teachers) :]:
        if r["model"] == "oracle":
            continue
        r["wrr"] = {}
        for c in columns:
            b, s, o = baseline[c], r[c], rows[-1][c] if oracle else None
            ok = None not in (b, s, o) and b > o
            r["wrr"][c] = 100.0 * (b - s) / (b - o) if ok else None
    pseudo = []
    for k in gens:
        f = exp / f"gen{k}" / "pseudo" / "pseudo_label.json"
        if f.is_file():
            rep = json.loads(f.read_text())
            pseudo.append({"generation": k, "combine": rep["config"]["combine"],
                           "teachers": len(rep["teachers"]), "steps": rep["steps"]})  # fmt: skip
    return {"exp": str(exp), "sets": sets, "columns": columns, "baseline": baseline,
            "models": rows, "pseudo": pseudo}  # fmt: skip


def _cell(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.2f}{unit}"


def markdown(report: dict) -> str:
    cols = report["columns"]
    head = [_label(c) for c in cols]
    lines = [f"# Self-training: {report['exp']}", "",
             "WER % per model (dev-tuned LM weights; rescored: n-best rescoring with the larger LM).",
             "", "| model | " + " | ".join(head) + " |", "|---" * (len(cols) + 1) + "|"]  # fmt: skip
    for r in report["models"]:
        lines.append(f"| {r['model']} | " + " | ".join(_cell(r[c]) for c in cols) + " |")
    wrr_rows = [r for r in report["models"] if r.get("wrr") and any(r["wrr"].values())]
    if wrr_rows:
        lines += ["", "Word recovery rate, (best gen1 teacher - student) / (best gen1 teacher - "
                  "oracle), per decode:", "", "| student | " + " | ".join(head) + " |",
                  "|---" * (len(cols) + 1) + "|"]  # fmt: skip
        for r in wrr_rows:
            lines.append(f"| {r['model']} | " + " | ".join(_cell(r["wrr"][c], "%") for c in cols) + " |")  # fmt: skip
    for p in report["pseudo"]:
        lines += ["", f"Generation {p['generation']} pseudo-labels ({p['combine']} of "
                  f"{p['teachers']} teacher(s)), WER on the hidden true text:", "",
                  "| step | removed | kept | pseudo-label WER % |", "|---|---|---|---|"]  # fmt: skip
        for s in p["steps"]:
            lines.append(f"| {s['step']} | {s['removed']} | {s['kept']} | {_cell(s['wer'])} |")
    return "\n".join(lines) + "\n"


def _label(column: str) -> str:
    for d in sorted(DECODES, key=len, reverse=True):
        if column.endswith("_" + d):
            return f"{column[: -len(d) - 1]} {DECODE_NAMES[d]}"
    return column


def plot(report: dict, path: Path) -> Path:
    """WER per generation (0: the best teacher) for each test decode; the oracle dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = [r for r in report["models"] if r["model"].endswith(" student")]
    oracle = next((r for r in report["models"] if r["model"] == "oracle"), None)
    xs = list(range(len(students) + 1))
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    tests = [c for c in report["columns"] if not c.startswith("dev") and not c.endswith("greedy")]
    for c in tests:
        ys = [report["baseline"][c]] + [r[c] for r in students]
        line = ax.plot(xs, [float("nan") if y is None else y for y in ys], "o-", label=_label(c))
        if oracle and oracle[c] is not None:
            ax.axhline(oracle[c], ls="--", color=line[0].get_color(), lw=1,
                       label=f"oracle, {_label(c)}")  # fmt: skip
    pl = [p["steps"][-1]["wer"] for p in report["pseudo"]]
    if any(w is not None for w in pl):
        ax.plot(xs[1 : len(pl) + 1], [float("nan") if w is None else w for w in pl], "s:",
                color="gray", label="pseudo-labels (kept)")  # fmt: skip
    ax.set_xticks(xs)
    ax.set_xticklabels(["teacher"] + [f"gen{i}" for i in xs[1:]])
    ax.set_ylabel("WER %")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def write_report(exp: str | os.PathLike) -> str:
    """Write ``RESULTS.md``, ``results.json`` and ``wer_per_generation.png``; return the text."""
    exp = Path(exp)
    report = collect(exp)
    text = markdown(report)
    atomic_write_json(exp / "results.json", report)
    atomic_write_text(exp / "RESULTS.md", text)
    plot(report, exp / "wer_per_generation.png")
    return text
