#pragma once
// Dataset exploration (seed 003's EDA): label and patient counts, image sizes and intensities, and
// warnings about differences between classes that a model could use as shortcuts.
#include <functional>
#include <nlohmann/json.hpp>

#include "hemoscan/data/dataset.hpp"
#include "hemoscan/io/dicom.hpp"

namespace hemoscan {

struct Stats {
    size_t n = 0;
    double mean = 0, sd = 0, min = 0, median = 0, max = 0;
};
Stats compute_stats(std::vector<double> values);

struct LabelSummary {
    std::string name;
    size_t positives = 0, negatives = 0;
    size_t positive_studies = 0;  // ordered data sets: studies with at least one positive slice
    Stats width_pos, width_neg, height_pos, height_neg;  // image sizes by class
    Stats intensity_pos, intensity_neg;                  // per-image mean intensity by class
};

struct DatasetSummary {
    std::string root;
    std::string form;
    bool multiclass = false;
    size_t images = 0, patients = 0;
    Stats images_per_patient;
    size_t studies = 0;       // ordered data sets (slices of studies): studies, else 0
    Stats slices_per_study;
    Stats width, height;                // pixels
    Stats intensity_mean, intensity_sd; // per-image mean and sd, in the image's own units
    double intensity_min = 0, intensity_max = 0;
    size_t hu_images = 0;               // DICOM CT images (values in HU)
    std::map<std::string, size_t> formats;  // by file extension
    std::vector<LabelSummary> labels;
    std::vector<std::string> warnings;  // shortcut risks and oddities

    nlohmann::json to_json() const;
};

struct DescribeOptions {
    int threads = 2;
    ModalityPolicy modality = ModalityPolicy::CtOnly;
    std::function<void(size_t done, size_t total)> progress;  // called from the calling thread
};

// Reads every image of the dataset (in parallel) and summarises it. Unreadable images raise
// InputError naming the file.
DatasetSummary describe_dataset(const Dataset& dataset, const DescribeOptions& options = {});

}  // namespace hemoscan
