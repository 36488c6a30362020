// Evaluation of a segmentation model on a dataset with masks: Dice/IoU/HD95 per class and for any
// bleed, volume errors in mL, lesion-level sensitivity; metrics.json and cases.csv.
#include <spdlog/fmt/fmt.h>

#include <cmath>
#include <future>
#include <sstream>

#include "hemoscan/data/csv.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/evaluate/segmentation.hpp"
#include "hemoscan/util/fs.hpp"
#include "infer/seg_detail.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

namespace {

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

// Mean of the finite values; null when there is none.
struct Mean {
    double sum = 0;
    int n = 0;
    void add(double v) {
        if (std::isfinite(v)) sum += v, ++n;
    }
    nlohmann::json json() const { return n ? nlohmann::json(sum / n) : nlohmann::json(nullptr); }
    double value() const { return n ? sum / n : std::nan(""); }
};

std::string num(double v, int prec = 4) { return std::isfinite(v) ? fmt::format("{:.{}f}", v, prec) : std::string(); }

}  // namespace

nlohmann::json evaluate_segmentation(SegPredictor& predictor, const SegDataset& dataset, const fs::path& out,
                                     const std::function<void(size_t done, size_t total)>& progress) {
    const auto& names = predictor.class_names();
    if (dataset.class_names != names) {
        throw InputError(dataset.root.string() + ": classes (" + join(dataset.class_names) +
                         ") differ from the model's (" + join(names) + ")");
    }
    if (dataset.cases.empty()) throw InputError(dataset.root.string() + ": no cases to evaluate");
    const int K = static_cast<int>(names.size());
    const std::vector<int>& bleed = predictor.bleed_classes();

    // Per class (index = label; 0 = "any bleed" here) accumulators over cases.
    std::vector<Mean> dice(static_cast<size_t>(K)), iou(static_cast<size_t>(K)), hd95(static_cast<size_t>(K)),
        vol_err(static_cast<size_t>(K)), dice_pos(static_cast<size_t>(K));
    std::vector<Overlap> pooled(static_cast<size_t>(K));
    long long lesions = 0, detected = 0, false_components = 0;
    nlohmann::json cases = nlohmann::json::array();
    std::ostringstream csv;
    csv << "id,patient,dice_any,iou_any,hd95_any_mm,volume_ml,volume_true_ml";
    for (int c = 1; c < K; ++c) csv << ',' << csv_escape("dice_" + names[static_cast<size_t>(c)]);
    for (int c = 1; c < K; ++c) csv << ',' << csv_escape(names[static_cast<size_t>(c)] + "_ml");
    for (int c = 1; c < K; ++c) csv << ',' << csv_escape(names[static_cast<size_t>(c)] + "_true_ml");
    csv << '\n';

    std::vector<Overlap> any_overlaps;  // per case, for the bootstrap intervals of Dice any bleed
    // The next case is read while the current one is segmented.
    auto load = [&dataset](size_t i) { return load_seg_case(dataset, i); };
    std::future<SegVolume> next = std::async(std::launch::async, load, size_t(0));
    for (size_t i = 0; i < dataset.cases.size(); ++i) {
        SegVolume sv = next.get();
        if (i + 1 < dataset.cases.size()) next = std::async(std::launch::async, load, i + 1);
        const SegmentationResult r = predictor.segment(sv.image);
        const LabelSlices& pred = r.labels.slices;
        const LabelSlices& truth = sv.mask.slices;
        const auto& spacing = sv.image.geometry.spacing;

        const seg_detail::CaseOverlap ov = seg_detail::case_overlap(pred, truth, K, bleed);
        any_overlaps.push_back(ov.any);
        nlohmann::json row = {{"id", sv.id}, {"patient", sv.patient}};
        std::vector<double> vol_pred(static_cast<size_t>(K), 0), vol_true(static_cast<size_t>(K), 0),
            case_dice(static_cast<size_t>(K), 0);
        double hd_any = std::nan("");
        for (int c = 0; c < K; ++c) {
            // c == 0 stands for "any bleed".
            const bool any = c == 0;
            if (any && bleed.empty()) continue;
            const Overlap& o = any ? ov.any : ov.classes[static_cast<size_t>(c)];
            const LabelSlices pm = any ? class_mask(pred, kAnyForeground, bleed) : class_mask(pred, c);
            const LabelSlices tm = any ? class_mask(truth, kAnyForeground, bleed) : class_mask(truth, c);
            const size_t ci = static_cast<size_t>(c);
            case_dice[ci] = o.dice();
            dice[ci].add(o.dice());
            iou[ci].add(o.iou());
            pooled[ci].tp += o.tp, pooled[ci].fp += o.fp, pooled[ci].fn += o.fn;
            if (o.tp + o.fn > 0) dice_pos[ci].add(o.dice());
            if (o.tp + o.fp > 0 && o.tp + o.fn > 0) {
                const double h = hd95_mm(pm, tm, spacing);
                hd95[ci].add(h);
                if (any) hd_any = h;
            }
            vol_pred[ci] = volume_ml(pm, spacing);
            vol_true[ci] = volume_ml(tm, spacing);
            vol_err[ci].add(std::abs(vol_pred[ci] - vol_true[ci]));
            if (any) {
                const LesionDetection ld = lesion_detection(pm, tm);
                lesions += ld.lesions;
                detected += ld.detected;
                false_components += ld.false_positive_components;
                row["lesions"] = ld.lesions;
                row["lesions_detected"] = ld.detected;
            }
        }
        row["dice_any"] = bleed.empty() ? nlohmann::json(nullptr) : nlohmann::json(case_dice[0]);
        row["hd95_any_mm"] = std::isfinite(hd_any) ? nlohmann::json(hd_any) : nlohmann::json(nullptr);
        row["volume_ml"] = vol_pred[0];
        row["volume_true_ml"] = vol_true[0];
        nlohmann::json per_class = nlohmann::json::object();
        for (int c = 1; c < K; ++c) {
            const size_t ci = static_cast<size_t>(c);
            per_class[names[ci]] = {
                {"dice", case_dice[ci]}, {"volume_ml", vol_pred[ci]}, {"volume_true_ml", vol_true[ci]}};
        }
        row["classes"] = per_class;
        cases.push_back(row);

        csv << csv_escape(sv.id) << ',' << csv_escape(sv.patient) << ',' << num(case_dice[0]) << ','
            << num(ov.any.iou()) << ',' << num(hd_any, 2) << ',' << num(vol_pred[0], 3) << ',' << num(vol_true[0], 3);
        for (int c = 1; c < K; ++c) csv << ',' << num(case_dice[static_cast<size_t>(c)]);
        for (int c = 1; c < K; ++c) csv << ',' << num(vol_pred[static_cast<size_t>(c)], 3);
        for (int c = 1; c < K; ++c) csv << ',' << num(vol_true[static_cast<size_t>(c)], 3);
        csv << '\n';
        if (progress) progress(i + 1, dataset.cases.size());
    }

    auto by_class = [&](const std::vector<Mean>& m) {
        nlohmann::json j = nlohmann::json::object();
        for (int c = 1; c < K; ++c) j[names[static_cast<size_t>(c)]] = m[static_cast<size_t>(c)].json();
        if (!bleed.empty()) j["any"] = m[0].json();
        return j;
    };
    Mean dice_mean;
    for (int c = 1; c < K; ++c) dice_mean.add(dice[static_cast<size_t>(c)].value());
    nlohmann::json pooled_json = nlohmann::json::object();
    for (int c = 1; c < K; ++c) pooled_json[names[static_cast<size_t>(c)]] = pooled[static_cast<size_t>(c)].dice();
    if (!bleed.empty()) pooled_json["any"] = pooled[0].dice();

    nlohmann::json m = {{"n", dataset.cases.size()},
                        {"classes", names},
                        {"bleed_classes", bleed},
                        {"dice", by_class(dice)},
                        {"dice_mean", dice_mean.json()},
                        {"iou", by_class(iou)},
                        {"hd95_mm", by_class(hd95)},
                        {"volume_abs_err_ml", by_class(vol_err)},
                        {"dice_positive", by_class(dice_pos)},
                        {"dice_pooled", pooled_json},
                        {"lesions", lesions},
                        {"lesions_detected", detected},
                        {"false_positive_components", false_components},
                        {"lesion_sensitivity", lesions > 0 ? nlohmann::json(double(detected) / double(lesions))
                                                           : nlohmann::json(nullptr)},
                        {"min_component_ml", predictor.min_component_ml()},
                        {"cases", cases}};
    if (predictor.meta().contains("ensemble")) m["ensemble"] = predictor.meta()["ensemble"];
    if (!bleed.empty() && !any_overlaps.empty()) {
        // Which studies a held-out set happens to hold moves its Dice by a few hundredths: say how much.
        const BootstrapOptions bo;
        const DiceIntervals ci = bootstrap_dice_ci(any_overlaps, bo);
        auto pair = [](const ConfidenceInterval& c) {
            return std::isfinite(c.lo) ? nlohmann::json::array({c.lo, c.hi}) : nlohmann::json(nullptr);
        };
        m["dice_any_ci95"] = {{"per_case", pair(ci.per_case)}, {"positive", pair(ci.positive)},
                              {"pooled", pair(ci.pooled)},     {"resamples", bo.resamples},
                              {"level", bo.level},             {"seed", bo.seed}};
        logger().info("Dice any bleed, 95% bootstrap intervals over cases: per case [{}, {}], cases with a bleed "
                      "[{}, {}], pooled [{}, {}]",
                      num(ci.per_case.lo), num(ci.per_case.hi), num(ci.positive.lo), num(ci.positive.hi),
                      num(ci.pooled.lo), num(ci.pooled.hi));
    }
    write_file_atomic(out / "metrics.json", m.dump(2) + "\n");
    write_file_atomic(out / "cases.csv", csv.str());
    logger().info("evaluated {} cases: Dice any bleed {}, mean {}", dataset.cases.size(),
                  num(dice[0].value()), num(dice_mean.value()));
    return m;
}

}  // namespace hemoscan
