#include "serve/analysis.hpp"

#include <algorithm>
#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/explain/overlay.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/train/predictor.hpp"
#include "hemoscan/train/segment.hpp"

namespace hemoscan::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Slices are shown at about their own size, within these bounds.
constexpr int kDisplayMaxSide = 512;
constexpr int kDisplayMinSide = 256;
constexpr size_t kVolumeCache = 3;

std::string slice_url(const std::string& id, const char* what, size_t k) {
    return "/api/results/" + id + "/" + what + "/" + std::to_string(k) + ".png";
}

json labels_json(const Predictor& predictor, const Prediction& p) {
    json o = json::object();
    const auto& labels = predictor.labels();
    for (size_t l = 0; l < labels.size(); ++l) {
        o[labels[l]] = {{"probability", p.probabilities[l]},
                        {"decision", p.decisions[l] != 0},
                        {"threshold", predictor.thresholds()[l]}};
    }
    return o;
}

// What the page shows as the verdict: the positive labels, or "normal"; multi-class: the class.
std::string finding_of(const Predictor& predictor, const Prediction& p) {
    std::string out;
    for (size_t l = 0; l < p.decisions.size(); ++l) {
        if (!p.decisions[l]) continue;
        if (!out.empty()) out += ", ";
        out += predictor.labels()[l];
    }
    return out.empty() ? "normal" : out;
}

