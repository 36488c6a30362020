#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (ctest, in parallel).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --tests
build_dir=${HEMOSCAN_BUILD_DIR:-build}
cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" "$@"
