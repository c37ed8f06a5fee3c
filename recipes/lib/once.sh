#!/usr/bin/env bash
# Run a command unless its .done marker exists; write the marker when it succeeds. For sharded
# jobs (run_jobs JOB=1:N ... bash lib/once.sh DIR/JOB/.done CMD ...): a rerun after a kill
# redoes only the shards that had not finished.
#
#   bash recipes/lib/once.sh MARKER COMMAND [ARGS...]
set -euo pipefail
ONCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$ONCE_DIR/common.sh"
[ $# -ge 2 ] || die "usage: $0 MARKER COMMAND [ARGS...]"
marker=$1
shift
if is_done "$marker"; then
  echo "done already ($marker)"
  exit 0
fi
"$@"
mark_done "$marker"