size_t argmax(const std::vector<double>& v) {
    return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// The study result, by the rule of `hemoscan predict` (train/predict_inputs.cpp): per label the
// maximum over the slices; multi-class: the mean class probabilities.
Prediction study_of(Predictor& predictor, const std::vector<Prediction>& items) {
    Prediction overall = items.front();
    if (items.size() > 1) {
        for (size_t l = 0; l < overall.probabilities.size(); ++l) {
            double v = predictor.multiclass() ? 0.0 : overall.probabilities[l];
            for (const auto& p : items) {
                v = predictor.multiclass() ? v + p.probabilities[l] / static_cast<double>(items.size())
                                           : std::max(v, p.probabilities[l]);
            }
            overall.probabilities[l] = v;
        }
        overall.decisions = predictor.decide(overall.probabilities);
    }
    return overall;
}

std::string window_name_or_brain(const PreprocessOptions& pre) {
    const std::string name = pre.windows.empty() ? "" : pre.windows.front().name;
    return name == "brain" || name == "subdural" || name == "bone" ? name : "brain";
}

Geometry single_slice_geometry(const ImageMeta& m) {
    Geometry g;
    g.spacing = {m.pixel_spacing[1], m.pixel_spacing[0], m.slice_thickness > 0 ? m.slice_thickness : 1.0};
    g.origin = m.position;
    const auto& o = m.orientation;
    const double n[3] = {o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
    g.direction = {o[0], o[1], o[2], o[3], o[4], o[5], n[0], n[1], n[2]};
    return g;
}

// Keeps the slices as the model read them, for rendering in other windows later.
void write_volume(const fs::path& path, Volume volume, bool is_hu) {
    NiftiWriteOptions o;
    o.type = is_hu ? NiftiType::Int16 : NiftiType::Float32;
    o.description = "hemoscan serve upload";
    o.gzip_level = 1;
    try {
        write_nifti(path, volume, o);
    } catch (const UsageError&) {
        // A skewed or degenerate orientation: the display needs the pixels, not the geometry.
        volume.geometry.direction = Geometry{}.direction;
        write_nifti(path, volume, o);
    }
}

void write_image_source(const fs::path& path, const DicomSlice& s) {
    cv::Mat out;
    s.pixels.convertTo(out, s.meta.already_windowed ? CV_8U : CV_16U);
    write_image_2d(path, out);
}

std::string encode_png(const cv::Mat& image) {
    std::vector<uchar> buffer;
    // Fast compression: these are rendered on every request.
    cv::imencode(".png", image, buffer, {cv::IMWRITE_PNG_COMPRESSION, 1});
    return std::string(buffer.begin(), buffer.end());
}

int render_int(const json& result, const char* key) { return result.at("render").at(key).get<int>(); }

// Segments the upload: a DICOM series as one volume (its real spacing), images one by one (1 mm
// pixels: a PNG/JPEG carries no spacing). Writes mask_<k>.png (label values, lossless) per slice.
json segment_upload(SegPredictor& seg, const Volume& series, const std::vector<DicomSlice>& slices,
                    const fs::path& dir, std::vector<std::string>& warnings) {
    std::vector<cv::Mat> masks;
    std::vector<double> per_class;
    double bleed_ml = 0;
    std::vector<double> slice_bleed;
    auto add = [&](const SegmentationResult& r, const std::array<double, 3>& spacing) {
        if (per_class.empty()) per_class.assign(r.class_names.size(), 0.0);
        for (size_t c = 0; c < r.volume_ml.size() && c < per_class.size(); ++c) per_class[c] += r.volume_ml[c];
        bleed_ml += r.bleed_volume_ml;
        const double voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0;
        for (const cv::Mat& m : r.labels.slices) {
            long n = 0;
            for (int y = 0; y < m.rows; ++y) {
                const uchar* row = m.ptr<uchar>(y);
                for (int x = 0; x < m.cols; ++x) {
                    const int label = row[x];
                    if (label == 0) continue;
                    const auto& bleed = seg.bleed_classes();
                    if (bleed.empty() || std::find(bleed.begin(), bleed.end(), label) != bleed.end()) ++n;
                }
            }
            slice_bleed.push_back(static_cast<double>(n) * voxel_ml);
            masks.push_back(m);
        }
    };
    if (!series.slices.empty()) {
        add(seg.segment(series), series.geometry.spacing);
    } else {
        for (const DicomSlice& s : slices) {
            Volume one;
            one.slices = {s.pixels};
            one.slice_meta = {s.meta};
            add(seg.segment(one), one.geometry.spacing);
        }
        warnings.push_back("PNG/JPEG images carry no pixel spacing: the bleed volume assumes 1 mm pixels and slices");
    }
    for (size_t k = 0; k < masks.size(); ++k) write_image_2d(dir / ("mask_" + std::to_string(k) + ".png"), masks[k]);
    json volumes = json::object();
    for (size_t c = 1; c < per_class.size(); ++c) volumes[seg.class_names()[c]] = per_class[c];
    return {{"model", model_name(seg.meta())},
            {"models", seg.models()},
            {"class_names", seg.class_names()},
            {"bleed_classes", seg.bleed_classes()},
            {"volume_ml", volumes},
            {"bleed_volume_ml", bleed_ml},
            {"spacing_known", !series.slices.empty()},
            {"slice_bleed_ml", slice_bleed}};
}

}  // namespace

std::string model_name(const json& meta) {
    const auto it = meta.find("model");
    if (it == meta.end() || !it->is_object()) return "";
    return it->value("name", std::string());
}

json analyze(Predictor& predictor, SegPredictor* seg, const StagedUpload& upload, const std::string& id,
             const fs::path& dir) {
    const PreprocessOptions& pre = predictor.preprocess_options();
    Volume series;  // the DICOM upload as one volume (empty for images): what the segmenter reads
    std::vector<DicomSlice> slices;
    std::vector<std::string> names;
    std::vector<std::string> warnings = upload.warnings;
    std::string kind;
    bool is_hu = false;
    if (!upload.dicoms.empty()) {
        std::vector<fs::path> paths;
        for (const auto& f : upload.dicoms) paths.push_back(f.path);
        auto volumes = read_dicom_series(paths, predictor.modality());
        if (volumes.empty()) throw InputError("no DICOM image in the upload");
        if (volumes.size() > 1) {
            warnings.push_back(std::to_string(volumes.size()) + " series in the upload: showing the largest (" +
                               std::to_string(volumes.front().depth()) + " slices)");
        }
        Volume& v = volumes.front();
        for (const auto& w : v.warnings) warnings.push_back(w);
        kind = v.depth() == 1 ? "dicom" : "series";
        is_hu = v.slice_meta.front().is_hu;
        if (v.depth() == 1) v.geometry = single_slice_geometry(v.slice_meta.front());
        write_volume(dir / "volume.nii.gz", v, is_hu);
        for (int i = 0; i < v.depth(); ++i) {
            slices.push_back(DicomSlice{v.slices[static_cast<size_t>(i)], v.slice_meta[static_cast<size_t>(i)]});
            names.push_back("slice " + std::to_string(i + 1));
        }
        series = std::move(v);
    } else {
        kind = upload.images.size() == 1 ? "image" : "images";
        for (size_t i = 0; i < upload.images.size(); ++i) {
            DicomSlice s;
            s.pixels = read_image_2d(upload.images[i].path, &s.meta);
            write_image_source(dir / ("image_" + std::to_string(i) + ".png"), s);
            slices.push_back(std::move(s));
            names.push_back(upload.images[i].display_name);
        }
    }

    std::vector<Sample> samples;
    samples.reserve(slices.size());
    for (const auto& s : slices) samples.push_back(preprocess(s, pre));
    std::vector<Prediction> items = predictor.predict_samples(samples, kInferenceBatch);
    const Prediction overall = study_of(predictor, items);

    // One label's evidence on every slice, so that scrolling compares like with like.
    const size_t cam_label = argmax(overall.probabilities);
    size_t top_slice = 0;
    for (size_t i = 0; i < items.size(); ++i) {
        if (items[i].probabilities[cam_label] > items[top_slice].probabilities[cam_label]) top_slice = i;
    }
    for (size_t i = 0; i < samples.size(); ++i) {
        cv::Mat cam = predictor.heatmap(samples[i], static_cast<int>(cam_label)), cam8;
        cam.convertTo(cam8, CV_8U, 255.0);
        write_image_2d(dir / ("cam_" + std::to_string(i) + ".png"), cam8);
    }

    // Display size: the model's geometry scaled by an integer, so heatmaps map onto it exactly.
    const int mw = pre.resize.width, mh = pre.resize.height;
    const int native = std::min(kDisplayMaxSide, std::max(slices.front().pixels.cols, slices.front().pixels.rows));
    const int model_side = std::max(mw, mh);
    const int scale = std::max({1, static_cast<int>(std::lround(static_cast<double>(native) / model_side)),
                                (kDisplayMinSide + model_side - 1) / model_side});

    json segmentation;
    if (seg) segmentation = segment_upload(*seg, series, slices, dir, warnings);

    json result;
    result["id"] = id;
    result["kind"] = kind;
    result["labels"] = predictor.labels();
    result["multiclass"] = predictor.multiclass();
    result["result"] = labels_json(predictor, overall);
    result["finding"] = finding_of(predictor, overall);
    result["positive"] = std::any_of(overall.decisions.begin(), overall.decisions.end(), [](int d) { return d != 0; });
    result["heatmap_label"] = predictor.labels()[cam_label];
    result["n_slices"] = slices.size();
    result["top_slice"] = top_slice;
    result["windows"] = is_hu ? json{"brain", "subdural", "bone"} : json::array();
    result["image_url"] = slice_url(id, "slices", top_slice);
    result["heatmap_url"] = slice_url(id, "heatmaps", top_slice);
    result["overlay_url"] = slice_url(id, "overlays", top_slice);
    json js = json::array();
    for (size_t i = 0; i < slices.size(); ++i) {
        json sj = {{"index", i},
                   {"name", names[i]},
                   {"result", labels_json(predictor, items[i])},
                   {"image_url", slice_url(id, "slices", i)},
                   {"heatmap_url", slice_url(id, "heatmaps", i)},
                   {"overlay_url", slice_url(id, "overlays", i)}};
        if (seg) {
            sj["mask_url"] = slice_url(id, "masks", i);
            sj["bleed_ml"] = segmentation.at("slice_bleed_ml").at(i);
        }
        js.push_back(std::move(sj));
    }
    result["slices"] = std::move(js);
    if (seg) {
        segmentation.erase("slice_bleed_ml");
        result["mask_url"] = slice_url(id, "masks", top_slice);
        result["bleed_volume_ml"] = segmentation.at("bleed_volume_ml");
        result["segmentation"] = std::move(segmentation);
    }
    result["warnings"] = warnings;
    result["model"] = {{"name", model_name(predictor.meta())},
                       {"input_size", {mw, mh}}};
    result["render"] = {{"source", upload.dicoms.empty() ? "images" : "volume"},
                        {"is_hu", is_hu},
                        {"width", mw * scale},
                        {"height", mh * scale},
                        {"keep_aspect", pre.resize.keep_aspect},
                        {"crop_head", pre.crop_head},
                        {"default_window", is_hu ? window_name_or_brain(pre) : ""}};
    return result;
}

std::shared_ptr<const Volume> Renderer::volume(const std::string& id, const std::string& file, bool is_hu) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = cache_.begin(); it != cache_.end(); ++it) {
            if (it->first != id) continue;
            cache_.splice(cache_.begin(), cache_, it);
            return cache_.front().second;
        }
    }
    auto v = std::make_shared<Volume>(read_nifti(results_dir_ / id / file));
    for (auto& m : v->slice_meta) m.is_hu = is_hu;
    std::lock_guard<std::mutex> lock(mutex_);
    cache_.emplace_front(id, v);
    while (cache_.size() > kVolumeCache) cache_.pop_back();
    return v;
}

