#pragma once
// One entry point to read any supported single image: a 2D image file or a DICOM file.
#include <filesystem>

#include "hemoscan/io/dicom.hpp"

namespace hemoscan {

// Reads `path` as DICOM (by content) or as a 2D image (by extension); throws InputError otherwise.
// The result's meta says whether the values are HU (DICOM CT) or already windowed (8-bit image).
DicomSlice load_image(const std::filesystem::path& path, ModalityPolicy policy = ModalityPolicy::CtOnly);

}  // namespace hemoscan
