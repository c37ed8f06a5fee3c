#!/usr/bin/env bash
# bench/gpu_decode.py on the GPU machine: one call, under ~7 minutes all told (see that file's
# docstring for what it measures).
#
# The GPU machine has no lmplz, kenlm, pyctcdecode, jiwer or flashlight-text and no network, so
# first, here, from the repository root:
#   ../shared/device/fetch-wheels.sh kenlm pyctcdecode pygtrie jiwer rapidfuzz flashlight-text
#   python bench/gpu_decode.py --prepare bench/gpu_decode_data      # texts, tokens, 4-gram ARPA
#   (optional) mkdir bench/gpu_decode_data/real and copy a decode dir's logprobs.pt and its ARPA
#   there as logprobs.pt and lm.arpa (egs/synth: exp/asr/fbank/decode/test_beam_lm, lm/3gram)
# then run, from the repository root there, carrying .whl and bench/gpu_decode_data:
#   bash bench/gpu_decode_device.sh [more bench/gpu_decode.py options]
# The log (gpu_decode.log) and all numbers (gpu_decode.json, rewritten after greedy at each
# vocabulary and after each vocabulary's beams, so a run cut short keeps what it finished) land
# in $OUT.
set -uo pipefail

out=${OUT:-/tmp/gpu_decode_out}
data=${GPU_DECODE_DATA:-bench/gpu_decode_data}
budget=${GPU_DECODE_BUDGET_S:-420}  # the whole script, install included
site=/tmp/site

main() {
  if [ ! -f "$data/data.json" ]; then
    echo "error: no $data/data.json: run 'python bench/gpu_decode.py --prepare $data' here, carry it"
    return 2
  fi
  echo "== wheels: $(ls .whl 2>/dev/null | tr '\n' ' ')"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl ||
    echo "warning: installing the wheels failed; the peers that need them will be skipped"
  if ! PYTHONPATH=$site python3 -c "import kenlm" 2>/dev/null; then
    echo "== building kenlm from its sdist"
    timeout 240 python3 -m pip install -q --no-index --no-deps --no-build-isolation \
      --target "$site" .whl/kenlm-*.tar.gz
  fi
  export PYTHONPATH=$site:$PWD
  if ! python3 -c "import kenlm"; then  # speechssl.asr.lm imports it: nothing runs without it
    echo "error: kenlm does not import (carry .whl/kenlm-*.tar.gz)"
    return 3
  fi
  nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv,noheader || true
  if [ -f "$data/real/logprobs.pt" ]; then  # a real model's logits: every beam vs the CPU search
    echo "== batched search on the GPU vs the CPU search, real logits"
    timeout 90 python3 bench/batch_search_agreement.py --logits "$data/real/logprobs.pt" \
      --lm "$data/real/lm.arpa" --beams 10,128 --device cuda || echo "warning: agreement run failed"
  fi
  local left=$((budget - SECONDS))
  echo "== setup took $SECONDS s; the bench gets $left s"
  # SIGINT first: Python prints where it was; the JSON holds the vocabularies already done
  timeout --signal=INT --kill-after=20 "$left" python3 bench/gpu_decode.py --data "$data" \
    --device cuda --out "$out/gpu_decode.json" --time-budget-s $((left - 20)) "$@"
  local rc=$?
  [ "$rc" -eq 124 ] && echo "timed out after $left s: $out/gpu_decode.json has what finished"
  echo "== total $SECONDS s, exit status $rc"
  return "$rc"
}

mkdir -p "$out" "$site"
main "$@" 2>&1 | tee "$out/gpu_decode.log"
exit "${PIPESTATUS[0]}"
