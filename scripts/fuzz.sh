#!/usr/bin/env bash
# Fuzzes hemoscan's readers (tests/fuzz/README.md): installs clang and libFuzzer if missing
# (setup.sh --fuzz), configures and builds the fuzz folder with clang (ASan + UBSan; only the modules the
# harnesses need, no LibTorch), then
#   scripts/fuzz.sh                 runs ctest -L fuzz: each harness HEMOSCAN_FUZZ_SECONDS (default 20 s)
#   scripts/fuzz.sh --hours H       runs each harness, one after another, for H hours (decimals allowed)
#       [--jobs N]                  with N processes (libFuzzer -fork=N; default: the number of cores),
#       [--corpus DIR]              growing its corpus in DIR/<harness>/ (default: <build>/fuzz-corpus),
#       [--only NAME]               only fuzz_NAME (dicom, nifti, image, csv, upload; repeatable).
#     A long run goes on after a crash, timeout or out-of-memory; their inputs are collected in
#     DIR/<harness>/artifacts/ and listed at the end (exit 1 when there are any).
#   HEMOSCAN_FUZZ_BUILD_DIR  build folder (default: build-fuzz)
#   CMAKE_BUILD_PARALLEL_LEVEL  compile jobs (cmake's own variable)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

hours="" jobs=$(nproc) corpus="" only=()
while [ $# -gt 0 ]; do
    case "$1" in
        --hours) hours=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --corpus) corpus=$2; shift 2 ;;
        --only) only+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "fuzz.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

build_dir=${HEMOSCAN_FUZZ_BUILD_DIR:-build-fuzz}
# CXX picks the compiler of a fresh folder only (the cache keeps it); tests/fuzz refuses any but clang.
CXX=clang++ HEMOSCAN_BUILD_DIR=$build_dir HEMOSCAN_BUILD_TARGET=fuzz \
    HEMOSCAN_CMAKE_ARGS="-DHEMOSCAN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo" ./scripts/setup.sh --fuzz

if [ -z "$hours" ]; then
    cd "$build_dir"
    exec ctest -L fuzz --output-on-failure -j "$(nproc)"
fi

build_dir=$(cd "$build_dir" && pwd)  # the harnesses run from their corpus folders
corpus=${corpus:-$build_dir/fuzz-corpus}
mkdir -p "$corpus"
corpus=$(cd "$corpus" && pwd)
seconds=$(awk -v h="$hours" 'BEGIN { s = int(h * 3600); if (s < 1) exit 1; print s }') ||
    { echo "fuzz.sh: --hours wants a positive number (got '$hours')" >&2; exit 2; }
harnesses=()
for source in tests/fuzz/fuzz_*.cpp; do
    name=$(basename "$source" .cpp)
    name=${name#fuzz_}
    [ "$name" = support ] && continue
    if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then continue; fi
    harnesses+=("$name")
done
[ ${#harnesses[@]} -gt 0 ] || { echo "fuzz.sh: no harness matches --only ${only[*]}" >&2; exit 2; }

found=0
for name in "${harnesses[@]}"; do
    dir=$corpus/$name
    mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
    echo "fuzz.sh: fuzz_$name for $seconds s with $jobs processes; corpus $dir/corpus, log $dir/fuzz.log"
    # Inside the harness folder: fork mode writes its per-job logs to the working directory. The options
    # are run_harness.sh's (see there why -len_control=0).
    dict=()
    [ -f "tests/fuzz/dicts/$name.dict" ] && dict=(-dict="$root/tests/fuzz/dicts/$name.dict")
    (cd "$dir" && UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} TMPDIR="$dir/tmp" \
        "$build_dir/tests/fuzz/fuzz_$name" -fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 \
        -ignore_ooms=1 -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=8192 -len_control=0 \
        "${dict[@]}" \
        -artifact_prefix="$dir/artifacts/" "$dir/corpus" "$root/tests/fuzz/seeds/$name" > fuzz.log 2>&1) || true
    rm -rf "$dir/tmp"
    # Fork mode's last progress line: executions (#N), coverage, crashes found.
    grep -E "^#[0-9]+: cov" "$dir/fuzz.log" | tail -n 1 || true
    artefacts=$(find "$dir/artifacts" -type f | sort)
    if [ -n "$artefacts" ]; then
        found=1
        echo "fuzz.sh: fuzz_$name found problems (reproduce: $build_dir/tests/fuzz/fuzz_$name FILE):"
        echo "$artefacts" | sed 's/^/  /'
    fi
done
exit "$found"
