# shellcheck shell=bash
# Helpers shared by the recipe scripts: logging, stage gating, .done markers, atomic outputs,
# parallel jobs with per-job logs, and checks for required files and commands.
# Source it: `. recipes/lib/common.sh`. See recipes/lib/README.md.

# Prints "YYYY-MM-DDTHH:MM:SS (file:line:function) MSG" to stderr, naming the caller that is
# <depth> frames above the function that calls this one.
_log_at() {
  local depth=$1
  shift
  local file=${BASH_SOURCE[depth + 1]:-${0}} line=${BASH_LINENO[depth]:-0}
  local func=${FUNCNAME[depth + 1]:-main}
  printf '%s (%s:%s:%s) %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "${file##*/}" "$line" "$func" "$*" >&2
}

# log MSG...: one line on stderr with the time and the caller's file:line:function.
log() {
  _log_at 1 "$@"
}

# die MSG...: log "ERROR: MSG" and exit 1.
die() {
  _log_at 1 "ERROR: $*"
  exit 1
}

# Like die, for errors in a library function: names the line that called that function.
_die_caller() {
  _log_at 2 "ERROR: $*"
  exit 1
}

# stage_on N: true iff stage <= N <= stop_stage.
stage_on() {
  local n=${1-} v
  [[ $n =~ ^-?[0-9]+$ ]] || _die_caller "stage_on: the stage number must be an integer, got '$n'"
  # Checked before comparing: arithmetic would run code hidden in a value like 'a[$(cmd)]'.
  for v in stage stop_stage; do
    [[ -v $v ]] || _die_caller "stage_on: \$$v is not set (declare stage=... and stop_stage=... before parse_options.sh)"
    [[ ${!v} =~ ^-?[0-9]+$ ]] || _die_caller "stage_on: \$$v must be an integer, got '${!v}' (--${v//_/-})"
  done
  # [ -le ] compares decimal integers ("08" is 8), unlike (( )) which reads it as octal.
  # shellcheck disable=SC2154  # stage and stop_stage are the recipe's options
  [ "$stage" -le "$n" ] && [ "$n" -le "$stop_stage" ]
}

# is_done MARKER: true iff the .done marker exists.
is_done() {
  [[ -f $1 ]]
}

# mark_done MARKER [INFO]: write the marker atomically (temp file in the same folder, then mv),
# so an interrupted write never leaves a marker behind. Content: date and INFO.
mark_done() {
  local marker=$1 info=${2:-} dir tmp
  dir=$(dirname -- "$marker")
  mkdir -p -- "$dir" || _die_caller "mark_done: cannot create folder $dir"
  tmp=$(mktemp "$dir/.${marker##*/}.tmp.XXXXXX") || _die_caller "mark_done: cannot write in $dir"
  if ! printf '%s%s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "${info:+ $info}" >"$tmp" \
    || ! mv -f -- "$tmp" "$marker"; then
    rm -f -- "$tmp"
    _die_caller "mark_done: cannot write $marker"
  fi
}

