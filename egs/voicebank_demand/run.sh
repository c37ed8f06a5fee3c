#!/usr/bin/env bash
# SUPERB speech enhancement (SE) on VoiceBank-DEMAND (resampled to 16 kHz): data dirs -> SUPERB
# probing of a frozen upstream, both by recipes/corpus.sh. Stage 1 writes <data>/noisy/{train,dev,test}
# (wav.scp noisy, clean.scp clean) from 16 kHz copies of the 48 kHz originals written to <data>/wav/
# (soxr; dev = two held-out training speakers), then validates them; see
# speechssl/data/corpora/voicebank_demand.py.
# Every stage is guarded by a .done marker and safe to rerun. Set VOICEBANK_DEMAND in db.sh first.
#
#   bash egs/voicebank_demand/run.sh                                # data dirs, then SUPERB with FBANK
#   bash egs/voicebank_demand/run.sh --stage 2 --upstream ../synth/exp/ssl/wav2vec2_tiny/upstream.pt
# shellcheck source-path=SCRIPTDIR disable=SC2155  # readonly X=$(...): a plain X= would be an option
set -euo pipefail
readonly RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SPEECHSSL_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
# shellcheck source=db.sh
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
Stages (recipes/corpus.sh): 1 data dirs (<data>/noisy/{train,dev,test} + clean.scp, 16 kHz copies
        in <data>/wav/), 2 SUPERB se (recipes/superb.sh)."

# shellcheck source=../../recipes/lib/common.sh
. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
# shellcheck source=../../recipes/lib/parse_options.sh
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"

exec bash "$SPEECHSSL_ROOT/recipes/corpus.sh" --prepare voicebank_demand --title VoiceBank-DEMAND \
  --db_var VOICEBANK_DEMAND --recipe_dir "$RECIPE_DIR" \
  --where "the folder with clean_trainset_28spk_wav/, noisy_trainset_28spk_wav/, clean_testset_wav/ and noisy_testset_wav/ (48 kHz); download: https://datashare.ed.ac.uk/handle/10283/2791" \
  --stage "$stage" --stop_stage "$stop_stage" --corpus "$corpus" --data "$data" --exp "$exp" \
  --upstream "$upstream" --tasks "$tasks" \
  dev_speakers="$dev_speakers" nj="$nj"
