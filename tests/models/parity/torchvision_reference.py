"""Reference outputs of torchvision models for hemoscan's parity tests (issue 27).

usage: torchvision_reference.py OUT_DIR ARCH [ARCH ...]

For each ARCH (a torchvision.models constructor name: resnet18, vgg19_bn, densenet121, efficientnet_b0,
...; hemoscan's names write '-' for its '_'), writes OUT_DIR/ARCH.safetensors and, for models under 50M
parameters (not the VGGs, to save time and disk), ARCH.pth (torch.save; the first ARCH also as a training
checkpoint, ARCH.ckpt.pth): the state dict of the model built with seed 0 and 5 outputs, BatchNorm
statistics and affine parameters randomised so that evaluation-mode BatchNorm is not the identity
(EfficientNet's statistics measured instead, see calibrate()), VGG's Linear layers redrawn (see main). And
OUT_DIR/ARCH.io.safetensors: "input", a fixed 2 x 3 x 64 x 64 tensor; "logits", the model's
evaluation-mode output for it; "grey_logits", the output for a grey image, the same in its three channels;
for models with randomness in their forward (stochastic depth: efficientnet_*), "train_logits", the
training-mode output for "input" right after torch.manual_seed(7). The safetensors files are written here
by hand, so that the test needs nothing beyond Debian's python3-torch and python3-torchvision.
"""
import json
import struct
import sys

import torch
import torchvision

DTYPES = {torch.float32: "F32", torch.int64: "I64"}
SMALL = 50_000_000  # parameters; larger models get no .pth


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def calibrate(model, batchnorms):
    """BatchNorm statistics from one training-mode pass over random images. With random statistics the
    signal dies out over EfficientNet's 49 BatchNorms: its logits would not depend on the input at all."""
    with torch.no_grad():
        for m in batchnorms:
            m.momentum = None  # the statistics of this one pass
            m.reset_running_stats()
        model.train()
        model(torch.randn(8, 3, 64, 64))
        for m in batchnorms:
            m.momentum = 0.1


def main():
    out, archs = sys.argv[1], [a.replace("-", "_") for a in sys.argv[2:]]
    for arch in archs:
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(num_classes=5)
        batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        with torch.no_grad():
            for m in batchnorms:
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if arch.startswith("vgg"):
                # torchvision draws them from N(0, 0.01): logits near 0.03, where a 1e-4 tolerance says little.
                for m in model.modules():
                    if isinstance(m, torch.nn.Linear):
                        torch.nn.init.normal_(m.weight, 0, (2 / m.in_features) ** 0.5)
        if arch.startswith("efficientnet"):
            calibrate(model, batchnorms)
        model.eval()
        n = 2 * 3 * 64 * 64
        x = torch.sin(torch.arange(n, dtype=torch.float32) * 0.37).reshape(2, 3, 64, 64)
        grey = x[:, :1].repeat(1, 3, 1, 1)
        with torch.no_grad():
            logits, grey_logits = model(x), model(grey)
        io = {"input": x, "logits": logits, "grey_logits": grey_logits}
        write_safetensors(f"{out}/{arch}.safetensors", model.state_dict())
        if sum(p.numel() for p in model.parameters()) < SMALL:
            torch.save(model.state_dict(), f"{out}/{arch}.pth")  # as torchvision publishes its weights
            if arch == archs[0]:  # a training checkpoint around the state dict
                torch.save({"epoch": 3, "lr": 0.1, "names": ["a", "b"], "best": None, "state_dict": model.state_dict()},
                           f"{out}/{arch}.ckpt.pth")
        if arch.startswith("efficientnet"):
            model.train()  # after saving: training mode updates the BatchNorm statistics
            torch.manual_seed(7)
            with torch.no_grad():
                io["train_logits"] = model(x)
        write_safetensors(f"{out}/{arch}.io.safetensors", io)


if __name__ == "__main__":
    main()
