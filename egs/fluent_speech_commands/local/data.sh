#!/usr/bin/env bash
# Fluent Speech Commands as Kaldi data dirs: <out>/intents/{train,dev,test} with text and
# utt2intent ("action object location") from the official CSV splits; then validated.
# See speechssl/data/corpora/fluent_speech_commands.py.
#
#   bash local/data.sh --corpus /path/to/corpus --out data
set -euo pipefail
readonly SPEECHSSL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)

corpus=""             # the corpus folder (see db.sh)
out=data              # output folder (relative to the current folder)

help_message="Usage: $0 --corpus DIR [options]
Writes <out>/intents/{train,dev,test}."

. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
[ -n "$corpus" ] || die "--corpus DIR is required: fluent_speech_commands_dataset/ (with data/*_data.csv and wavs/) or the folder holding it"

python=${PYTHON:-python3}
args=(--root "$corpus" --out "$out")
log "preparing Fluent Speech Commands from $corpus into $out"
"$python" -m speechssl.data.corpora fluent_speech_commands "${args[@]}"
mapfile -t dirs < <(find "$out" -name wav.scp -not -path '*/split*' -printf '%h\n' | LC_ALL=C sort)
"$python" -m speechssl.cli data validate "${dirs[@]}" >"$out/validate.log" 2>&1 \
  || { grep -E '^ERROR' "$out/validate.log" | head -n 20 >&2; die "invalid data dirs (see $out/validate.log)"; }
log "${#dirs[@]} data dirs ready in $out"
