#!/usr/bin/env bash
# Installs the Debian packages Tandem needs (only those missing), then configures and builds.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run again (every step is idempotent).
#   TANDEM_BUILD_DIR   build folder (default: build)
#   TANDEM_BUILD_TYPE  CMake build type (default: RelWithDebInfo)
#   TANDEM_SANITIZE    ON builds with ASan+UBSan (default: OFF)
#   TANDEM_CXX_FLAGS   extra compiler flags, e.g. -O1 for a sanitizer build that runs fast enough
set -euo pipefail

TANDEM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TANDEM_BUILD_DIR="${TANDEM_BUILD_DIR:-$TANDEM_ROOT/build}"
TANDEM_BUILD_TYPE="${TANDEM_BUILD_TYPE:-RelWithDebInfo}"
TANDEM_SANITIZE="${TANDEM_SANITIZE:-OFF}"
TANDEM_CXX_FLAGS="${TANDEM_CXX_FLAGS:-}"

tandem_packages=(
  build-essential cmake ninja-build pkg-config
  libcaf-dev libprotobuf-dev protobuf-compiler libsqlite3-dev sqlite3 catch2
  libboost-dev libssl-dev libjwt-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  openssl python3
  libedit-dev  # the client shell's line editing and history
  tmux  # tests only: the shell is driven in a real terminal
  chromium  # tests only: the /status page is checked in a real headless browser
)
# Needed as commands, whatever provides them: a machine may already carry another build of
# Node.js (NodeSource's nodejs bundles npm and conflicts with Debian's npm package).
tandem_commands=(node:nodejs npm:npm)

tandem_install_packages() {
  local missing=()
  for p in "${tandem_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  for c in "${tandem_commands[@]}"; do
    command -v "${c%%:*}" >/dev/null 2>&1 || missing+=("${c#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing missing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

tandem_build() {
  local jobs
  jobs="$(nproc 2>/dev/null || echo 2)"
  cmake -S "$TANDEM_ROOT" -B "$TANDEM_BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE="$TANDEM_BUILD_TYPE" -DTANDEM_SANITIZE="$TANDEM_SANITIZE" \
    -DCMAKE_CXX_FLAGS="$TANDEM_CXX_FLAGS" >&2
  cmake --build "$TANDEM_BUILD_DIR" -j "$jobs" >&2
}

tandem_install_packages
tandem_build
