#!/usr/bin/env bash
# SUPERB emotion recognition (ER, 4 classes, 5 leave-one-session-out folds) on IEMOCAP: data dirs
# -> SUPERB probing of a frozen upstream, both by recipes/corpus.sh. Stage 1 writes
# <data>/prosody/fold{1..5}/{train,dev,test} with utt2emotion (neutral happy angry sad; leave one
# session out, dev drawn per speaker from the training sessions), then validates them; see
# speechssl/data/corpora/iemocap.py.
# Every stage is guarded by a .done marker and safe to rerun. Set IEMOCAP in db.sh first.
#
#   bash egs/iemocap/run.sh                                # data dirs, then SUPERB with FBANK
#   bash egs/iemocap/run.sh --stage 2 --upstream ../synth/exp/ssl/wav2vec2_tiny/upstream.pt
# shellcheck source-path=SCRIPTDIR disable=SC2155  # readonly X=$(...): a plain X= would be an option
set -euo pipefail
readonly RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SPEECHSSL_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
# shellcheck source=db.sh
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
Stages (recipes/corpus.sh): 1 data dirs (<data>/prosody/fold{1..5}/{train,dev,test}),
        2 SUPERB er (recipes/superb.sh)."

# shellcheck source=../../recipes/lib/common.sh
. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
# shellcheck source=../../recipes/lib/parse_options.sh
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"

exec bash "$SPEECHSSL_ROOT/recipes/corpus.sh" --prepare iemocap --title IEMOCAP \
  --db_var IEMOCAP --recipe_dir "$RECIPE_DIR" \
  --where "IEMOCAP_full_release/ (Session1..Session5) or the folder holding it; released on request; download: https://sail.usc.edu/iemocap/" \
  --stage "$stage" --stop_stage "$stop_stage" --corpus "$corpus" --data "$data" --exp "$exp" \
  --upstream "$upstream" --tasks "$tasks" \
  dev_fraction="$dev_fraction" seed="$seed"
