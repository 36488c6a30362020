// One loaded slice -> one model input: windows (or the image as is), crop, median, resize, normalise.
#include "hemoscan/preprocess/preprocess.hpp"

#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace {

// Head detection thresholds. On HU the cut between air (-1000) and tissue is wide and independent
// of the chosen windows; on 0..1 display data, black is air and a little headroom absorbs JPEG noise.
constexpr float kHeadThresholdHu = -500.f;
constexpr float kHeadThresholdUnit = 0.05f;

cv::Mat to_gray_float(const cv::Mat& pixels) {
    cv::Mat f;
    pixels.convertTo(f, CV_32F);
    if (f.channels() == 1) return f;
    cv::Mat gray;
    if (f.channels() == 3) {
        cv::cvtColor(f, gray, cv::COLOR_BGR2GRAY);
    } else if (f.channels() == 4) {
        cv::cvtColor(f, gray, cv::COLOR_BGRA2GRAY);
    } else {
        cv::extractChannel(f, gray, 0);
    }
    return gray;
}

cv::Mat replicate(const cv::Mat& one, int n) {
    if (n == 1) return one;
    cv::Mat out;
    cv::merge(std::vector<cv::Mat>(static_cast<size_t>(n), one), out);
    return out;
}

// An MR slice as the model's channels: each channel of a multi-sequence image (or the one grey image)
// through normalize_mr, phase channels by their sequence name.
cv::Mat mr_channels(const DicomSlice& slice, const PreprocessOptions& options) {
    const ImageMeta& meta = slice.meta;
    const bool eight_bit = meta.already_windowed || slice.pixels.depth() == CV_8U;
    std::vector<cv::Mat> in;
    std::vector<std::string> names = meta.sequences;
    if (slice.pixels.channels() > 1 && names.size() == static_cast<size_t>(slice.pixels.channels())) {
        cv::split(slice.pixels, in);
    } else {
        in = {to_gray_float(slice.pixels)};
        if (names.size() != 1) names = {""};
    }
    const int n = options.channels();
    if (static_cast<int>(in.size()) != n) {
        std::string wanted;
        for (const auto& s : options.sequences) wanted += (wanted.empty() ? "" : ", ") + s;
        throw InputError(meta.path + ": " + std::to_string(in.size()) + " MR image(s) where the model reads " +
                         std::to_string(n) + " sequences (" + wanted +
                         "): give a folder with one image, volume or DICOM series per sequence");
    }
    std::vector<cv::Mat> out;
    for (int c = 0; c < n; ++c) {
        const size_t i = static_cast<size_t>(c);
        const std::string& name = i < options.sequences.size() ? options.sequences[i] : names[i];
        out.push_back(normalize_mr(in[i], is_phase_sequence(names[i]) || is_phase_sequence(name), eight_bit));
    }
    cv::Mat merged;
    cv::merge(out, merged);
    return merged;
}

}  // namespace

HeadSource head_source(const DicomSlice& slice) {
    HeadSource h;
    h.gray = to_gray_float(slice.pixels);
    if (slice.meta.already_windowed) {
        // A display image (PNG/JPG) was windowed by whoever rendered it: used as it is.
        h.gray.convertTo(h.values, CV_32F, 1.0 / 255.0);
    } else if (slice.meta.is_hu) {
        h.values = h.gray;
        h.threshold = kHeadThresholdHu;
        h.air = -1024.f;
    } else {
        // Other modalities (MR, 16-bit images) have no physical scale: per image min-max.
        h.values = normalize_image(h.gray, Normalization::UnitRange);
        double lo, hi;
        cv::minMaxLoc(h.gray, &lo, &hi);
        h.air = static_cast<float>(lo);
    }
    return h;
}

Sample preprocess(const DicomSlice& slice, const PreprocessOptions& options, const cv::Mat& mask) {
    const ImageMeta& meta = slice.meta;
    if (slice.pixels.empty()) throw InputError(meta.path + ": no pixel data");
    if (options.windows.empty()) throw UsageError("preprocess: no window given");
    if (!mask.empty()) {
        if (mask.size() != slice.pixels.size()) {
            throw InputError(meta.path + ": mask is " + std::to_string(mask.cols) + "x" + std::to_string(mask.rows) +
                             " but the image is " + std::to_string(slice.pixels.cols) + "x" +
                             std::to_string(slice.pixels.rows));
        }
        if (mask.channels() != 1) throw InputError(meta.path + ": mask must have one channel");
    }

    Sample sample;
    sample.meta = meta;
    sample.id = std::filesystem::path(meta.path).stem().string();
    sample.patient = meta.patient_id.empty() ? sample.id : meta.patient_id;
    if (!mask.empty()) mask.convertTo(sample.mask, CV_8U);

    const int n = options.channels();
    HeadSource hs = head_source(slice);
    if (options.mr && meta.is_hu) {
        throw InputError(meta.path + ": CT (Hounsfield units) where the model expects MR (it was trained on MRI)");
    }
    if (options.mr) {
        sample.image = mr_channels(slice, options);
        cv::extractChannel(sample.image, hs.values, 0);
        hs.threshold = 0.05f;
    } else {
        sample.image = meta.is_hu && !meta.already_windowed ? apply_windows(hs.values, options.windows) : replicate(hs.values, n);
    }
    sample.transform.source = slice.pixels.size();
    sample.transform.crop = cv::Rect(0, 0, slice.pixels.cols, slice.pixels.rows);
    if (options.crop_head) {
        cv::Mat head;
        const cv::Rect box = find_head(hs.values, hs.threshold, 4, &head);
        if (sample.image.channels() <= 4) {
            sample.image.setTo(cv::Scalar::all(0), head == 0);  // 0 is air in every window
        } else {
            std::vector<cv::Mat> ch;  // cv::Scalar holds 4 values: MR sequences may be more
            cv::split(sample.image, ch);
            for (auto& c : ch) c.setTo(0, head == 0);
            cv::merge(ch, sample.image);
        }
        sample.image = sample.image(box).clone();
        if (!sample.mask.empty()) sample.mask = sample.mask(box).clone();
        sample.transform.crop = box;
    }
    sample.image = median_filter(sample.image, options.median_kernel);
    sample.transform.content = resize_content(sample.image.size(), options.resize);
    sample.image = resize_image(sample.image, options.resize);
    sample.transform.output = sample.image.size();
    if (!sample.mask.empty()) sample.mask = resize_mask(sample.mask, options.resize);
    sample.image = normalize_image(sample.image, options.normalization);
    return sample;
}

}  // namespace hemoscan
