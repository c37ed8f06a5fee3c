#!/usr/bin/env bash
# VoiceBank-DEMAND as Kaldi data dirs: <out>/noisy/{train,dev,test} (wav.scp noisy, clean.scp
# clean), from 16 kHz copies of the 48 kHz originals written to <out>/wav/ (soxr); dev = two
# held-out training speakers; then validated. See speechssl/data/corpora/voicebank_demand.py.
#
#   bash local/data.sh --corpus /path/to/corpus --out data
set -euo pipefail
readonly SPEECHSSL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)

corpus=""             # the corpus folder (see db.sh)
out=data              # output folder (relative to the current folder)
dev_speakers=p226,p287  # training speakers held out as dev
nj=2                  # parallel resampling processes

help_message="Usage: $0 --corpus DIR [options]
Writes <out>/noisy/{train,dev,test} + clean.scp, 16 kHz copies in <out>/wav/."

. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
[ -n "$corpus" ] || die "--corpus DIR is required: the folder with clean_trainset_28spk_wav/, noisy_trainset_28spk_wav/, clean_testset_wav/ and noisy_testset_wav/ (48 kHz)"

python=${PYTHON:-python3}
args=(--root "$corpus" --out "$out")
args+=(--dev-speakers "$dev_speakers")
args+=(--nj "$nj")

log "preparing VoiceBank-DEMAND from $corpus into $out"
"$python" -m speechssl.data.corpora voicebank_demand "${args[@]}"
mapfile -t dirs < <(find "$out" -name wav.scp -not -path '*/split*' -printf '%h\n' | LC_ALL=C sort)
"$python" -m speechssl.cli data validate "${dirs[@]}" >"$out/validate.log" 2>&1 \
  || { grep -E '^ERROR' "$out/validate.log" | head -n 20 >&2; die "invalid data dirs (see $out/validate.log)"; }
log "${#dirs[@]} data dirs ready in $out"
