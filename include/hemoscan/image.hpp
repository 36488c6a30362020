#pragma once
// The data that travels through the pipeline: load -> preprocess -> augment -> model -> metrics.
// Image, mask and metadata move together in one Sample so that spatial transforms can apply one
// random draw to all of them.
#include <opencv2/core.hpp>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace hemoscan {

// What is known about where an image came from. DICOM fills most of it; a PNG fills path and size.
struct ImageMeta {
    std::string path;             // file it was read from
    std::string modality;         // DICOM Modality (CT, MR, ...); empty for plain images
    std::string patient_id;       // PatientID; never log PatientName (not kept at all)
    std::string study_uid;        // StudyInstanceUID
    std::string series_uid;       // SeriesInstanceUID
    std::string sop_uid;          // SOPInstanceUID
    std::string series_description;
    std::optional<int> series_number;  // SeriesNumber: names a series in messages (the UIDs never appear there)
    std::string photometric;      // MONOCHROME1/MONOCHROME2/RGB/...
    std::string transfer_syntax;  // UID of the file's transfer syntax as stored on disk
    int instance_number = 0;      // InstanceNumber (never used for ordering)
    int rows = 0, cols = 0;
    bool has_position = false;                       // ImagePositionPatient present
    std::array<double, 3> position{0, 0, 0};         // ImagePositionPatient (LPS, mm)
    std::array<double, 6> orientation{1, 0, 0, 0, 1, 0};  // ImageOrientationPatient: row dir, column dir
    std::array<double, 2> pixel_spacing{1, 1};       // PixelSpacing: between rows, between columns (mm)
    bool has_pixel_spacing = false;
    double slice_thickness = 0;                      // SliceThickness (mm), 0 when absent
    std::vector<double> window_center, window_width; // WindowCenter/Width as stored (may be several)
    double rescale_slope = 1, rescale_intercept = 0;
    bool is_hu = false;          // pixel values are Hounsfield units (CT after rescale)
    bool already_windowed = false;  // 8-bit display image (PNG/JPG): used as is, no CT windowing
    // MR sequences: the name of each channel of a multi-sequence image (t2, flair, swi_mag, swi_phase,
    // ...), or of the one sequence of a DICOM MR series (from SeriesDescription); empty otherwise.
    std::vector<std::string> sequences;
};

// Geometry of a volume in DICOM patient coordinates (LPS). direction holds the row direction, the
// column direction and the slice normal as three unit vectors (row-major 3x3: d[0..2] = row dir).
struct Geometry {
    std::array<double, 3> spacing{1, 1, 1};  // x (along a row), y (down columns), z (between slices), mm
    std::array<double, 3> origin{0, 0, 0};   // position of the first voxel of the first slice
    std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};
};

// A 3D stack of 2D float slices (CV_32F, all the same size), ordered along the slice normal.
struct Volume {
    std::vector<cv::Mat> slices;
    Geometry geometry;
    std::vector<ImageMeta> slice_meta;  // one per slice, same order
    std::vector<std::string> warnings;  // e.g. missing or duplicate slices

    int depth() const { return static_cast<int>(slices.size()); }
    int rows() const { return slices.empty() ? 0 : slices.front().rows; }
    int cols() const { return slices.empty() ? 0 : slices.front().cols; }
};

// The geometry preprocess() applied to a slice: `crop` of the `source` slice (the whole slice unless the
// head was cut out) was scaled into `content` of the `output` model input (keep_aspect pads around it).
// Predictions at model size map back to the slice through it.
struct SpatialTransform {
    cv::Size source;
    cv::Rect crop;
    cv::Rect content;
    cv::Size output;
};

// One training/inference example.
struct Sample {
    cv::Mat image;               // CV_32FC(C), H x W (channels = windows or 1)
    cv::Mat mask;                // CV_8UC1 label map (0 = background), or empty
    std::vector<float> labels;   // one value per label (0/1), or one-hot for multi-class
    int class_index = -1;        // multi-class datasets: index of the class, else -1
    std::string id;              // case id (file stem or manifest row)
    std::string patient;         // group id for splits; defaults to id
    ImageMeta meta;
    SpatialTransform transform;  // as preprocess() made it (spatial augmentation does not update it)
};

}  // namespace hemoscan
