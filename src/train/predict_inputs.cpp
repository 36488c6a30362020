#include "hemoscan/train/predict_inputs.hpp"

#include <algorithm>
#include <chrono>
#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/explain/overlay.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/preprocess/volume.hpp"
#include "hemoscan/util/parallel.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A Grad-CAM map (CV_32F, sample size) over the sample.
cv::Mat overlay_of(const Sample& sample, const cv::Mat& cam) {
    // Show what the model saw: the first channel (or the three windows as RGB), rescaled to 8-bit.
    cv::Mat shown;
    std::vector<cv::Mat> ch;
    cv::split(sample.image, ch);
    cv::Mat base = ch.size() >= 3 ? cv::Mat() : ch[0];
    if (ch.size() >= 3) {
        std::vector<cv::Mat> bgr{ch[2], ch[1], ch[0]};
        cv::merge(bgr, base);
    }
    double lo, hi;
    cv::minMaxLoc(base.reshape(1), &lo, &hi);
    base.convertTo(shown, CV_8U, hi > lo ? 255.0 / (hi - lo) : 1.0, hi > lo ? -lo * 255.0 / (hi - lo) : 0.0);
    return overlay_heatmap(shown, cam);
}

}  // namespace

cv::Mat heatmap_overlay(Predictor& predictor, const Sample& sample, int index) {
    return overlay_of(sample, predictor.heatmap(sample, index));
}

std::vector<InputResult> predict_inputs(Predictor& predictor, const std::vector<fs::path>& inputs,
                                        const PredictInputsOptions& options) {
    std::vector<InputResult> results;
    const auto& pre = predictor.preprocess_options();
    auto finish = [&](InputResult& r, std::vector<Sample>& samples) {
        // With heatmaps, one pass per batch gives both (the Grad-CAM of each sample's top output).
        std::vector<cv::Mat> cams;
        auto t0 = std::chrono::steady_clock::now();
        r.per_item = options.heatmap_dir.empty() ? predictor.predict_samples(samples, options.batch)
                                                 : predictor.predict_samples(samples, options.batch, cams);
        logger().debug("{}: model on {} images in {:.3f} s", r.input, samples.size(), seconds_since(t0));
        for (auto& p : r.per_item) p.decisions = predictor.decide(p.probabilities, options.threshold);
        r.overall = r.per_item.front();
        if (r.per_item.size() > 1) {
            for (const auto& p : r.per_item) {
                for (size_t l = 0; l < p.probabilities.size(); ++l) {
                    r.overall.probabilities[l] = std::max(r.overall.probabilities[l], p.probabilities[l]);
                }
            }
            if (predictor.multiclass()) {
                // Multi-class study result: the mean class probabilities.
                std::fill(r.overall.probabilities.begin(), r.overall.probabilities.end(), 0.0);
                for (const auto& p : r.per_item)
                    for (size_t l = 0; l < p.probabilities.size(); ++l)
                        r.overall.probabilities[l] += p.probabilities[l] / static_cast<double>(r.per_item.size());
            }
            r.overall.decisions = predictor.decide(r.overall.probabilities, options.threshold);
        }
        if (!options.heatmap_dir.empty()) {
            const fs::path name = safe_filename(fs::path(r.input).filename().string());
            for (size_t i = 0; i < samples.size(); ++i) {
                const fs::path file = safe_filename(fs::path(r.items[i]).stem().string()) + ".png";
                const bool folder = r.kind == "series" || r.items.size() > 1;
                r.heatmaps.push_back((folder ? options.heatmap_dir / name / file : options.heatmap_dir / file).string());
            }
            // Colouring and PNG encoding are independent per slice (and a tenth of a series' time).
            if (!r.heatmaps.empty()) fs::create_directories(fs::path(r.heatmaps.front()).parent_path());
            t0 = std::chrono::steady_clock::now();
            parallel_for_index(samples.size(), 0, [&](size_t i) {
                write_image_2d(r.heatmaps[i], overlay_of(samples[i], cams.at(i)));
            });
            logger().debug("{}: {} heatmap PNGs in {:.3f} s", r.input, samples.size(), seconds_since(t0));
        }
        results.push_back(std::move(r));
    };

    for (const auto& in : inputs) {
        if (!fs::exists(in)) throw InputError(in.string() + ": no such file or folder");
        InputResult r;
        r.input = in.string();
        std::vector<Sample> samples;
        if (fs::is_directory(in)) {
            std::vector<fs::path> dicoms, images;
            for (const auto& e : fs::recursive_directory_iterator(in)) {
                if (!e.is_regular_file()) continue;
                if (is_image_2d_path(e.path())) images.push_back(e.path());
                else if (is_dicom_file(e.path())) dicoms.push_back(e.path());
            }
            if (!dicoms.empty()) {
                const auto t_read = std::chrono::steady_clock::now();
                auto volumes = read_dicom_series({in}, predictor.modality());
                logger().debug("{}: read in {:.3f} s", in.string(), seconds_since(t_read));
                for (auto& v : volumes) {
                    InputResult sr;
                    sr.input = volumes.size() > 1 ? in.string() + "#" + v.slice_meta.front().series_uid : in.string();
                    sr.kind = "series";
                    for (const auto& meta : v.slice_meta) sr.items.push_back(meta.path);
                    const auto t_pre = std::chrono::steady_clock::now();
                    std::vector<Sample> ss = preprocess_volume(v, pre);
                    logger().debug("{}: {} slices preprocessed in {:.3f} s", sr.input, ss.size(), seconds_since(t_pre));
                    finish(sr, ss);
                }
                continue;
            }
            std::sort(images.begin(), images.end());
            if (images.empty()) throw InputError(in.string() + ": no images or DICOM files in this folder");
            r.kind = "image";
            for (const auto& p : images) {
                InputResult ir;
                ir.input = p.string();
                ir.kind = "image";
                ir.items = {p.string()};
                std::vector<Sample> one{preprocess(load_image(p, predictor.modality()), pre)};
                finish(ir, one);
            }
            continue;
        }
        DicomSlice s = load_image(in, predictor.modality());
        r.kind = s.meta.modality.empty() ? "image" : "dicom";
        r.items = {in.string()};
        samples.push_back(preprocess(s, pre));
        finish(r, samples);
    }
    return results;
}

}  // namespace hemoscan
