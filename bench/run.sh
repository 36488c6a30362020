#!/usr/bin/env bash
# The side-by-side speed benchmark: hemoscan (C++, LibTorch) against the same work written in Python
# PyTorch (bench/python/, run with Debian's /usr/bin/python3 and its default allocator). Prints a
# table (hemoscan | Python | speed-up) and writes bench/results.json with the machine's description.
#
#   bench/run.sh [--quick] [--only LIST] [--build DIR] [--threads N] [--workers N] [--out FILE]
#
#   --quick       fewer steps/iterations (a smoke test; numbers are rougher)
#   --only LIST   comma-separated subset of: train-cnn,train-unet,infer,preprocess,e2e
#   --build DIR   build folder (default: build); hemoscan and bench/hemoscan-bench are built there
#                 first (configured with -DHEMOSCAN_BUILD_BENCH=ON when needed)
#   --threads N   intra-op threads on both sides (default: all cores)
#   --workers N   data-loading workers on both sides (default: 2)
#   --out FILE    results JSON (default: bench/results.json)
# Needs python3-torch, python3-pydicom, python3-opencv, python3-numpy: `scripts/setup.sh --bench`.
# The synthetic data (hemoscan synth) is made once and kept in DIR/bench-data.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cmdline="bench/run.sh $*"

quick=0
only="train-cnn,train-unet,infer,preprocess,e2e"
build=build
threads=$(nproc)
workers=2
out=bench/results.json
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --only) only=$2; shift ;;
        --build) build=$2; shift ;;
        --threads) threads=$2; shift ;;
        --workers) workers=$2; shift ;;
        --out) out=$2; shift ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for part in ${only//,/ }; do
    case "$part" in
        train-cnn | train-unet | infer | preprocess | e2e) ;;
        *) echo "run.sh: --only: unknown part '$part'" >&2; exit 2 ;;
    esac
done
wants() { [[ ",$only," == *",$1,"* ]]; }

py=/usr/bin/python3
if ! "$py" -c 'import torch, pydicom, cv2, numpy' 2> /dev/null; then
    echo "run.sh: $py lacks torch/pydicom/cv2/numpy: run scripts/setup.sh --bench" >&2
    exit 1
fi

hemoscan=$build/hemoscan
bench=$build/bench/hemoscan-bench
# Always brought up to date (a no-op on a built tree), so that stale binaries are never measured.
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHEMOSCAN_BUILD_BENCH=ON > /dev/null
elif ! grep -q '^HEMOSCAN_BUILD_BENCH:BOOL=ON' "$build/CMakeCache.txt"; then
    cmake -S . -B "$build" -DHEMOSCAN_BUILD_BENCH=ON > /dev/null
fi
cmake --build "$build" --target hemoscan hemoscan-bench >&2

# Sizes. Training needs (warmup + steps) x batch slices.
# A U-Net step at 256 px, batch 8, is ~0.5 TFLOP (seconds on 2 cores): few steps, each timed.
if [ "$quick" = 1 ]; then
    cnn_steps=2 cnn_warmup=1 unet_steps=1 unet_warmup=1 infer_iters=5 prep_repeat=1 e2e_repeat=1
else
    cnn_steps=8 cnn_warmup=2 unet_steps=6 unet_warmup=1 infer_iters=20 prep_repeat=3 e2e_repeat=3
fi
studies=10  # x 32 slices = 320 >= (2 + 8) x 32

data=$build/bench-data/synth-$studies
if [ ! -f "$data/manifest.csv" ] || [ ! -d "$data/dicom" ]; then
    echo "run.sh: synthesizing $studies studies (512 px, 32 slices, DICOM + PNG) into $data" >&2
    rm -rf "$data"
    "$hemoscan" --log-level warn synth --out "$data" --studies "$studies" --seed 7 --size 512 --slices 32 \
        --format dicom,png > /dev/null
fi
series=$(find "$data/dicom" -mindepth 1 -maxdepth 1 -type d | sort | head -n 1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/r"

load() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }

# run ID SIDE COMMAND...: runs one measurement, keeps its JSON line (the last line of stdout) and
# the load average before it.
run() {
    local id=$1 side=$2
    shift 2
    local before
    before=$(load)
    echo "run.sh: $id [$side] (load $before)" >&2
    if ! "$@" > "$work/r/$id.$side.out" 2> "$work/r/$id.$side.err"; then
        echo "run.sh: $id [$side] failed:" >&2
        tail -n 20 "$work/r/$id.$side.err" >&2
        echo '{"error": "failed"}' > "$work/r/$id.$side.json"
    else
        tail -n 1 "$work/r/$id.$side.out" > "$work/r/$id.$side.json"
    fi
    echo "$before" > "$work/r/$id.$side.load"
}

