#pragma once
// NIfTI-1 volumes (.nii / .nii.gz) through niftilib (nifti1_io.h).
//
// Coordinates: hemoscan's Geometry is in DICOM patient coordinates (LPS: +x patient left, +y
// posterior, +z superior); NIfTI's qform/sform map voxels to RAS (+x right, +y anterior, +z superior).
// The flip of the first two axes (x_ras = -x_lps, y_ras = -y_lps, z unchanged) is done here and only
// here, when writing and when reading, so that everything else works in LPS.
//
// Voxel order: NIfTI index i runs along a row (Geometry direction d[0..2], spacing[0]), j down the
// columns (d[3..5], spacing[1]) and k over the slices (d[6..8], spacing[2]), which is the order of
// Volume::slices[k].at<float>(j, i). The affine written (sform and qform, both code 1 = scanner) is
//   [x y z]_ras = F * (origin + i*spacing[0]*d_row + j*spacing[1]*d_col + k*spacing[2]*d_normal),
//   F = diag(-1, -1, 1).
#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "hemoscan/image.hpp"

namespace hemoscan {

// Storage type of the voxels on disk.
enum class NiftiType {
    Int16,    // CT in HU (values rounded, clamped to -32768..32767): the usual type for CT
    UInt8,    // label maps
    Float32,  // anything else (exact for float data)
};

struct NiftiWriteOptions {
    NiftiType type = NiftiType::Int16;
    std::string description;  // header `descrip` (at most 79 characters are kept)
    int gzip_level = 6;       // 1 (fast) .. 9 (small); used for .nii.gz only
};

// A label map (segmentation): one CV_8UC1 slice per k, 0 = background.
struct LabelVolume {
    std::vector<cv::Mat> slices;
    Geometry geometry;
    int depth() const { return static_cast<int>(slices.size()); }
};

// The NIfTI affine (row-major 4x4, RAS) for a Geometry: see the formula above.
std::array<double, 16> nifti_affine(const Geometry& geometry);

// Writes a volume (CV_32F or any one-channel type, all slices the same size) as NIfTI-1, atomically
// (temporary file + rename). The file type follows the name: .nii.gz (gzip) or .nii. Throws
// UsageError for an empty volume, a bad name or a geometry whose direction is not orthonormal.
void write_nifti(const std::filesystem::path& path, const Volume& volume, const NiftiWriteOptions& options = {});

// Writes a label map (CV_8U slices) as a NIfTI-1 uint8 volume with the given geometry.
void write_nifti_labels(const std::filesystem::path& path, const std::vector<cv::Mat>& labels,
                        const Geometry& geometry, const std::string& description = "");

// Reads a 3D (or 2D) NIfTI-1 file into float slices (scl_slope/scl_inter applied when set) and a
// Geometry in LPS. Orientation comes from the sform when its code is > 0 (columns normalised; it
// keeps float precision where the qform's quaternion loses it near 180-degree rotations, as every
// LPS-aligned volume is in RAS), else from the qform, else from pixdim alone (NIfTI "method 1": i, j,
// k along R, A, S). Spacing is pixdim[1..3] (the sform's column norms if they disagree). slice_meta holds path, rows, cols, spacing and position per slice.
// Throws InputError naming the file for a missing/unreadable file, more than one volume (4D with
// nt > 1), complex/RGB data or zero-size dimensions.
Volume read_nifti(const std::filesystem::path& path);

// True for a file name ending in .nii or .nii.gz (any case).
bool is_nifti_path(const std::filesystem::path& path);

// Reads a label map: like read_nifti, but the values must be integers in 0..255 (else InputError
// naming the file and the first bad voxel); slices come back as CV_8UC1.
LabelVolume read_nifti_labels(const std::filesystem::path& path);

}  // namespace hemoscan
