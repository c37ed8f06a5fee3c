#!/usr/bin/env bash
# ASR self-training, shared by every corpus: teachers -> pseudo-labels -> student, for K
# generations (the student of one is the teacher of the next) -> one WER table.
#
#   1 teachers: recipes/asr.sh once per seed in --teacher-seeds (CTC on --labeled, LMs, dev-tuned
#     beam search + rescoring, test decodes) -> <exp>/gen1/teacher<seed>; finished asr.sh exp
#     dirs given in --teacher-dirs (e.g. the main recipe's stage 4) join the ensemble as they are
#   then for each generation k = 1..K (--generations), in <exp>/gen<k> (teachers.txt: its
#   teachers; generation k > 1 has one, <exp>/gen<k-1>/student):
#   2 each teacher decodes <exp>/unlabeled, a copy of --unlabeled without its text (`speechssl
#     data hide-text`: the true text, when the corpus has one, goes to <exp>/unlabeled.text.oracle
#     and is read only to score the pseudo-labels and to train the oracle) (beam search + LM,
#     dev-tuned weights, n-best lists; --rescore true: re-ranked by the --rescore-order LM with
#     the teacher's dev-tuned rescoring weights)
#   3 `speechssl pseudo-label`: the teachers' n-best lists combined (--combine), filtered ->
#     <exp>/gen<k>/pseudo (text, utt2weight, pseudo_label.json: what each filter removed, and
#     the pseudo-label WER of what it kept, scored on the hidden text when there is one)
#   4 the student: recipes/asr.sh with --unlabeled <exp>/gen<k>/pseudo, from random init,
#     --student-updates updates (default twice the teacher's) -> <exp>/gen<k>/student; after
#     the last generation the oracle (--oracle true: the unlabeled set's true text, the same
#     recipe) -> <exp>/oracle, and <exp>/final -> gen<K>/student (`speechssl transcribe --model`)
#   5 `speechssl selftrain-report`: <exp>/RESULTS.md (per generation: greedy, beam + LM and
#     rescored WER on dev and test, pseudo-label WER and filter counts, and with an oracle
#     WRR = (WER teacher - WER student) / (WER teacher - WER oracle)), results.json and
#     wer_per_generation.png
# Each step is guarded by a .done marker (the ASR steps by asr.sh's) and safe to rerun; a killed
# run resumes where it stopped (a model's training from its last checkpoint).
#
#   recipes/selftrain.sh --config conf/asr/fbank_blstm.yaml --labeled data/asr/train_labeled \
#     --unlabeled data/asr/train_unlabeled --dev data/asr/dev --test data/asr/test \
#     --lm-text data/asr/lm_text.txt --exp exp/selftrain/fbank --generations 2
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
combine=fusion       # best | fusion | vote | sample (speechssl pseudo-label --combine)
rescore=false        # pseudo-labels from n-best lists re-ranked by each teacher's --rescore-order LM
pseudo_opts=""       # extra `speechssl pseudo-label` options, e.g. "--drop-lowest 20"
student_set="data.labeled_ratio=0.5"  # extra student `asr-train --set` values (k=v k=v)
overrides=""         # extra `asr-train --set` values for every model
oracle=false         # also train on the unlabeled set's true text (the WRR's topline)
generations=1        # K: generation k > 1's teacher is generation k-1's student
student_updates=2x   # the student's and oracle's trainer.max_updates: N, or Fx = F x the teacher's
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
for seed in "${seeds[@]}"; do teachers+=("$exp/gen1/teacher$seed"); done
[ ${#teachers[@]} -gt 0 ] || die "no teacher: give --teacher-seeds and/or --teacher-dirs"
[[ $generations =~ ^[1-9][0-9]*$ ]] || die "--generations must be a positive integer, found '$generations'"
[[ $rescore == true || $rescore == false ]] || die "--rescore must be true or false, found '$rescore'"
# a teacher's decode of the hidden set: first-pass n-best lists, or re-ranked by the larger LM
pl_decode=$(basename "$unlabeled")_beam_lm
pl_weights=dev_beam_lm/decode.json
pl_rescore_lm=""  # relative to the teacher's exp dir
if "$rescore"; then
  pl_decode+=_rescore
  pl_weights=dev_beam_lm_rescore/decode.json
  pl_rescore_lm=lm/${rescore_order}gram/lm.bin
fi
teacher_files() {  # what teacher $1 needs to decode the hidden set
  echo "$1/model.pt" "$1/decode/$pl_weights" "$1/lm/${lm_order}gram/lm.bin" ${pl_rescore_lm:+"$1/$pl_rescore_lm"}
}
for t in "${given[@]}"; do
  # shellcheck disable=SC2046  # teacher_files prints paths without spaces or one per word
  require_file $(teacher_files "$t")
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
    log "stage 1: teacher seed $seed -> $exp/gen1/teacher$seed"
    asr "$exp/gen1/teacher$seed" "trainer.seed=$seed"
  done
fi

# the student's (and the oracle's) trainer.max_updates: --student-updates N, or F times the
# first teacher's (its config.yaml) for "Fx", in every generation: more data, more updates
baseline=${teachers[0]}
student_max_updates() {
  local cfg=$baseline/config.yaml
  case $student_updates in
    "") return 0 ;;
    *x)
      require_file "$cfg"
      python -c 'import sys, yaml
n = yaml.safe_load(open(sys.argv[1]))["trainer"]["max_updates"]
print(round(float(sys.argv[2]) * n))' "$cfg" "${student_updates%x}" \
        || die "--student-updates $student_updates: no trainer.max_updates in $cfg"
      ;;
    *[!0-9]*) die "--student-updates must be N or Fx (e.g. 3000 or 2x), found '$student_updates'" ;;
    *) echo "$student_updates" ;;
  esac
}

