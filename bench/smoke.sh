#!/usr/bin/env bash
# ctest bench_smoke: every hemoscan-bench subcommand runs on a tiny synthetic series and prints its
# JSON line, and the model file that make-model writes for the end-to-end twin is read by
# `hemoscan predict`. Speed is not checked here (bench/run.sh measures it); this keeps the benchmark
# building and running as the library changes. Usage: smoke.sh HEMOSCAN_BENCH HEMOSCAN
set -euo pipefail
bench=$1
hemoscan=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

expect() {  # expect FIELD COMMAND...: the command succeeds and its last line holds "FIELD"
    local field=$1
    shift
    local out
    out=$("$@" 2>&1 | tail -n 1)
    if [[ "$out" != *"\"$field\""* ]]; then
        echo "bench_smoke: '$*' printed no \"$field\": $out" >&2
        exit 1
    fi
    echo "ok: $field <- $*"
}

"$hemoscan" synth --out "$tmp/data" --studies 2 --seed 7 --size 64 --slices 4 --format dicom,png --threads 1 > /dev/null 2>&1
expect cnn_parameters "$bench" info
expect images_per_s "$bench" train --data "$tmp/data" --model cnn --size 32 --batch 4 --steps 1 --warmup 1 --threads 1 --workers 1
expect images_per_s "$bench" train --data "$tmp/data" --model cnn --size 32 --batch 4 --steps 1 --warmup 1 --threads 1 --loading off
expect images_per_s "$bench" train --data "$tmp/data" --model unet --size 32 --batch 2 --steps 1 --warmup 1 --threads 1 --workers 1
expect ms_median "$bench" infer --batch 2 --size 32 --iters 1 --warmup 1 --threads 1
expect slices_per_s "$bench" preprocess --series "$tmp/data/dicom/study_0000" --size 32 --repeat 1 --warmup 0
expect parameters "$bench" make-model --out "$tmp/m/model.pt" --weights "$tmp/m/weights.pt" --meta "$tmp/m/meta.json" --size 32
test -s "$tmp/m/weights.pt" && test -s "$tmp/m/meta.json"
"$hemoscan" predict --model "$tmp/m/model.pt" "$tmp/data/dicom/study_0000" --threads 1 --out "$tmp/p.json" > /dev/null 2>&1
grep -q '"kind": "series"' "$tmp/p.json" && grep -q '"slices"' "$tmp/p.json" ||
    { echo "bench_smoke: predict wrote no series result: $(head -c 300 "$tmp/p.json")" >&2; exit 1; }
echo "bench_smoke: passed"
