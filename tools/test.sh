#!/usr/bin/env bash
# The test command: install what the tests need (idempotent), lint, check the layers, run pytest.
#   bash tools/test.sh [pytest args...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash tools/install.sh
. tools/env.sh
ruff check .
ruff format --check .
lint-imports  # the package's layers ([tool.importlinter] in pyproject.toml)
python -m pytest -q -rs "$@"  # -rs: every skip is listed with its reason
