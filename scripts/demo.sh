#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the demo into demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
bin=${HEMOSCAN_BUILD_DIR:-build}/hemoscan
out=${1:-demo-out}
mkdir -p "$out"
"$bin" --version
if "$bin" demo --help > /dev/null 2>&1; then
    exec "$bin" demo --out "$out"
fi
# Until the synthetic-data demo exists: summarise the real head CT set when it is beside the repo.
data=../shared/data/head_ct
if [ -d "$data" ]; then
    "$bin" describe "$data" --out "$out/describe"
    echo "demo: wrote $out/describe/describe.json and $out/describe/describe.png"
else
    echo "demo: no data set found at $data"
fi
