#!/usr/bin/env bash
# SUPERB speaker identification (SID) and verification (SV) on VoxCeleb1:
# data dirs (local/data.sh) -> SUPERB probing of a frozen upstream (recipes/superb.sh).
# Every stage is guarded by a .done marker and safe to rerun. Set VOXCELEB1 in db.sh first.
#
#   bash egs/voxceleb1/run.sh                                # data dirs, then SUPERB with FBANK
#   bash egs/voxceleb1/run.sh --stage 2 --upstream ../synth/exp/ssl/wav2vec2_tiny/upstream.pt
set -euo pipefail
readonly RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SPEECHSSL_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
. "$RECIPE_DIR/db.sh"

# Options (each can be given as --name value; --foo-bar is the same as --foo_bar).
stage=1               # first stage to run
stop_stage=100        # last stage to run
corpus=$VOXCELEB1     # the corpus folder (default: VOXCELEB1 from db.sh)
data=data             # where the data dirs go (relative to this folder)
exp=exp               # SUPERB experiment folder (relative to this folder)
upstream=fbank        # stage 2: speechssl checkpoint, exported upstream, HF or fairseq model, or fbank
tasks=sid,sv          # stage 2: SUPERB tasks on this corpus, comma-separated
sv_dev_speakers=40    # training speakers held out for the SV dev trials (model selection)
trials_per_utt=4      # SV dev trials of each kind (target, nontarget) per enrollment utterance
seed=0                # seed of the SV dev speakers and trials

help_message="Usage: $0 [options]
Stages: 1 data dirs (local/data.sh: <data>/speakers/sid_{train,dev,test}, <data>/speakers/sv_{train,dev,test} + trials),
        2 SUPERB sid,sv (recipes/superb.sh)."

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
  [ -n "$corpus" ] || die "where is VoxCeleb1? set VOXCELEB1 in $RECIPE_DIR/db.sh or pass --corpus DIR (the folder with wav/ (or vox1_dev_wav/wav and vox1_test_wav/wav), iden_split.txt and veri_test2.txt (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/); download: https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html)"
  want="corpus=$corpus sv_dev_speakers=$sv_dev_speakers trials_per_utt=$trials_per_utt seed=$seed"
  if is_done "$marker"; then
    [[ "$(tail -n 1 "$marker")" == *" $want" ]] \
      || die "$data was prepared with '$(tail -n 1 "$marker")', not '$want'; remove $data or pass --data elsewhere"
    log "stage 1: data dirs ready already ($want), skipping"
  else
    log "stage 1: data dirs from $corpus into $data"
    bash local/data.sh --corpus "$corpus" --out "$data" --sv_dev_speakers "$sv_dev_speakers" --trials_per_utt "$trials_per_utt" --seed "$seed"
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
