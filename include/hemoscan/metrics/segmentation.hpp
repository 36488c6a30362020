#pragma once
// Segmentation metrics on label maps (free of LibTorch). A volume is a vector of CV_8UC1 slices
// (label values, 0 = background) with spacing {x, y, z} in mm; a 2D image is a one-slice volume.
// `cls` selects the class: a label value >= 1, or kAnyForeground for "any of `foreground`".
#include <array>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <opencv2/core.hpp>

#include "hemoscan/metrics/bootstrap.hpp"

namespace hemoscan {

using LabelSlices = std::vector<cv::Mat>;
constexpr int kAnyForeground = -1;

// Binary mask (CV_8UC1 0/1) of class `cls` for every slice; with kAnyForeground, the union of the
// label values in `foreground` (empty: every value > 0).
LabelSlices class_mask(const LabelSlices& labels, int cls, const std::vector<int>& foreground = {});

struct Overlap {
    long long tp = 0, fp = 0, fn = 0;
    double dice() const;  // 2TP / (2TP + FP + FN); 1 when both are empty (nothing to find, nothing found)
    double iou() const;   // TP / (TP + FP + FN); 1 when both are empty
};
// Voxel overlap of two binary volumes (same sizes, else UsageError).
Overlap overlap(const LabelSlices& pred, const LabelSlices& truth);

// Percentile bootstrap intervals of the three Dice summaries of a set of cases (one overlap per case):
// the mean per case (empty-empty = 1), the mean over the cases whose truth is not empty, and the
// pooled Dice (voxels of all cases summed). Cases are drawn with replacement; one draw feeds all
// three. A draw without a case with truth is skipped for `positive` only. On 64 synthetic studies the
// `positive` interval was 0.06-0.15 wide: a target read on one such set needs it.
struct DiceIntervals {
    ConfidenceInterval per_case, positive, pooled;
};
DiceIntervals bootstrap_dice_ci(const std::vector<Overlap>& cases, const BootstrapOptions& options = {});

// 95th percentile Hausdorff distance in mm between the surfaces of two binary volumes (3D, with
// anisotropic spacing; symmetric: the 95th percentile of the pooled surface-to-surface distances in
// both directions, as MONAI and nnU-Net compute it). 0 when both are empty; NaN when one is empty.
double hd95_mm(const LabelSlices& pred, const LabelSlices& truth, const std::array<double, 3>& spacing);

// Number of foreground voxels x voxel volume, in mL (1 mL = 1000 mm^3).
double volume_ml(const LabelSlices& mask, const std::array<double, 3>& spacing);

// Lesions are 3D connected components (26-connectivity) of the truth; one counts as detected when
// any predicted voxel overlaps it. False positives: predicted components touching no truth voxel.
struct LesionDetection {
    int lesions = 0, detected = 0, false_positive_components = 0;
    double sensitivity() const;  // detected / lesions; NaN when there are no lesions
};
LesionDetection lesion_detection(const LabelSlices& pred, const LabelSlices& truth);

// Post-processing of a predicted label map (nnU-Net style): 3D components (26-connectivity) of the
// foreground (every label > 0, so a bleed touching another class stays one component) whose volume
// is below `min_ml` are set to background in place. Returns the number of components removed.
int remove_small_components(LabelSlices& labels, const std::array<double, 3>& spacing, double min_ml);

}  // namespace hemoscan
