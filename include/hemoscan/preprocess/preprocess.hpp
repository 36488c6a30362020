#pragma once
// Preprocessing: CT windows, resizing, denoising, normalisation, cropping to the head.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "hemoscan/image.hpp"
#include "hemoscan/io/dicom.hpp"

namespace hemoscan {

// A CT window in HU: values level - width/2 .. level + width/2 map linearly to 0..1, clamped.
struct Window {
    std::string name;  // brain, subdural, bone or "L,W"
    double level = 40;
    double width = 80;
};

// Named presets (level/width): brain 40/80, subdural 80/200, bone 600/2800.
Window window_brain();
Window window_subdural();
Window window_bone();

// Parses "brain", "subdural", "bone", "L,W" (e.g. "50,150") or "rgb" (= brain, subdural, bone as
// three channels). Throws UsageError for anything else or a width <= 0.
std::vector<Window> parse_windows(const std::string& spec);

// Applies one window to HU values: CV_32FC1 in [0, 1]. Exact linear map:
// v = clamp((hu - (level - width/2)) / width, 0, 1).
cv::Mat apply_window(const cv::Mat& hu, const Window& window);

// Applies several windows and stacks them as channels: CV_32FC(n).
cv::Mat apply_windows(const cv::Mat& hu, const std::vector<Window>& windows);

// 0..1 float (any channels) -> 8-bit, v8 = round(v * 255).
cv::Mat to_uint8(const cv::Mat& unit);

// Resize options. keep_aspect pads the shorter side with `pad_value` (centred) after scaling the
// longer side to the target, so the anatomy is not stretched.
struct ResizeOptions {
    int width = 256;
    int height = 256;
    bool keep_aspect = false;
    float pad_value = 0.f;
};
// Area interpolation when shrinking, linear when enlarging (float images); nearest for masks.
cv::Mat resize_image(const cv::Mat& image, const ResizeOptions& options);
// Where resize_image() puts an image of `source` size inside its output (all of it without keep_aspect).
cv::Rect resize_content(cv::Size source, const ResizeOptions& options);
cv::Mat resize_mask(const cv::Mat& mask, const ResizeOptions& options);

// Median filter (seed 000's denoising) with an odd kernel size k >= 3 on float images of any
// channel count (replicated border). Exact for every k: k = 3 or 5 through cv::medianBlur, larger k
// (which OpenCV filters only on 8-bit) by a direct per-pixel median, O(k^2) per pixel. 8-bit images
// keep their type; others come back CV_32F. k <= 1 returns the input. Throws UsageError for even k.
cv::Mat median_filter(const cv::Mat& image, int k);

enum class Normalization { None, UnitRange, ZScore, ImageNet };
// UnitRange: per image min-max to 0..1 (a constant image becomes 0). ZScore: per channel
// (x - mean) / std (std 0 -> x - mean). ImageNet: UnitRange, then per channel c (x - mean[c % 3]) /
// std[c % 3] with torchvision's ImageNet statistics (R, G, B = the three windows of `rgb`); images
// whose channels are not a multiple of 3 use the mean of the three (0.449, 0.226): what models
// pre-trained on ImageNet expect. Returns a new CV_32F image.
cv::Mat normalize_image(const cv::Mat& image, Normalization mode);
Normalization parse_normalization(const std::string& name);  // "none", "unit", "zscore", "imagenet"

// The head: the largest connected component of pixels above `threshold` (after a small opening,
// so thin bridges to letters or the table break), with its holes filled. Returns its bounding box
// (a margin of `margin` pixels, clipped) and writes the component's mask (CV_8U 0/255) if asked.
// An image without any foreground returns the whole image.
cv::Rect find_head(const cv::Mat& gray, float threshold, int margin = 4, cv::Mat* head_mask = nullptr);

// Crops a sample to its head: image (and mask) cut to the head's box; pixels outside the head
// component set to `background` so that letters and borders outside it vanish. `threshold` is in
// the image's own units (channel 0).
void crop_to_head(Sample& sample, float threshold, float background = 0.f, int margin = 4);

// What preprocess() reads a slice as and finds the head on: `gray` is the slice as one float channel;
// `values` are HU (head threshold -500 HU: the cut between air and tissue is wide) or, for 8-bit
// display images (/255) and other modalities (per-image min-max), 0..1 (threshold 0.05: black is air,
// a little headroom absorbs JPEG noise); `air` is the value of air in `gray`'s units.
struct HeadSource {
    cv::Mat gray, values;
    float threshold = 0.05f;
    float air = 0.f;
};
HeadSource head_source(const DicomSlice& slice);

// The whole preprocessing of one loaded slice into a model input, configured once.
struct PreprocessOptions {
    std::vector<Window> windows{window_brain()};  // for HU input; ignored for already-windowed images
    ResizeOptions resize{};
    int median_kernel = 0;           // 0 = off
    Normalization normalization = Normalization::UnitRange;
    bool crop_head = false;
    // MR (modality mr): no windows; each channel through normalize_mr. `sequences` names the channels
    // (one per sequence, read from a case folder by name); empty = one grey channel.
    bool mr = false;
    std::vector<std::string> sequences;
    int channels() const {
        if (mr) return sequences.empty() ? 1 : static_cast<int>(sequences.size());
        return static_cast<int>(windows.size());
    }
};

// MR values have no physical scale. Magnitude: the 0.5th..99.5th percentiles of the head's pixels
// (those above 10% of the image's 99th percentile) map to 0..1, clamped, per image and channel, so
// that scanners and gains agree. Phase (a sequence whose name holds "phase"): its fixed range maps to
// 0..1 with zero phase at 0.5: radians (-pi..pi), Siemens' -4096..4094, or 0..255 in 8-bit images.
cv::Mat normalize_mr(const cv::Mat& channel, bool phase, bool eight_bit);
bool is_phase_sequence(const std::string& name);

// DICOM/HU slice -> windows; 8-bit (already windowed) image -> /255 and replicated to the number
// of window channels (documented: such images are used as they are). 16-bit non-HU images are
// min-max scaled. Then optional crop to head, median, resize, normalisation. Image and mask move
// together (the mask only through crop and nearest-neighbour resize); sample.transform says where the
// slice went.
Sample preprocess(const DicomSlice& slice, const PreprocessOptions& options, const cv::Mat& mask = cv::Mat());

// The preprocessing as a model file stores it (meta["preprocess"]), written by both trainers and read by
// both predictors: {"windows": [{"name", "level", "width"}], "window_spec" (as the user gave it), "size",
// "keep_aspect", "median", "normalization" (none | unit | zscore), "crop_head", "modality", "sequences"}.
nlohmann::json preprocess_to_json(const PreprocessOptions& options, const std::string& window_spec,
                                  const std::string& modality);
// Missing keys (or a null/absent object: models from before the key existed) take PreprocessOptions'
// defaults. UsageError naming the key for a value of the wrong type.
PreprocessOptions preprocess_from_json(const nlohmann::json& json);

}  // namespace hemoscan
