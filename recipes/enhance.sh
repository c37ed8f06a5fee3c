#!/usr/bin/env bash
# Speech enhancement without clean targets, shared by every corpus: train -> score -> ASR -> table.
#
#   1 `speechssl enhance-train` per model in --models (same network and step budget each):
#       noise2noise     mask model, pairs of independently noisy recordings (noisy2.scp)
#       noisy_as_clean  mask model, the noisy recording plus more simulated noise -> the recording
#       sure            mask model, Stein's unbiased risk estimate on the white-noise subset
#       noise2self      waveform model (a mask cannot fill hidden bins), blind-spot T-F patches
#       noise2clean     mask model, the clean reference as target: the supervised baseline
#       n2n_shared_hum  Noise2Noise with the same hum added to both copies (the failure case)
#     -> <exp>/<model>/model.pt
#   2 `speechssl enhance-eval` of each on --test (PESQ, STOI, SI-SDR; per SNR and noise family)
#     -> <exp>/<model>/test/summary.{json,md}, spectrograms.png; with n2n_shared_hum also on
#     --test plus hum at --hum-snr dB -> <exp>/<model>/test_hum/
#   3 with --asr-model: --test decoded raw and enhanced by the first model (beam + LM with the
#     ASR exp dir's dev-tuned weights) -> <exp>/asr/{raw,<model>}/summary.json
#   4 <exp>/RESULTS.md: the tables of all of them
# Each step is guarded by a .done marker and safe to rerun; a killed training resumes.
#
#   recipes/enhance.sh --train data/noisy/train --test data/noisy/test --exp exp/enhance \
#     --models "noise2noise noise2clean" --asr-model exp/asr/fbank
set -euo pipefail
EN_RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly EN_RECIPE_DIR

stage=1
stop_stage=4
train=""             # noisy training data dir (wav.scp, noisy2.scp, utt2snr, utt2noise [, clean.scp])
test=""              # test data dir with clean.scp (and text, for the ASR rows)
exp=""               # experiment dir
conf_dir=""          # folder of mask.yaml and wave.yaml (default: egs/synth/conf/enhance)
models="noise2noise noise2clean"  # or all: the six above
overrides=""         # extra `enhance-train --set` values for every model, e.g. "trainer.max_updates=50"
hum_snr=5            # the failure case: SNR of the added hum against the noisy input
asr_model=""         # an asr.sh exp dir (model.pt, lm/, decode/dev_beam_lm/decode.json)
lm_order=3
nj=2                 # metric and beam-search processes

help_message="Usage: $0 --train DIR --test DIR --exp DIR [--models 'noise2noise ...'|all] [--asr-model EXP]"

. "$EN_RECIPE_DIR/lib/common.sh"
. "$EN_RECIPE_DIR/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1'"
[ -n "$train" ] && [ -n "$test" ] && [ -n "$exp" ] || die "--train, --test and --exp are needed"
require_file "$train/wav.scp" "$test/wav.scp" "$test/clean.scp"
conf_dir=${conf_dir:-$EN_RECIPE_DIR/../egs/synth/conf/enhance}
[ "$models" = all ] && models="noise2noise noisy_as_clean sure noise2self noise2clean n2n_shared_hum"
read -r -a names <<< "$models"
[ ${#names[@]} -gt 0 ] || die "--models is empty"
mkdir -p "$exp"

settings() {  # settings <model>: "<yaml> <--set values...>"
  case $1 in
    noise2noise | noisy_as_clean | noise2clean) echo "mask.yaml regime=$1" ;;
    sure) echo "mask.yaml regime=sure data.families=[white]" ;;
    noise2self) echo "wave.yaml regime=noise2self" ;;
    n2n_shared_hum) echo "mask.yaml regime=noise2noise data.shared_noise=hum data.shared_snr=$hum_snr" ;;
    *) die "--models: unknown model '$1' (noise2noise noisy_as_clean sure noise2self noise2clean n2n_shared_hum)" ;;
  esac
}

if stage_on 1; then
  for name in "${names[@]}"; do
    dir=$exp/$name
    if is_done "$dir/.done"; then
      log "stage 1: $name trained already ($dir/model.pt)"
      continue
    fi
    read -r yaml sets <<< "$(settings "$name")"
    set_args=()
    for kv in $sets $overrides; do set_args+=(--set "$kv"); done
    log "stage 1: $name ($yaml ${sets}) on $train -> $dir (log: $dir/train.log)"
    start=$SECONDS
    # the progress bar and any error: line go to the terminal, the summary to $dir.log
    speechssl enhance-train --config "$conf_dir/$yaml" --data "$train" --exp "$dir" "${set_args[@]}" \
      > "$dir.log" || die "training $name failed (see $dir/train.log)"
    mark_done "$dir/.done" "$yaml $sets $overrides"
    log "  $name: trained in $((SECONDS - start)) s"
  done
fi

evaluate() {  # evaluate <model> <out> [enhance-eval options]
  local name=$1 out=$2
  shift 2
  if is_done "$out/.done"; then
    log "  $name: scored already ($out/summary.md)"
    return
  fi
  run_logged "$out.log" speechssl enhance-eval --model "$exp/$name/model.pt" --data "$test" \
    --out "$out" --nj "$nj" --label "$name" "$@" || { tail -n 20 "$out.log" >&2; die "scoring $name failed"; }
  mark_done "$out/.done"
  tail -n 1 "$out.log" >&2
}

if stage_on 2; then
  log "stage 2: scoring on $test"
  for name in "${names[@]}"; do
    evaluate "$name" "$exp/$name/test"
  done
  if [[ " ${names[*]} " == *" n2n_shared_hum "* ]]; then
    log "stage 2: the failure case: $test plus hum at $hum_snr dB"
    for name in "${names[@]}"; do
      case $name in noise2noise | noise2clean | n2n_shared_hum)
        evaluate "$name" "$exp/$name/test_hum" --extra-noise hum --extra-snr "$hum_snr" --pictures 0 ;;
      esac
    done
  fi
fi

if stage_on 3 && [ -n "$asr_model" ]; then
  require_file "$asr_model/model.pt" "$asr_model/decode/dev_beam_lm/decode.json" "$test/text"
  first=${names[0]}
  mkdir -p "$exp/asr"
  log "stage 3: $asr_model decodes $test raw and enhanced by $first"
  for variant in raw "$first"; do
    out=$exp/asr/$variant
    if is_done "$out/.done"; then
      log "  $variant: decoded already"
      continue
    fi
    enhance=()
    [ "$variant" = raw ] || enhance=(--enhance "$exp/$variant/model.pt")
    run_logged "$out.log" speechssl asr-decode --model "$asr_model/model.pt" --data "$test" \
      --out "$out" --nj "$nj" --lm "$asr_model/lm/${lm_order}gram/lm.bin" \
      --weights "$asr_model/decode/dev_beam_lm/decode.json" "${enhance[@]}" || { tail -n 20 "$out.log" >&2; die "decoding failed (see $out.log)"; }
    mark_done "$out/.done"
    tail -n 1 "$out.log" >&2
  done
fi

if stage_on 4; then
  speechssl enhance-eval --report "$exp" > /dev/null
  log "stage 4: results in $exp/RESULTS.md"
  cat "$exp/RESULTS.md"
fi
