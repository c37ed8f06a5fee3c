#!/usr/bin/env bash
# SUPERB-style probing of one or more upstreams on a corpus: every task with an lr sweep and
# seeds (speechssl superb), then the merged report <exp>/results.{md,csv,png}.
# Each upstream+task is guarded by <exp>/<name>/<task>/.done; inside a task the runner skips
# finished (lr, seed) runs, so a killed recipe resumes. Hidden states are cached in <exp>/cache.
# On a CPU shared with other jobs, export OMP_NUM_THREADS=1 (the BiLSTM heads of ASR and SE
# slow down ~10x with oversubscribed threads).
#
#   recipes/superb.sh --upstream "fbank exp/ssl/wav2vec2_tiny/upstream.pt" \
#     --tasks pr,ks,ic,sid,er,asr,se,sv --data data --exp exp/superb --steps 200
set -euo pipefail
SUPERB_RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SUPERB_RECIPE_DIR

upstream=fbank       # space-separated: fbank | fbank_no_cmvn | checkpoint | exported upstream | HF folder | fairseq .pt
tasks=pr,ks,ic,sid,er,asr,se,sv  # comma-separated SUPERB tasks
data=""              # corpus root (the synthetic corpus's data/, or a prepared real corpus)
exp=""               # experiment folder (runs, cache, results)
steps=""             # optimizer updates per run (default: the protocol's, 30k-200k)
lrs=""               # comma-separated learning rates (default: 5-point log grid per task)
seeds=0              # comma-separated seeds
device=""            # cpu | cuda (default: cuda if available)
opts=""              # extra `speechssl superb` options, e.g. "--batch-size 8 --set asr.hidden_size=64"

help_message="Usage: $0 --upstream SPEC --data DIR --exp DIR [options]"

. "$SUPERB_RECIPE_DIR/lib/common.sh"
. "$SUPERB_RECIPE_DIR/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1'"
[ -n "$upstream" ] && [ -n "$data" ] && [ -n "$exp" ] || die "--upstream, --data and --exp are needed"
[ -d "$data" ] || die "--data $data: no such folder"

args=(--data "$data" --exp "$exp" --seeds "$seeds")
[ -z "$steps" ] || args+=(--steps "$steps")
[ -z "$lrs" ] || args+=(--lrs "$lrs")
[ -z "$device" ] || args+=(--device "$device")
read -r -a extra <<< "$opts"

read -r -a upstreams <<< "$upstream"
IFS=, read -r -a task_list <<< "$tasks"
for up in "${upstreams[@]}"; do
  name=$(python -c 'import sys; from speechssl.superb.report import upstream_name; print(upstream_name(sys.argv[1]))' "$up")
  todo=()
  for task in "${task_list[@]}"; do
    if is_done "$exp/$name/$task/.done"; then
      log "$name $task: done already ($exp/$name/$task/.done)"
    else
      todo+=("$task")
    fi
  done
  [ ${#todo[@]} -gt 0 ] || continue
  todo_list=$(IFS=,; echo "${todo[*]}")
  log "$name: probing $todo_list (logs: $exp/$name/<task>/log.txt)"
  # one process for all tasks: the upstream loads once; finished (lr, seed) runs are skipped
  # on a terminal each probe run shows a moving line (task k/N, run j/M, updates, ETA); the
  # per-evaluation lines go to the task's log.txt only
  speechssl superb --upstream "$up" --name "$name" --task "$todo_list" "${args[@]}" "${extra[@]}" \
    || die "$name failed; see $exp/$name/<task>/log.txt"
  for task in "${todo[@]}"; do
    mark_done "$exp/$name/$task/.done" "steps=${steps:-protocol} lrs=${lrs:-grid} seeds=$seeds"
  done
done
log "results: $exp/results.md $exp/results.csv $exp/results.png (elapsed ${SECONDS}s)"
