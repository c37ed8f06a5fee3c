#!/usr/bin/env bash
# SUPERB keyword spotting (KS, 12 classes) on Speech Commands v0.01: data dirs -> SUPERB probing
# of a frozen upstream, both by recipes/corpus.sh. Stage 1 writes <data>/keywords/{train,dev,test}
# with utt2keyword (10 words, _unknown_, _silence_ clips cut from the background noise into
# <data>/wav/silence), then validates them; see speechssl/data/corpora/speech_commands.py.
# Every stage is guarded by a .done marker and safe to rerun. Set SPEECH_COMMANDS in db.sh first.
#
#   bash egs/speech_commands/run.sh                                # data dirs, then SUPERB with FBANK
#   bash egs/speech_commands/run.sh --stage 2 --upstream ../synth/exp/ssl/wav2vec2_tiny/upstream.pt
# shellcheck source-path=SCRIPTDIR disable=SC2155  # readonly X=$(...): a plain X= would be an option
set -euo pipefail
readonly RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SPEECHSSL_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
# shellcheck source=db.sh
. "$RECIPE_DIR/db.sh"

# Options (each can be given as --name value; --foo-bar is the same as --foo_bar).
stage=1               # first stage to run
stop_stage=100        # last stage to run
corpus=$SPEECH_COMMANDS  # the corpus folder (default: SPEECH_COMMANDS from db.sh)
data=data             # where the data dirs go (relative to this folder)
exp=exp               # SUPERB experiment folder (relative to this folder)
upstream=fbank        # stage 2: speechssl checkpoint, exported upstream, HF or fairseq model, or fbank
tasks=ks              # stage 2: SUPERB tasks on this corpus, comma-separated
test_root=""          # the official test set folder (default: speech_commands_test_set_v0.01 in or beside the corpus)
silence_dev_fraction=0.1  # share of each background-noise recording cut into dev _silence_ clips

help_message="Usage: $0 [options]
Stages (recipes/corpus.sh): 1 data dirs (<data>/keywords/{train,dev,test}),
        2 SUPERB ks (recipes/superb.sh)."

# shellcheck source=../../recipes/lib/common.sh
. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
# shellcheck source=../../recipes/lib/parse_options.sh
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"

exec bash "$SPEECHSSL_ROOT/recipes/corpus.sh" --prepare speech_commands --title "Speech Commands v0.01" \
  --db_var SPEECH_COMMANDS --recipe_dir "$RECIPE_DIR" \
  --where "the folder speech_commands_v0.01.tar.gz was extracted into (it has validation_list.txt); the official test set (speech_commands_test_set_v0.01.tar.gz) goes into its sub-folder or sibling speech_commands_test_set_v0.01/; download: http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz" \
  --stage "$stage" --stop_stage "$stop_stage" --corpus "$corpus" --data "$data" --exp "$exp" \
  --upstream "$upstream" --tasks "$tasks" \
  test_root="$test_root" silence_dev_fraction="$silence_dev_fraction"
