#!/usr/bin/env bash
# Resident memory of a long command over time, and optionally jemalloc's own statistics, to tell
# live memory (allocated) from memory the allocator keeps (dirty pages) when a training grows.
#
# usage: bench/memory_probe.sh [-s STATS_EVERY] SECONDS LOG -- COMMAND [ARGS...]
#   Runs COMMAND under a pseudo-terminal (so hemoscan's progress bar reports every batch) with its
#   output in LOG, prints every 10 s: seconds, resident MB (VmRSS), the progress bar's last "done/total";
#   stops COMMAND after SECONDS. With -s, every STATS_EVERY seconds gdb makes the process call
#   malloc_stats_print (JSON into its own stderr, i.e. LOG); at the end one line per dump summarises
#   jemalloc's stats: allocated (live), resident, retained, dirty, and the largest dirty extent class.
# Needs gdb and python3 for -s. Settings can be given through MALLOC_CONF in the environment.
set -euo pipefail
stats_every=0
if [[ "${1:-}" == "-s" ]]; then stats_every=$2; shift 2; fi
if [[ $# -lt 4 || "$3" != "--" ]]; then
    echo "usage: $0 [-s STATS_EVERY] SECONDS LOG -- COMMAND [ARGS...]" >&2
    exit 2
fi
seconds=$1 log=$2
shift 3
if ! [[ "$seconds" =~ ^[0-9]+$ && "$stats_every" =~ ^[0-9]+$ ]]; then
    echo "$0: SECONDS and STATS_EVERY are whole seconds (got '$seconds', '$stats_every')" >&2
    exit 2
fi
if [[ $stats_every -gt 0 ]] && ! command -v gdb >/dev/null; then
    echo "$0: -s needs gdb (apt-get install gdb)" >&2
    exit 2
fi
cmd=$(printf '%q ' "$@")
script -qfec "exec $cmd" /dev/null >"$log" 2>&1 &
runner=$!
# the command itself is the child of script(1)
pid=""
for _ in $(seq 50); do
    pid=$(pgrep -P "$runner" | head -1 || true)
    [[ -n "$pid" ]] && break
    sleep 0.1
done
if [[ -z "$pid" ]]; then
    echo "$0: the command did not start (see $log)" >&2
    exit 1
fi
for ((t = 10; t <= seconds; t += 10)); do
    sleep 10
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "${t}s: the command ended"
        break
    fi
    rss=$(awk '/VmRSS/{print int($2 / 1024)}' "/proc/$pid/status")
    done_total=$(tail -c 400 "$log" | tr '\r' '\n' | grep -ao '[0-9]*/[0-9]* ' | tail -1 || true)
    echo "${t}s ${rss} MB ${done_total}"
    if [[ $stats_every -gt 0 && $((t % stats_every)) -eq 0 ]]; then
        gdb -q -batch -p "$pid" -ex 'call (void)malloc_stats_print((void(*)(void*,const char*))0, (void*)0, "J")' \
            >/dev/null 2>&1 || echo "  (gdb could not read the stats)"
    fi
done
kill "$pid" 2>/dev/null || true
wait "$runner" 2>/dev/null || true
if [[ $stats_every -gt 0 ]]; then
    python3 - "$log" "$(getconf PAGESIZE)" <<'EOF'
import json, sys
text = open(sys.argv[1], errors="replace").read()
page = int(sys.argv[2])
i = 0
while True:
    i = text.find('{"jemalloc"', i)
    if i < 0:
        break
    try:
        doc, end = json.JSONDecoder().raw_decode(text[i:])
    except json.JSONDecodeError:
        i += 1
        continue
    i += end
    s = doc["jemalloc"]["stats"]
    arenas = {k: a for k, a in doc["jemalloc"]["stats.arenas"].items() if k.isdigit()}  # not merged/destroyed
    dirty = sum(a["pdirty"] for a in arenas.values()) * page
    largest = max((e.get("dirty_bytes", 0) for a in arenas.values() for e in a.get("extents", [])), default=0)
    mb = lambda x: x >> 20
    print(f"jemalloc: allocated {mb(s['allocated'])} MB, resident {mb(s['resident'])} MB, "
          f"retained {mb(s['retained'])} MB, dirty {mb(dirty)} MB, largest dirty class {mb(largest)} MB")
EOF
fi