hb() { "$bench" --log-level warn "$@"; }
pb() { "$py" bench/python/bench.py "$@"; }

start_load=$(load)
start_uptime=$(uptime)
"$bench" info > "$work/info.hemoscan.json"
"$py" bench/python/bench.py info > "$work/info.python.json"

if wants train-cnn; then
    for loading in on off; do
        args=(--data "$data" --model cnn --size 256 --batch 32 --steps "$cnn_steps" --warmup "$cnn_warmup"
            --loading "$loading" --workers "$workers" --threads "$threads")
        run "train-cnn-$loading" hemoscan hb train "${args[@]}"
        run "train-cnn-$loading" python pb train "${args[@]}"
    done
fi
if wants train-unet; then
    for loading in on off; do
        args=(--data "$data" --model unet --size 256 --batch 8 --steps "$unet_steps" --warmup "$unet_warmup"
            --loading "$loading" --workers "$workers" --threads "$threads")
        run "train-unet-$loading" hemoscan hb train "${args[@]}"
        run "train-unet-$loading" python pb train "${args[@]}"
    done
fi
if wants infer; then
    for batch in 1 32; do
        iters=$infer_iters
        if [ "$batch" = 32 ]; then iters=$(( (infer_iters + 3) / 4 )); fi
        args=(--batch "$batch" --size 256 --iters "$iters" --warmup 2 --threads "$threads")
        run "infer-b$batch" hemoscan hb infer "${args[@]}"
        run "infer-b$batch" python pb infer "${args[@]}"
    done
fi
if wants preprocess; then
    args=(--series "$series" --size 256 --repeat "$prep_repeat")
    run preprocess hemoscan hb preprocess "${args[@]}"
    run preprocess python pb preprocess "${args[@]}"
fi

# e2e SIDE: wall time of whole processes (start-up, model load, reading, preprocessing, forward with
# the flip average, Grad-CAM, writing PNGs and the JSON), one warm-up run then e2e_repeat runs.
e2e() {
    local side=$1 i t0 t1 times=() dir
    for i in $(seq 0 "$e2e_repeat"); do
        dir=$work/e2e-$side-$i
        mkdir -p "$dir"
        t0=$(now)
        if [ "$side" = hemoscan ]; then
            "$hemoscan" --log-level warn predict --model "$work/model.pt" "$series" --heatmap "$dir/heat" \
                --out "$dir/out.json" --threads "$threads" > /dev/null
        else
            "$py" bench/python/predict_series.py --weights "$work/weights.pt" --meta "$work/meta.json" "$series" \
                --heatmap "$dir/heat" --out "$dir/out.json" --threads "$threads" 2> "$dir/stages.json"
        fi
        t1=$(now)
        if [ "$i" -gt 0 ]; then times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')"); fi
    done
    local heatmaps
    heatmaps=$(find "$work/e2e-$side-0/heat" -name '*.png' | wc -l)
    "$py" - "$side" "$heatmaps" "${times[@]}" << 'EOF'
import json, statistics, sys
side, heatmaps, times = sys.argv[1], int(sys.argv[2]), [float(t) for t in sys.argv[3:]]
print(json.dumps({"what": "end to end", "seconds_median": statistics.median(times),
                  "runs_s": [round(t, 3) for t in times], "heatmaps": heatmaps}))
EOF
}
if wants e2e; then
    "$bench" make-model --out "$work/model.pt" --weights "$work/weights.pt" --meta "$work/meta.json" --size 256 \
        > "$work/make-model.json"
    run e2e hemoscan e2e hemoscan
    run e2e python e2e python
fi
end_load=$(load)

mkdir -p "$(dirname "$out")"
"$py" - "$work" "$out" "$root" << EOF
import glob, json, os, platform, subprocess, sys
work, out, root = sys.argv[1], sys.argv[2], sys.argv[3]

def read(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip() or "{}")
    except (OSError, ValueError):
        return {"error": "no result"}

def text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None

