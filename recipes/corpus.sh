#!/usr/bin/env bash
# The real-corpus recipe that every egs/<corpus>/run.sh calls with its options (as ESPnet's
# egs2/*/asr1/run.sh call asr.sh):
#   stage 1  data dirs: `speechssl prepare NAME --root CORPUS --out DATA [settings]`, then
#            `speechssl data validate` on every data dir written (DATA/validate.log). Guarded by
#            DATA/.prepare.done, which records the corpus and the settings: a rerun with the same
#            ones skips the stage, a rerun with others is refused.
#   stage 2  SUPERB probing of a frozen upstream, one task at a time (recipes/superb.sh).
# There is no features stage: `speechssl superb` computes the upstream's hidden states (FBANK
# included) itself and caches them in <exp>/cache.
#
# The NAME=VALUE arguments after the options are the preparer's settings, recorded in the marker
# as given and passed as --NAME-WITH-DASHES VALUE; an empty value is left out (the preparer's
# default), true is the flag --NAME-WITH-DASHES alone, false is left out.
#
#   recipes/corpus.sh --prepare voxceleb1 --title VoxCeleb1 --db-var VOXCELEB1 \
#     --where "the folder with wav/, iden_split.txt and veri_test2.txt" --recipe-dir egs/voxceleb1 \
#     --corpus /data/voxceleb1 --tasks sid,sv sv_dev_speakers=40 trials_per_utt=4 seed=0
# shellcheck source-path=SCRIPTDIR  # lets `shellcheck -x` follow lib/*.sh
set -euo pipefail
_recipes_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly _recipes_dir

# shellcheck disable=SC2034  # read by stage_on (lib/common.sh)
stage=1              # first stage to run
# shellcheck disable=SC2034  # read by stage_on (lib/common.sh)
stop_stage=100       # last stage to run
prepare=""           # the preparer: speechssl prepare NAME (librispeech, speech_commands, voxceleb1, ...)
title=""             # the corpus's name in messages (default: the preparer's NAME)
db_var=""            # the variable in <recipe_dir>/db.sh that holds the corpus folder, e.g. VOXCELEB1
where=""             # what --corpus must be and where to download it (said when --corpus is unset)
recipe_dir=""        # the egs/<corpus> folder; --data and --exp are relative to it (default: here)
corpus=""            # the corpus folder as downloaded (a relative one is taken from the current folder)
data=data            # where the data dirs go (relative to recipe_dir)
exp=exp              # SUPERB experiment folder (relative to recipe_dir)
upstream=fbank       # stage 2: speechssl checkpoint, exported upstream, HF or fairseq model, or fbank
tasks=""             # stage 2: SUPERB tasks on this corpus, comma-separated

# shellcheck disable=SC2034  # read by lib/parse_options.sh
help_message="Usage: $0 --prepare NAME --corpus DIR --tasks T1,T2 [options] [SETTING=VALUE ...]
Stages: 1 data dirs (speechssl prepare NAME, then speechssl data validate),
        2 SUPERB probes, one task at a time (recipes/superb.sh).
SETTING=VALUE: a preparer option (--SETTING-WITH-DASHES VALUE; empty or false: left out, true: a flag)."

# shellcheck source=lib/common.sh
. "$_recipes_dir/lib/common.sh"
# shellcheck source=lib/parse_options.sh
. "$_recipes_dir/lib/parse_options.sh"
[ -n "$prepare" ] || die "--prepare NAME is needed: the corpus for speechssl prepare NAME (see --help)"
title=${title:-$prepare}
settings=("$@")
for setting in "${settings[@]}"; do
  [[ $setting =~ ^[a-z][a-z0-9_]*= ]] \
    || die "unexpected argument '$setting' (options are --name value, then the preparer's SETTING=VALUE; see --help)"
done
# a relative --corpus is taken from the current folder (where run.sh was started); everything else
# is relative to the recipe folder
if [ -n "$corpus" ] && [ -d "$corpus" ]; then corpus=$(cd "$corpus" && pwd); fi
recipe_dir=$(cd "${recipe_dir:-.}" && pwd)
cd "$recipe_dir"
# shellcheck source=../tools/env.sh
. "$_recipes_dir/../tools/env.sh"
python=${PYTHON:-python3}

if stage_on 1; then
  marker=$data/.prepare.done
  if [ -z "$corpus" ]; then
    hint="pass --corpus DIR"
    [ -z "$db_var" ] || hint="set $db_var in $recipe_dir/db.sh or $hint"
    die "where is $title? $hint${where:+ ($where)}"
  fi
  want="corpus=$corpus"
  args=(--root "$corpus" --out "$data")
  for setting in "${settings[@]}"; do
    want+=" $setting"
    key=${setting%%=*}
    value=${setting#*=}
    case $value in
      "" | false) ;;
      true) args+=("--${key//_/-}") ;;
      *) args+=("--${key//_/-}" "$value") ;;
    esac
  done
  if is_done "$marker"; then
    [[ "$(tail -n 1 "$marker")" == *" $want" ]] \
      || die "$data was prepared with '$(tail -n 1 "$marker")', not '$want'; remove $data or pass --data elsewhere"
    log "stage 1: data dirs ready already ($want), skipping"
  else
    log "stage 1: data dirs of $title from $corpus into $data"
    "$python" -m speechssl.cli prepare "$prepare" "${args[@]}"
    mapfile -t dirs < <(find "$data" -name wav.scp -not -path '*/split*' -printf '%h\n' | LC_ALL=C sort)
    [ "${#dirs[@]}" -gt 0 ] || die "speechssl prepare $prepare wrote no data dir (no wav.scp) in $data"
    "$python" -m speechssl.cli data validate "${dirs[@]}" >"$data/validate.log" 2>&1 \
      || { grep -E '^ERROR' "$data/validate.log" | head -n 20 >&2; die "invalid data dirs (see $data/validate.log)"; }
    log "stage 1: ${#dirs[@]} data dirs ready in $data"
    mark_done "$marker" "$want"
  fi
fi

if stage_on 2; then
  IFS=, read -r -a task_list <<<"$tasks"
  [ "${#task_list[@]}" -gt 0 ] || log "stage 2: no --tasks, nothing to probe"
  for task in "${task_list[@]}"; do
    [ -n "$task" ] || continue
    log "stage 2: SUPERB $task with upstream $upstream"
    bash "$_recipes_dir/superb.sh" --upstream "$upstream" --tasks "$task" --data "$data" --exp "$exp"
  done
fi
log "done (elapsed ${SECONDS}s)"
