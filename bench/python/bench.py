#!/usr/bin/python3
"""The Python PyTorch side of bench/run.sh: the same work as `hemoscan-bench`, written as a user of
PyTorch would write it (default allocator, torch.utils.data.DataLoader with worker processes).
Every command prints one JSON object on stdout.

  bench.py train --data DIR --model cnn|unet [--size 256 --batch 32 --steps 12 --warmup 3 --loading on|off]
  bench.py infer --batch 1|32 [--size 256 --iters 20 --warmup 3]
  bench.py preprocess --series DIR [--size 256 --repeat 3]
  bench.py info
"""
import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import augment  # noqa: E402
import models  # noqa: E402
import series  # noqa: E402

SUBTYPES = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
BLEED_MAX_LABEL = 5  # mask values 1..5 are hemorrhages, 6 is calcification (docs/synthetic.md)


def read_manifest(data):
    with open(os.path.join(data, "manifest.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [os.path.join(data, r["path"]) for r in rows]
    masks = [os.path.join(data, r["mask"]) for r in rows] if rows and "mask" in rows[0] else []
    labels = np.array([[float(r[k]) for k in SUBTYPES] for r in rows], dtype=np.float32)
    return paths, masks, labels


class PngSlices(torch.utils.data.Dataset):
    """Decode, preprocess and augment one PNG slice (and its mask for segmentation) per item."""

    def __init__(self, paths, labels, masks, size, seed, segment):
        self.paths, self.labels, self.masks = paths, labels, masks
        self.size, self.seed, self.segment = size, seed, segment

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        img = augment.load_png(self.paths[i], self.size)
        mask = augment.load_mask(self.masks[i], self.size) if self.segment else None
        img, mask = augment.augment(img, mask, rng)
        x = torch.from_numpy(np.ascontiguousarray(img)).unsqueeze(0)
        if self.segment:
            target = ((mask >= 1) & (mask <= BLEED_MAX_LABEL)).astype(np.int64)
            return x, torch.from_numpy(target)
        return x, torch.from_numpy(self.labels[i])


def soft_dice_loss(logits, target, eps=1e-5):
    """1 - mean over foreground classes of (2|P.T| + eps) / (|P| + |T| + eps), batch-pooled."""
    k = logits.shape[1]
    p = logits.softmax(1)
    t = F.one_hot(target, k).permute(0, 3, 1, 2).to(p.dtype)
    dims = (0, 2, 3)
    inter = (p * t).sum(dims)[1:]
    denom = (p.sum(dims) + t.sum(dims))[1:]
    return 1 - ((2 * inter + eps) / (denom + eps)).mean()


def cmd_train(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    segment = a.model == "unet"
    paths, masks, labels = read_manifest(a.data)
    model = models.create(a.model, 1, 2 if segment else labels.shape[1])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    if segment:
        def loss_fn(out, y):
            return F.cross_entropy(out, y) + soft_dice_loss(out, y)
    else:
        pos = labels.sum(0)
        n = labels.shape[0]
        w = np.where((pos > 0) & (pos < n), (n - pos) / np.maximum(pos, 1), 1.0).astype(np.float32)
        pos_weight = torch.from_numpy(w)

        def loss_fn(out, y):
            return F.binary_cross_entropy_with_logits(out, y, pos_weight=pos_weight)

    dataset = PngSlices(paths, labels, masks, a.size, a.seed, segment)
    total = a.warmup + a.steps
    if len(dataset) < total * a.batch:
        raise SystemExit(f"{a.data}: {len(dataset)} slices, need {total * a.batch} for {total} batches")
    loader = torch.utils.data.DataLoader(dataset, batch_size=a.batch, shuffle=True, drop_last=True,
                                         num_workers=a.workers, prefetch_factor=2 if a.workers > 0 else None)
    fixed = None
    step_times = []
    it = iter(loader)
    t_start = None
    for step in range(total):
        t0 = time.perf_counter()
        if step == a.warmup:
            t_start = t0
        if a.loading == "on" or fixed is None:
            x, y = next(it)
            if a.loading == "off":
                fixed = (x, y)
                del it  # stop the workers: the compute-only loop runs without them
        else:
            x, y = fixed
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        v = loss.item()
        if not np.isfinite(v):
            raise SystemExit("training diverged")
        step_times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - t_start
    measured = step_times[a.warmup:]
    print(json.dumps({"what": f"train {a.model}", "images_per_s": a.steps * a.batch / elapsed,
                      "step_ms_median": 1000 * statistics.median(measured),
                      "step_ms": [round(1000 * s, 2) for s in measured], "loading": a.loading,
                      "workers": a.workers, "threads": torch.get_num_threads(),
                      "parameters": models.parameter_count(model)}))


def cmd_infer(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = models.create("cnn", a.channels, a.outputs)
    model.eval()
    x = torch.rand(a.batch, a.channels, a.size, a.size)
    times = []
    with torch.inference_mode():
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            p = torch.sigmoid(model(x))
            p.sum().item()
            times.append(time.perf_counter() - t0)
    t = times[a.warmup:]
    med = statistics.median(t)
    print(json.dumps({"what": f"infer batch {a.batch}", "ms_median": 1000 * med, "ms_min": 1000 * min(t),
                      "ms_max": 1000 * max(t), "images_per_s": a.batch / med, "threads": torch.get_num_threads()}))


def cmd_preprocess(a):
    times, cpu, n = [], [], 0
    for _ in range(a.warmup + a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        images = series.load_series(a.series, a.size)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        n = len(images)
    t = times[a.warmup:]
    med = statistics.median(t)
    print(json.dumps({"what": "preprocess series", "slices": n, "ms_median": 1000 * med,
                      "slices_per_s": n / med, "cpu_ms_median": 1000 * statistics.median(cpu[a.warmup:]),
                      "runs_ms": [round(1000 * s, 1) for s in t]}))


def cmd_info(a):
    print(json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                      "numpy": np.__version__, "opencv": augment.cv2.__version__,
                      "pydicom": series.pydicom.__version__,
                      "torch_config": torch.__config__.parallel_info().splitlines()[:6],
                      "cnn_parameters": models.parameter_count(models.create("cnn", 1, 6)),
                      "unet_parameters": models.parameter_count(models.create("unet", 1, 2))}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--model", default="cnn", choices=["cnn", "unet"])
    t.add_argument("--size", type=int, default=256)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--steps", type=int, default=12)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--loading", default="on", choices=["on", "off"])
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=42)
    t.set_defaults(fn=cmd_train)
    i = sub.add_parser("infer")
    i.add_argument("--batch", type=int, default=1)
    i.add_argument("--size", type=int, default=256)
    i.add_argument("--channels", type=int, default=3)
    i.add_argument("--outputs", type=int, default=6)
    i.add_argument("--iters", type=int, default=20)
    i.add_argument("--warmup", type=int, default=3)
    i.add_argument("--threads", type=int, default=2)
    i.add_argument("--seed", type=int, default=42)
    i.set_defaults(fn=cmd_infer)
    s = sub.add_parser("preprocess")
    s.add_argument("--series", required=True)
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--repeat", type=int, default=3)
    s.add_argument("--warmup", type=int, default=1)
    s.set_defaults(fn=cmd_preprocess)
    n = sub.add_parser("info")
    n.set_defaults(fn=cmd_info)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
