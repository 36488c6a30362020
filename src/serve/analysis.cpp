#include "serve/analysis.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/explain/overlay.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/infer/outputs.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/preprocess/preprocess.hpp"

namespace hemoscan::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Seconds since the last lap (or construction).
class Stopwatch {
public:
    double lap() {
        const auto now = std::chrono::steady_clock::now();
        const double s = std::chrono::duration<double>(now - last_).count();
        last_ = now;
        return s;
    }

private:
    std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// Slices are shown at about their own size, within these bounds.
constexpr int kDisplayMaxSide = 512;
constexpr int kDisplayMinSide = 256;
constexpr size_t kVolumeCache = 3;

std::string slice_url(const std::string& id, const char* what, size_t k) {
    return "/api/results/" + id + "/" + what + "/" + std::to_string(k) + ".png";
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

std::string window_name_or_brain(const PreprocessOptions& pre) {
    const std::string name = pre.windows.empty() ? "" : pre.windows.front().name;
    return name == "brain" || name == "subdural" || name == "bone" ? name : "brain";
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

}  // namespace

std::string model_name(const json& meta) {
    const auto it = meta.find("model");
    if (it == meta.end() || !it->is_object()) return "";
    return it->value("name", std::string());
}

namespace {

// The segmentation part of a result, with mask_<k>.png (label values, lossless) per slice.
json segmentation_json(const SegPredictor& seg, const StudySegmentation& s, const fs::path& dir) {
    const auto& masks = s.result.labels.slices;
    for (size_t k = 0; k < masks.size(); ++k) write_image_2d(dir / ("mask_" + std::to_string(k) + ".png"), masks[k]);
    json volumes = json::object();
    for (size_t c = 1; c < s.result.volume_ml.size(); ++c) volumes[seg.class_names()[c]] = s.result.volume_ml[c];
    return {{"model", model_name(seg.meta())},
            {"models", seg.models()},
            {"class_names", seg.class_names()},
            {"bleed_classes", seg.bleed_classes()},
            {"volume_ml", volumes},
            {"bleed_volume_ml", s.result.bleed_volume_ml},
            {"spacing_known", s.spacing_known}};
}

// Keeps what the page needs to render any slice again after a restart (see analysis.hpp).
void store_sources(const StudyInput& input, bool is_hu, const fs::path& dir) {
    if (input.is_volume()) {
        write_volume(dir / "volume.nii.gz", input.volume, is_hu);
        return;
    }
    for (size_t i = 0; i < input.slices.size(); ++i) {
        write_image_source(dir / ("image_" + std::to_string(i) + ".png"), input.slices[i]);
    }
}

}  // namespace

namespace {

// The result's DICOM objects, for download and for sending: [{"kind", "file", "url"}].
json dicom_outputs_json(const std::vector<DicomOutputFile>& files, const std::string& id) {
    json out = json::array();
    for (const auto& f : files) {
        const std::string name = f.path.filename().string();
        out.push_back({{"kind", f.kind}, {"file", name}, {"url", "/api/results/" + id + "/dicom/" + name}});
    }
    return out;
}

}  // namespace

json analyze(Predictor& predictor, SegPredictor* seg, const StagedUpload& upload, const std::string& id,
             const fs::path& dir, const DicomOutputOptions* dicom) {
    const PreprocessOptions& pre = predictor.preprocess_options();
    std::vector<fs::path> dicoms, images;
    std::vector<std::string> names, dicom_names;  // messages name the uploader's files, never the staged ones
    for (const auto& f : upload.dicoms) {
        dicoms.push_back(f.path);
        dicom_names.push_back(f.display_name);
    }
    for (const auto& f : upload.images) {
        images.push_back(f.path);
        names.push_back(f.display_name);
    }
    Stopwatch watch;
    StudyInput input = read_study_files(dicoms, images, names, predictor.modality(), dicom_names,
                                         predictor.preprocess_options().sequences);
    input.warnings.insert(input.warnings.begin(), upload.warnings.begin(), upload.warnings.end());
    const bool is_hu = input.is_volume() && input.slices.front().meta.is_hu;
    const double t_read = watch.lap();
    store_sources(input, is_hu, dir);
    const double t_store = watch.lap();

    AnalysisOptions options;
    options.heatmaps = HeatmapLabel::Study;
    const StudyResult r = analyze_study(input, &predictor, seg, options);
    const double t_models = watch.lap();
    for (size_t i = 0; i < r.heatmaps.size(); ++i) {
        cv::Mat cam8;
        r.heatmaps[i].convertTo(cam8, CV_8U, 255.0);
        write_image_2d(dir / ("cam_" + std::to_string(i) + ".png"), cam8);
    }

    // Display size: the model's geometry scaled by an integer, so heatmaps map onto it exactly.
    const int mw = pre.resize.width, mh = pre.resize.height;
    const cv::Mat& first = input.slices.front().pixels;
    const int native = std::min(kDisplayMaxSide, std::max(first.cols, first.rows));
    const int model_side = std::max(mw, mh);
    const int scale = std::max({1, static_cast<int>(std::lround(static_cast<double>(native) / model_side)),
                                (kDisplayMinSide + model_side - 1) / model_side});

    const size_t top = r.top_slice;
    json result;
    result["id"] = id;
    result["kind"] = r.kind;
    result["labels"] = predictor.labels();
    result["multiclass"] = predictor.multiclass();
    result["result"] = prediction_json(predictor, r.study, -1, true);
    result["finding"] = finding_of(predictor, r.study);
    result["study_rule"] = study_rule(predictor);
    result["positive"] = std::any_of(r.study.decisions.begin(), r.study.decisions.end(), [](int d) { return d != 0; });
    result["heatmap_label"] = predictor.labels()[static_cast<size_t>(r.heatmap_label)];
    result["n_slices"] = r.slices.size();
    result["top_slice"] = top;
    result["windows"] = is_hu ? json{"brain", "subdural", "bone"} : json::array();
    result["image_url"] = slice_url(id, "slices", top);
    result["heatmap_url"] = slice_url(id, "heatmaps", top);
    result["overlay_url"] = slice_url(id, "overlays", top);
    json js = json::array();
    for (size_t i = 0; i < r.slices.size(); ++i) {
        json sj = {{"index", i},
                   {"name", r.items[i]},
                   {"result", prediction_json(predictor, r.slices[i])},
                   {"image_url", slice_url(id, "slices", i)},
                   {"heatmap_url", slice_url(id, "heatmaps", i)},
                   {"overlay_url", slice_url(id, "overlays", i)}};
        if (seg) {
            sj["mask_url"] = slice_url(id, "masks", i);
            sj["bleed_ml"] = r.segmentation.slice_bleed_ml.at(i);
        }
        js.push_back(std::move(sj));
    }
    result["slices"] = std::move(js);
    if (seg) {
        result["mask_url"] = slice_url(id, "masks", top);
        result["bleed_volume_ml"] = r.segmentation.result.bleed_volume_ml;
        result["segmentation"] = segmentation_json(*seg, r.segmentation, dir);
    }
    const double t_pictures = watch.lap();
    std::vector<std::string> warnings = r.warnings;
    if (dicom && has_dicom_source(input)) {
        // The result stands without its DICOM objects: a series they cannot reference (slices of several
        // studies, say) gets a warning, not a refusal.
        try {
            result["dicom"] =
                dicom_outputs_json(write_dicom_outputs(dir / "dicom", input, r, &predictor, seg, *dicom), id);
        } catch (const Error& e) {
            std::error_code ec;
            fs::remove_all(dir / "dicom", ec);
            warnings.push_back(std::string("no DICOM objects for this result: ") + e.what());
        }
    }
    // Where the time went (the worklist's time to result is their sum plus the wait for the series).
    result["timing_s"] = {{"read", t_read}, {"sources_kept", t_store}, {"models", t_models},
                          {"pictures", t_pictures}, {"dicom_objects", watch.lap()}};
    result["warnings"] = warnings;
    result["model"] = {{"name", model_name(predictor.meta())}, {"input_size", {mw, mh}}};
    result["modality"] = pre.mr ? "MR" : "CT";
    result["sequences"] = pre.sequences;  // the MR channels, in the model's order (empty for CT)
    result["render"] = {{"source", input.is_volume() ? "volume" : "images"},
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

void Renderer::forget(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    cache_.remove_if([&](const auto& entry) { return entry.first == id; });
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
