#pragma once
// One entry point to read any supported single image: a 2D image file or a DICOM file.
#include <filesystem>

#include "hemoscan/io/dicom.hpp"

namespace hemoscan {

// Reads `path` as DICOM (by content) or as a 2D image (by extension); throws InputError otherwise.
// The result's meta says whether the values are HU (DICOM CT) or already windowed (8-bit image).
DicomSlice load_image(const std::filesystem::path& path, ModalityPolicy policy = ModalityPolicy::CtOnly);

// A 2D image or DICOM file as a one-slice volume: spacing from PixelSpacing (x = column spacing) and
// SliceThickness (else 1 mm), origin and direction from the DICOM position and orientation when present.
Volume slice_volume(const DicomSlice& slice);

// The one rule for values of unknown kind (NIfTI, volumes built in code): air in Hounsfield units
// (a minimum <= -900) is the sign of CT; anything else is taken as raw values (min-max scaled).
bool looks_like_hu(double min_value);

// The meta of slice k of `volume`; a slice without one gets size, spacing from the geometry and HU by
// looks_like_hu of its own minimum.
ImageMeta slice_meta_of(const Volume& volume, int k);
// Gives every slice of `volume` its meta (slice_meta_of) when the volume came without any.
void fill_slice_meta(Volume& volume);

}  // namespace hemoscan
