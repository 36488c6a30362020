#!/bin/sh
# One bounded run of a harness, as ctest runs it (tests/fuzz/CMakeLists.txt):
#   run_harness.sh HARNESS SEEDS WORKDIR SECONDS
# over the checked-in SEEDS plus the corpus it grew in earlier runs (WORKDIR/corpus). Crash artefacts
# go to WORKDIR/artifacts and the harness's temporary files to WORKDIR/tmp (removed after the run).
# HEMOSCAN_FUZZ_SECONDS in the environment overrides SECONDS (ctest's timeout is SECONDS + 300 s).
set -u
harness=$1 seeds=$2 work=$3
seconds=${HEMOSCAN_FUZZ_SECONDS:-$4}
mkdir -p "$work/corpus" "$work/artifacts" "$work/tmp"
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} TMPDIR="$work/tmp" \
    "$harness" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds"
status=$?
rm -rf "$work/tmp"
if [ "$status" -ne 0 ]; then
    echo "run_harness: $(basename "$harness") failed (exit $status); reproduce with: $harness $work/artifacts/<file>" >&2
fi
exit "$status"
