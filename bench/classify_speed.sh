#!/usr/bin/env bash
# Training and inference throughput of each classifier at 128 and 256 px on a data set (default: the
# real head CT set), through the real commands. Training images/s is the mean of the epochs after the
# first (epoch 1 also decodes and caches the images); inference images/s is `hemoscan evaluate` over
# the whole set, loading and preprocessing included.
#   bench/classify_speed.sh [DATA] [THREADS]
# Environment: MODELS (default: cnn cnn-simple cnn-large), SIZES (128 256), EPOCHS (3, at least 2),
# BATCH (the train default, 32). The large ImageNet architectures (vgg19 at 256 px: ~1 image/s on 2
# cores) are best timed on a subset: DATA=a folder with fewer images, EPOCHS=2.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/head_ct}
threads=${2:-0}
models=${MODELS:-cnn cnn-simple cnn-large}
sizes=${SIZES:-128 256}
epochs=${EPOCHS:-3}
batch=${BATCH:-32}
bin=${HEMOSCAN_BIN:-build/hemoscan}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf "%-16s %5s %18s %18s\n" model size "train images/s" "infer images/s"
for model in $models; do
    for size in $sizes; do
        run=$tmp/$model-$size
        "$bin" --log-level warn train --data "$data" --model "$model" --size "$size" --epochs "$epochs" --patience 0 \
            --batch "$batch" --threads "$threads" --out "$run" > /dev/null 2>&1
        train=$(awk -F, 'NR==1 {for (i = 1; i <= NF; i++) if ($i == "train_images_per_s") c = i}
                         NR>2 {s+=$c; n++} END {printf "%.1f", s/n}' "$run/log.csv")
        infer=$("$bin" --log-level warn evaluate --model "$run/model.pt" --data "$data" --out "$run/eval" \
            --threads "$threads" 2> /dev/null | sed -n 's/.*(\([0-9.]*\) images\/s.*/\1/p')
        printf "%-16s %5s %18s %18s\n" "$model" "$size" "$train" "$infer"
    done
done
