#pragma once
// Segmentation evaluation: a SegPredictor over every case of a dataset -> metrics.json and cases.csv.
#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "hemoscan/data/seg_dataset.hpp"
#include "hemoscan/infer/seg_predictor.hpp"

namespace hemoscan {

class ProcessGroup;  // dist/process_group.hpp

// Runs the model over every case and writes DIR/metrics.json:
//   {"n": cases, "dice": {"<class>": .., "any": ..}, "dice_mean": .. (foreground classes),
//    "iou": {..}, "hd95_mm": {..}, "volume_abs_err_ml": {"<class>": .., "any": ..} (mean over cases),
//    "lesion_sensitivity": .., "cases": [{id, dice_any, volume_ml, volume_true_ml}, ...]}
// plus DIR/cases.csv. Dice is computed per case and averaged (empty-empty cases count as 1); also
// "dice_positive" (mean over the cases whose truth holds the class) and "dice_pooled" (all voxels of
// all cases together). HD95 is averaged over the cases where truth and prediction are both non-empty.
// "dice_any_ci95" holds 95% percentile bootstrap intervals over cases (1000 draws, seed 0) of the three
// Dice summaries of any bleed: {"per_case": [lo, hi], "positive": [..], "pooled": [..], ...}.
// The dataset's class names must equal the model's (InputError otherwise). `progress(done, total)`
// is called after each case (of this rank's block in a group).
// With a `group` (issue 31), each rank segments its contiguous block of the cases (shard_range); the
// per-case figures are gathered in case order and every rank computes the summary from the whole, as
// one process does (the same numbers in the same order); rank 0 alone writes.
nlohmann::json evaluate_segmentation(SegPredictor& predictor, const SegDataset& dataset,
                                     const std::filesystem::path& out,
                                     const std::function<void(size_t done, size_t total)>& progress = {},
                                     ProcessGroup* group = nullptr);

}  // namespace hemoscan
