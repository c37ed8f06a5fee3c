#!/usr/bin/env bash
# Install the Debian packages speechssl needs (synthesizers, sox, KenLM build deps), idempotently.
#
# Checks with dpkg-query first and touches apt only when something is missing, so a rerun is a
# no-op. Needs root (or prints the sudo line to run). For tests, SPEECHSSL_DEBIAN_PACKAGES
# overrides the package list and SPEECHSSL_ASSUME_NONROOT=1 pretends not to be root.
#
# Usage: tools/install_debian.sh
set -euo pipefail

log() { echo "[install_debian] $*"; }
err() { echo "[install_debian] [ERROR] $*" >&2; }

default_packages="espeak-ng flite sox cmake build-essential
  libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
  zlib1g-dev libbz2-dev liblzma-dev"
# read -d '' splits on newlines too; it returns 1 at end of input, hence || true.
read -r -d '' -a packages <<< "${SPEECHSSL_DEBIAN_PACKAGES:-$default_packages}" || true

is_installed() {
  command -v dpkg-query > /dev/null 2>&1 \
    && [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2> /dev/null)" = "installed" ]
}

missing=()
for pkg in "${packages[@]}"; do
  is_installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "up to date (${#packages[@]} packages installed)"
  exit 0
fi

log "missing: ${missing[*]}"

if ! command -v apt-get > /dev/null 2>&1; then
  err "this is not a Debian/Ubuntu system (no apt-get); install these by hand with your"
  err "package manager: ${missing[*]}"
  err "(they provide: espeak-ng, flite and sox executables; cmake, a C++ compiler, and the"
  err " boost program_options/system/thread/test, zlib, bzip2 and lzma headers for KenLM)"
  exit 1
fi

if [ "$(id -u)" -ne 0 ] || [ "${SPEECHSSL_ASSUME_NONROOT:-0}" = "1" ]; then
  err "not running as root, cannot install: ${missing[*]}"
  err "run:  sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  err "then rerun tools/install_debian.sh"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -qq
log "apt-get install ${missing[*]}"
apt-get install -y -qq "${missing[@]}"

# Verify: every package now installed, and the synthesizers actually run.
still=()
for pkg in "${missing[@]}"; do
  is_installed "$pkg" || still+=("$pkg")
done
if [ "${#still[@]}" -ne 0 ]; then
  err "apt-get finished but these are still not installed: ${still[*]}"
  exit 1
fi
for pkg in "${missing[@]}"; do
  case $pkg in
    espeak-ng) espeak-ng --version > /dev/null || { err "espeak-ng is installed but does not run"; exit 1; } ;;
    flite) flite -lv > /dev/null || { err "flite is installed but does not run"; exit 1; } ;;
    sox) sox --version > /dev/null || { err "sox is installed but does not run"; exit 1; } ;;
  esac
done
log "ok: installed ${missing[*]}"
