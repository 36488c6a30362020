#!/usr/bin/env bash
# Load test of `hemoscan serve` on loopback (issue 28, item 7): a tiny model and inputs made with
# `hemoscan synth` (or MODEL IMAGE SERIES.zip given), a server with a token, then bench/serve_load.py:
# 10,000 requests from 20 clients, 10% malformed or oversized, 4 slow clients; p50/p99 latency,
# answers by status, unanswered requests, peak and final RSS. Bounded: --max-seconds (default 600).
#   bench/serve_load.sh [--model M --image I --series Z] [serve_load.py options, e.g. --requests 2000]
#   HEMOSCAN_BIN (default build/hemoscan), SERVE_OPTS (extra `hemoscan serve` options)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${HEMOSCAN_BIN:-build/hemoscan}
model="" image="" series="" rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model=$2; shift 2 ;;
        --image) image=$2; shift 2 ;;
        --series) series=$2; shift 2 ;;
        *) rest+=("$1"); shift ;;
    esac
done
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2> /dev/null; rm -rf "$tmp"' EXIT
if [ -z "$model" ]; then
    "$bin" --log-level warn synth --out "$tmp/synth" --studies 6 --seed 3 --size 128 --slices 16 --format png,dicom
    "$bin" --log-level warn train --data "$tmp/synth" --model cnn-simple --out "$tmp/run" --size 64 --epochs 1 \
        --batch 8 --threads 1 --workers 1 --augment off > /dev/null 2>&1
    model=$tmp/run/model.pt
    image=$(find "$tmp/synth" -name 'slice*.png' | sort | head -1)
    study=$(dirname "$(find "$tmp/synth" -name '*.dcm' | sort | head -1)")
    (cd "$(dirname "$study")" && python3 -m zipfile -c "$tmp/series.zip" "$(basename "$study")")
    series=$tmp/series.zip
fi
token=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
printf '%s\n' "$token" > "$tmp/token"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086
"$bin" serve --model "$model" --port "$port" --data-dir "$tmp/data" --token-file "$tmp/token" \
    ${SERVE_OPTS:-} > "$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -s "127.0.0.1:$port/health" > /dev/null && break; sleep 0.2; done
echo "hemoscan serve pid $pid on 127.0.0.1:$port ($("$bin" --version 2>/dev/null | head -1)); $(nproc) cores"
status=0
python3 bench/serve_load.py --port "$port" --pid "$pid" --image "$image" --series "$series" --token "$token" \
    "${rest[@]}" || status=$?
kill "$pid"; wait "$pid" 2> /dev/null || true; pid=""
# Request lines: "[info] METHOD PATH STATUS N ms".
echo "server log: $(wc -l < "$tmp/serve.log") lines, $(awk '$4 ~ /^5[0-9][0-9]$/' "$tmp/serve.log" | wc -l) answers with a 5xx status"
exit $status
