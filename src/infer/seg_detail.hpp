#pragma once
// Shared by segmentation prediction, evaluation and training (private to src/). Free of LibTorch.
// The one path from a source slice to a model input (prepare_slice) and back from the model's class
// probabilities to a label map of the source slice (labels_to_source), so that training validation,
// `segment` and `evaluate` see the same geometry.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hemoscan/data/seg_dataset.hpp"
#include "hemoscan/image.hpp"
#include "hemoscan/metrics/segmentation.hpp"
#include "hemoscan/preprocess/preprocess.hpp"

namespace hemoscan::seg_detail {

// A slice as the model sees it: the sample (model input, and the mask at model size when one was
// given) and, in sample.transform, where it came from in the source slice.
struct PreparedSlice {
    Sample sample;
    // The part of the source slice that went in (the whole slice unless crop_head).
    const cv::Rect& box() const { return sample.transform.crop; }
    const cv::Size& source() const { return sample.transform.source; }
};

// preprocess() for segmentation. With crop_head the head box is cut out here (pixels outside the head
// set to air) and remembered, so that predictions can be put back where they belong.
PreparedSlice prepare_slice(const cv::Mat& pixels, const ImageMeta& meta, const PreprocessOptions& options,
                            const cv::Mat& mask = cv::Mat());

// 2.5D input: each slice's model input becomes the channels of slices k - context .. k + context of
// the same volume (the nearest slice repeated beyond either end), in that order. The slices must share
// one geometry (no per-slice head crop): other sizes or boxes -> UsageError. context 0 leaves them.
void add_slice_context(std::vector<PreparedSlice>& slices, int context);

// The same, for one slice on demand, so that training keeps each slice's input once rather than
// 2 * context + 1 times: check_slice_context once per volume, then context_image per slice used.
void check_slice_context(const std::vector<PreparedSlice>& slices, int context);
cv::Mat context_image(const std::vector<PreparedSlice>& slices, size_t k, int context);

// Class probabilities at model size (K planes, CV_32FC1, S x S) -> label map (CV_8UC1) of the source
// slice, through the slice's SpatialTransform: the padding is cut off (content), the probabilities are
// resized linearly to the box (crop); a pixel is foreground when P(background) < 0.5 and then takes
// the most probable foreground class; outside the box is background.
cv::Mat labels_to_source(const std::vector<cv::Mat>& probabilities, const PreparedSlice& prepared);

// Voxel overlap of every class (index = label value; 0 unused) and of "any bleed" (the union of
// `bleed` classes) between a predicted and a true label volume.
struct CaseOverlap {
    std::vector<Overlap> classes;
    Overlap any;
};
CaseOverlap case_overlap(const LabelSlices& pred, const LabelSlices& truth, int classes, const std::vector<int>& bleed);

// A stable fingerprint of a segmentation dataset (form, classes, case files), FNV-1a hex.
std::string fingerprint(const SegDataset& dataset);

}  // namespace hemoscan::seg_detail
