"""Loads files written by `hemoscan export` into torchvision (issue 27, the export direction of parity).

usage: load_export.py DIR ARCH [ARCH ...]

For each ARCH (hemoscan's name), reads DIR/ARCH.safetensors (the export) and DIR/ARCH.io.safetensors
("input": N x 3 x H x W, "logits": hemoscan's evaluation-mode output for it), builds
torchvision.models.<torchvision_architecture>(num_classes=<num_classes>) from the export's metadata,
loads the weights with strict=True and prints one JSON line per ARCH: {"arch", "max_abs_diff",
"max_abs_logit", "labels"}. Needs only python3-torch and python3-torchvision (safetensors read by hand).
"""
import json
import struct
import sys

import numpy as np
import torch
import torchvision

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=DTYPES[h["dtype"]]).reshape(h["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


def main():
    out, archs = sys.argv[1], sys.argv[2:]
    for arch in archs:
        state, meta = read_safetensors(f"{out}/{arch}.safetensors")
        io, _ = read_safetensors(f"{out}/{arch}.io.safetensors")
        model = getattr(torchvision.models, meta["torchvision_architecture"])(num_classes=int(meta["num_classes"]))
        model.load_state_dict(state, strict=True)
        model.eval()
        with torch.no_grad():
            logits = model(io["input"])
        print(json.dumps({"arch": arch, "max_abs_diff": float((logits - io["logits"]).abs().max()),
                          "max_abs_logit": float(io["logits"].abs().max()), "labels": json.loads(meta["labels"])}))


if __name__ == "__main__":
    main()
