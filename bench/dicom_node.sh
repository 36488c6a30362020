#!/usr/bin/env bash
# The DICOM node against a real PACS (issue 30): Debian's Orthanc on loopback; `hemoscan serve
# --dicom-port` with a 256 px 3-window classifier with flip averaging (bench/run.sh's model; random
# weights: the time does not depend on them) and the segmenter architecture of docs/results.md (2.5D
# U-Net, 128 px); DCMTK's storescu as the scanner. Measures, per study, the time from
# the moment storescu has sent the last slice (its association released) to the moment the last of
# hemoscan's objects (SEG, SR, secondary captures) is stored in Orthanc, polled every 50 ms over REST.
#   bench/dicom_node.sh [STUDIES=1] [SLICES=32] [SIZE=512]
#   bench/dicom_node.sh 20      # a burst: 20 studies sent back to back, each from its own storescu
# Prints one line per study and a JSON summary. Needs scripts/setup.sh --tests (orthanc, dcmtk).
set -euo pipefail
cd "$(dirname "$0")/.."
studies=${1:-1}; slices=${2:-32}; size=${3:-512}
bin=$(realpath "${HEMOSCAN_BIN:-build/hemoscan}")
bench=$(realpath "${HEMOSCAN_BENCH:-build/bench/hemoscan-bench}")
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    wait 2> /dev/null || true
    cp "$work/serve.log" "${TMPDIR:-/tmp}/dicom_node_serve.log" 2> /dev/null || true  # for a look afterwards
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(free_port); op=$(free_port); dp=$(free_port); wp=$(free_port)

echo "models and data (not timed)..." >&2
"$bench" make-model --out "$work/cls.pt" --weights "$work/w.pt" --meta "$work/meta.json" --size 256 > /dev/null
"$bin" --log-level warn synth --out "$work/train" --studies 4 --seed 3 --size 256 --slices 8 --p-bleed 1 \
    --format nnunet --threads 2 > /dev/null
# The architecture of docs/results.md's segmentation model (2.5D U-Net, width 0.5, 128 px); one epoch:
# the time does not depend on the weights.
"$bin" --log-level warn train --task segment --data "$work/train/nnunet" --out "$work/seg" --model unet --width 0.5 \
    --depth 4 --window rgb --size 128 --crop-head false --context 1 --epochs 1 --batch 4 --threads 2 > /dev/null 2>&1
"$bin" --log-level warn synth --out "$work/syn" --studies "$studies" --seed 7 --size "$size" --slices "$slices" \
    --p-bleed 0.5 --format dicom --threads 2 > /dev/null

mkdir -p "$work/orthanc/db"
cat > "$work/orthanc/orthanc.json" << EOF
{"Name": "bench", "StorageDirectory": "$work/orthanc/db", "IndexDirectory": "$work/orthanc/db",
 "HttpPort": $op, "DicomPort": $dp, "DicomAet": "ORTHANC", "RemoteAccessAllowed": false,
 "AuthenticationEnabled": false, "Plugins": []}
EOF
/usr/sbin/Orthanc "$work/orthanc/orthanc.json" > "$work/orthanc.log" 2>&1 &
pids+=($!)
"$bin" --log-level "${HEMOSCAN_LOG_LEVEL:-info}" serve --model "$work/cls.pt" --seg-model "$work/seg/model.pt" --port "$hp" \
    --data-dir "$work/data" --dicom-port "$wp" --send-to "ORTHANC@127.0.0.1:$dp" > "$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
    curl -sf "localhost:$op/system" > /dev/null && curl -sf "localhost:$hp/health" > /dev/null && break
    sleep 0.1
done

# Every study from its own storescu, all at once; each one's clock starts when its storescu returns
# (the last slice received and acknowledged) and stops when Orthanc holds its SR: hemoscan sends a
# result's objects in one association in file-name order (sc_*, seg, sr), so the SR comes last.
python3 - "$work" "$op" "$hp" "$wp" << 'EOF_PY'
import glob, json, statistics, subprocess, sys, time, urllib.request
work, op, hp, wp = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def get(url, body=None):
    req = urllib.request.Request(url, data=body.encode() if body else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
folders = sorted(glob.glob(work + "/syn/dicom/study_*"))
t_start = time.time()
senders = {f: subprocess.Popen(["storescu", "-aet", "SCANNER", "-aec", "HEMOSCAN", "127.0.0.1", wp]
                               + sorted(glob.glob(f + "/*.dcm"))) for f in folders}
received, stored = {}, {}
study_of = {}
for f in folders:
    out = subprocess.run(["dcmdump", "+P", "StudyInstanceUID", sorted(glob.glob(f + "/*.dcm"))[0]],
                         capture_output=True, text=True).stdout
    study_of[f] = out.split("[")[1].split("]")[0]
while len(stored) < len(folders):
    now = time.time()
    for f, p in senders.items():
        if f not in received and p.poll() is not None:
            if p.returncode != 0:
                sys.exit(f"storescu failed for {f}")
            received[f] = now
    for f in folders:
        if f in stored or f not in received:
            continue
        q = json.dumps({"Level": "Instance", "Query": {"StudyInstanceUID": study_of[f], "Modality": "SR"}})
        if len(get(f"http://127.0.0.1:{op}/tools/find", q)) >= 1:
            stored[f] = time.time()
            print(f"{f.rsplit('/', 1)[1]}: {stored[f] - received[f]:.2f} s from its last slice to its results in Orthanc",
                  flush=True)
    if time.time() - t_start > 1800:
        sys.exit("timed out")
    time.sleep(0.05)
times = [stored[f] - received[f] for f in folders]
print(json.dumps({"studies": len(folders), "median_s": round(statistics.median(times), 2),
                  "max_s": round(max(times), 2), "all_stored_after_s": round(max(stored.values()) - t_start, 2)}))
EOF_PY
