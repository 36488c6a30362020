"""Python twins of hemoscan's models, layer for layer (src/models/cnn.cpp; the U-Net of
include/hemoscan/models/seg_registry.hpp). Parameter names of `Cnn` match the C++ ones
(body.N.*, out.*), so weights written by `hemoscan-bench make-model --weights` load with load_state_dict."""
import torch
from torch import nn


def _scaled(channels, width):
    # std::lround: half away from zero (Python's round() is half-to-even).
    v = channels * width
    return max(4, int(v + 0.5) if v >= 0 else -int(-v + 0.5))


def _conv_bn_relu(layers, cin, cout):
    # No conv bias: BatchNorm's shift replaces it.
    layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=False))
    layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))


class Cnn(nn.Module):
    """`cnn`: conv/BN/ReLU stem + max-pool, four blocks of two conv/BN/ReLU (32-256 channels) with
    max-pools between them, global average pool, dropout, linear."""

    def __init__(self, in_channels=1, num_outputs=1, dropout=0.3, width=1.0):
        super().__init__()
        stem = _scaled(32, width)
        widths = [_scaled(c, width) for c in (32, 64, 128, 256)]
        layers = []
        _conv_bn_relu(layers, in_channels, stem)
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
        cin = stem
        for b, w in enumerate(widths):
            _conv_bn_relu(layers, cin, w)
            _conv_bn_relu(layers, w, w)
            if b + 1 < len(widths):
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            cin = w
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(cin, num_outputs)

    def features(self, x):
        return self.body(x)

    def head(self, f):
        return self.out(self.dropout(f.mean((2, 3))))

    def forward(self, x):
        return self.head(self.features(x))


def _double_conv(cin, cout):
    layers = []
    _conv_bn_relu(layers, cin, cout)
    _conv_bn_relu(layers, cout, cout)
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """`unet`: encoder levels of [conv 3x3/BN/ReLU] x 2 + max-pool, a bottleneck double conv (+ Dropout2d
    when dropout > 0), decoder levels of ConvTranspose2d(k 2, s 2) -> concat [skip, up] -> double conv,
    1x1 conv head to K classes."""

    def __init__(self, in_channels=1, num_classes=2, depth=4, base_width=32, dropout=0.0):
        super().__init__()
        w = base_width
        self.down = nn.ModuleList()
        cin = in_channels
        for level in range(depth):
            self.down.append(_double_conv(cin, w << level))
            cin = w << level
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _double_conv(w << (depth - 1), w << depth)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else None
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for level in reversed(range(depth)):
            self.up.append(nn.ConvTranspose2d(w << (level + 1), w << level, 2, stride=2, bias=True))
            self.dec.append(_double_conv(2 * (w << level), w << level))
        self.head = nn.Conv2d(w, num_classes, 1, bias=True)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        if self.drop is not None:
            x = self.drop(x)
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([skips.pop(), up(x)], 1))
        return self.head(x)


def init_weights(model):
    """Kaiming-normal (ReLU, fan_out) conv weights with zero bias, BatchNorm 1/0; linear layers keep
    torch's default, as hemoscan's init_weights() for models with BatchNorm."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=0.0, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def create(name, in_channels, outputs):
    if name == "cnn":
        model = Cnn(in_channels, outputs)
    elif name == "unet":
        model = UNet(in_channels, outputs)
    else:
        raise SystemExit(f"unknown model {name}")
    init_weights(model)
    return model


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())
