#!/usr/bin/env bash
# One process with 2 compute threads against 2 processes with 1 thread each (issue 31), the same
# training otherwise: `cnn` at 128 px on the shared head CT set, batch 32 (global), 3 epochs, no
# validation part. Prints the wall time and training images/s of each (from log.csv).
#   bench/dist_throughput.sh [DATA=../shared/data/head_ct] [EPOCHS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/head_ct}; epochs=${2:-3}
bin=$(realpath "${HEMOSCAN_BIN:-build/hemoscan}")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
common=(--log-level warn train --data "$data" --model cnn --size 128 --batch 32 --epochs "$epochs" --val-fraction 0
        --seed 1 --workers 1)
run() {  # name, extra options
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$bin" "${common[@]}" --out "$work/$name" "$@" > "$work/$name.log" 2>&1
    t1=$(date +%s.%N)
    python3 - "$name" "$t0" "$t1" "$work/$name/log.csv" << 'EOF_PY'
import csv, sys
name, t0, t1, log = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rows = list(csv.DictReader(open(log)))
rates = [float(r["train_images_per_s"]) for r in rows]
print(f"{name}: {t1 - t0:.1f} s wall, training images/s per epoch: {', '.join(f'{x:.1f}' for x in rates)}")
EOF_PY
}
run one-process-2-threads --threads 2
run two-processes-1-thread --threads 1 --nproc-per-node 2
