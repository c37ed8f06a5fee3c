#!/usr/bin/env bash
# SUPERB speaker identification (SID) and verification (SV) on VoxCeleb1: data dirs -> SUPERB
# probing of a frozen upstream, both by recipes/corpus.sh. Stage 1 writes
# <data>/speakers/sid_{train,dev,test} (iden_split.txt) and <data>/speakers/sv_{train,dev,test}
# with trials (dev: generated on held-out training speakers; test: the official list), then
# validates them; see speechssl/data/corpora/voxceleb1.py.
# Every stage is guarded by a .done marker and safe to rerun. Set VOXCELEB1 in db.sh first.
#
#   bash egs/voxceleb1/run.sh                                # data dirs, then SUPERB with FBANK
#   bash egs/voxceleb1/run.sh --stage 2 --upstream ../synth/exp/ssl/wav2vec2_tiny/upstream.pt
# shellcheck source-path=SCRIPTDIR disable=SC2155  # readonly X=$(...): a plain X= would be an option
set -euo pipefail
readonly RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SPEECHSSL_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
# shellcheck source=db.sh
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
Stages (recipes/corpus.sh): 1 data dirs (<data>/speakers/sid_{train,dev,test},
        <data>/speakers/sv_{train,dev,test} + trials), 2 SUPERB sid,sv (recipes/superb.sh)."

# shellcheck source=../../recipes/lib/common.sh
. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
# shellcheck source=../../recipes/lib/parse_options.sh
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"

exec bash "$SPEECHSSL_ROOT/recipes/corpus.sh" --prepare voxceleb1 --title VoxCeleb1 \
  --db_var VOXCELEB1 --recipe_dir "$RECIPE_DIR" \
  --where "the folder with wav/ (or vox1_dev_wav/wav and vox1_test_wav/wav), iden_split.txt and veri_test2.txt (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/); download: https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html" \
  --stage "$stage" --stop_stage "$stop_stage" --corpus "$corpus" --data "$data" --exp "$exp" \
  --upstream "$upstream" --tasks "$tasks" \
  sv_dev_speakers="$sv_dev_speakers" trials_per_utt="$trials_per_utt" seed="$seed"
