# Source me (bash): puts <repo>/tools/bin on PATH and activates <repo>/.venv unless a venv is active.
# shellcheck shell=bash
#
# Safe to source more than once and under `set -euo pipefail`; changes nothing else in the shell.
#
# Usage: . tools/env.sh   (from a recipe: . "$(dirname "${BASH_SOURCE[0]}")/../../tools/env.sh")

_speechssl_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

case ":${PATH:-}:" in
  *":$_speechssl_root/tools/bin:"*) ;;
  *) export PATH="$_speechssl_root/tools/bin${PATH:+:$PATH}" ;;
esac

if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$_speechssl_root/.venv/bin/activate" ]; then
  # shellcheck disable=SC1091  # the venv is created by tools/install_python.sh
  . "$_speechssl_root/.venv/bin/activate"
fi

unset _speechssl_root
