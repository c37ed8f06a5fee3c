#!/usr/bin/env bash
# Install speechssl and its Python dependencies, idempotently.
#
# Uses the active virtual environment if there is one ($VIRTUAL_ENV), otherwise creates
# <repo>/.venv with python3. A stamp keyed on setup.cfg and this script makes a rerun a
# no-op (a few seconds) once everything imports.
#
# Usage: tools/install_python.sh [--force]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
force=false
[ "${1:-}" = "--force" ] && force=true

# torch/torchaudio pair: PyPI's torchaudio 2.11.0 does not import beside the CPU-only torch
# wheel (libc10_cuda.so missing), while torch 2.14.1 (CUDA build, runs on CPU) + torchaudio
# 2.11.0 import and run fbank/MFCC/forced_align on a CPU-only machine. Override with
# SPEECHSSL_TORCH_SPEC="" to keep an existing torch install (e.g. on a GPU machine).
torch_spec=${SPEECHSSL_TORCH_SPEC-"torch==2.14.1 torchaudio==2.11.0"}

if [ -n "${VIRTUAL_ENV:-}" ]; then
  venv=$VIRTUAL_ENV
else
  venv=$root/.venv
  if [ ! -x "$venv/bin/python" ]; then
    echo "[install_python] creating $venv"
    python3 -m venv "$venv"
  fi
fi
py=$venv/bin/python

stamp=$venv/.speechssl-install-stamp
want=$(cat "$root/setup.cfg" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)
if ! $force && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$py" -c "import speechssl, torch, torchaudio, kenlm, soundfile" 2>/dev/null; then
  echo "[install_python] up to date ($venv)"
  exit 0
fi

echo "[install_python] installing into $venv"
"$py" -m pip install -q --upgrade pip setuptools wheel
if [ -n "$torch_spec" ]; then
  # shellcheck disable=SC2086  # the spec is a list of requirement strings
  "$py" -m pip install -q $torch_spec
fi
"$py" -m pip install -q -e "${root}[dev]"
# pyctcdecode 0.5.0 declares numpy<2 but works with numpy 2; --no-deps keeps numpy as it is.
"$py" -m pip install -q --no-deps "pyctcdecode==0.5.0"
# Verify by importing, not by trusting pip's exit status.
"$py" - <<'PY'
import torch, torchaudio, soundfile, kenlm, sentencepiece, jiwer, speechbrain, kaldiio, speechssl
import pesq, pystoi, matplotlib, pyctcdecode, importlinter
print(f"[install_python] ok: torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
      f"speechbrain {speechbrain.__version__}")
PY
echo "$want" > "$stamp"
