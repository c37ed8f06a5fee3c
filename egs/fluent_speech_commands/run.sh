#!/usr/bin/env bash
# SUPERB intent classification (IC) on Fluent Speech Commands: data dirs -> SUPERB probing of a
# frozen upstream, both by recipes/corpus.sh. Stage 1 writes <data>/intents/{train,dev,test} with
# text and utt2intent ("action object location") from the official CSV splits, then validates
# them; see speechssl/data/corpora/fluent_speech_commands.py.
# Every stage is guarded by a .done marker and safe to rerun. Set FLUENT_SPEECH_COMMANDS in db.sh first.
#
#   bash egs/fluent_speech_commands/run.sh                                # data dirs, then SUPERB with FBANK
#   bash egs/fluent_speech_commands/run.sh --stage 2 --upstream ../synth/exp/ssl/wav2vec2_tiny/upstream.pt
# shellcheck source-path=SCRIPTDIR disable=SC2155  # readonly X=$(...): a plain X= would be an option
set -euo pipefail
readonly RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SPEECHSSL_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
# shellcheck source=db.sh
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
Stages (recipes/corpus.sh): 1 data dirs (<data>/intents/{train,dev,test}),
        2 SUPERB ic (recipes/superb.sh)."

# shellcheck source=../../recipes/lib/common.sh
. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
# shellcheck source=../../recipes/lib/parse_options.sh
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"

exec bash "$SPEECHSSL_ROOT/recipes/corpus.sh" --prepare fluent_speech_commands --title "Fluent Speech Commands" \
  --db_var FLUENT_SPEECH_COMMANDS --recipe_dir "$RECIPE_DIR" \
  --where "fluent_speech_commands_dataset/ (with data/*_data.csv and wavs/) or the folder holding it; download: https://fluent.ai/fluent-speech-commands-a-dataset-for-spoken-language-understanding-research/" \
  --stage "$stage" --stop_stage "$stop_stage" --corpus "$corpus" --data "$data" --exp "$exp" \
  --upstream "$upstream" --tasks "$tasks"
