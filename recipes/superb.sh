#!/usr/bin/env bash
# SUPERB-style probing of one or more upstreams on a corpus: every task with an lr sweep and
# seeds (speechssl superb), then the merged report <exp>/results.{md,csv,png}.
# Each upstream+task is guarded by <exp>/<name>/<task>/.done; inside a task the runner skips
# finished (lr, seed) runs, so a killed recipe resumes. Hidden states are cached in <exp>/cache.
# Every upstream x task is one job (recipes/lib/superb_job.sh; the short ones sid, er, ic, ks
# of an upstream together), at most --nj at a time, the slowest first; each job's output goes
# to <exp>/log/superb.<k>.log and, on a terminal, one moving line shows every running job's
# progress. Export OMP_NUM_THREADS=1 so that --nj jobs share the cores without
# oversubscription (the BiLSTM heads slow down ~10x with it).
# --protocol names upstreams probed a second time with SUPERB's input (no layer norm even when
# --opts has --normalize), under <name>_protocol, so the report shows both.
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
protocol=""          # space-separated upstreams of --upstream also probed without --normalize
nj=1                 # probe jobs at a time (one upstream x task each)

help_message="Usage: $0 --upstream SPEC --data DIR --exp DIR [options]"

. "$SUPERB_RECIPE_DIR/lib/common.sh"
. "$SUPERB_RECIPE_DIR/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1'"
[ -n "$upstream" ] && [ -n "$data" ] && [ -n "$exp" ] || die "--upstream, --data and --exp are needed"
[ -d "$data" ] || die "--data $data: no such folder"

[[ $nj =~ ^[1-9][0-9]*$ ]] || die "--nj must be a positive integer, got '$nj'"

args=(--data "$data" --seeds "$seeds")
[ -z "$steps" ] || args+=(--steps "$steps")
[ -z "$lrs" ] || args+=(--lrs "$lrs")
[ -z "$device" ] || args+=(--device "$device")
read -r -a extra <<< "$opts"

# the slowest jobs first, so that the last ones to start are short: ASR, then the short tasks of
# an upstream together (with an SSL upstream the slowest after ASR: they compute its hidden states
# of four corpora), SE, SV, PR
task_rank() {
  case $1 in asr) echo 0 ;; se) echo 2 ;; sv) echo 3 ;; pr) echo 4 ;; *) echo 5 ;; esac
}
short_rank=1
read -r -a upstreams <<< "$upstream"
IFS=, read -r -a task_list <<< "$tasks"
mkdir -p "$exp"
rows=()
for up in "${upstreams[@]}"; do
  name=$(python -c 'import sys; from speechssl.superb.report import upstream_name; print(upstream_name(sys.argv[1]))' "$up")
  variants=("$name ours")
  [[ " $protocol " != *" $up "* ]] || variants+=("${name}_protocol protocol")
  for variant in "${variants[@]}"; do
    read -r vname input <<< "$variant"
    short=""
    for task in "${task_list[@]}"; do
      if is_done "$exp/$vname/$task/.done"; then
        log "$vname $task: done already ($exp/$vname/$task/.done)"
      elif [ "$(task_rank "$task")" -ge 5 ]; then
        short+=${short:+,}$task
      else
        rows+=("$(task_rank "$task")"$'\t'"$vname"$'\t'"$up"$'\t'"$task"$'\t'"$input")
      fi
    done
    # the short probes (under a minute each) share one job: one process start instead of four
    [ -z "$short" ] || rows+=("$short_rank"$'\t'"$vname"$'\t'"$up"$'\t'"$short"$'\t'"$input")
  done
done
if [ ${#rows[@]} -gt 0 ]; then
  table=$exp/jobs.tsv
  printf '%s\n' "${rows[@]}" | sort -s -t$'\t' -k1,1n | cut -f2- > "$table.tmp"
  mv "$table.tmp" "$table"
  log "${#rows[@]} probe jobs ($table), $nj at a time (logs: $exp/log/superb.<k>.log, $exp/<name>/<task>/log.txt)"
  # on a terminal the probes redraw their progress bars into the job logs; run_jobs shows them
  if [ -t 2 ]; then export SPEECHSSL_PROGRESS=1; fi
  run_jobs --max-parallel "$nj" JOB=1:${#rows[@]} "$exp/log/superb.JOB.log" \
    bash "$SUPERB_RECIPE_DIR/lib/superb_job.sh" "$table" JOB "$exp" "${args[@]}" "${extra[@]}" \
    || die "probe jobs failed (above); rerun to resume: finished runs are kept"
fi
python - "$exp" <<'PY' || exit 1
import sys
from speechssl.superb.report import write_report
try:
    write_report(sys.argv[1])
except ValueError as e:
    sys.exit(f"error: {e}")
PY
log "results: $exp/results.md $exp/results.csv $exp/results.png (elapsed ${SECONDS}s)"
