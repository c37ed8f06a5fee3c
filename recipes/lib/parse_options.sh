# shellcheck shell=bash
# Command-line options for recipe scripts: `--name value` sets the shell variable `name`.
#
# Source it WITHOUT arguments, after declaring every option as a plain variable with its default
# (and optionally `help_message`), so that it consumes the options from the caller's "$@":
#
#   stage=1          # first stage to run
#   stop_stage=100   # last stage to run
#   use_gpu=false    # true/false only, because the default is a boolean
#   help_message="Usage: $0 [options] <data-dir>"
#   . recipes/lib/parse_options.sh
#   [ $# -eq 1 ] || { echo "$help_message" >&2; exit 1; }
#
# Rules:
#   --foo-bar v, --foo_bar v and --foo-bar=v all set foo_bar=v ('-' and '_' are interchangeable).
#   Only variables that are set before sourcing are options; anything else is "invalid option".
#   A variable whose current value is true/false accepts only true or false.
#   --help / -h prints $help_message and the options with their current values, then exits 0.
#   Parsing stops at the first argument that is not an option ("--" is consumed and also stops it);
#   the remaining positional arguments are left in "$@" for the caller to check.
#   There is no `--config FILE`: configs are YAML files read by the Python stages, not shell.
#
# Values are assigned with `printf -v`, never evaluated as code; option names must match
# ^[A-Za-z_][A-Za-z0-9_]*$ before they are looked up.

_po_prog=${0##*/}
# The sourcing script and the line it sources us from: the options are the top-level
# assignments above that line (used to list them, in order, for --help).
_po_caller=${BASH_SOURCE[1]:-}
_po_caller_line=${BASH_LINENO[0]:-0}

# Prints "name<TAB>description" for each option declared in the caller, in file order.
_po_list_options() {
  local line name desc rest
  local -A seen=()
  if [[ -n $_po_caller && -r $_po_caller ]]; then
    local n=0
    while IFS= read -r line || [[ -n $line ]]; do
      n=$((n + 1))
      ((_po_caller_line > 0 && n >= _po_caller_line)) && break
      [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)= ]] || continue
      name=${BASH_REMATCH[1]}
      [[ $name == help_message || $name == _* || -n ${seen[$name]:-} || ! -v $name ]] && continue
      seen[$name]=1
      rest=${line#*=}
      desc=""
      # A trailing "# comment" on the declaration is the option's description.
      [[ $rest =~ [[:space:]]#[[:space:]]*(.*)$ ]] && desc=${BASH_REMATCH[1]}
      printf '%s\t%s\n' "$name" "$desc"
    done <"$_po_caller"
  fi
  if ((${#seen[@]} == 0)); then
    # No readable caller (e.g. bash -c): list the plain, lower-case, non-exported variables.
    while IFS= read -r name; do
      [[ $name =~ ^[a-z][A-Za-z0-9_]*$ && $name != help_message ]] || continue
      [[ $(declare -p "$name" 2>/dev/null) == "declare -- "* ]] || continue
      printf '%s\t\n' "$name"
    done < <(compgen -v)
  fi
}

_po_print_help() {
  local name desc value
  [[ -n ${help_message:-} ]] && printf '%s\n\n' "$help_message"
  echo "Options (--name value or --name=value; '-' and '_' in names are interchangeable):"
  while IFS=$'\t' read -r name desc; do
    value=${!name}
    [[ -z $value || $value =~ [[:space:]] ]] && value="\"$value\""
    if [[ -n $desc ]]; then
      printf '  %-32s # %s\n' "--$name $value" "$desc"
    else
      printf '  %s\n' "--$name $value"
    fi
  done < <(_po_list_options)
}

while (($# > 0)); do
  case $1 in
    --)
      shift
      break
      ;;
    -h | --help)
      _po_print_help
      exit 0
      ;;
    --*=*)
      _po_opt=${1%%=*}
      _po_value=${1#*=}
      shift
      ;;
    --*)
      _po_opt=$1
      if (($# < 2)); then
        echo "$_po_prog: option $_po_opt needs a value" >&2
        exit 1
      fi
      _po_value=$2
      shift 2
      ;;
    -[A-Za-z]*)
      echo "$_po_prog: invalid option $1 (options are long: --name value; see --help)" >&2
      exit 1
      ;;
    *)
      break
      ;;
  esac
  _po_name=${_po_opt#--}
  _po_name=${_po_name//-/_}
  # The name is checked before any lookup: [[ -v ]] and ${!x} evaluate array subscripts.
  if [[ ! $_po_name =~ ^[A-Za-z_][A-Za-z0-9_]*$ || $_po_name == _po_* || ! -v $_po_name ]]; then
    echo "$_po_prog: invalid option $_po_opt" >&2
    exit 1
  fi
  _po_attrs=$(declare -p "$_po_name")
  _po_attrs=${_po_attrs#declare -}
  _po_attrs=${_po_attrs%% *}
  # Readonly, array, nameref and integer variables are not options (assigning an integer
  # variable evaluates the value as arithmetic, i.e. as code).
  if [[ $_po_attrs == *[raAni]* ]]; then
    echo "$_po_prog: invalid option $_po_opt (\$$_po_name is not a plain variable)" >&2
    exit 1
  fi
  if [[ ${!_po_name} == true || ${!_po_name} == false ]] && [[ $_po_value != true && $_po_value != false ]]; then
    echo "$_po_prog: option $_po_opt takes true or false, got '$_po_value'" >&2
    exit 1
  fi
  printf -v "$_po_name" '%s' "$_po_value"
done

unset -f _po_list_options _po_print_help
unset -v _po_prog _po_caller _po_caller_line _po_opt _po_value _po_name _po_attrs