# atomic_dir_commit TMPDIR FINALDIR: move a stage's finished output folder into place.
# A stage writes into TMPDIR (e.g. "$final.tmp.$$", on the same file system) and commits at the
# end, so a killed stage leaves only TMPDIR, never a half-written FINALDIR that looks complete.
# An older FINALDIR (from an earlier, possibly incomplete run) is removed first.
atomic_dir_commit() {
  (($# == 2)) || _die_caller "usage: atomic_dir_commit TMPDIR FINALDIR"
  local tmp=${1%/} final=${2%/}
  [[ -d $tmp ]] || _die_caller "atomic_dir_commit: $tmp is not a folder (the stage should have written its output there)"
  [[ -n $final && $final != / && $final != . && $final != .. ]] \
    || _die_caller "atomic_dir_commit: refusing to replace '$2'"
  [[ $(cd -- "$tmp" && pwd -P) != $(cd -- "$final" 2>/dev/null && pwd -P) ]] \
    || _die_caller "atomic_dir_commit: $tmp and $final are the same folder"
  if [[ -e $final || -L $final ]]; then
    rm -rf -- "$final" || _die_caller "atomic_dir_commit: cannot remove the old $final"
  fi
  mv -- "$tmp" "$final" || _die_caller "atomic_dir_commit: cannot rename $tmp to $final"
}

# require_file F...: die naming every missing file.
require_file() {
  local f missing=()
  for f in "$@"; do
    [[ -f $f ]] || missing+=("$f")
  done
  ((${#missing[@]} == 0)) && return 0
  _log_at 1 "ERROR: required file(s) not found: ${missing[*]}"
  _log_at 1 "ERROR: check the path, or run the stage that creates them first (see --help for --stage)"
  exit 1
}

# require_cmd C...: die naming every command not found on PATH.
require_cmd() {
  local c missing=()
  for c in "$@"; do
    command -v -- "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  ((${#missing[@]} == 0)) && return 0
  _log_at 1 "ERROR: required command(s) not found on PATH: ${missing[*]}"
  _log_at 1 "ERROR: install them (tools/install_*.sh) or activate the environment that has them (. .venv/bin/activate)"
  exit 1
}

# Quotes words for a shell, leaving the plain ones bare: a copy-pasteable command line.
_shell_quote() {
  local word out=() q="'" IFS=" "
  for word in "$@"; do
    if [[ -n $word && $word != *[!A-Za-z0-9_./:=@%+,-]* ]]; then
      out+=("$word")
    else
      out+=("$q${word//$q/$q\\$q$q}$q")
    fi
  done
  printf '%s\n' "${out[*]}"
}

# The body of one job of run_jobs: `bash -c "$_RUN_JOBS_JOB" run_jobs LOG HEADER CMD ARGS...`.
# The log's footer "# Ended (code N)" is the job's completion record: run_jobs reads the code
# from it, and a log without it belongs to a job that was killed.
# shellcheck disable=SC2016  # expanded by the job's bash, not here
_RUN_JOBS_JOB='
log=$1 header=$2
shift 2
printf "# %s\n# Started at %s\n" "$header" "$(date)" >"$log" || exit 1
"$@" >>"$log" 2>&1 </dev/null
rc=$?
if [ -n "$(tail -c 1 "$log")" ]; then echo >>"$log"; fi
printf "# Accounting: time=%s threads=1\n# Ended (code %s) at %s, elapsed time %s seconds\n" \
  "$SECONDS" "$rc" "$(date)" "$SECONDS" >>"$log"
exit "$rc"
'

declare -ga _RUN_JOBS_PIDS=()
declare -gA _RUN_JOBS_LOG_OF=() # pid -> log of a running job

# On a terminal, redraws one status line: jobs done, elapsed time, and the latest status of each
# running job, i.e. the last line of its log, a progress bar's last redraw included (text after
# the last carriage return). Does nothing when stderr is not a terminal.
_run_jobs_progress() {
  [ -t 2 ] || return 0
  local done_count=$1 total=$2 started=$3 pid line width
  width=$(_term_width)
  line="jobs $done_count/$total done, $(_elapsed "$started")"
  for pid in "${_RUN_JOBS_PIDS[@]}"; do
    line+=" | $(_last_status "${_RUN_JOBS_LOG_OF[$pid]}" "$((width / 2))")"
  done
  printf '\r\033[K%s' "${line:0:$((width - 1))}" >&2
}

_term_width() { echo "${COLUMNS:-$(tput cols 2>/dev/null || echo 120)}"; }
_elapsed() { echo "$(((SECONDS - $1) / 60))m$(((SECONDS - $1) % 60))s"; } # since SECONDS was $1

# _last_status LOG [MAX]: the last non-blank line of LOG (after a carriage return: a progress
# bar's latest redraw), at most MAX characters.
_last_status() {
  local status
  status=$(tail -c 400 "$1" 2>/dev/null | tr '\r' '\n' | grep -v '^[[:space:]]*$' | tail -n 1) || status=""
  echo "${status:0:${2:-400}}"
}

# Drops finished jobs from _RUN_JOBS_PIDS.
_run_jobs_prune() {
  local pid alive=()
  for pid in "${_RUN_JOBS_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
  done
  _RUN_JOBS_PIDS=("${alive[@]}")
}

# _run_jobs_kill SIGNAL: kills every running job with all its processes (each job leads its
# own process group) and notes it at the end of the job's log, where "# Ended" would be.
_run_jobs_kill() {
  local pid
  for pid in "${_RUN_JOBS_PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${_RUN_JOBS_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
    kill -KILL -- "-$pid" 2>/dev/null || true # whatever ignored SIGTERM
    printf '\n# Killed by run_jobs (signal %s) at %s\n' "$1" "$(date)" \
      >>"${_RUN_JOBS_LOG_OF[$pid]}" 2>/dev/null || true
  done
  _RUN_JOBS_PIDS=()
}

# Reports the failed jobs among <first>..<last>, tails of their logs included; 1 if any failed.
_run_jobs_report() {
  local first=$1 last=$2 log_pattern=$3 with_job=$4 j log footer code failed=()
  for ((j = first; j <= last; j++)); do
    log=$log_pattern
    ((with_job)) && log=${log_pattern//JOB/$j}
    footer=$(tail -n 1 "$log" 2>/dev/null) || footer=""
    [[ $footer == "# Ended (code 0) "* ]] || failed+=("$j")
  done
  ((${#failed[@]} == 0)) && return 0
  local shown=$log_pattern
  ((with_job)) && shown=${log_pattern//JOB/*}
  _log_at 2 "run_jobs: ${#failed[@]} / $((last - first + 1)) failed, log is in $shown"
  for j in "${failed[@]}"; do
    log=$log_pattern
    ((with_job)) && log=${log_pattern//JOB/$j}
    footer=$(tail -n 1 "$log" 2>/dev/null) || footer=""
    if [[ $footer =~ ^"# Ended (code "([0-9]+)")" ]]; then
      code="exited with code ${BASH_REMATCH[1]}"
    else
      code="was killed or did not finish (no '# Ended' line)"
    fi
    _log_at 2 "run_jobs: job $j $code; last 20 lines of $log:"
    tail -n 20 "$log" 2>/dev/null | sed 's/^/    /' >&2 || true
  done
  return 1
}

# run_logged [--status FILE] LOG COMMAND [ARGS...]: COMMAND with stdout and stderr to LOG;
# returns its status. On a terminal one line is redrawn every second while it runs (LOG's name,
# elapsed time, the last line of LOG, or of FILE when the command writes its progress there, e.g.
# a Trainer's train.log), so a step that prints only when it ends still shows that it is alive;
# Ctrl-C stops COMMAND too. Off a terminal it is just `COMMAND > LOG 2>&1`.
run_logged() {
  local status=""
  if [[ ${1:-} == --status ]]; then
    status=$2
    shift 2
  fi
  (($# >= 2)) || _die_caller "usage: run_logged [--status FILE] LOG COMMAND [ARGS...]"
  local log=$1 pid rc=0 started=$SECONDS line width old_traps
  shift
  if ! [ -t 2 ]; then
    "$@" >"$log" 2>&1
    return
  fi
  require_cmd setsid
  old_traps=$(trap -p INT TERM)
  setsid "$@" >"$log" 2>&1 &
  pid=$!
  trap 'kill -TERM -- "-$pid" 2>/dev/null; exit 130' INT
  trap 'kill -TERM -- "-$pid" 2>/dev/null; exit 143' TERM
  width=$(_term_width)
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    line="$(basename "$log"): $(_elapsed "$started") | $(_last_status "${status:-$log}")"
    printf '\r\033[K%s' "${line:0:$((width - 1))}" >&2
  done
  printf '\r\033[K' >&2
  wait "$pid" || rc=$?
  trap - INT TERM
  [[ -n $old_traps ]] && eval "$old_traps" # trap -p output, not user input
  return "$rc"
}

# run_jobs [--max-parallel K] [JOB=A:B] LOG COMMAND [ARGS...]
#
# Runs COMMAND once per job index A..B (like Kaldi's run.pl), at most K at a time (default:
# nproc). The literal string JOB in LOG and in every argument is replaced by the job index.
# Each job's stdout+stderr go to its log, between a "# <command>" / "# Started at" header and a
# "# Accounting: time=" / "# Ended (code N) at ..., elapsed time S seconds" footer.
# Without JOB=A:B it runs a single job, with no substitution. COMMAND is an executable run with
# its argv as given (never eval'ed); wrap shell code as `bash -c '...'` explicitly.
# Returns non-zero if any job failed, after printing on stderr each failed job's log path and the
# last 20 lines of its log. SIGINT/SIGTERM/SIGHUP kill all running jobs, then exit.
run_jobs() {
  local max_parallel="" first=1 last=1 with_job=0
  while (($# > 0)); do
    case $1 in
      --max-parallel)
        (($# >= 2)) || _die_caller "run_jobs: --max-parallel needs a value"
        max_parallel=$2
        shift 2
        ;;
      --max-parallel=*)
        max_parallel=${1#*=}
        shift
        ;;
      *) break ;;
    esac
  done
  if [[ ${1:-} == JOB=* ]]; then
    if ! [[ $1 =~ ^JOB=([0-9]+):([0-9]+)$ ]] || [ "${BASH_REMATCH[1]}" -gt "${BASH_REMATCH[2]}" ]; then
      _die_caller "run_jobs: bad job range '$1' (expected JOB=A:B with A <= B, e.g. JOB=1:4)"
    fi
    first=$((10#${BASH_REMATCH[1]}))
    last=$((10#${BASH_REMATCH[2]}))
    with_job=1
    shift
  fi
  (($# >= 2)) || _die_caller "usage: run_jobs [--max-parallel K] [JOB=A:B] LOG COMMAND [ARGS...]"
  local log_pattern=$1
  shift
  if ((with_job && last > first)) && [[ $log_pattern != *JOB* ]]; then
    _die_caller "run_jobs: the log name '$log_pattern' must contain JOB, or the jobs overwrite each other's log"
  fi
  if [[ -z $max_parallel ]]; then
    max_parallel=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
  fi
  if ! [[ $max_parallel =~ ^[0-9]+$ ]] || [ "$max_parallel" -eq 0 ]; then
    _die_caller "run_jobs: --max-parallel must be a positive integer, got '$max_parallel'"
  fi
  require_cmd setsid

  local j arg logs=() cmd
  for ((j = first; j <= last; j++)); do
    logs[j]=$log_pattern
    ((with_job)) && logs[j]=${log_pattern//JOB/$j}
    # A stale log ending in "# Ended (code 0)" would pass for this run's if the job never started.
    if ! mkdir -p -- "$(dirname -- "${logs[j]}")" || ! rm -f -- "${logs[j]}"; then
      _die_caller "run_jobs: cannot create ${logs[j]}"
    fi
  done

  # Jobs run in their own process groups (setsid), so a trap can kill each job's whole tree.
  # Job control would make setsid fork (a group leader cannot start a session): keep it off.
  local had_monitor=0
  [[ $- == *m* ]] && had_monitor=1 && set +m
  local old_traps
  old_traps=$(trap -p INT TERM HUP)
  trap '_run_jobs_kill INT; exit 130' INT
  trap '_run_jobs_kill TERM; exit 143' TERM
  trap '_run_jobs_kill HUP; exit 129' HUP

  _RUN_JOBS_PIDS=()
  _RUN_JOBS_LOG_OF=()
  local started=$SECONDS tick=0 total=$((last - first + 1))
  for ((j = first; j <= last; j++)); do
    while _run_jobs_prune && ((${#_RUN_JOBS_PIDS[@]} >= max_parallel)); do
      sleep 0.1
      ((++tick % 10)) || _run_jobs_progress "$((j - first - ${#_RUN_JOBS_PIDS[@]}))" "$total" "$started"
    done
    cmd=("$@")
    if ((with_job)); then
      cmd=()
      for arg in "$@"; do cmd+=("${arg//JOB/$j}"); done
    fi
    setsid "$BASH" -c "$_RUN_JOBS_JOB" run_jobs "${logs[j]}" "$(_shell_quote "${cmd[@]}")" "${cmd[@]}" &
    _RUN_JOBS_PIDS+=("$!")
    _RUN_JOBS_LOG_OF[$!]=${logs[j]}
  done
  # Finished jobs are reaped by bash as they exit; their codes are read from the logs.
  while _run_jobs_prune && ((${#_RUN_JOBS_PIDS[@]} > 0)); do
    sleep 0.1
    ((++tick % 10)) || _run_jobs_progress "$((total - ${#_RUN_JOBS_PIDS[@]}))" "$total" "$started"
  done
  if [ -t 2 ] && ((SECONDS > started)); then printf '\r\033[K' >&2; fi

  trap - INT TERM HUP
  [[ -n $old_traps ]] && eval "$old_traps" # trap -p output, not user input
  ((had_monitor)) && set -m
  _run_jobs_report "$first" "$last" "$log_pattern" "$with_job"
}
