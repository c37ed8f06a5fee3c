#!/usr/bin/env bash
# shellcheck disable=SC2128  # $out is this script's string option; common.sh has a local array "out"
# Render the embedded synthetic corpus (espeak-ng + flite speech) as Kaldi data dirs:
#   <out>/asr/{train_labeled,train_unlabeled,dev,test} + asr/lm_text.txt, <out>/phones/*,
#   <out>/keywords/*, <out>/intents/*, <out>/speakers/{sid,sv}_*, <out>/prosody/*, <out>/noisy/*
# and the audio under <out>/wav/. Same seed -> byte-identical corpus; a killed run resumes.
# See speechssl/data/synth/README.md.
#
#   bash local/data.sh --scale test --out data
set -euo pipefail
SPEECHSSL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
readonly SPEECHSSL_ROOT

seed=0          # corpus seed
scale=default   # test | default | <hours of ASR training audio>
nj=2            # parallel rendering jobs
out=data        # output folder (relative to the current folder)
voices=""       # optional file with one voice id a line (default: the 48 built-in voices)
snrs=0,5,10,15  # SNRs in dB of the noisy subset
subsets=asr,phones,keywords,intents,speakers,prosody,noisy  # which tasks to render

help_message="Usage: $0 [options]
Renders the synthetic corpus into --out (see speechssl/data/synth/README.md)."

. "$SPEECHSSL_ROOT/recipes/lib/common.sh"
. "$SPEECHSSL_ROOT/recipes/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
require_cmd espeak-ng flite

python=${PYTHON:-python3}
args=(--out "$out" --seed "$seed" --scale "$scale" --nj "$nj" --snrs "$snrs" --subsets "$subsets")
[ -z "$voices" ] || args+=(--voices "$voices")

log "rendering the synthetic corpus into $out (seed=$seed scale=$scale nj=$nj)"
"$python" -m speechssl.cli synth "${args[@]}"
log "corpus ready in $out"
