#pragma once
// The one analysis pipeline that `hemoscan predict`, `hemoscan segment` and the server share:
//   raw input (image files, a DICOM file, a DICOM series folder or the files of one upload, a NIfTI
//   volume) -> StudyInput (read through src/io; HU vs raw values decided there) -> StudyResult
//   (per-slice probabilities and decisions, the study result by one rule, optional heatmaps, optional
//   segmentation in the input's geometry, warnings).
// Front ends parse arguments / HTTP, call read_* and analyze_study, and write what was asked for with
// infer/outputs.hpp. Free of LibTorch.
#include <filesystem>
#include <string>
#include <vector>

#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/infer/seg_predictor.hpp"
#include "hemoscan/io/dicom.hpp"

namespace hemoscan {

// One study as read: its slices in order (pixels + meta) and, when they form one, the volume with its
// geometry. Pixels are shared between `slices` and `volume` (cv::Mat reference counting).
struct StudyInput {
    std::string name;                 // the input as given (a path; "path#series 2 of 3 (SeriesNumber 5)" when a
                                      // folder holds several: see series_label)
    std::string kind;                 // image | images | dicom | series | nifti
    std::vector<std::string> items;   // per slice: its file, or a display name
    std::vector<DicomSlice> slices;   // in slice order
    Volume volume;                    // DICOM series/file and NIfTI: the slices as one volume; empty for 2D images
    bool spacing_known = true;        // false for PNG/JPEG: volumes assume 1 mm pixels
    std::vector<std::string> warnings;

    bool is_volume() const { return !volume.slices.empty(); }
};

// Which DICOM series of a folder that holds several to read.
enum class SeriesChoice { All, Largest };

// Reads what a user points at: a folder (its DICOM series: every one or the largest, with a warning;
// a folder of images: one input per image, in name order), a zip of DICOM files or of images (one
// study, as read_study_files; other entries skipped with a warning), a NIfTI file (.nii/.nii.gz), a
// DICOM file or a 2D image. InputError naming the path for a missing path, an empty folder or zip, a
// broken archive or an unsupported file.
// With `sequences` (an MR model's channels) a folder is a multi-sequence case (io/sequences.hpp): the
// folder itself when it holds the first sequence or DICOM files, else each of its subfolders that does
// (kind "sequences"; slices hold the sequences as channels).
std::vector<StudyInput> read_study_inputs(const std::filesystem::path& path, ModalityPolicy policy,
                                          SeriesChoice series = SeriesChoice::All,
                                          const std::vector<std::string>& sequences = {});

// Reads the files of one upload as one study: the DICOM files as a series (the largest when they
// hold several, with a warning), else the images in the given order (`names` are their display names).
// `dicom_names`, when given (one per DICOM file), name the DICOM files in warnings, log lines and errors
// instead of their base names (warnings, logs) and paths (errors): see read_dicom_series.
StudyInput read_study_files(const std::vector<std::filesystem::path>& dicoms,
                            const std::vector<std::filesystem::path>& images, const std::vector<std::string>& names,
                            ModalityPolicy policy, const std::vector<std::string>& dicom_names = {},
                            const std::vector<std::string>& sequences = {});

// Whose evidence the heatmaps show: none, each slice its own most probable output (predict), or the
// study's most probable output on every slice, so that scrolling compares like with like (server).
enum class HeatmapLabel { None, PerSlice, Study };

struct AnalysisOptions {
    HeatmapLabel heatmaps = HeatmapLabel::None;
    double threshold = -1;  // >= 0 overrides the classifier's thresholds
    int batch = kInferenceBatch;
};

// The segmentation of a study: a volume is segmented as one (its real spacing); separate images one
// by one (1 mm pixels unless the file says otherwise). labels.slices has one map per slice, each of
// its slice's size; labels.geometry is the volume's (or the first image's).
struct StudySegmentation {
    SegmentationResult result;         // label maps, mL per class, bleed mL (summed over images)
    std::vector<double> slice_bleed_ml;
    bool spacing_known = true;
};

struct StudyResult {
    std::string name, kind;
    std::vector<std::string> items;
    std::vector<std::string> warnings;
    // Classification (with a classifier): model inputs, per-slice and study predictions.
    std::vector<Sample> samples;
    std::vector<Prediction> slices;
    Prediction study;
    size_t top_slice = 0;          // the slice with the highest probability of `heatmap_label` (else label 0)
    int heatmap_label = -1;        // HeatmapLabel::Study: the label shown; PerSlice: -1
    std::vector<cv::Mat> heatmaps; // per slice, CV_32F in [0, 1], model input size (empty without heatmaps)
    // Segmentation (with a segmenter).
    bool segmented = false;
    StudySegmentation segmentation;
    // A study of several slices or images (a series, a NIfTI volume, a zip of images): its outputs
    // list every slice under the study result.
    bool per_slice() const { return kind == "series" || kind == "nifti" || items.size() > 1; }
};

// The study rule, written once: per label the maximum over the slices (a bleed on one slice is a
// bleed of the study); multi-class models: the mean class probabilities. Decisions by `threshold`
// (>= 0) or the model's thresholds.
Prediction study_prediction(const Predictor& predictor, const std::vector<Prediction>& slices, double threshold = -1);

// How a classifier turns slices into the study's result, as outputs name it: "study model" (stage 2 of
// `train --task study`), "highest slice" (multi-label slice models) or "mean of slices" (multi-class).
std::string study_rule(const Predictor& predictor);

// Runs the classifier and/or the segmenter (either may be null, not both) on one study.
StudyResult analyze_study(const StudyInput& input, Predictor* classifier, SegPredictor* segmenter,
                          const AnalysisOptions& options = {});

}  // namespace hemoscan
