#!/usr/bin/python3
"""The Python twin of `hemoscan predict --model M SERIES --heatmap DIR --out FILE.json`: one DICOM series
-> per-slice probabilities (with the left-right flip average the model was validated with), a study
result (max over slices per label) and a Grad-CAM overlay PNG per slice (of its most probable label).
Written as a PyTorch user would: pydicom + numpy + cv2, one batched forward for the features, autograd
for the Grad-CAM weights. Weights come from `hemoscan-bench make-model` (the same model file hemoscan
reads), so both sides compute the same numbers.

  predict_series.py --weights W.pt --meta META.json SERIES --heatmap DIR --out FILE.json [--threads 2]
"""
import argparse
import json
import os
import sys
import time

T_START = time.perf_counter()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import series  # noqa: E402


def overlay(image, cam, alpha=0.4):
    """hemoscan's overlay_heatmap: out = (1 - alpha cam) image + alpha cam jet(cam), 8-bit BGR."""
    w = np.clip(cam, 0.0, 1.0)
    cam8 = np.clip(np.rint(w * 255.0), 0, 255).astype(np.uint8)
    heat = cv2.applyColorMap(cam8, cv2.COLORMAP_JET).astype(np.float32)
    w3 = (w * alpha)[..., None]
    base = image.astype(np.float32)
    return np.clip(np.rint(base + w3 * (heat - base)), 0, 255).astype(np.uint8)


def shown(image):
    """The three windows as BGR, min-max to 8-bit: what the model saw."""
    bgr = image[..., ::-1]
    lo, hi = float(bgr.min()), float(bgr.max())
    scale = 255.0 / (hi - lo) if hi > lo else 1.0
    return np.clip(np.rint((bgr - lo) * scale), 0, 255).astype(np.uint8)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("series")
    p.add_argument("--weights", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--heatmap", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    t_imported = time.perf_counter()

    torch.set_num_threads(a.threads)
    with open(a.meta) as f:
        meta = json.load(f)
    labels, thresholds, size = meta["labels"], meta["thresholds"], meta["preprocess"]["size"]
    model = models.Cnn(in_channels=3, num_outputs=len(labels))
    model.load_state_dict(torch.load(a.weights))
    model.eval()
    t_model = time.perf_counter()

    slices = series.load_series(a.series, size)
    x = torch.from_numpy(np.stack([img for _, img in slices])).permute(0, 3, 1, 2).contiguous()
    t_pre = time.perf_counter()

    # Features once (no graph through the convolutions), the head with autograd for Grad-CAM.
    with torch.no_grad():
        feats = model.features(x)
    feats.requires_grad_(True)
    logits = model.head(feats)
    probs = torch.sigmoid(logits)
    with torch.no_grad():
        probs = (0.5 * (probs + torch.sigmoid(model(x.flip(3))))).detach()
    top = probs.argmax(1)
    grad, = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), feats)
    with torch.no_grad():
        cams = torch.relu((grad.mean((2, 3), keepdim=True) * feats).sum(1)).numpy()
    t_model_run = time.perf_counter()

    folder = os.path.join(a.heatmap, os.path.basename(os.path.normpath(a.series)))
    os.makedirs(folder, exist_ok=True)
    results = []
    for (path, img), cam, pr in zip(slices, cams, probs.numpy()):
        m = cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR)
        mx = float(m.max())
        m = m / mx if mx > 0 else np.zeros_like(m)
        png = os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + ".png")
        cv2.imwrite(png, overlay(shown(img), m))
        results.append({"item": path, "probabilities": dict(zip(labels, map(float, pr))), "heatmap": png})
    study = probs.max(0).values.numpy()
    out = {"input": a.series, "kind": "series",
           "result": {l: {"probability": float(v), "decision": bool(v >= t)}
                      for l, v, t in zip(labels, study, thresholds)},
           "slices": results}
    with open(a.out + ".tmp", "w") as f:
        json.dump(out, f, indent=2)
    os.replace(a.out + ".tmp", a.out)
    t_end = time.perf_counter()
    print(json.dumps({"slices": len(slices), "import_s": t_imported - T_START, "model_load_s": t_model - t_imported,
                      "read_preprocess_s": t_pre - t_model, "forward_gradcam_s": t_model_run - t_pre,
                      "heatmaps_write_s": t_end - t_model_run, "in_script_s": t_end - T_START}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
