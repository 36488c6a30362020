#!/usr/bin/env python3
"""Decodes a DICOM Segmentation with pydicom and NumPy, independently of DCMTK (which wrote it).

Prints JSON: the SEG's geometry and references, and per frame the referenced source SOP instance,
the segment's label, the frame's position and the flat indices of its set pixels. The test that runs
it compares the frames with hemoscan's own label map of the same series.
    check_seg.py SEG.dcm
"""
import json
import sys

import numpy as np
import pydicom


def main(path):
    ds = pydicom.dcmread(path)
    if ds.SOPClassUID != "1.2.840.10008.5.1.4.1.1.66.4":
        sys.exit(f"{path}: not a Segmentation Storage object ({ds.SOPClassUID})")
    labels = {int(s.SegmentNumber): str(s.SegmentLabel) for s in ds.SegmentSequence}
    frames = ds.pixel_array  # BINARY: 0/1 per pixel, bits unpacked by pydicom
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    out = {
        "rows": int(ds.Rows),
        "cols": int(ds.Columns),
        "segmentation_type": str(ds.SegmentationType),
        "study": str(ds.StudyInstanceUID),
        "frame_of_reference": str(ds.FrameOfReferenceUID),
        "referenced_series": [str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])],
        "categories": [str(s.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning) for s in ds.SegmentSequence],
        "frames": [],
    }
    for i, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        source = fg.DerivationImageSequence[0].SourceImageSequence[0]
        segment = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out["frames"].append({
            "sop": str(source.ReferencedSOPInstanceUID),
            "label": labels[segment],
            "position": [float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient],
            "ones": np.flatnonzero(frames[i]).tolist(),
        })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
