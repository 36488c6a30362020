#!/usr/bin/env bash
# Installs the Debian 12 packages hemoscan needs (only those missing), then configures and builds
# into build/. Idempotent: on a built tree with everything installed it takes seconds.
#   HEMOSCAN_BUILD_DIR   build folder (default: build)
#   HEMOSCAN_CMAKE_ARGS  extra arguments for cmake's configure step
#   HEMOSCAN_BUILD_TARGET  the target to build (default: all; demo.sh: hemoscan)
#   --tests              also install what the tests need beyond the build (Python torchvision: parity tests)
#   --bench              also install the packages of bench/run.sh (Python PyTorch, pydicom, perf, gdb)
#   --fuzz               also install clang and libFuzzer (the fuzz build of scripts/fuzz.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    # toolchain
    build-essential cmake ninja-build pkg-config git ca-certificates
    # deep learning: LibTorch (CPU, oneDNN) with OpenBLAS (transposed convs go through BLAS) and jemalloc
    libtorch-dev libopenblas0-pthread libopenblas-dev libjemalloc-dev
    # LibTorch's c10d process groups (distributed training) need Gloo's headers
    libgloo-dev
    # images: OpenCV (2D), DCMTK (DICOM, plus its command-line tools for tests), niftilib (NIfTI)
    libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libdcmtk-dev dcmtk libnifti2-dev zlib1g-dev
    # CLI, JSON, logging, HTTP, storage, archives
    libcli11-dev nlohmann-json3-dev libspdlog-dev libmicrohttpd-dev libcpp-httplib-dev libsqlite3-dev libzip-dev libssl-dev
    # tests and benchmarks
    libgtest-dev libgmock-dev libbenchmark-dev
)

# --bench: also what the speed benchmark against Python PyTorch needs (bench/run.sh): Debian's
# Python PyTorch with pydicom, OpenCV and NumPy, perf for profiling, gdb for bench/memory_probe.sh -s.
for arg in "$@"; do
    case "$arg" in
        # The parity tests build torchvision's models in Python and compare hemoscan's outputs with theirs.
        # The DICOM node's tests: Orthanc as the PACS, dicom3tools' dciodvfy and pydicom check what it writes.
        --tests) PACKAGES+=(python3-torch python3-torchvision curl openssl orthanc dicom3tools python3-pydicom python3-numpy) ;;
        --bench) PACKAGES+=(python3-torch python3-pydicom python3-opencv python3-numpy linux-perf gdb) ;;
        # libFuzzer harnesses with ASan and UBSan (tests/fuzz): Debian 12's clang 14 and its runtime.
        --fuzz) PACKAGES+=(clang libclang-rt-14-dev) ;;
        *) echo "setup.sh: unknown option '$arg' (known: --tests, --bench, --fuzz)" >&2; exit 2 ;;
    esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${#missing[@]} missing package(s): ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# LibTorch links libblas.so.3 through Debian's alternatives: make sure it resolves to OpenBLAS
# (pthread flavour), not the reference BLAS.
openblas=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
if [ -e "$openblas" ] && command -v update-alternatives > /dev/null; then
    current=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 || true)
    if [ "$current" != "$(readlink -f "$openblas")" ]; then
        $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$openblas"
    fi
fi

# ---- hemoscan serve: the web page (web/) ----
# The page's npm packages (its font; playwright-core for the browser test) are installed from
# web/package-lock.json before the build, which embeds them into the binary (web/embed.cmake); the
# browser test drives Debian's Chromium headless. Node.js comes from Debian only when none is installed.
web_missing=()
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed"; then web_missing+=(chromium); fi
if ! command -v node > /dev/null; then web_missing+=(nodejs npm); fi
if [ ${#web_missing[@]} -gt 0 ]; then
    echo "setup: installing ${web_missing[*]} (web page and its browser test)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${web_missing[@]}"
fi
if [ ! -d web/node_modules ] || [ ! -f web/node_modules/.package-lock.json ] ||
    [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    echo "setup: npm ci in web/"
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
# ---- end of the web page block ----

build_dir=${HEMOSCAN_BUILD_DIR:-build}
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DHEMOSCAN_BUILD_BENCH=ON)
if [ "${CI:-}" = "true" ]; then cmake_args+=(-DHEMOSCAN_WERROR=ON); fi
# shellcheck disable=SC2206
cmake_args+=(${HEMOSCAN_CMAKE_ARGS:-})
if [ ! -f "$build_dir/build.ninja" ]; then
    cmake -S . -B "$build_dir" "${cmake_args[@]}"
elif [ -n "${HEMOSCAN_CMAKE_ARGS:-}" ] || [ "${CI:-}" = "true" ]; then
    cmake -S . -B "$build_dir" "${cmake_args[@]}" > /dev/null
fi
# HEMOSCAN_BUILD_TARGET: what to build (default: everything, with the tests and the benchmark);
# demo.sh builds only the hemoscan binary, so that a first run does not wait for the test suite.
target=${HEMOSCAN_BUILD_TARGET:-all}
cmake --build "$build_dir" --target "$target"
echo "setup: built $target in $build_dir"
