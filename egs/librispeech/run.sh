#!/usr/bin/env bash
# SUPERB phone recognition (PR) and ASR on LibriSpeech: data dirs -> SUPERB probing of a frozen
# upstream, both by recipes/corpus.sh. Stage 1 writes <data>/asr/{train_labeled,dev,test} (text;
# train-clean-100, dev-clean, test-clean), <data>/asr/lm_text.txt and <data>/phones/{train,dev,test}
# (utt2phones from a lexicon), then validates them; see speechssl/data/corpora/librispeech.py.
# Every stage is guarded by a .done marker and safe to rerun. Set LIBRISPEECH in db.sh first.
#
#   bash egs/librispeech/run.sh                                # data dirs, then SUPERB with FBANK
#   bash egs/librispeech/run.sh --stage 2 --upstream ../synth/exp/ssl/wav2vec2_tiny/upstream.pt
# shellcheck source-path=SCRIPTDIR disable=SC2155  # readonly X=$(...): a plain X= would be an option
set -euo pipefail
readonly RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SPEECHSSL_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
# shellcheck source=db.sh
. "$RECIPE_DIR/db.sh"

# Options (each can be given as --name value; --foo-bar is the same as --foo_bar).
stage=1               # first stage to run
stop_stage=100        # last stage to run
corpus=$LIBRISPEECH   # the corpus folder (default: LIBRISPEECH from db.sh)
data=data             # where the data dirs go (relative to this folder)
exp=exp               # SUPERB experiment folder (relative to this folder)
upstream=fbank        # stage 2: speechssl checkpoint, exported upstream, HF or fairseq model, or fbank
tasks=pr,asr          # stage 2: SUPERB tasks on this corpus, comma-separated
lexicon=""            # pronunciation lexicon (default: librispeech-lexicon.txt in or beside the corpus folder)
strip_stress=false    # true: phones without stress digits (AH0 -> AH); SUPERB keeps them
lm_text=""            # extra LM sentences, e.g. librispeech-lm-norm.txt.gz
unlabeled_subsets=""  # comma-separated subsets for asr/train_unlabeled, e.g. train-clean-360

help_message="Usage: $0 [options]
Stages (recipes/corpus.sh): 1 data dirs (<data>/asr/{train_labeled,dev,test} + asr/lm_text.txt,
        <data>/phones/{train,dev,test}), 2 SUPERB pr,asr (recipes/superb.sh)."

# shellcheck source=../../recipes/lib/common.sh
. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
# shellcheck source=../../recipes/lib/parse_options.sh
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"

exec bash "$SPEECHSSL_ROOT/recipes/corpus.sh" --prepare librispeech --title LibriSpeech \
  --db_var LIBRISPEECH --recipe_dir "$RECIPE_DIR" \
  --where "the folder holding LibriSpeech/ (train-clean-100, dev-clean, test-clean; for PR also librispeech-lexicon.txt from https://www.openslr.org/11); download: https://www.openslr.org/12" \
  --stage "$stage" --stop_stage "$stop_stage" --corpus "$corpus" --data "$data" --exp "$exp" \
  --upstream "$upstream" --tasks "$tasks" \
  lexicon="$lexicon" strip_stress="$strip_stress" lm_text="$lm_text" unlabeled_subsets="$unlabeled_subsets"
