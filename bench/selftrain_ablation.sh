#!/usr/bin/env bash
# Self-training ablations on a finished recipes/selftrain.sh exp dir (one generation's teachers'
# decodes and pseudo-labels reused): each variant is one more student trained and decoded by
# recipes/asr.sh into <exp>/gen<k>/ablation_<variant>, then one table of dev and test WER beside
# the generation's own student.
#
#   bash bench/selftrain_ablation.sh --exp egs/synth/exp/selftrain/fbank --data egs/synth/data \
#     --variants "soft noisy clean" [--gen 1] [--overrides "trainer.max_updates=3000"]
#   bash bench/selftrain_ablation.sh ... --variants ssl --upstream egs/synth/exp/ssl/hubert_tiny/upstream.pt
#
# Variants: soft (frame-level KL toward the teachers' averaged posteriors instead of CTC on the
# pseudo-label), both (the two losses), noisy (the noisy student: speed 0.9/1.0/1.1 and additive
# noise on half the utterances, on top of SpecAugment and dropout), clean (no input or model
# noise: SpecAugment off, dropout 0), ssl (the student on an SSL upstream, --upstream, with
# conf/asr/ssl_blstm.yaml, instead of FBANK from random init), multi (n-best multi-target: the
# label and the next 2 distinct hypotheses, each weighted by its posterior), sample (the sample
# ensemble: each batch draws one teacher's 1-best per utterance), layerdrop (model noise: a
# residual BiLSTM head whose second layer is skipped in 20% of batches), large (a student larger
# than its teachers: 3 x BiLSTM 192 instead of 2 x 128), cut<N> (a harder confidence cut: the
# lowest N% dropped instead of the recipe's 10%, e.g. cut30). The generation's own student is
# the "hard" row; --overrides should repeat its trainer.max_updates (the recipe's --student-updates).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exp="" data="" gen=1 variants="soft noisy clean" overrides="" upstream="" nj=2
config=$ROOT/egs/synth/conf/asr/fbank_blstm.yaml ssl_config=$ROOT/egs/synth/conf/asr/ssl_blstm.yaml
. "$ROOT/recipes/lib/common.sh"
. "$ROOT/recipes/lib/parse_options.sh"
[ -n "$exp" ] && [ -n "$data" ] || die "--exp and --data are needed"
. "$ROOT/tools/env.sh"
g=$exp/gen$gen
require_file "$g/pseudo/.done" "$g/pseudo/pseudo_label.json"
# derived DIR OPTION...: the generation's pseudo-labels again (same teachers, same combination),
# with more written beside them; the 1-best labels must come out the same (a harder cut: a subset)
derived() {
  local out=$1 t
  shift
  is_done "$out/.done" && return 0
  mapfile -t teachers < <(python -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["teachers"]))' "$g/pseudo/pseudo_label.json")
  combine=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["combine"])' "$g/pseudo/pseudo_label.json")
  args=()
  for t in "${teachers[@]}"; do args+=(--teacher "$t"); done
  [ -f "$exp/unlabeled.text.oracle" ] && args+=(--oracle-text "$exp/unlabeled.text.oracle")
  speechssl pseudo-label --data "$exp/unlabeled" "${args[@]}" --combine "$combine" --out "$out" "$@" >&2
  if [[ " $* " == *" --drop-lowest "* ]]; then
    [ -z "$(comm -23 <(sort "$out/text") <(sort "$g/pseudo/text"))" ] || die "$out: labels not in $g/pseudo"
  else
    cmp -s "$g/pseudo/text" <(grep -v -- '-nb[0-9]* ' "$out/text") || die "$out: other labels than $g/pseudo"
  fi
  mark_done "$out/.done"
}
[[ " $variants " == *" soft "* || " $variants " == *" both "* ]] && derived "$g/pseudo_soft" --soft-targets
[[ " $variants " == *" multi "* ]] && derived "$g/pseudo_multi" --multi-target 3
[[ " $variants " == *" sample "* ]] && derived "$g/pseudo_sample" --combine sample
for v in $variants; do
  [[ $v =~ ^cut([0-9]+)$ ]] && derived "$g/pseudo_$v" --drop-lowest "${BASH_REMATCH[1]}"
done
for v in $variants; do
  case $v in
    soft) sets="data.pseudo_targets=soft" pseudo=$g/pseudo_soft ;;
    both) sets="data.pseudo_targets=both" pseudo=$g/pseudo_soft ;;
    noisy) sets="data.augment.speed=[0.9,1.0,1.1] data.augment.noise_prob=0.5" pseudo=$g/pseudo ;;
    clean) sets="model.dropout=0.0 model.specaug.time_masks=0 model.specaug.feature_masks=0" pseudo=$g/pseudo ;;
    multi) sets="" pseudo=$g/pseudo_multi ;;
    sample) sets="" pseudo=$g/pseudo_sample ;;
    layerdrop) sets="model.residual=true model.layerdrop=0.2" pseudo=$g/pseudo ;;
    large) sets="model.head_layers=3 model.head_dim=192" pseudo=$g/pseudo ;;
    ssl) sets="" pseudo=$g/pseudo ;;
    cut[0-9]*) sets="" pseudo=$g/pseudo_$v ;;
    *) die "unknown variant '$v' (soft both noisy clean multi sample layerdrop large ssl cut<N>)" ;;
  esac
  conf=$config up=()
  if [ "$v" = ssl ]; then
    [ -n "$upstream" ] || die "the ssl variant needs --upstream (an exported upstream.pt)"
    conf=$ssl_config up=(--upstream "$upstream")
  fi
  log "ablation $v: $sets"
  start=$SECONDS
  bash "$ROOT/recipes/asr.sh" --config "$conf" "${up[@]}" --train "$data/asr/train_labeled" \
    --dev "$data/asr/dev" --test "$data/asr/test" --lm-text "$data/asr/lm_text.txt" \
    --exp "$g/ablation_$v" --nj "$nj" --unlabeled "$pseudo" \
    --overrides "$overrides data.labeled_ratio=0.5 $sets"
  log "  ablation $v took $((SECONDS - start)) s"
done
python - "$g" $variants <<'PY'
import json, sys
from pathlib import Path
g = Path(sys.argv[1])
rows = [("student: hard, SpecAugment + dropout", g / "student")]
rows += [(f"student: {v}", g / f"ablation_{v}") for v in sys.argv[2:]]
print("| model | test beam + LM | test rescored | dev beam + LM |\n|---|---|---|---|")
for name, d in rows:
    def wer(n):
        f = d / "decode" / n / "summary.json"
        return f"{json.loads(f.read_text())['wer']:.2f}" if f.is_file() else "-"
    print(f"| {name} | {wer('test_beam_lm')} | {wer('test_beam_lm_rescore')} | {wer('dev_beam_lm')} |")
PY
