#!/usr/bin/env bash
# VoxCeleb1 as Kaldi data dirs: <out>/speakers/sid_{train,dev,test} (iden_split.txt),
# <out>/speakers/sv_{train,dev,test} with trials (dev: generated on held-out training speakers;
# test: the official list); then validated. See speechssl/data/corpora/voxceleb1.py.
#
#   bash local/data.sh --corpus /path/to/corpus --out data
set -euo pipefail
readonly SPEECHSSL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)

corpus=""             # the corpus folder (see db.sh)
out=data              # output folder (relative to the current folder)
sv_dev_speakers=40    # training speakers held out for the SV dev trials (model selection)
trials_per_utt=4      # SV dev trials of each kind (target, nontarget) per enrollment utterance
seed=0                # seed of the SV dev speakers and trials

help_message="Usage: $0 --corpus DIR [options]
Writes <out>/speakers/sid_{train,dev,test}, <out>/speakers/sv_{train,dev,test} + trials."

. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
[ -n "$corpus" ] || die "--corpus DIR is required: the folder with wav/ (or vox1_dev_wav/wav and vox1_test_wav/wav), iden_split.txt and veri_test2.txt (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/)"

python=${PYTHON:-python3}
args=(--root "$corpus" --out "$out")
args+=(--sv-dev-speakers "$sv_dev_speakers")
args+=(--trials-per-utt "$trials_per_utt")
args+=(--seed "$seed")

log "preparing VoxCeleb1 from $corpus into $out"
"$python" -m speechssl.data.corpora voxceleb1 "${args[@]}"
mapfile -t dirs < <(find "$out" -name wav.scp -not -path '*/split*' -printf '%h\n' | LC_ALL=C sort)
"$python" -m speechssl.cli data validate "${dirs[@]}" >"$out/validate.log" 2>&1 \
  || { grep -E '^ERROR' "$out/validate.log" | head -n 20 >&2; die "invalid data dirs (see $out/validate.log)"; }
log "${#dirs[@]} data dirs ready in $out"
