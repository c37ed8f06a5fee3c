#!/usr/bin/env python3
"""Report which of speechssl's dependencies are installed: Python packages, programs, CUDA.

Prints ``[x] name version`` for what is there and ``[ ] name`` for what is not, and exits 1
when a required one is missing (ruff, import-linter, pytest, hypothesis, tensorboard and CUDA
are optional).
Stdlib only at import time: each package is imported inside a try, so a broken install
(e.g. torchaudio failing to load its libraries) shows as missing with the reason.

Usage: python tools/check_install.py [--quiet] [--no-fail]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = ROOT / "tools" / "bin"

# (import name, distribution name for the version, required)
PACKAGES = [
    ("torch", "torch", True),
    ("torchaudio", "torchaudio", True),
    ("soundfile", "soundfile", True),
    ("librosa", "librosa", True),
    ("sentencepiece", "sentencepiece", True),
    ("kenlm", "kenlm", True),
    ("jiwer", "jiwer", True),
    ("speechbrain", "speechbrain", True),
    ("kaldiio", "kaldiio", True),
    ("yaml", "PyYAML", True),
    ("tqdm", "tqdm", True),
    ("sklearn", "scikit-learn", True),
    ("tensorboard", "tensorboard", False),
    ("pytest", "pytest", False),
    ("hypothesis", "hypothesis", False),
    ("ruff", "ruff", False),
    ("importlinter", "import-linter", False),
]

# (program, arguments that print its version, regex whose group 1 is the version)
PROGRAMS = [
    ("espeak-ng", ["--version"], r"text-to-speech:\s*(\S+)"),
    ("flite", ["--version"], r"flite-(\S+)"),
    ("sox", ["--version"], r"SoX v(\S+)"),
    ("lmplz", None, None),
    ("build_binary", None, None),
]

# Which installer provides what, for the hint after a failed check.
INSTALLERS = {
    "espeak-ng": "tools/install_debian.sh",
    "flite": "tools/install_debian.sh",
    "sox": "tools/install_debian.sh",
    "lmplz": "tools/install_kenlm.sh",
    "build_binary": "tools/install_kenlm.sh",
}


@dataclass
class Check:
    name: str
    found: bool
    required: bool
    detail: str = ""  # version when found, the reason when not


def check_package(module: str, dist: str, required: bool) -> Check:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # a broken install raises more than ImportError (OSError, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check(module, False, required, reason)
    version = getattr(mod, "__version__", None)
    if not isinstance(version, str):
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
    return Check(module, True, required, version)


def find_program(name: str) -> str | None:
    """tools/bin first (where install_kenlm.sh puts lmplz/build_binary), then PATH."""
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def program_version(path: str, args: list[str] | None, pattern: str | None) -> str:
    if args is None:
        # The KenLM programs have no --version; install_kenlm.sh records the sdist version.
        stamp = Path(path).parent / ".kenlm-version"
        return stamp.read_text().strip() if stamp.is_file() else "?"
    try:
        proc = subprocess.run(
            [path, *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(pattern, proc.stdout + proc.stderr) if pattern else None
    return match.group(1) if match else "?"


def check_program(name: str, args: list[str] | None, pattern: str | None) -> Check:
    path = find_program(name)
    if path is None:
        return Check(name, False, True, f"not in {TOOLS_BIN} or on PATH")
    return Check(name, True, True, f"{program_version(path, args, pattern)} ({path})")


def check_cuda() -> Check:
    try:
        import torch
    except Exception:
        return Check("cuda", False, False, "torch does not import")
    if not torch.cuda.is_available():
        return Check("cuda", False, False, "not available, CPU only")
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return Check("cuda", True, False, f"{torch.version.cuda} ({names})")


def format_check(check: Check) -> str:
    mark = "[x]" if check.found else "[ ]"
    line = f"{mark} {check.name}"
    if check.detail:
        line += f" {check.detail}" if check.found else f"  ({check.detail})"
    if not check.found and not check.required:
        line += "  [optional]"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print only what is missing")
    parser.add_argument(
        "--no-fail", action="store_true", help="exit 0 even when a required one is missing"
    )
    args = parser.parse_args(argv)

    sections = [
        (f"Python packages ({sys.executable})", [check_package(*p) for p in PACKAGES]),
        ("Programs", [check_program(*p) for p in PROGRAMS]),
        ("GPU (info only)", [check_cuda()]),
    ]
    for title, checks in sections:
        shown = [c for c in checks if not (args.quiet and c.found)]
        if not shown:
            continue
        if not args.quiet:
            print(f"{title}:")
        for check in shown:
            print(("  " if not args.quiet else "") + format_check(check))

    missing = [c for _, checks in sections for c in checks if c.required and not c.found]
    if not missing:
        if not args.quiet:
            print("[check_install] all required dependencies are installed")
        return 0
    hints = sorted({INSTALLERS.get(c.name, "tools/install_python.sh") for c in missing})
    print(
        f"[check_install] missing required: {' '.join(c.name for c in missing)}; "
        f"run {' and '.join(hints)} (or tools/install.sh for everything)",
        file=sys.stderr,
    )
    return 0 if args.no_fail else 1


if __name__ == "__main__":
    sys.exit(main())