DicomSlice Renderer::load_slice(const json& result, int k) {
    const std::string id = result.at("id").get<std::string>();
    const json& render = result.at("render");
    if (render.at("source").get<std::string>() == "volume") {
        auto v = volume(id, "volume.nii.gz", render.at("is_hu").get<bool>());
        if (k >= v->depth()) throw InputError("slice " + std::to_string(k) + " is missing in the stored volume");
        DicomSlice s{v->slices[static_cast<size_t>(k)], v->slice_meta[static_cast<size_t>(k)]};
        s.meta.is_hu = render.at("is_hu").get<bool>();
        return s;
    }
    DicomSlice s;
    s.pixels = read_image_2d(results_dir_ / id / ("image_" + std::to_string(k) + ".png"), &s.meta);
    return s;
}

namespace {

PreprocessOptions display_options(const json& result, const Window& window) {
    PreprocessOptions o;
    o.windows = {window};
    o.resize = ResizeOptions{render_int(result, "width"), render_int(result, "height"),
                             result.at("render").at("keep_aspect").get<bool>(), 0.f};
    o.crop_head = result.at("render").at("crop_head").get<bool>();
    o.median_kernel = 0;
    o.normalization = Normalization::None;
    return o;
}

Window parse_one_window(const json& result, const std::string& spec) {
    std::string s = spec;
    if (s.empty() || s == "default") s = result.at("render").value("default_window", std::string());
    if (s.empty()) s = "brain";  // images: the window is ignored (they are shown as they are)
    auto windows = parse_windows(s);  // UsageError for a bad name
    if (windows.size() != 1) throw UsageError("window must be one of brain, subdural, bone or L,W: '" + spec + "'");
    return windows.front();
}

cv::Mat load_cam(const fs::path& path, const cv::Size& size) {
    cv::Mat cam8 = cv::imread(path.string(), cv::IMREAD_GRAYSCALE);
    if (cam8.empty()) throw InputError(path.filename().string() + ": heatmap missing");
    cv::Mat resized;
    cv::resize(cam8, resized, size, 0, 0, cv::INTER_LINEAR);
    return resized;
}

}  // namespace

