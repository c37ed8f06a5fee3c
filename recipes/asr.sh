#!/usr/bin/env bash
# ASR stages, shared by every corpus: language models -> CTC training -> decoding -> scoring.
#
#   1 LMs: a word n-gram for shallow fusion (--lm-order) and a higher-order one for n-best
#     rescoring (--rescore-order), built with KenLM's lmplz from --lm-text, binarized
#   2 CTC training on --train (speechssl asr-train; resumes from its last checkpoint)
#   3 dev: greedy, then beam search + LM with (alpha, beta) tuned on dev by grid search, then
#     the rescoring weights tuned on the dev n-best lists
#   4 test sets: greedy, beam + LM (dev-tuned weights), beam + LM + n-best rescoring
#   5 a WER table of every decode dir: <exp>/RESULTS.md
# Each step is guarded by a .done marker and safe to rerun.
#
#   recipes/asr.sh --config conf/asr/fbank_blstm.yaml --train data/asr/train_labeled \
#     --dev data/asr/dev --test data/asr/test --lm-text data/asr/lm_text.txt --exp exp/asr/fbank
set -euo pipefail
ASR_RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly ASR_RECIPE_DIR

stage=1
stop_stage=5
config=""            # ASR YAML (tokenizer, model, trainer, data)
upstream=""          # overrides the config's model.upstream (fbank, upstream.pt, HF folder)
train=""             # training data dir (with text)
unlabeled=""         # pseudo-labelled data dir trained on with --train (self-training)
dev=""               # dev data dir: validation and LM-weight tuning
test=""              # test data dirs, space separated
lm_text=""           # LM training text, one normalised sentence per line
exp=""               # experiment dir
lm_order=3           # first-pass LM order
rescore_order=5      # rescoring LM order
lm_prune="0 0 1"     # lmplz --prune thresholds for the first-pass LM ("" for none)
beam=32
nbest=32             # n-best list size (rescoring re-ranks it)
tune_alpha="0.2,0.4,0.6,0.8,1.0,1.5"  # grid for alpha on dev
tune_beta="0,1,2,3"                   # grid for beta on dev
nj=2                 # beam-search processes
overrides=""         # extra `speechssl asr-train --set` values, space separated (k=v k=v)

help_message="Usage: $0 --config YAML --train DIR --dev DIR --test 'DIR ...' --lm-text FILE --exp DIR"

. "$ASR_RECIPE_DIR/lib/common.sh"
. "$ASR_RECIPE_DIR/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1'"
[ -n "$config" ] && [ -n "$train" ] && [ -n "$dev" ] && [ -n "$exp" ] \
  || die "--config, --train, --dev and --exp are needed"
require_file "$config" "$train/text" "$dev/text"
mkdir -p "$exp"
read -r -a test_dirs <<< "$test"
lm=$exp/lm/${lm_order}gram/lm.bin
rescore_lm=$exp/lm/${rescore_order}gram/lm.bin

if stage_on 1; then
  [ -n "$lm_text" ] || die "--lm-text is needed to build the LMs"
  require_file "$lm_text"
  for order in "$lm_order" "$rescore_order"; do
    dir=$exp/lm/${order}gram
    if is_done "$dir/.done"; then
      log "stage 1: ${order}-gram LM done already"
      continue
    fi
    prune=()
    # shellcheck disable=SC2206  # lm_prune is a list of numbers
    [ "$order" != "$lm_order" ] || [ -z "$lm_prune" ] || prune=(--prune $lm_prune)
    log "stage 1: ${order}-gram LM from $lm_text"
    mkdir -p "$exp/lm"
    speechssl lm build --text "$lm_text" --order "$order" "${prune[@]}" --binary --out "$dir" \
      > "$exp/lm/build_${order}gram.log" 2>&1 \
      || { tail -n 20 "$exp/lm/build_${order}gram.log" >&2; die "LM build failed"; }
    mark_done "$dir/.done" "order=$order"
  done
fi

