#!/usr/bin/env bash
# ASR self-training, shared by every corpus: teachers -> pseudo-labels -> student -> WER table.
#
#   1 teachers: recipes/asr.sh once per seed in --teacher-seeds (CTC on --labeled, LMs, dev-tuned
#     beam search + rescoring, test decodes) -> <exp>/teacher<seed>; finished asr.sh exp dirs
#     given in --teacher-dirs (e.g. the main recipe's stage 4) join the ensemble as they are
#   2 each teacher decodes <exp>/unlabeled, a copy of --unlabeled without its text (`speechssl
#     data hide-text`: the true text, when the corpus has one, goes to <exp>/unlabeled.text.oracle
#     and is read only to score the pseudo-labels and to train the oracle) (beam search + LM,
#     dev-tuned weights, n-best lists)
#   3 `speechssl pseudo-label`: the teachers' n-best lists combined (--combine), filtered ->
#     <exp>/pseudo (text, utt2weight, pseudo_label.json: what each filter removed, and the
#     pseudo-label WER of what it kept, scored on the unlabeled set's own text when it has one)
#   4 the student: recipes/asr.sh with --unlabeled <exp>/pseudo -> <exp>/student
#   5 <exp>/RESULTS.md: test WER of each teacher and the student, pseudo-label WER per filter,
#     and the word recovery rate when an oracle (--oracle true: trained on the unlabeled set's
#     true text as well) is there: WRR = (WER teacher - WER student) / (WER teacher - WER oracle)
# Each step is guarded by a .done marker (the ASR steps by asr.sh's) and safe to rerun.
#
#   recipes/selftrain.sh --config conf/asr/fbank_blstm.yaml --labeled data/asr/train_labeled \
#     --unlabeled data/asr/train_unlabeled --dev data/asr/dev --test data/asr/test \
#     --lm-text data/asr/lm_text.txt --exp exp/selftrain/fbank
set -euo pipefail
ST_RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly ST_RECIPE_DIR

stage=1
stop_stage=5
config=""            # ASR YAML for teachers and student
upstream=""          # overrides model.upstream for all models
labeled=""           # labeled training data dir (with text)
unlabeled=""         # unlabeled data dir (its text, if any, is only used to score pseudo-labels)
dev=""               # dev data dir
test=""              # test data dirs, space separated
lm_text=""           # LM training text
exp=""               # experiment dir
teacher_seeds="0 1"  # one teacher per seed (an ensemble when more than one)
teacher_dirs=""      # finished recipes/asr.sh exp dirs used as teachers too (e.g. stage 4's)
combine=fusion       # best | fusion | vote (speechssl pseudo-label --combine)
pseudo_opts=""       # extra `speechssl pseudo-label` options, e.g. "--drop-lowest 20"
student_set="data.labeled_ratio=0.5"  # extra student `asr-train --set` values (k=v k=v)
overrides=""         # extra `asr-train --set` values for every model
oracle=false         # also train on the unlabeled set's true text (the WRR's topline)
# passed to recipes/asr.sh for every model (its defaults)
lm_order=3
rescore_order=5
lm_prune="0 0 1"
beam=32
nbest=32
tune_alpha="0.2,0.4,0.6,0.8,1.0,1.5"
tune_beta="0,1,2,3"
nj=2                 # beam-search processes

help_message="Usage: $0 --config YAML --labeled DIR --unlabeled DIR --dev DIR --test 'DIR ...' --lm-text FILE --exp DIR"

. "$ST_RECIPE_DIR/lib/common.sh"
. "$ST_RECIPE_DIR/lib/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument '$1'"
[ -n "$config" ] && [ -n "$labeled" ] && [ -n "$unlabeled" ] && [ -n "$dev" ] && [ -n "$exp" ] \
  || die "--config, --labeled, --unlabeled, --dev and --exp are needed"
