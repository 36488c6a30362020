#pragma once
// DICOM through DCMTK: single files, series (folders or file lists), and writing CT slices.
#include <filesystem>
#include <string>
#include <vector>

#include "hemoscan/image.hpp"

namespace hemoscan {

// Which modalities the caller accepts. CT is the default; MR only when the user says so. A model
// trained on one refuses the other (a CT model given MR, an MR model given CT).
enum class ModalityPolicy { CtOnly, CtOrMr, Any, MrOnly };

// "ct" (CT only), "mr"/"mri" (MR only), "ct+mr" (either), "any". Throws UsageError otherwise.
ModalityPolicy parse_modality_policy(const std::string& name);

struct DicomSlice {
    cv::Mat pixels;  // CV_32FC1: Hounsfield units for CT (slope/intercept applied), rescaled values otherwise
    ImageMeta meta;
};

// True when the file has the DICM preamble or parses as a DICOM data set.
bool is_dicom_file(const std::filesystem::path& path);

// Reads one single-frame DICOM image. Applies RescaleSlope/Intercept (-> HU for CT), BitsStored and
// sign, PixelPaddingValue (-> -1024 HU for CT, the minimum otherwise), MONOCHROME1 (inverted for
// non-HU data; HU are physical and are kept), and decodes the compressed transfer syntaxes DCMTK
// supports (JPEG baseline/extended/lossless, JPEG-LS, RLE). Throws InputError naming the file for
// unreadable, non-image or non-accepted-modality files.
DicomSlice read_dicom_file(const std::filesystem::path& path, ModalityPolicy policy = ModalityPolicy::CtOnly);

// The header of a DICOM file without its pixel data (reading stops before PixelData): modality,
// patient, study, series and SOP UIDs, instance number, size, position, orientation, spacing. For
// indexing many files (a data set's studies and their slice order). InputError naming the file.
ImageMeta read_dicom_meta(const std::filesystem::path& path);

// Reads a DICOM series. `inputs` are files and/or folders (folders are searched recursively for
// DICOM files; other files are skipped). Slices are grouped by SeriesInstanceUID, then ordered by
// ImagePositionPatient projected on the slice normal (cross product of the orientation vectors),
// never by file name or InstanceNumber. Spacing between slices comes from the positions (median
// step). Missing slices (a gap > 1.5x the median step) and duplicates (same position) are reported
// in Volume::warnings and through the logger. Returns one Volume per series, largest first.
// Warnings and log lines carry no UID, patient identifier or absolute path: a series is named by
// series_label, a file by its path relative to the folder given, else by its base name (or by
// `names[i]`, when given, for inputs[i]). Errors name the file as given (its folder joined with its
// relative path), or by `names`.
std::vector<Volume> read_dicom_series(const std::vector<std::filesystem::path>& inputs,
                                      ModalityPolicy policy = ModalityPolicy::CtOnly,
                                      const std::vector<std::string>& names = {});

// How messages name series `index` (from 0) of the `count` that read_dicom_series returned:
// "series 2 of 3 (SeriesNumber 5, 120 slices)"; without the slice count when `with_depth` is false.
std::string series_label(size_t index, size_t count, const Volume& volume, bool with_depth = true);

// Parameters of one CT slice to write.
struct DicomWriteOptions {
    std::string patient_id = "ANON";
    std::string patient_name = "Anonymous";
    std::string study_uid, series_uid, sop_uid;  // generated when empty
    // FrameOfReferenceUID, shared by every slice of a series (a SEG's positions refer to it); empty:
    // none written (it cannot be generated per file).
    std::string frame_of_reference_uid;
    std::string modality = "CT";
    std::string series_description;
    int series_number = 1;
    int instance_number = 1;
    std::array<double, 3> position{0, 0, 0};
    std::array<double, 6> orientation{1, 0, 0, 0, 1, 0};
    std::array<double, 2> pixel_spacing{0.5, 0.5};  // row spacing, column spacing (mm)
    double slice_thickness = 5.0;
    double window_center = 40, window_width = 80;
    double rescale_intercept = -1024, rescale_slope = 1;
    std::string photometric = "MONOCHROME2";
    bool has_padding = false;
    int pixel_padding_value = 0;                     // stored value marking padding
    std::string transfer_syntax = "uncompressed";   // uncompressed | rle | jpeg-ls | jpeg-lossless
    // Modality MR (MR Image Storage): the acquisition attributes its IOD asks for. No RescaleType;
    // RescaleSlope/Intercept only when not 1/0 (phase images: stored 0..4095 -> -4096..4094).
    std::string image_type;              // e.g. ORIGINAL\PRIMARY\P\ND (default ORIGINAL\PRIMARY\AXIAL; MR: ...\M\ND)
    std::string scanning_sequence = "SE";  // SE, GR, IR (ScanningSequence)
    std::string sequence_variant = "NONE";
    std::string sequence_name;           // SequenceName, e.g. *tse2d1_15
    std::string acquisition_type = "2D"; // MRAcquisitionType
    double repetition_time = 0, echo_time = 0, inversion_time = 0;  // ms (InversionTime only when > 0)
    double flip_angle = 90, field_strength = 3;                      // degrees, tesla
};

// Writes a CT Image Storage file (16-bit unsigned stored values) from HU (CV_32F, rounded) atomically;
// with modality MR an MR Image Storage file of the same values.
// stored = round((hu - intercept) / slope), clamped to 0..65535.
void write_dicom_ct(const std::filesystem::path& path, const cv::Mat& hu, const DicomWriteOptions& options);

// A new DICOM UID (DCMTK's generator with its site root).
std::string new_dicom_uid();

}  // namespace hemoscan
