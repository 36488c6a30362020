#!/usr/bin/env bash
# The 3-class brain MRI table (issue 29; docs/results.md "Brain MRI"): bleed / calcified /
# bleed+calcified on synthetic multi-sequence MRI, the original project's three models side by side.
#   bench/mri_table.sh [OUT]
# 1. Cohorts: training seed 11 (300 studies, 100 per class), unseen seed 12 (150 studies).
# 2. Per model: a patient-grouped 5-fold cross-validation on the training cohort (out-of-fold figures
#    with bootstrap CIs, resampling patients), and one model trained on the whole cohort (10% held out
#    for the epoch and threshold) evaluated on the unseen seed.
# 3. Ablation: the cnn without the SWI phase channel (t1,t2,flair,swi_mag).
# Environment: MODELS (default: cnn unet-ae vgg19), CV_MODELS (default: cnn unet-ae: vgg19 at 128 px
# trains at ~6 images/s on 2 cores, 5 folds would take hours), SIZE (128), EPOCHS (40; VGG_EPOCHS 10),
# THREADS (0).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-mri-table}
bin=${HEMOSCAN_BIN:-build/hemoscan}
models=${MODELS:-cnn unet-ae vgg19}
cv_models=${CV_MODELS:-cnn unet-ae}
size=${SIZE:-128}
epochs=${EPOCHS:-40}
threads=${THREADS:-0}
common=(--modality mr --size "$size" --median 3 --threads "$threads" --seed 1)
mkdir -p "$out"
[ -d "$out/train" ] || "$bin" synth --modality mr --format classes --studies 300 --size 256 --slices 24 --seed 11 --out "$out/train"
[ -d "$out/test" ] || "$bin" synth --modality mr --format classes,dicom --studies 150 --size 256 --slices 24 --seed 12 --out "$out/test"

run() {  # NAME MODEL [extra train options]
    local name=$1 model=$2
    shift 2
    # VGG has no BatchNorm: from random weights 1e-3 diverged (loss 55, then chance); 1e-4, fewer epochs
    # (about 45 s each at 128 px); its head pools avg only.
    local lr=(--lr 3e-3 --pool avgmax --epochs "$epochs")
    [ "$model" = vgg19 ] && lr=(--lr 1e-4 --pool avg --epochs "${VGG_EPOCHS:-10}")
    if [[ " $cv_models " == *" $model "* ]] && [ ! -f "$out/$name/cv/metrics.json" ]; then
        "$bin" cv --data "$out/train/classes" --model "$model" --folds 5 --out "$out/$name/cv" "${common[@]}" "${lr[@]}" "$@"
    fi
    if [ ! -f "$out/$name/unseen/metrics.json" ]; then
        rm -rf "$out/$name/run"
        "$bin" train --data "$out/train/classes" --model "$model" --out "$out/$name/run" --val-fraction 0.1 \
            "${common[@]}" "${lr[@]}" "$@"
        "$bin" evaluate --model "$out/$name/run/model.pt" --data "$out/test/classes" --out "$out/$name/unseen" \
            --threads "$threads"
    fi
}

for model in $models; do run "$model" "$model" --sequences t1,t2,flair,swi_mag,swi_phase; done
run cnn-no-phase cnn --sequences t1,t2,flair,swi_mag

# The table: accuracy, macro precision / recall / F1 [95% CI], and the confusions between each pair
# of classes (sorted: bleed, bleed+calcified, calcified): calcified vs bleed first.
python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
def fmt(m, key):
    v = m[key]; ci = m.get("ci95", {}).get(key)
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
print("| run | set | n | accuracy | macro precision | macro recall | macro F1 | bleed as calcified / calcified as bleed | bleed as b+c / b+c as bleed | calcified as b+c / b+c as calcified |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in sorted(os.listdir(out)):
    for part, label in (("cv", "5-fold CV, seed 11"), ("unseen", "unseen seed 12")):
        f = os.path.join(out, name, part, "metrics.json")
        if not os.path.exists(f): continue
        m = json.load(open(f))["multiclass"]; c = m["confusion"]; n = sum(map(sum, c))
        print(f"| {name} | {label} | {n} | {fmt(m,'accuracy')} | {fmt(m,'macro_precision')} | {fmt(m,'macro_recall')} | "
              f"{fmt(m,'macro_f1')} | {c[0][2]} / {c[2][0]} | {c[0][1]} / {c[1][0]} | {c[2][1]} / {c[1][2]} |")
EOF
