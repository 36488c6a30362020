"""The loading, preprocessing and augmentation of hemoscan's DataLoader, as a Python user would write
them with cv2 and numpy (same steps, same parameters as src/io/image2d.cpp, src/preprocess/ and
src/augment/augment.cpp with the default AugmentOptions)."""
import math

import cv2
import numpy as np

# AugmentOptions defaults (include/hemoscan/augment/augment.hpp).
P_HFLIP = 0.5
ROTATE_DEG = 15.0
SHEAR_DEG = 5.0
ZOOM = 0.10
TRANSLATE = 0.08
INTENSITY = 0.10
CONTRAST = 0.10
GAMMA = 0.15
NOISE_STD = 0.02


def load_png(path, size):
    """8-bit PNG -> float32 0..1 -> INTER_AREA resize to size x size -> per-image min-max to 0..1."""
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise OSError(f"{path}: cannot read image")
    if raw.ndim == 3:
        raw = cv2.cvtColor(raw, cv2.COLOR_BGR2GRAY)
    img = raw.astype(np.float32) * np.float32(1.0 / 255.0)
    if img.shape != (size, size):
        interp = cv2.INTER_AREA if img.shape[0] >= size and img.shape[1] >= size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    lo, hi = float(img.min()), float(img.max())
    if hi > lo:
        img = ((img - lo) / (hi - lo)).astype(np.float32)
    else:
        img[:] = 0
    return img


def load_mask(path, size):
    m = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if m is None:
        raise OSError(f"{path}: cannot read mask")
    if m.shape != (size, size):
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
    return m


def _matrix(angle_deg, shear_deg, scale, tx, ty, w, h):
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    a = math.radians(angle_deg)
    rotate = np.array([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1]])
    shear = np.array([[1, math.tan(math.radians(shear_deg)), 0], [0, 1, 0], [0, 0, 1]])
    zoom = np.diag([scale, scale, 1.0])
    t1 = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1]])
    t0 = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    return (t1 @ rotate @ shear @ zoom @ t0)[:2]


def augment(img, mask, rng):
    """One random draw applied to image (H x W float32) and mask (H x W uint8 or None): intensity,
    contrast, gamma, hflip, rotation/shear/zoom/translation (one warpAffine), Gaussian noise."""
    h, w = img.shape
    hflip = rng.random() < P_HFLIP
    angle = rng.uniform(-ROTATE_DEG, ROTATE_DEG)
    shear = rng.uniform(-SHEAR_DEG, SHEAR_DEG)
    scale = rng.uniform(1 - ZOOM, 1 + ZOOM)
    tx = rng.uniform(-TRANSLATE, TRANSLATE) * w
    ty = rng.uniform(-TRANSLATE, TRANSLATE) * h
    intensity = rng.uniform(1 - INTENSITY, 1 + INTENSITY)
    contrast = rng.uniform(1 - CONTRAST, 1 + CONTRAST)
    log_g = math.log1p(GAMMA)
    gamma = math.exp(rng.uniform(-log_g, log_g))
    noise = rng.uniform(0, NOISE_STD)

    img = img * np.float32(intensity)
    mean = float(img.mean())
    img = img * np.float32(contrast) + np.float32(mean * (1 - contrast))
    np.power(img, np.float32(gamma), out=img, where=img > 0)
    if hflip:
        img = cv2.flip(img, 1)
        if mask is not None:
            mask = cv2.flip(mask, 1)
    m = _matrix(angle, shear, scale, tx, ty, w, h)
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if mask is not None:
        mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
    img += rng.normal(0.0, noise, img.shape).astype(np.float32)
    return img, mask
