#!/usr/bin/env bash
# SUPERB emotion recognition (ER, 4 classes, 5 leave-one-session-out folds) on IEMOCAP:
# data dirs (local/data.sh) -> SUPERB probing of a frozen upstream (recipes/superb.sh).
# Every stage is guarded by a .done marker and safe to rerun. Set IEMOCAP in db.sh first.
#
#   bash egs/iemocap/run.sh                                # data dirs, then SUPERB with FBANK
#   bash egs/iemocap/run.sh --stage 2 --upstream ../synth/exp/ssl/wav2vec2_tiny/upstream.pt
set -euo pipefail
readonly RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SPEECHSSL_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
. "$RECIPE_DIR/db.sh"

# Options (each can be given as --name value; --foo-bar is the same as --foo_bar).
stage=1               # first stage to run
stop_stage=100        # last stage to run
corpus=$IEMOCAP       # the corpus folder (default: IEMOCAP from db.sh)
data=data             # where the data dirs go (relative to this folder)
exp=exp               # SUPERB experiment folder (relative to this folder)
upstream=fbank        # stage 2: speechssl checkpoint, exported upstream, HF or fairseq model, or fbank
tasks=er              # stage 2: SUPERB tasks on this corpus, comma-separated
dev_fraction=0.2      # share of each training speaker's utterances in dev
seed=0                # seed of the dev draw

help_message="Usage: $0 [options]
Stages: 1 data dirs (local/data.sh: <data>/prosody/fold{1..5}/{train,dev,test}),
        2 SUPERB er (recipes/superb.sh)."

. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
# a relative --corpus is taken from where run.sh was started; everything else is relative to
# the recipe folder
if [ -n "$corpus" ] && [ -d "$corpus" ]; then corpus=$(cd "$corpus" && pwd); fi
cd "$RECIPE_DIR"
. "$SPEECHSSL_ROOT/tools/env.sh"

if stage_on 1; then
  marker=$data/.prepare.done
  [ -n "$corpus" ] || die "where is IEMOCAP? set IEMOCAP in $RECIPE_DIR/db.sh or pass --corpus DIR (IEMOCAP_full_release/ (Session1..Session5) or the folder holding it; released on request; download: https://sail.usc.edu/iemocap/)"
  want="corpus=$corpus dev_fraction=$dev_fraction seed=$seed"
  if is_done "$marker"; then
    [[ "$(tail -n 1 "$marker")" == *" $want" ]] \
      || die "$data was prepared with '$(tail -n 1 "$marker")', not '$want'; remove $data or pass --data elsewhere"
    log "stage 1: data dirs ready already ($want), skipping"
  else
    log "stage 1: data dirs from $corpus into $data"
    bash local/data.sh --corpus "$corpus" --out "$data" --dev_fraction "$dev_fraction" --seed "$seed"
    mark_done "$marker" "$want"
  fi
fi

if stage_on 2; then
  for task in ${tasks//,/ }; do
    log "stage 2: SUPERB $task with upstream $upstream"
    bash "$SPEECHSSL_ROOT/recipes/superb.sh" --upstream "$upstream" --tasks "$task" --data "$data" --exp "$exp"
  done
fi
log "done (elapsed ${SECONDS}s)"