cv::Mat Renderer::display_gray(const json& result, int k, const std::string& window) {
    const Window w = parse_one_window(result, window);
    Sample s = preprocess(load_slice(result, k), display_options(result, w));
    return to_uint8(s.image);
}

std::string Renderer::slice_png(const json& result, int k, const std::string& window) {
    return encode_png(display_gray(result, k, window));
}

std::string Renderer::heatmap_png(const json& result, int k) {
    const cv::Size size(render_int(result, "width"), render_int(result, "height"));
    cv::Mat cam8 = load_cam(results_dir_ / result.at("id").get<std::string>() / ("cam_" + std::to_string(k) + ".png"),
                            size);
    cv::Mat colour, bgra;
    cv::applyColorMap(cam8, colour, cv::COLORMAP_JET);
    std::vector<cv::Mat> ch;
    cv::split(colour, ch);
    ch.push_back(cam8);
    cv::merge(ch, bgra);
    return encode_png(bgra);
}

std::string Renderer::overlay_png(const json& result, int k, const std::string& window) {
    cv::Mat gray = display_gray(result, k, window);
    cv::Mat cam8 = load_cam(results_dir_ / result.at("id").get<std::string>() / ("cam_" + std::to_string(k) + ".png"),
                            gray.size());
    cv::Mat cam;
    cam8.convertTo(cam, CV_32F, 1.0 / 255.0);
    return encode_png(overlay_heatmap(gray, cam));
}

std::string Renderer::mask_png(const json& result, int k) {
    const std::string id = result.at("id").get<std::string>();
    cv::Mat labels = cv::imread((results_dir_ / id / ("mask_" + std::to_string(k) + ".png")).string(),
                                cv::IMREAD_UNCHANGED);
    if (labels.empty() || labels.type() != CV_8UC1) throw InputError("mask of slice " + std::to_string(k) + " missing");
    // Through the same crop and resize as the displayed slice, so that the mask lies on it exactly.
    const Sample s = preprocess(load_slice(result, k), display_options(result, parse_one_window(result, "")), labels);
    const cv::Mat& m = s.mask;
    cv::Mat rgba(m.size(), CV_8UC4, cv::Scalar(0, 0, 0, 0));
    double lo = 0, hi = 0;
    cv::minMaxLoc(m, &lo, &hi);
    for (int label = 1; label <= static_cast<int>(hi); ++label) {
        cv::Mat region = m == label;
        if (cv::countNonZero(region) == 0) continue;
        const cv::Scalar c = segmentation_colour(label);
        rgba.setTo(cv::Scalar(c[0], c[1], c[2], 110), region);
        // A solid outline, so that small regions stay visible at low opacity.
        cv::Mat eroded, edge;
        cv::erode(region, eroded, cv::Mat());
        cv::subtract(region, eroded, edge);
        rgba.setTo(cv::Scalar(c[0], c[1], c[2], 255), edge);
    }
    return encode_png(rgba);
}

}  // namespace hemoscan::serve
