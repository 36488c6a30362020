// Segmentation: source slice <-> model input, overlap counting, meta and fingerprints (see seg_detail.hpp).
#include <algorithm>
#include <cstdio>
#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/train/segment.hpp"
#include "hemoscan/util/strings.hpp"
#include "train/seg_detail.hpp"

namespace hemoscan::seg_detail {

namespace fs = std::filesystem;

ImageMeta slice_meta(const Volume& volume, int k) {
    if (k >= 0 && static_cast<size_t>(k) < volume.slice_meta.size()) return volume.slice_meta[static_cast<size_t>(k)];
    ImageMeta m;
    const cv::Mat& s = volume.slices.at(static_cast<size_t>(k));
    m.rows = s.rows;
    m.cols = s.cols;
    double lo = 0, hi = 0;
    if (!s.empty()) cv::minMaxLoc(s.channels() == 1 ? s : s.reshape(1), &lo, &hi);
    m.is_hu = lo <= -900.0;
    m.pixel_spacing = {volume.geometry.spacing[1], volume.geometry.spacing[0]};
    return m;
}

namespace {

// As in preprocess(): the head is found on HU (threshold -500) or on 0..1 data (0.05).
constexpr float kHeadThresholdHu = -500.f;
constexpr float kHeadThresholdUnit = 0.05f;

cv::Mat gray_float(const cv::Mat& pixels) {
    cv::Mat f;
    pixels.convertTo(f, CV_32F);
    if (f.channels() == 1) return f;
    cv::Mat g;
    if (f.channels() == 3) {
        cv::cvtColor(f, g, cv::COLOR_BGR2GRAY);
    } else if (f.channels() == 4) {
        cv::cvtColor(f, g, cv::COLOR_BGRA2GRAY);
    } else {
        cv::extractChannel(f, g, 0);
    }
    return g;
}

// preprocess.cpp's ResizeLayout: where the scaled content sits in the model input.
cv::Rect content_rect(cv::Size source, const ResizeOptions& r) {
    if (!r.keep_aspect) return {0, 0, r.width, r.height};
    const double scale =
        std::min(static_cast<double>(r.width) / source.width, static_cast<double>(r.height) / source.height);
    const int w = std::clamp(static_cast<int>(std::lround(source.width * scale)), 1, r.width);
    const int h = std::clamp(static_cast<int>(std::lround(source.height * scale)), 1, r.height);
    return {(r.width - w) / 2, (r.height - h) / 2, w, h};
}

}  // namespace

PreparedSlice prepare_slice(const cv::Mat& pixels, const ImageMeta& meta, const PreprocessOptions& options,
                            const cv::Mat& mask) {
    PreparedSlice out;
    out.source = pixels.size();
    out.box = cv::Rect(0, 0, pixels.cols, pixels.rows);
    if (!options.crop_head) {
        out.sample = preprocess(DicomSlice{pixels, meta}, options, mask);
        return out;
    }
    cv::Mat gray = gray_float(pixels), source;
    float threshold = kHeadThresholdUnit, air = 0.f;
    if (meta.already_windowed) {
        gray.convertTo(source, CV_32F, 1.0 / 255.0);
    } else if (meta.is_hu) {
        source = gray;
        threshold = kHeadThresholdHu;
        air = -1024.f;
    } else {
        source = normalize_image(gray, Normalization::UnitRange);
        double lo, hi;
        cv::minMaxLoc(gray, &lo, &hi);
        air = static_cast<float>(lo);
    }
    cv::Mat head;
    out.box = find_head(source, threshold, 4, &head);
    cv::Mat cut = gray.clone();
    cut.setTo(cv::Scalar(air), head == 0);  // as preprocess(): what lies outside the head is air
    PreprocessOptions rest = options;
    rest.crop_head = false;
    out.sample = preprocess(DicomSlice{cut(out.box).clone(), meta}, rest, mask.empty() ? mask : mask(out.box).clone());
    return out;
}

void check_slice_context(const std::vector<PreparedSlice>& slices, int context) {
    if (context < 0) throw UsageError("--context must be >= 0");
    if (context == 0) return;
    for (const auto& s : slices) {
        if (s.box != slices.front().box || s.sample.image.size() != slices.front().sample.image.size() ||
            s.sample.image.type() != slices.front().sample.image.type()) {
            throw UsageError("--context: the slices of a volume differ in crop or size (use --crop-head false)");
        }
    }
}

cv::Mat context_image(const std::vector<PreparedSlice>& slices, size_t k, int context) {
    if (context == 0) return slices[k].sample.image;
    const int n = static_cast<int>(slices.size()), at = static_cast<int>(k);
    std::vector<cv::Mat> parts;
    for (int d = -context; d <= context; ++d)
        parts.push_back(slices[static_cast<size_t>(std::clamp(at + d, 0, n - 1))].sample.image);
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

cv::Mat labels_to_source(const std::vector<cv::Mat>& probabilities, const PreparedSlice& prepared,
                         const ResizeOptions& resize) {
    if (probabilities.size() < 2) throw UsageError("labels_to_source: needs background and at least one class");
    const cv::Rect content = content_rect(prepared.box.size(), resize);
    const cv::Size box = prepared.box.size();
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
    cv::Mat labels(prepared.source, CV_8UC1, cv::Scalar(0));
    const int k_count = static_cast<int>(planes.size());
    for (int y = 0; y < box.height; ++y) {
        uchar* row = labels.ptr<uchar>(prepared.box.y + y) + prepared.box.x;
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

nlohmann::json preprocess_json(const PreprocessOptions& p, const std::string& window_spec,
                               const std::string& modality) {
    nlohmann::json windows = nlohmann::json::array();
    for (const auto& w : p.windows) windows.push_back({{"name", w.name}, {"level", w.level}, {"width", w.width}});
    const char* norm = p.normalization == Normalization::None     ? "none"
                       : p.normalization == Normalization::ZScore ? "zscore"
                                                                  : "unit";
    return {{"windows", windows},        {"window_spec", window_spec},
            {"size", p.resize.width},    {"keep_aspect", p.resize.keep_aspect},
            {"median", p.median_kernel}, {"normalization", norm},
            {"crop_head", p.crop_head},  {"modality", modality}};
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

// ---- inputs and overlays (public, train/segment.hpp) ----

namespace hemoscan {

namespace fs = std::filesystem;

namespace {

bool nifti_name(const fs::path& p) {
    const std::string name = to_lower(p.filename().string());
    return ends_with(name, ".nii") || ends_with(name, ".nii.gz");
}

}  // namespace

Volume read_segment_input(const fs::path& path, ModalityPolicy policy) {
    const std::string name = path.string();
    std::error_code ec;
    if (!fs::exists(path, ec)) throw InputError(name + ": no such file or folder");
    try {
        if (fs::is_directory(path, ec)) {
            std::vector<Volume> series = read_dicom_series({path}, policy);
            if (series.empty()) throw InputError(name + ": no DICOM series in this folder");
            if (series.size() > 1) {
                logger().warn("{}: {} series; segmenting the largest ({} slices)", name, series.size(),
                              series.front().depth());
            }
            return std::move(series.front());
        }
        if (nifti_name(path)) return read_nifti(path);
        if (is_dicom_file(path)) {
            std::vector<Volume> series = read_dicom_series({path}, policy);
            if (series.empty()) throw InputError(name + ": not a readable DICOM image");
            return std::move(series.front());
        }
        if (is_image_2d_path(path)) return slice_volume(load_image(path, policy));
    } catch (const InputError& e) {
        if (std::string(e.what()).find(name) != std::string::npos) throw;
        throw InputError(name + ": " + e.what());
    } catch (const UsageError&) {
        throw;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        throw InputError(name + ": " + e.what());
    }
    throw InputError(name + ": not a DICOM series folder, DICOM file, NIfTI file (.nii/.nii.gz) or 2D image");
}

cv::Scalar segmentation_colour(int label) {
    static const cv::Scalar palette[] = {
        {60, 60, 255},    // 1 red (epidural)
        {0, 230, 255},    // 2 yellow (intraparenchymal)
        {255, 160, 0},    // 3 blue (intraventricular)
        {255, 80, 255},   // 4 magenta (subarachnoid)
        {80, 255, 80},    // 5 green (subdural)
        {0, 150, 255},    // 6 orange (calcification)
        {255, 255, 0},    // 7 cyan
        {180, 120, 255},  // 8 pink
    };
    if (label <= 0) return {0, 0, 0};
    return palette[static_cast<size_t>(label - 1) % (sizeof palette / sizeof palette[0])];
}

cv::Mat segmentation_overlay(const cv::Mat& pixels, const ImageMeta& meta, const cv::Mat& labels, double alpha) {
    if (pixels.empty() || labels.size() != pixels.size() || labels.type() != CV_8UC1) {
        throw UsageError("segmentation_overlay: the label map must be CV_8UC1 of the image's size");
    }
    cv::Mat gray;
    pixels.convertTo(gray, CV_32F);
    if (gray.channels() > 1) cv::cvtColor(gray, gray, cv::COLOR_BGR2GRAY);
    cv::Mat unit;
    if (meta.is_hu) {
        unit = apply_window(gray, window_brain());
    } else if (meta.already_windowed) {
        gray.convertTo(unit, CV_32F, 1.0 / 255.0);
    } else {
        unit = normalize_image(gray, Normalization::UnitRange);
    }
    cv::Mat bgr;
    cv::cvtColor(to_uint8(unit), bgr, cv::COLOR_GRAY2BGR);
    double lo, hi;
    cv::minMaxLoc(labels, &lo, &hi);
    for (int c = 1; c <= static_cast<int>(hi); ++c) {
        const cv::Mat sel = labels == c;
        if (cv::countNonZero(sel) == 0) continue;
        const cv::Scalar colour = segmentation_colour(c);
        cv::Mat tinted;
        cv::addWeighted(bgr, 1.0 - alpha, cv::Mat(bgr.size(), bgr.type(), colour), alpha, 0.0, tinted);
        tinted.copyTo(bgr, sel);
        std::vector<std::vector<cv::Point>> contours;
        cv::findContours(sel, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
        cv::drawContours(bgr, contours, -1, colour, 1, cv::LINE_8);
    }
    return bgr;
}

}  // namespace hemoscan