if stage_on 2; then
  if is_done "$exp/.train.done"; then
    log "stage 2: CTC training done already ($exp/model.pt)"
  else
    set_args=()
    for kv in $overrides; do set_args+=(--set "$kv"); done
    [ -z "$upstream" ] || set_args+=(--upstream "$upstream")
    [ -z "$unlabeled" ] || set_args+=(--unlabeled "$unlabeled")
    log "stage 2: CTC training on $train ($config${upstream:+, upstream $upstream}); log: $exp/train.log"
    # on a terminal, train.log's last line (update, loss, lr) is redrawn on one line
    run_logged --status "$exp/train.log" "$exp/asr_train.out" speechssl asr-train --config "$config" --data "$train" \
      --valid "$dev" --exp "$exp" "${set_args[@]}" \
      || { tail -n 20 "$exp/asr_train.out" >&2; die "ASR training failed"; }
    require_file "$exp/model.pt"
    mark_done "$exp/.train.done" "$(tail -n 1 "$exp/asr_train.out")"
  fi
fi

# decode <data dir> <decode dir> [asr-decode options]: once, guarded by a marker
decode() {
  local data=$1 out=$2
  shift 2
  if is_done "$out/.done"; then
    log "  $out done already: $(head -n 1 "$out/wer.txt" 2>/dev/null || true)"
    return 0
  fi
  run_logged "$out.log" speechssl asr-decode --model "$exp/model.pt" --data "$data" --out "$out" \
    --nj "$nj" "$@" || { tail -n 20 "$out.log" >&2; die "decoding $data failed (see $out.log)"; }
  log "  $(tail -n 1 "$out.log")"
  mark_done "$out/.done"
}

if stage_on 3; then
  log "stage 3: decoding dev ($dev), tuning the LM weights"
  mkdir -p "$exp/decode"
  decode "$dev" "$exp/decode/dev_greedy" --mode greedy
  decode "$dev" "$exp/decode/dev_beam_lm" --lm "$lm" --beam "$beam" --nbest "$nbest" \
    --tune-alpha "$tune_alpha" --tune-beta "$tune_beta"
  # the rescoring weights are tuned too (on the dev n-best lists; the first pass is not redone)
  decode "$dev" "$exp/decode/dev_beam_lm_rescore" --lm "$lm" --beam "$beam" --nbest "$nbest" \
    --weights "$exp/decode/dev_beam_lm/decode.json" --rescore-lm "$rescore_lm" \
    --tune-alpha "$tune_alpha" --tune-beta "$tune_beta"
fi

if stage_on 4; then
  weights=$exp/decode/dev_beam_lm/decode.json
  require_file "$weights"
  for data in "${test_dirs[@]}"; do
    name=$(basename "$data")
    log "stage 4: decoding $data (greedy; beam + ${lm_order}-gram; + ${rescore_order}-gram rescoring)"
    decode "$data" "$exp/decode/${name}_greedy" --mode greedy
    decode "$data" "$exp/decode/${name}_beam_lm" --lm "$lm" --beam "$beam" --nbest "$nbest" \
      --weights "$weights"
    decode "$data" "$exp/decode/${name}_beam_lm_rescore" --lm "$lm" --beam "$beam" \
      --nbest "$nbest" --weights "$exp/decode/dev_beam_lm_rescore/decode.json" \
      --rescore-lm "$rescore_lm"
  done
fi

if stage_on 5; then
  {
    echo "# WER of $exp"
    echo
    echo "| decode dir | WER % | CER % | SER % | words | ins | del | sub |"
    echo "|---|---|---|---|---|---|---|---|"
    python - "$exp"/decode/*/summary.json <<'PY'
import json, os, sys
for f in sys.argv[1:]:
    if not os.path.isfile(f):
        continue
    s = json.load(open(f))
    name = os.path.basename(os.path.dirname(f))
    print(f"| {name} | {s['wer']:.2f} | {s['cer']:.2f} | {s['ser']:.2f} | {s['words']} | "
          f"{s['insertions']} | {s['deletions']} | {s['substitutions']} |")
PY
  } > "$exp/RESULTS.md.tmp"
  mv "$exp/RESULTS.md.tmp" "$exp/RESULTS.md"
  log "stage 5: results in $exp/RESULTS.md"
  cat "$exp/RESULTS.md"
fi
