#!/usr/bin/env bash
# LibriSpeech as Kaldi data dirs: <out>/asr/{train_labeled,dev,test} (text; train-clean-100,
# dev-clean, test-clean), <out>/asr/lm_text.txt and <out>/phones/{train,dev,test} (utt2phones from a
# lexicon); then validated. See speechssl/data/corpora/librispeech.py.
#
#   bash local/data.sh --corpus /path/to/corpus --out data
set -euo pipefail
readonly SPEECHSSL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)

corpus=""             # the corpus folder (see db.sh)
out=data              # output folder (relative to the current folder)
lexicon=""            # pronunciation lexicon (default: librispeech-lexicon.txt in or beside the corpus folder)
strip_stress=false    # true: phones without stress digits (AH0 -> AH); SUPERB keeps them
lm_text=""            # extra LM sentences, e.g. librispeech-lm-norm.txt.gz
unlabeled_subsets=""  # comma-separated subsets for asr/train_unlabeled, e.g. train-clean-360

help_message="Usage: $0 --corpus DIR [options]
Writes <out>/asr/{train_labeled,dev,test} + asr/lm_text.txt, <out>/phones/{train,dev,test}."

. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
[ -n "$corpus" ] || die "--corpus DIR is required: the folder holding LibriSpeech/ (train-clean-100, dev-clean, test-clean; for PR also librispeech-lexicon.txt from https://www.openslr.org/11)"

python=${PYTHON:-python3}
args=(--root "$corpus" --out "$out")
[ -z "$lexicon" ] || args+=(--lexicon "$lexicon")
! "$strip_stress" || args+=(--strip-stress)
[ -z "$lm_text" ] || args+=(--lm-text "$lm_text")
[ -z "$unlabeled_subsets" ] || args+=(--unlabeled-subsets "$unlabeled_subsets")

log "preparing LibriSpeech from $corpus into $out"
"$python" -m speechssl.data.corpora librispeech "${args[@]}"
mapfile -t dirs < <(find "$out" -name wav.scp -not -path '*/split*' -printf '%h\n' | LC_ALL=C sort)
"$python" -m speechssl.cli data validate "${dirs[@]}" >"$out/validate.log" 2>&1 \
  || { grep -E '^ERROR' "$out/validate.log" | head -n 20 >&2; die "invalid data dirs (see $out/validate.log)"; }
log "${#dirs[@]} data dirs ready in $out"
