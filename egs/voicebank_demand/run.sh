#!/usr/bin/env bash
# SUPERB speech enhancement (SE) on VoiceBank-DEMAND (resampled to 16 kHz):
# data dirs (local/data.sh) -> SUPERB probing of a frozen upstream (recipes/superb.sh).
# Every stage is guarded by a .done marker and safe to rerun. Set VOICEBANK_DEMAND in db.sh first.
#
#   bash egs/voicebank_demand/run.sh                                # data dirs, then SUPERB with FBANK
#   bash egs/voicebank_demand/run.sh --stage 2 --upstream ../synth/exp/ssl/wav2vec2_tiny/upstream.pt
set -euo pipefail
readonly RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SPEECHSSL_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
. "$RECIPE_DIR/db.sh"

# Options (each can be given as --name value; --foo-bar is the same as --foo_bar).
stage=1               # first stage to run
stop_stage=100        # last stage to run
corpus=$VOICEBANK_DEMAND  # the corpus folder (default: VOICEBANK_DEMAND from db.sh)
data=data             # where the data dirs go (relative to this folder)
exp=exp               # SUPERB experiment folder (relative to this folder)
upstream=fbank        # stage 2: speechssl checkpoint, exported upstream, HF or fairseq model, or fbank
tasks=se              # stage 2: SUPERB tasks on this corpus, comma-separated
dev_speakers=p226,p287  # training speakers held out as dev
nj=2                  # parallel resampling processes

help_message="Usage: $0 [options]
Stages: 1 data dirs (local/data.sh: <data>/noisy/{train,dev,test} + clean.scp, 16 kHz copies in <data>/wav/),
        2 SUPERB se (recipes/superb.sh)."

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
  [ -n "$corpus" ] || die "where is VoiceBank-DEMAND? set VOICEBANK_DEMAND in $RECIPE_DIR/db.sh or pass --corpus DIR (the folder with clean_trainset_28spk_wav/, noisy_trainset_28spk_wav/, clean_testset_wav/ and noisy_testset_wav/ (48 kHz); download: https://datashare.ed.ac.uk/handle/10283/2791)"
  want="corpus=$corpus dev_speakers=$dev_speakers nj=$nj"
  if is_done "$marker"; then
    [[ "$(tail -n 1 "$marker")" == *" $want" ]] \
      || die "$data was prepared with '$(tail -n 1 "$marker")', not '$want'; remove $data or pass --data elsewhere"
    log "stage 1: data dirs ready already ($want), skipping"
  else
    log "stage 1: data dirs from $corpus into $data"
    bash local/data.sh --corpus "$corpus" --out "$data" --dev_speakers "$dev_speakers" --nj "$nj"
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
