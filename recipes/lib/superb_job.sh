#!/usr/bin/env bash
# One probe job of recipes/superb.sh: line JOB of TABLE (name, upstream spec, tasks, input) run
# as `speechssl superb` with the remaining arguments, then <exp>/<name>/<task>/.done per task.
# input "protocol": the hidden states as SUPERB feeds them, so `--normalize` is dropped.
#
#   bash recipes/lib/superb_job.sh TABLE JOB EXP [speechssl superb options...]
set -euo pipefail
SUPERB_JOB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$SUPERB_JOB_DIR/common.sh"
[ $# -ge 3 ] || die "usage: $0 TABLE JOB EXP [options]"
table=$1 job=$2 exp=$3
shift 3
line=$(sed -n "${job}p" "$table")
[ -n "$line" ] || die "$table: no job $job"
IFS=$'\t' read -r name spec task input <<< "$line"
args=()
for arg in "$@"; do
  [ "$input" = protocol ] && [ "$arg" = --normalize ] && continue
  args+=("$arg")
done
log "$name $task ($input input)"
speechssl superb --upstream "$spec" --name "$name" --task "$task" --exp "$exp" \
  --set report=false "${args[@]}"
IFS=, read -r -a done_tasks <<< "$task"
for t in "${done_tasks[@]}"; do
  mark_done "$exp/$name/$t/.done" "input=$input $*"
done
