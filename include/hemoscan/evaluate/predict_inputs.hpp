#pragma once
// `hemoscan predict` over many inputs: every input read (read_study_inputs), every study analysed
// (analyze_study), its heatmap overlays and DICOM objects written, and the table of all, as one process
// or as a group of processes (issue 31). In the evaluate step because it runs a model over many inputs
// as the group does (dist), and writes report's DICOM objects. Free of LibTorch.
#include <filesystem>
#include <string>
#include <vector>

#include "hemoscan/infer/study.hpp"
#include "hemoscan/report/dicom_outputs.hpp"

namespace hemoscan {

class ProcessGroup;  // dist/process_group.hpp

struct PredictInputsOptions {
    AnalysisOptions analysis;           // its `heatmaps` is set here: per slice when overlays or DICOM outputs
                                        // are asked for (the secondary captures show the key slice's)
    std::filesystem::path heatmap_dir;  // Grad-CAM overlay PNGs (write_heatmap_overlays); empty: none
    std::filesystem::path dicom_out;    // DICOM SR and key-image captures of each DICOM study into
                                        // DIR/<name>/ (write_dicom_outputs); empty: none
    DicomOutputOptions dicom;
    std::filesystem::path table;  // FILE.json (predictions_json), else CSV (predictions_csv); empty: none
    // Distributed: the studies of all inputs, in order, are split into contiguous blocks (shard_range);
    // each rank analyses its block and writes that block's overlays and DICOM objects (distinct files),
    // the results are gathered in input order and rank 0 alone writes the table. Null: one process.
    ProcessGroup* group = nullptr;
};

struct PredictedInputs {
    // Every study of every input, in input order (on every rank of a group): what the tables and
    // front ends read (name, kind, items, warnings, per-slice and study predictions, top slice); the
    // model inputs and heatmaps are dropped once written.
    std::vector<StudyResult> results;
    std::vector<std::vector<std::string>> heatmaps;  // per study: the overlay PNGs written (may be empty)
};

// The DICOM objects of a study go to `dicom_out`/<name>: the input's name (a folder's, or a file's stem),
// "_s<k>" for the k-th series of a folder that holds several, "_<n>" when an earlier study had the name.
// In a group every rank first reads every input (its warnings quiet) to know the list of studies and
// these names as one process names them, then reads again the inputs of its own block.
// InputError for an input that cannot be read (as read_study_inputs), before any analysis in a group.
PredictedInputs predict_inputs(Predictor& predictor, const std::vector<std::string>& inputs,
                               const PredictInputsOptions& options = {});

}  // namespace hemoscan
