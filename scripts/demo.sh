#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the demo:
# synthetic head CT -> train -> evaluate on held-out studies -> predict a DICOM series -> report.
#   ./scripts/demo.sh [OUT]   (default OUT: demo-out; extra arguments go to `hemoscan demo`)
set -euo pipefail
cd "$(dirname "$0")/.."
# Only the binary: the tests and the benchmark are test.sh's to build.
HEMOSCAN_BUILD_TARGET=hemoscan ./scripts/setup.sh
out=${1:-demo-out}
shift || true
# --overwrite: running the demo again replaces the previous one.
exec "${HEMOSCAN_BUILD_DIR:-build}/hemoscan" demo --out "$out" --overwrite "$@"
