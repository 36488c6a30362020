// Segmentation: source slice <-> model input, overlap counting, meta and fingerprints (see seg_detail.hpp).
#include <algorithm>
#include <cstdio>
#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/preprocess/volume.hpp"
#include "hemoscan/util/strings.hpp"
#include "infer/seg_detail.hpp"

namespace hemoscan::seg_detail {

namespace fs = std::filesystem;

PreparedSlice prepare_slice(const cv::Mat& pixels, const ImageMeta& meta, const PreprocessOptions& options,
                            const cv::Mat& mask) {
    PreparedSlice out;
    if (!options.crop_head) {
        out.sample = preprocess(DicomSlice{pixels, meta}, options, mask);
        return out;
    }
    // The head as preprocess() finds it; the raw values are cut (outside the head set to air) before the
    // windows, so that per-image scaling sees the head only.
    const HeadSource hs = head_source(DicomSlice{pixels, meta});
    cv::Mat head;
    const cv::Rect box = find_head(hs.values, hs.threshold, 4, &head);
    cv::Mat cut = hs.gray.clone();
    cut.setTo(cv::Scalar(hs.air), head == 0);
    PreprocessOptions rest = options;
    rest.crop_head = false;
    out.sample = preprocess(DicomSlice{cut(box).clone(), meta}, rest, mask.empty() ? mask : mask(box).clone());
    // preprocess() saw the cut-out box as its whole source: place it in the slice.
    out.sample.transform.source = pixels.size();
    out.sample.transform.crop = box;
    return out;
}

void check_slice_context(const std::vector<PreparedSlice>& slices, int context) {
    if (context < 0) throw UsageError("`context` must be >= 0");
    if (context == 0) return;
    for (const auto& s : slices) {
        if (s.box() != slices.front().box() || s.sample.image.size() != slices.front().sample.image.size() ||
            s.sample.image.type() != slices.front().sample.image.type()) {
            throw UsageError("`context`: the slices of a volume differ in crop or size (use `crop_head` false)");
        }
    }
}

cv::Mat context_image(const std::vector<PreparedSlice>& slices, size_t k, int context) {
    if (context == 0) return slices[k].sample.image;
    std::vector<cv::Mat> parts;
    for (size_t i : context_indices(slices.size(), k, context)) parts.push_back(slices[i].sample.image);
    cv::Mat merged;
    cv::merge(parts, merged);
    return merged;
}

void add_slice_context(std::vector<PreparedSlice>& slices, int context) {
    check_slice_context(slices, context);
    if (context == 0 || slices.empty()) return;
    std::vector<cv::Mat> merged;  // all first: each slice's own image is still its neighbours' input
    merged.reserve(slices.size());
    for (size_t k = 0; k < slices.size(); ++k) merged.push_back(context_image(slices, k, context));
    for (size_t k = 0; k < slices.size(); ++k) slices[k].sample.image = merged[k];
}

cv::Mat labels_to_source(const std::vector<cv::Mat>& probabilities, const PreparedSlice& prepared) {
    if (probabilities.size() < 2) throw UsageError("labels_to_source: needs background and at least one class");
    const cv::Rect content = prepared.sample.transform.content;
    const cv::Size box = prepared.box().size();
    std::vector<cv::Mat> planes;
    planes.reserve(probabilities.size());
    for (const cv::Mat& p : probabilities) {
        cv::Mat part = p(content), resized;
        if (part.size() == box) {
            resized = part;
        } else {
            cv::resize(part, resized, box, 0, 0, cv::INTER_LINEAR);
        }
        planes.push_back(resized);
    }
    cv::Mat labels(prepared.source(), CV_8UC1, cv::Scalar(0));
    const int k_count = static_cast<int>(planes.size());
    for (int y = 0; y < box.height; ++y) {
        uchar* row = labels.ptr<uchar>(prepared.box().y + y) + prepared.box().x;
        for (int x = 0; x < box.width; ++x) {
            // Foreground when the classes other than background together are more probable than it
            // (the Bayes decision for "any finding"), then the most probable of them. A plain argmax
            // would call background wherever the probability is split between two subtypes.
            if (planes[0].at<float>(y, x) >= 0.5f) continue;
            int best = 1;
            float best_p = planes[1].at<float>(y, x);
            for (int k = 2; k < k_count; ++k) {
                const float p = planes[static_cast<size_t>(k)].at<float>(y, x);
                if (p > best_p) best = k, best_p = p;
            }
            row[x] = static_cast<uchar>(best);
        }
    }
    return labels;
}

CaseOverlap case_overlap(const LabelSlices& pred, const LabelSlices& truth, int classes,
                         const std::vector<int>& bleed) {
    if (pred.size() != truth.size()) {
        throw UsageError("case_overlap: " + std::to_string(pred.size()) + " predicted slices, " +
                         std::to_string(truth.size()) + " true");
    }
    std::vector<bool> is_bleed(256, false);
    for (int c : bleed) is_bleed[static_cast<size_t>(c)] = true;
    CaseOverlap out;
    out.classes.assign(static_cast<size_t>(std::max(classes, 1)), Overlap{});
    for (size_t k = 0; k < pred.size(); ++k) {
        const cv::Mat &p = pred[k], &t = truth[k];
        if (p.size() != t.size()) throw UsageError("case_overlap: slice sizes differ");
        for (int y = 0; y < p.rows; ++y) {
            const uchar* pr = p.ptr<uchar>(y);
            const uchar* tr = t.ptr<uchar>(y);
            for (int x = 0; x < p.cols; ++x) {
                const int a = pr[x], b = tr[x];
                if (a == b) {
                    if (a > 0 && a < classes) ++out.classes[static_cast<size_t>(a)].tp;
                } else {
                    if (a > 0 && a < classes) ++out.classes[static_cast<size_t>(a)].fp;
                    if (b > 0 && b < classes) ++out.classes[static_cast<size_t>(b)].fn;
                }
                const bool pa = is_bleed[static_cast<size_t>(a)], tb = is_bleed[static_cast<size_t>(b)];
                if (pa && tb) {
                    ++out.any.tp;
                } else if (pa) {
                    ++out.any.fp;
                } else if (tb) {
                    ++out.any.fn;
                }
            }
        }
    }
    return out;
}

std::string fingerprint(const SegDataset& ds) {
    std::uint64_t h = 1469598103934665603ULL;  // FNV-1a 64-bit
    auto feed = [&h](const std::string& s) {
        for (unsigned char ch : s) {
            h ^= ch;
            h *= 1099511628211ULL;
        }
        h ^= 0xFF;
        h *= 1099511628211ULL;
    };
    auto rel = [&ds](const fs::path& p) {
        fs::path r = p.lexically_normal().lexically_relative(ds.root.lexically_normal());
        return (r.empty() || *r.begin() == ".." ? p : r).generic_string();
    };
    feed(ds.form);
    for (const auto& c : ds.class_names) feed(c);
    for (const SegCase& c : ds.cases) {
        feed(c.id);
        feed(c.patient);
        for (const auto& i : c.images) feed(rel(i));
        feed(rel(c.mask));
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

}  // namespace hemoscan::seg_detail
