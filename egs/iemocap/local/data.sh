#!/usr/bin/env bash
# IEMOCAP as Kaldi data dirs: <out>/prosody/fold{1..5}/{train,dev,test} with utt2emotion
# (neutral happy angry sad; leave one session out, dev drawn per speaker from the training
# sessions); then validated. See speechssl/data/corpora/iemocap.py.
#
#   bash local/data.sh --corpus /path/to/corpus --out data
set -euo pipefail
readonly SPEECHSSL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)

corpus=""             # the corpus folder (see db.sh)
out=data              # output folder (relative to the current folder)
dev_fraction=0.2      # share of each training speaker's utterances in dev
seed=0                # seed of the dev draw

help_message="Usage: $0 --corpus DIR [options]
Writes <out>/prosody/fold{1..5}/{train,dev,test}."

. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
[ -n "$corpus" ] || die "--corpus DIR is required: IEMOCAP_full_release/ (Session1..Session5) or the folder holding it; released on request"

python=${PYTHON:-python3}
args=(--root "$corpus" --out "$out")
args+=(--dev-fraction "$dev_fraction")
args+=(--seed "$seed")

log "preparing IEMOCAP from $corpus into $out"
"$python" -m speechssl.data.corpora iemocap "${args[@]}"
mapfile -t dirs < <(find "$out" -name wav.scp -not -path '*/split*' -printf '%h\n' | LC_ALL=C sort)
"$python" -m speechssl.cli data validate "${dirs[@]}" >"$out/validate.log" 2>&1 \
  || { grep -E '^ERROR' "$out/validate.log" | head -n 20 >&2; die "invalid data dirs (see $out/validate.log)"; }
log "${#dirs[@]} data dirs ready in $out"