# (id, label, key, unit, higher is better)
rows = [("train-cnn-on", "train cnn 256px b32, loading+augment", "images_per_s", "img/s", True),
        ("train-cnn-off", "train cnn 256px b32, compute only", "images_per_s", "img/s", True),
        ("train-unet-on", "train unet 256px b8, loading+augment", "images_per_s", "img/s", True),
        ("train-unet-off", "train unet 256px b8, compute only", "images_per_s", "img/s", True),
        ("infer-b1", "inference cnn batch 1 latency", "ms_median", "ms", False),
        ("infer-b32", "inference cnn batch 32 throughput", "images_per_s", "img/s", True),
        ("preprocess", "DICOM series -> 3 windows -> 256px", "slices_per_s", "slices/s", True),
        ("e2e", "end to end: 32x512^2 series -> probs+heatmaps", "seconds_median", "s", False)]
results = []
for rid, label, key, unit, higher in rows:
    h, p = read(f"{work}/r/{rid}.hemoscan.json"), read(f"{work}/r/{rid}.python.json")
    if not os.path.exists(f"{work}/r/{rid}.hemoscan.json"):
        continue
    hv, pv = h.get(key), p.get(key)
    speedup = None
    if isinstance(hv, (int, float)) and isinstance(pv, (int, float)) and hv > 0 and pv > 0:
        speedup = hv / pv if higher else pv / hv
    results.append({"id": rid, "what": label, "unit": unit, "higher_is_better": higher, "hemoscan": hv,
                    "python": pv, "speedup": speedup, "hemoscan_detail": h, "python_detail": p,
                    "load_before": {"hemoscan": text(f"{work}/r/{rid}.hemoscan.load"),
                                    "python": text(f"{work}/r/{rid}.python.load")}})

# The end-to-end outputs of both sides: the same probabilities (same weights, same preprocessing)?
agreement = None
hj, pj = f"{work}/e2e-hemoscan-0/out.json", f"{work}/e2e-python-0/out.json"
if os.path.exists(hj) and os.path.exists(pj):
    hs, ps = read(hj)[0], read(pj)
    hp = {os.path.basename(s["item"]): [v["probability"] for v in s["result"].values()] for s in hs["slices"]}
    pp = {os.path.basename(s["item"]): list(s["probabilities"].values()) for s in ps["slices"]}
    order_h = [os.path.basename(s["item"]) for s in hs["slices"]]
    order_p = [os.path.basename(s["item"]) for s in ps["slices"]]
    diffs = [abs(a - b) for k in hp if k in pp for a, b in zip(hp[k], pp[k])]
    study = [abs(v["probability"] - ps["result"][k]["probability"]) for k, v in hs["result"].items()]
    agreement = {"slices": [len(hp), len(pp)], "same_order": order_h == order_p,
                 "max_abs_slice_probability_diff": max(diffs) if diffs else None,
                 "max_abs_study_probability_diff": max(study) if study else None}

lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "unknown")
machine = {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") *
           os.sysconf("SC_PHYS_PAGES") / 2**30, 1), "kernel": platform.release(),
           "load_before": "$start_load", "load_after": "$end_load", "uptime_before": "$start_uptime"}
doc = {"command": "$cmdline".strip(), "quick": $quick == 1, "threads": $threads, "workers": $workers,
       "machine": machine, "hemoscan": read(f"{work}/info.hemoscan.json"), "python": read(f"{work}/info.python.json"),
       "python_allocator": "default (glibc malloc); hemoscan links jemalloc",
       "results": results, "e2e_agreement": agreement}
tmp = out + ".tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
os.replace(tmp, out)

def fmt(v):
    if not isinstance(v, (int, float)):
        return "failed"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"

print(f"machine: {model}, {os.cpu_count()} cores, load before {machine['load_before']}, after {machine['load_after']}")
print(f"threads {$threads}, loader workers {$workers}{' (quick)' if $quick else ''}")
w = max(len(r["what"]) for r in results) if results else 10
print(f"{'measurement':<{w}}  {'unit':>8}  {'hemoscan':>9}  {'Python':>9}  {'speed-up':>8}")
for r in results:
    s = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
    print(f"{r['what']:<{w}}  {r['unit']:>8}  {fmt(r['hemoscan']):>9}  {fmt(r['python']):>9}  {s:>8}")
if agreement:
    print(f"end-to-end outputs: {agreement['slices'][0]} slices each, max |p_hemoscan - p_python| per slice "
          f"{agreement['max_abs_slice_probability_diff']:.2g}")
print(f"(speed-up > 1: hemoscan faster)  wrote {out}")
EOF