for ((k = 1; k <= generations; k++)); do
  gen=$exp/gen$k
  if [ "$k" -gt 1 ]; then
    teachers=("$exp/gen$((k - 1))/student")  # the student becomes the next teacher
  fi
  mkdir -p "$gen"
  printf '%s\n' "${teachers[@]}" > "$gen/teachers.txt.tmp" && mv "$gen/teachers.txt.tmp" "$gen/teachers.txt"

  if stage_on 2; then
    # the hidden set in --nj shards by speaker, once; each teacher decodes shard JOB in its own
    # job (log: <decode dir>.shards/log/decode.JOB.log), finished shards kept over a kill
    if ! is_done "$hidden/shards.done"; then
      mapfile -t parts < <(speechssl data split -n "$nj" "$hidden")
      [ ${#parts[@]} -gt 0 ] || parts=("$hidden")  # one speaker, or --nj 1: no split
      printf '%s\n' "${parts[@]}" > "$hidden/shards.txt"
      mark_done "$hidden/shards.done"
    fi
    mapfile -t parts < "$hidden/shards.txt"
    for t in "${teachers[@]}"; do
      out=$t/decode/$pl_decode
      if is_done "$out/.done"; then
        log "stage 2 (gen $k): teacher $t decoded $hidden already"
        continue
      fi
      # shellcheck disable=SC2046
      require_file $(teacher_files "$t")
      log "stage 2 (gen $k): teacher $t decodes $hidden in ${#parts[@]} job(s) (beam + LM, n-best${pl_rescore_lm:+, rescored})"
      shards=$out.shards
      mkdir -p "$shards/log"
      part=${parts[0]}
      [ ${#parts[@]} -eq 1 ] || part=$(dirname "$part")/JOB  # <hidden>/split<N>/JOB
      run_jobs --max-parallel "$nj" JOB=1:${#parts[@]} "$shards/log/decode.JOB.log" \
        bash "$ST_RECIPE_DIR/lib/once.sh" "$shards/JOB/.done" speechssl asr-decode \
        --data "$part" --model "$t/model.pt" --out "$shards/JOB" --nj 1 --lm "$t/lm/${lm_order}gram/lm.bin" \
        --weights "$t/decode/$pl_weights" --nbest 8 ${pl_rescore_lm:+--rescore-lm "$t/$pl_rescore_lm"} \
        || die "decoding $hidden with $t failed (logs: $shards/log)"
      dirs=()
      for ((j = 1; j <= ${#parts[@]}; j++)); do dirs+=("$shards/$j"); done
      speechssl merge-decodes --out "$out" "${dirs[@]}" >&2
      mark_done "$out/.done"
    done
  fi

  if stage_on 3; then
    if is_done "$gen/pseudo/.done"; then
      log "stage 3 (gen $k): pseudo-labels done already ($gen/pseudo)"
    else
      teacher_args=()
      for t in "${teachers[@]}"; do
        teacher_args+=(--teacher "$t/decode/$pl_decode")
      done
      log "stage 3 (gen $k): pseudo-labels ($combine of ${#teachers[@]} teacher(s)) -> $gen/pseudo"
      [ -f "$oracle_text" ] && teacher_args+=(--oracle-text "$oracle_text")  # the report's WER only
      # shellcheck disable=SC2086  # pseudo_opts is a list of options
      speechssl pseudo-label --data "$hidden" "${teacher_args[@]}" --combine "$combine" \
        --out "$gen/pseudo" $pseudo_opts | tee "$gen/pseudo.log" >&2 \
        || die "pseudo-labelling failed (see $gen/pseudo.log)"
      mark_done "$gen/pseudo/.done" "combine=$combine teachers=${teachers[*]}"
    fi
  fi

  if stage_on 4; then
    updates=$(student_max_updates)
    log "stage 4 (gen $k): student on $labeled + $gen/pseudo${updates:+, $updates updates} -> $gen/student"
    asr "$gen/student" "${updates:+trainer.max_updates=$updates} $student_set" --unlabeled "$gen/pseudo"
  fi
done

if stage_on 4; then
  if "$oracle"; then
    updates=$(student_max_updates)
    log "stage 4: oracle on $labeled + $unlabeled (true text) -> $exp/oracle"
    asr "$exp/oracle" "${updates:+trainer.max_updates=$updates} $student_set data.pseudo_confidence=false" \
      --unlabeled "$unlabeled"
  fi
  # the last generation's student, for `speechssl transcribe --model <exp>/final`
  ln -sfn "gen$generations/student" "$exp/.final.tmp" && mv -fT "$exp/.final.tmp" "$exp/final"
fi

if stage_on 5; then
  speechssl selftrain-report "$exp" >&2 || die "the report of $exp failed"
  log "stage 5: results in $exp/RESULTS.md, $exp/wer_per_generation.png"
fi
