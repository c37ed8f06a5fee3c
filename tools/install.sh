#!/usr/bin/env bash
# Install everything speechssl needs, idempotently: Debian packages, the Python venv, KenLM's
# programs, then report with check_install.py. A second run is a quick no-op.
#
# Usage: bash tools/install.sh   (from anywhere; root, or sudo for the Debian step, on a fresh machine)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/tools

log() { echo "[install] $*"; }

start=$SECONDS
for step in install_debian.sh install_python.sh install_kenlm.sh; do
  if ! bash "$tools/$step"; then
    echo "[install] [ERROR] tools/$step failed; fix what it reports above, then rerun tools/install.sh" >&2
    exit 1
  fi
done

# The same interpreter install_python.sh installed into.
if [ -n "${VIRTUAL_ENV:-}" ]; then
  py=$VIRTUAL_ENV/bin/python
else
  py=$root/.venv/bin/python
fi
"$py" "$tools/check_install.py" --quiet
log "done in $((SECONDS - start)) s; to use it: . tools/env.sh"
