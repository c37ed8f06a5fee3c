#!/usr/bin/env bash
# Speech Commands v0.01 as Kaldi data dirs: <out>/keywords/{train,dev,test} with utt2keyword
# (10 words, _unknown_, _silence_ clips cut from the background noise into <out>/wav/silence);
# then validated. See speechssl/data/corpora/speech_commands.py.
#
#   bash local/data.sh --corpus /path/to/corpus --out data
set -euo pipefail
readonly SPEECHSSL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)

corpus=""             # the corpus folder (see db.sh)
out=data              # output folder (relative to the current folder)
test_root=""          # the official test set folder (default: speech_commands_test_set_v0.01 in or beside the corpus)
silence_dev_fraction=0.1  # share of each background-noise recording cut into dev _silence_ clips

help_message="Usage: $0 --corpus DIR [options]
Writes <out>/keywords/{train,dev,test}."

. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
[ -n "$corpus" ] || die "--corpus DIR is required: the folder speech_commands_v0.01.tar.gz was extracted into (it has validation_list.txt); the official test set (speech_commands_test_set_v0.01.tar.gz) goes into its sub-folder or sibling speech_commands_test_set_v0.01/"

python=${PYTHON:-python3}
args=(--root "$corpus" --out "$out")
[ -z "$test_root" ] || args+=(--test-root "$test_root")
args+=(--silence-dev-fraction "$silence_dev_fraction")

log "preparing Speech Commands v0.01 from $corpus into $out"
"$python" -m speechssl.data.corpora speech_commands "${args[@]}"
mapfile -t dirs < <(find "$out" -name wav.scp -not -path '*/split*' -printf '%h\n' | LC_ALL=C sort)
"$python" -m speechssl.cli data validate "${dirs[@]}" >"$out/validate.log" 2>&1 \
  || { grep -E '^ERROR' "$out/validate.log" | head -n 20 >&2; die "invalid data dirs (see $out/validate.log)"; }
log "${#dirs[@]} data dirs ready in $out"
