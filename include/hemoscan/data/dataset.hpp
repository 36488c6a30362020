#pragma once
// Datasets on disk. DATA is a folder in one of four forms:
//  (a) manifest.csv: column `path` (relative to the folder), one or more 0/1 label columns, an
//      optional group column `patient` (or `study`), an optional `mask` column (label map path);
//      with an integer `slice` column the rows are ordered slices of studies (`study`, else
//      `patient`); other non-0/1 columns are ignored.
//  (b) labels.csv: first column an id, the other columns labels; images named <id>.<ext>.
//  (c) one subfolder per class (normal/, hemorrhage/, ...): multi-class, classes sorted by name; an
//      item is an image, or a folder of one MR case with an image per sequence (DatasetOptions).
//  (d) the RSNA 2019 layout: a CSV with the header `ID,Label` (rows `ID_<image>_<subtype>`, six per
//      slice) beside DICOM files named `ID_<image>.dcm` (anywhere below the folder); studies and the
//      slice order come from the DICOM headers (StudyInstanceUID / SeriesInstanceUID,
//      ImagePositionPatient along the slice normal), patients from PatientID.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "hemoscan/image.hpp"

namespace hemoscan {

enum class DatasetForm { Manifest, LabelsCsv, ClassFolders, Rsna };
const char* to_string(DatasetForm form);

struct DatasetItem {
    std::filesystem::path path;  // absolute or relative to the working directory
    std::string id;              // file stem (b, c) or manifest path
    std::string patient;         // group for splits (patient/study column, else id)
    std::vector<float> labels;   // multi-label 0/1 per label, or one-hot for class folders
    int class_index = -1;        // class folders only
    int line = 0;                // CSV line it came from (0 for class folders)
    std::filesystem::path mask;  // label map (manifest `mask` column), empty when none
    std::string study;           // the study (series) it is a slice of (ordered data sets), else empty
    int slice = -1;              // its place in the study (0-based after ordering), -1 when unordered
};

struct Dataset {
    std::filesystem::path root;
    DatasetForm form = DatasetForm::Manifest;
    std::vector<std::string> label_names;  // label columns, or class names (sorted) for folders
    bool multiclass = false;               // true for class folders (softmax), false = multi-label
    bool ordered = false;                  // items are slices of studies, in order (`slice`, RSNA)
    std::vector<DatasetItem> items;

    // The items of each study in slice order, studies in order of first appearance. Empty unless
    // `ordered`.
    std::vector<std::vector<size_t>> studies() const;
    size_t size() const { return items.size(); }
    // Number of positives per label (or items per class).
    std::vector<size_t> label_counts() const;
    // Distinct patients.
    size_t patient_count() const;
    // A stable fingerprint of paths and labels (FNV-1a hex), recorded in run configs.
    std::string fingerprint() const;
};

struct DatasetOptions {
    std::vector<std::string> labels;  // --labels a,b: select these label columns (empty = all)
    // MR: a folder that holds the first of these sequences (t2.png, sub-01_t2.nii.gz, ...) is one
    // case (class folders: an item; manifests: a `path` may name such a folder). Empty: folders holding
    // only images named after known sequences (t1, t2, flair, swi_mag, swi_phase) are cases.
    std::vector<std::string> sequences;
};

// Opens DATA, detecting its form (manifest.csv, then labels.csv, then class subfolders). Checks that
// every referenced image exists and every label is 0/1. Errors (InputError) name the file and CSV
// line: missing folder, empty folder, missing `path` column, unknown label in --labels, missing
// image, bad label value, duplicate id.
Dataset open_dataset(const std::filesystem::path& root, const DatasetOptions& options = {});

// ---- splits ----

// Fold assignment: fold[i] in 0..k-1 for every item. Stratified on the label pattern (the first
// label, or the class) and grouped: all items of one patient share a fold. Seeded, deterministic.
std::vector<int> grouped_stratified_folds(const Dataset& dataset, int k, std::uint64_t seed);

struct Split {
    std::vector<size_t> train, val;  // item indices
};
// Holdout: about `val_fraction` of the patients (stratified, grouped) go to validation.
Split holdout_split(const Dataset& dataset, double val_fraction, std::uint64_t seed);
// Fold k of a k-fold assignment as a split (val = fold k).
Split fold_split(const std::vector<int>& folds, int k);

// Writes the split as CSV (path, id, patient, fold/set) atomically, for the run folder.
void write_split_csv(const std::filesystem::path& file, const Dataset& dataset, const std::vector<int>& folds);
void write_split_csv(const std::filesystem::path& file, const Dataset& dataset, const Split& split);

}  // namespace hemoscan
