#!/usr/bin/env bash
# SUPERB intent classification (IC) on Fluent Speech Commands:
# data dirs (local/data.sh) -> SUPERB probing of a frozen upstream (recipes/superb.sh).
# Every stage is guarded by a .done marker and safe to rerun. Set FLUENT_SPEECH_COMMANDS in db.sh first.
#
#   bash egs/fluent_speech_commands/run.sh                                # data dirs, then SUPERB with FBANK
#   bash egs/fluent_speech_commands/run.sh --stage 2 --upstream ../synth/exp/ssl/wav2vec2_tiny/upstream.pt
set -euo pipefail
readonly RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SPEECHSSL_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
. "$RECIPE_DIR/db.sh"

# Options (each can be given as --name value; --foo-bar is the same as --foo_bar).
stage=1               # first stage to run
stop_stage=100        # last stage to run
corpus=$FLUENT_SPEECH_COMMANDS  # the corpus folder (default: FLUENT_SPEECH_COMMANDS from db.sh)
data=data             # where the data dirs go (relative to this folder)
exp=exp               # SUPERB experiment folder (relative to this folder)
upstream=fbank        # stage 2: speechssl checkpoint, exported upstream, HF or fairseq model, or fbank
tasks=ic              # stage 2: SUPERB tasks on this corpus, comma-separated


help_message="Usage: $0 [options]
Stages: 1 data dirs (local/data.sh: <data>/intents/{train,dev,test}),
        2 SUPERB ic (recipes/superb.sh)."

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
  [ -n "$corpus" ] || die "where is Fluent Speech Commands? set FLUENT_SPEECH_COMMANDS in $RECIPE_DIR/db.sh or pass --corpus DIR (fluent_speech_commands_dataset/ (with data/*_data.csv and wavs/) or the folder holding it; download: https://fluent.ai/fluent-speech-commands-a-dataset-for-spoken-language-understanding-research/)"
  want="corpus=$corpus"
  if is_done "$marker"; then
    [[ "$(tail -n 1 "$marker")" == *" $want" ]] \
      || die "$data was prepared with '$(tail -n 1 "$marker")', not '$want'; remove $data or pass --data elsewhere"
    log "stage 1: data dirs ready already ($want), skipping"
  else
    log "stage 1: data dirs from $corpus into $data"
    bash local/data.sh --corpus "$corpus" --out "$data"
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
