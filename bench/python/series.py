"""A DICOM series -> model inputs with pydicom, numpy and cv2, as hemoscan does it (src/io/dicom.cpp,
src/preprocess/): files ordered by ImagePositionPatient along the slice normal, stored values ->
HU (RescaleSlope/Intercept, PixelPaddingValue -> -1024), the brain/subdural/bone windows as three
channels, INTER_AREA resize, per-image min-max to 0..1."""
import os

import cv2
import numpy as np
import pydicom

WINDOWS = [(40.0, 80.0), (80.0, 200.0), (600.0, 2800.0)]  # level, width: brain, subdural, bone


def read_series(folder):
    """The slices of the (single) series in `folder`, ordered along the slice normal."""
    datasets = []
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            try:
                ds = pydicom.dcmread(os.path.join(root, name))
            except pydicom.errors.InvalidDicomError:
                continue
            if "PixelData" in ds:
                datasets.append(ds)
    if not datasets:
        raise SystemExit(f"{folder}: no DICOM images")
    o = np.array(datasets[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(o[:3], o[3:])
    datasets.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=np.float64), normal)))
    return datasets


def to_hu(ds):
    stored = ds.pixel_array
    hu = stored.astype(np.float32) * np.float32(getattr(ds, "RescaleSlope", 1.0)) + np.float32(
        getattr(ds, "RescaleIntercept", 0.0))
    pad = getattr(ds, "PixelPaddingValue", None)
    if pad is not None:
        hu[stored == pad] = -1024.0
    return hu


def windows(hu):
    chans = [np.clip((hu - np.float32(level - width / 2)) / np.float32(width), 0.0, 1.0) for level, width in WINDOWS]
    return np.stack(chans, axis=-1)


def preprocess(hu, size):
    img = windows(hu)
    if img.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if img.shape[0] >= size and img.shape[1] >= size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    lo, hi = float(img.min()), float(img.max())
    if hi > lo:
        img = ((img - lo) / (hi - lo)).astype(np.float32)
    else:
        img[:] = 0
    return img  # H x W x 3, float32


def load_series(folder, size):
    """Series -> list of (path, H x W x 3 float32 model input)."""
    return [(ds.filename, preprocess(to_hu(ds), size)) for ds in read_series(folder)]
