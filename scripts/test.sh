#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (ctest, in parallel), then the readers'
# fuzz harnesses for a short time each in their sanitizer build (scripts/fuzz.sh, clang; tests/fuzz).
#   scripts/test.sh [ctest options]   with options (e.g. -R Serve): that ctest selection only, no fuzzing
#   HEMOSCAN_FUZZ_SECONDS   seconds per harness (default 15); HEMOSCAN_SKIP_FUZZ=1 skips them
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --tests
build_dir=${HEMOSCAN_BUILD_DIR:-build}
# One more test than cores: many tests wait on a child process or a socket part of the time.
(cd "$build_dir" && ctest --output-on-failure -j "$(( $(nproc) + 1 ))" "$@")
if [ $# -eq 0 ] && [ "${HEMOSCAN_SKIP_FUZZ:-0}" != 1 ]; then
    HEMOSCAN_FUZZ_SECONDS=${HEMOSCAN_FUZZ_SECONDS:-15} ./scripts/fuzz.sh
fi
