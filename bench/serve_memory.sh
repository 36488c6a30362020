#!/usr/bin/env bash
# RSS of `hemoscan serve` before and after a burst of uploads of a DICOM series zip, and 5 and 20 s
# later: whether the server gives freed memory back (issue 28). Loopback only.
#   bench/serve_memory.sh MODEL SERIES.zip [PORT] [serve options, e.g. --memory-decay-ms 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1; zip=$2; port=${3:-18090}; shift $(( $# >= 3 ? 3 : $# ))
bin=${HEMOSCAN_BIN:-build/hemoscan}
data=$(mktemp -d)
trap 'kill $pid 2> /dev/null || true; rm -rf "$data"' EXIT
"$bin" --log-level warn serve --model "$model" --port "$port" --data-dir "$data/d" --compute-threads 1 "$@" \
    > "$data/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -s "localhost:$port/health" > /dev/null && break; sleep 0.2; done
rss() { awk '/VmRSS/ {printf "%.0f MB", $2 / 1024}' "/proc/$pid/status"; }
echo "idle: $(rss)"
for _ in 1 2 3; do
    curl -s -o /dev/null -w "%{http_code} " -F "file=@$zip;type=application/zip" "localhost:$port/api/predict"
done
echo
echo "after 3 uploads: $(rss)"
sleep 5; echo "+5 s: $(rss)"
sleep 15; echo "+20 s: $(rss)"