require_file "$config" "$labeled/text" "$unlabeled/wav.scp" "$dev/text"
read -r -a seeds <<< "$teacher_seeds"
read -r -a given <<< "$teacher_dirs"
teachers=("${given[@]}")
for seed in "${seeds[@]}"; do teachers+=("$exp/teacher$seed"); done
[ ${#teachers[@]} -gt 0 ] || die "no teacher: give --teacher-seeds and/or --teacher-dirs"
for t in "${given[@]}"; do
  require_file "$t/model.pt" "$t/decode/dev_beam_lm/decode.json" "$t/lm/${lm_order}gram/lm.bin"
done
mkdir -p "$exp"
# the unlabeled set as the teachers and the student see it: no text (the oracle's is set aside)
hidden=$exp/unlabeled
oracle_text=$exp/unlabeled.text.oracle
if ! is_done "$hidden/.done"; then
  if [ -f "$unlabeled/text" ]; then
    speechssl data hide-text "$unlabeled" "$hidden" "$oracle_text" >&2
  else
    rm -f "$oracle_text"
    speechssl data subset "$unlabeled" "$hidden" --first "$(wc -l < "$unlabeled/utt2spk")" >&2
  fi
  mark_done "$hidden/.done"
fi

asr() {  # asr <exp> <extra asr-train --set values> [asr.sh options]
  local dir=$1 sets=$2
  shift 2
  bash "$ST_RECIPE_DIR/asr.sh" --config "$config" ${upstream:+--upstream "$upstream"} \
    --train "$labeled" --dev "$dev" --test "$test" --lm-text "$lm_text" --exp "$dir" \
    --nj "$nj" --lm-order "$lm_order" --rescore-order "$rescore_order" --lm-prune "$lm_prune" \
    --beam "$beam" --nbest "$nbest" --tune-alpha "$tune_alpha" --tune-beta "$tune_beta" \
    --overrides "$overrides $sets" "$@"
}

if stage_on 1; then
  for seed in "${seeds[@]}"; do
    log "stage 1: teacher seed $seed -> $exp/teacher$seed"
    asr "$exp/teacher$seed" "trainer.seed=$seed"
  done
fi

if stage_on 2; then
  for t in "${teachers[@]}"; do
    out=$t/decode/$(basename "$unlabeled")_beam_lm
    if is_done "$out/.done"; then
      log "stage 2: teacher $t decoded $hidden already"
      continue
    fi
    require_file "$t/model.pt" "$t/decode/dev_beam_lm/decode.json"
    log "stage 2: teacher $t decodes $hidden (beam + LM, n-best)"
    run_logged "$out.log" speechssl asr-decode --model "$t/model.pt" --data "$hidden" \
      --out "$out" --nj "$nj" --lm "$t/lm/${lm_order}gram/lm.bin" \
      --weights "$t/decode/dev_beam_lm/decode.json" --nbest 8 || { tail -n 20 "$out.log" >&2; die "decoding $unlabeled failed"; }
    mark_done "$out/.done"
  done
fi

if stage_on 3; then
  if is_done "$exp/pseudo/.done"; then
    log "stage 3: pseudo-labels done already ($exp/pseudo)"
  else
    teacher_args=()
    for t in "${teachers[@]}"; do
      teacher_args+=(--teacher "$t/decode/$(basename "$unlabeled")_beam_lm")
    done
    log "stage 3: pseudo-labels ($combine of ${#teachers[@]} teacher(s)) -> $exp/pseudo"
    # shellcheck disable=SC2086  # pseudo_opts is a list of options
    [ -f "$oracle_text" ] && teacher_args+=(--oracle-text "$oracle_text")  # the report's WER only
    speechssl pseudo-label --data "$hidden" "${teacher_args[@]}" --combine "$combine" \
      --out "$exp/pseudo" $pseudo_opts | tee "$exp/pseudo.log" >&2 \
      || die "pseudo-labelling failed (see $exp/pseudo.log)"
    mark_done "$exp/pseudo/.done" "combine=$combine teachers=${teachers[*]}"
  fi
fi

if stage_on 4; then
  log "stage 4: student on $labeled + $exp/pseudo -> $exp/student"
  asr "$exp/student" "$student_set" --unlabeled "$exp/pseudo"
  if "$oracle"; then
    log "stage 4: oracle on $labeled + $unlabeled (true text) -> $exp/oracle"
    asr "$exp/oracle" "$student_set data.pseudo_confidence=false" --unlabeled "$unlabeled"
  fi
fi

if stage_on 5; then
  python - "$exp" "${teachers[@]}" > "$exp/RESULTS.md.tmp" <<'PY'
import json, sys
from pathlib import Path

exp, teachers = Path(sys.argv[1]), [Path(t) for t in sys.argv[2:]]
def wer(model, name):
    f = model / "decode" / name / "summary.json"
    return json.loads(f.read_text())["wer"] if f.is_file() else None
tests = sorted({p.parent.name for p in exp.glob("student/decode/*_beam_lm_rescore/summary.json")
                if not p.parent.name.startswith("dev")})
models = teachers + [exp / "student"] + ([exp / "oracle"] if (exp / "oracle").is_dir() else [])
print(f"# Self-training: {exp}\n")
print("| decode (beam + LM + rescoring) | " + " | ".join(m.name for m in models) + " | WRR |")
print("|---" * (len(models) + 2) + "|")
for name in tests:
    values = [wer(m, name) for m in models]
    cells = " | ".join("-" if v is None else f"{v:.2f}" for v in values)
    best_teacher = min(v for v in values[: len(teachers)] if v is not None)
    student, oracle = values[len(teachers)], values[-1] if (exp / "oracle").is_dir() else None
    wrr = "-"
    if oracle is not None and student is not None and best_teacher > oracle:
        wrr = f"{100 * (best_teacher - student) / (best_teacher - oracle):.1f}%"
    print(f"| {name} | {cells} | {wrr} |")
report = json.loads((exp / "pseudo" / "pseudo_label.json").read_text())
print("\nPseudo-labels (" + report["config"]["combine"] + f" of {len(report['teachers'])} teacher(s)):\n")
print("| step | removed | kept | pseudo-label WER % |\n|---|---|---|---|")
for r in report["steps"]:
    w = "-" if r["wer"] is None else f"{r['wer']:.2f}"
    print(f"| {r['step']} | {r['removed']} | {r['kept']} | {w} |")
PY
  mv "$exp/RESULTS.md.tmp" "$exp/RESULTS.md"
  log "stage 5: results in $exp/RESULTS.md"
  cat "$exp/RESULTS.md"
fi
