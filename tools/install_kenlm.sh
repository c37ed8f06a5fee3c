#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary into tools/bin/ from the kenlm PyPI sdist, idempotently.
#
# Uses the same sdist (same version) as the installed `kenlm` Python module, so ARPA/binary
# files written by these programs load in Python. Needs cmake, a C++ compiler and the boost /
# zlib / bz2 / lzma dev packages (tools/install_debian.sh). A rerun is a no-op once the two
# programs exist, run, and match the Python module's version.
#
# Usage: tools/install_kenlm.sh [--force] [--jobs N]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir=$root/tools/bin
build_dir=$root/tools/build
stamp=$bin_dir/.kenlm-version

force=false
jobs=$(nproc 2> /dev/null || echo 2)
while [ $# -gt 0 ]; do
  case $1 in
    --force) force=true ;;
    --jobs) jobs=$2; shift ;;
    -h | --help) sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "[install_kenlm] [ERROR] unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "[install_kenlm] $*"; }
err() { echo "[install_kenlm] [ERROR] $*" >&2; }

# The Python whose pip downloads the sdist and whose kenlm version we match.
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  py=$VIRTUAL_ENV/bin/python
elif [ -x "$root/.venv/bin/python" ]; then
  py=$root/.venv/bin/python
else
  py=$(command -v python3 || true)
fi

# The version of the installed kenlm module ("" when it is not installed: take PyPI's latest).
want_version=""
if [ -n "$py" ]; then
  want_version=$("$py" -c 'import importlib.metadata as m; print(m.version("kenlm"))' \
    2> /dev/null || true)
fi

# lmplz --help and build_binary without arguments print their usage and exit 1; a binary
# whose shared libraries went missing exits 127 without it.
programs_run() {
  [ -x "$bin_dir/lmplz" ] && [ -x "$bin_dir/build_binary" ] || return 1
  local out
  out=$("$bin_dir/lmplz" --help 2>&1 || true)
  [[ $out == *"Kneser-Ney"* ]] || return 1
  out=$("$bin_dir/build_binary" 2>&1 || true)
  [[ $out == *"Usage:"* ]]
}

if ! $force && programs_run && [ -f "$stamp" ] \
    && { [ -z "$want_version" ] || [ "$(cat "$stamp")" = "$want_version" ]; }; then
  log "up to date (kenlm $(cat "$stamp") in $bin_dir)"
  exit 0
fi

# --- prerequisites: say what is missing and how to get it, before spending a minute building.
missing=()
command -v cmake > /dev/null 2>&1 || missing+=("cmake")
cxx=$(command -v c++ || command -v g++ || true)
[ -n "$cxx" ] || missing+=("a C++ compiler (build-essential)")
if [ -n "$cxx" ]; then
  for pair in boost/program_options.hpp:libboost-program-options-dev \
      boost/system/error_code.hpp:libboost-system-dev boost/thread.hpp:libboost-thread-dev \
      boost/test/unit_test.hpp:libboost-test-dev zlib.h:zlib1g-dev bzlib.h:libbz2-dev \
      lzma.h:liblzma-dev; do
    printf '#include <%s>\n' "${pair%%:*}" | "$cxx" -E -x c++ - > /dev/null 2>&1 \
      || missing+=("${pair%%:*} (Debian package ${pair#*:})")
  done
fi
[ -n "$py" ] && "$py" -m pip --version > /dev/null 2>&1 || missing+=("python3 with pip")
if [ "${#missing[@]}" -ne 0 ]; then
  for thing in "${missing[@]}"; do err "missing: $thing"; done
  err "run tools/install_debian.sh (and tools/install_python.sh for pip), then rerun this script"
  exit 1
fi

# --- fetch the sdist the Python module was built from.
mkdir -p "$build_dir" "$bin_dir"
spec=kenlm${want_version:+==$want_version}
log "downloading the $spec sdist into $build_dir"
# --no-binary kenlm, not :all: (that would also build setuptools and cmake from source for
# pip's isolated metadata step); without build isolation when setuptools is already there.
isolation=()
"$py" -c 'import setuptools' 2> /dev/null && isolation=(--no-build-isolation)
"$py" -m pip download -q --no-deps --no-binary kenlm "${isolation[@]}" -d "$build_dir" "$spec" \
  || true  # judged by whether the file arrived, below
# The newest matching sdist in $build_dir, or "" when there is none.
find_sdist() {
  local f newest="" pattern="kenlm-${want_version:-*}.tar.gz"
  # shellcheck disable=SC2086  # $pattern is a glob on purpose
  for f in "$build_dir"/$pattern; do
    if [ -f "$f" ] && { [ -z "$newest" ] || [ "$f" -nt "$newest" ]; }; then newest=$f; fi
  done
  echo "$newest"
}
sdist=$(find_sdist)
if [ -z "$sdist" ]; then
  err "pip could not download the $spec sdist into $build_dir (no network to PyPI?)"
  exit 1
fi
version=$(basename "$sdist" .tar.gz)
version=${version#kenlm-}
src=$build_dir/kenlm-$version
rm -rf "$src"
tar -xzf "$sdist" -C "$build_dir" --no-same-owner
if [ ! -f "$src/CMakeLists.txt" ] || [ ! -d "$src/lm/builder" ]; then
  err "$sdist has no CMakeLists.txt or lm/builder/; cannot build lmplz from it"
  exit 1
fi

# --- configure and build only the two programs.
build_log=$build_dir/kenlm-build.log
log "building lmplz and build_binary (kenlm $version, -j $jobs; log: $build_log)"
start=$SECONDS
if ! { cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release \
         && cmake --build "$src/build" --target lmplz build_binary -j "$jobs"; } \
       > "$build_log" 2>&1; then
  tail -n 25 "$build_log" >&2
  if grep -q -i "Could NOT find Boost\|Could not find a package configuration file provided by \"boost" \
      "$build_log"; then
    err "cmake did not find boost; run tools/install_debian.sh"
  fi
  err "the KenLM build failed; the full log is $build_log"
  exit 1
fi
install -m 755 "$src/build/bin/lmplz" "$src/build/bin/build_binary" "$bin_dir/"
log "built in $((SECONDS - start)) s"

# --- verify: estimate a tiny ARPA and binarize it.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' "the cat sat on the mat" "the dog sat on the log" "a cat and a dog" \
  > "$tmp/corpus.txt"
if ! "$bin_dir/lmplz" -o 2 --discount_fallback -S 64M -T "$tmp" \
      < "$tmp/corpus.txt" > "$tmp/lm.arpa" 2> "$tmp/lmplz.log" \
    || ! grep -q '^ngram 2=' "$tmp/lm.arpa"; then
  cat "$tmp/lmplz.log" >&2
  err "the freshly built lmplz did not write an ARPA file"
  exit 1
fi
if ! "$bin_dir/build_binary" "$tmp/lm.arpa" "$tmp/lm.bin" > "$tmp/build_binary.log" 2>&1 \
    || [ ! -s "$tmp/lm.bin" ]; then
  cat "$tmp/build_binary.log" >&2
  err "the freshly built build_binary could not binarize an ARPA file"
  exit 1
fi
echo "$version" > "$stamp"
log "ok: $bin_dir/lmplz and $bin_dir/build_binary (kenlm $version)"
