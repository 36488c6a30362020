#!/usr/bin/env bash
# Training and inference throughput of each classifier at 128 and 256 px on a data set (default: the
# real head CT set), through the real commands. Training images/s is the mean of epochs 2-3 of the
# training loop (epoch 1 also decodes and caches the images); inference images/s is `hemoscan
# evaluate` over the whole set, loading and preprocessing included.
#   bench/classify_speed.sh [DATA] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/head_ct}
threads=${2:-0}
bin=${HEMOSCAN_BIN:-build/hemoscan}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf "%-12s %5s %18s %18s\n" model size "train images/s" "infer images/s"
for model in cnn cnn-simple cnn-large; do
    for size in 128 256; do
        run=$tmp/$model-$size
        "$bin" --log-level warn train --data "$data" --model "$model" --size "$size" --epochs 3 --patience 0 \
            --threads "$threads" --out "$run" > /dev/null 2>&1
        train=$(awk -F, 'NR>2 {s+=$7; n++} END {printf "%.1f", s/n}' "$run/log.csv")
        infer=$("$bin" --log-level warn evaluate --model "$run/model.pt" --data "$data" --out "$run/eval" \
            --threads "$threads" 2> /dev/null | sed -n 's/.*(\([0-9.]*\) images\/s.*/\1/p')
        printf "%-12s %5s %18s %18s\n" "$model" "$size" "$train" "$infer"
    done
done
