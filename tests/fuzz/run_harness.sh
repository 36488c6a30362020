#!/bin/sh
# One bounded run of a harness, as ctest runs it (tests/fuzz/CMakeLists.txt):
#   run_harness.sh HARNESS SEEDS WORKDIR SECONDS
# over the checked-in SEEDS plus the corpus it grew in earlier runs (WORKDIR/corpus). Crash artefacts
# go to WORKDIR/artifacts and the harness's temporary files to WORKDIR/tmp (removed after the run).
# HEMOSCAN_FUZZ_SECONDS in the environment overrides SECONDS (ctest's timeout is SECONDS + 300 s).
# Inputs up to 8 KB (the largest seed is 6.5 KB), any length from the start (-len_control=0: libFuzzer's
# slow growth from the seeds' sizes never reached a 256-byte file name in 5 minutes; this did in 12 s).
set -u
harness=$1 seeds=$2 work=$3
seconds=${HEMOSCAN_FUZZ_SECONDS:-$4}
mkdir -p "$work/corpus" "$work/artifacts" "$work/tmp"
set --  # the harness's dictionary (tests/fuzz/dicts/<name>.dict), when it has one
dict="$seeds/../../dicts/$(basename "$seeds").dict"
[ -f "$dict" ] && set -- -dict="$dict"
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} TMPDIR="$work/tmp" \
    "$harness" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=8192 -len_control=0 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" "$seeds"
status=$?
rm -rf "$work/tmp"
if [ "$status" -ne 0 ]; then
    echo "run_harness: $(basename "$harness") failed (exit $status); reproduce with: $harness $work/artifacts/<file>" >&2
fi
exit "$status"
