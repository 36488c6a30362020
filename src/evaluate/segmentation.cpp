// Evaluation of a segmentation model on a dataset with masks: Dice/IoU/HD95 per class and for any
// bleed, volume errors in mL, lesion-level sensitivity; metrics.json and cases.csv.
#include <spdlog/fmt/fmt.h>

#include <cmath>
#include <future>
#include <sstream>

#include "hemoscan/data/csv.hpp"
#include "hemoscan/dist/process_group.hpp"
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

// "dice_any_ci95": which studies a held-out set happens to hold moves its Dice by a few hundredths: say how much.
void add_dice_intervals(nlohmann::json& m, const std::vector<Overlap>& any_overlaps) {
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


// JSON keeps finite numbers exactly (shortest round-trip form); NaN and infinity become null.
nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
double number_or_nan(const nlohmann::json& j) { return j.is_number() ? j.get<double>() : std::nan(""); }

// The figures of one case that the summary needs: per class (index = label; 0 = "any bleed", null
// without bleed classes) dice, iou, hd95 (null when not both non-empty), volume error and the voxel
// counts; the lesion counts; the case's row of metrics.json and its line of cases.csv. Made by the
// rank that segments the case and gathered as text, so that the summary adds the same numbers in the
// same order whatever the number of ranks.
nlohmann::json case_record(SegPredictor& predictor, const SegVolume& sv) {
    const auto& names = predictor.class_names();
    const int K = static_cast<int>(names.size());
    const std::vector<int>& bleed = predictor.bleed_classes();
    const SegmentationResult r = predictor.segment(sv.image);
    const LabelSlices& pred = r.labels.slices;
    const LabelSlices& truth = sv.mask.slices;
    const auto& spacing = sv.image.geometry.spacing;
    const seg_detail::CaseOverlap ov = seg_detail::case_overlap(pred, truth, K, bleed);
    nlohmann::json rec = {
        {"classes", nlohmann::json::array()}, {"lesions", 0}, {"detected", 0}, {"false_components", 0}};
    nlohmann::json row = {{"id", sv.id}, {"patient", sv.patient}};
    std::vector<double> vol_pred(static_cast<size_t>(K), 0), vol_true(static_cast<size_t>(K), 0),
        case_dice(static_cast<size_t>(K), 0);
    double hd_any = std::nan("");
    for (int c = 0; c < K; ++c) {
        const bool any = c == 0;  // c == 0 stands for "any bleed"
        if (any && bleed.empty()) {
            rec["classes"].push_back(nullptr);
            continue;
        }
        const Overlap& o = any ? ov.any : ov.classes[static_cast<size_t>(c)];
        const LabelSlices pm = any ? class_mask(pred, kAnyForeground, bleed) : class_mask(pred, c);
        const LabelSlices tm = any ? class_mask(truth, kAnyForeground, bleed) : class_mask(truth, c);
        const size_t ci = static_cast<size_t>(c);
        case_dice[ci] = o.dice();
        const double h = o.tp + o.fp > 0 && o.tp + o.fn > 0 ? hd95_mm(pm, tm, spacing) : std::nan("");
        if (any) hd_any = h;
        vol_pred[ci] = volume_ml(pm, spacing);
        vol_true[ci] = volume_ml(tm, spacing);
        rec["classes"].push_back({{"dice", finite_or_null(o.dice())}, {"iou", finite_or_null(o.iou())},
                                  {"hd95", finite_or_null(h)},
                                  {"vol_err", finite_or_null(std::abs(vol_pred[ci] - vol_true[ci]))},
                                  {"tp", o.tp}, {"fp", o.fp}, {"fn", o.fn}});
        if (any) {
            const LesionDetection ld = lesion_detection(pm, tm);
            rec["lesions"] = ld.lesions;
            rec["detected"] = ld.detected;
            rec["false_components"] = ld.false_positive_components;
            row["lesions"] = ld.lesions;
            row["lesions_detected"] = ld.detected;
        }
    }
    row["dice_any"] = bleed.empty() ? nlohmann::json(nullptr) : finite_or_null(case_dice[0]);
    row["hd95_any_mm"] = finite_or_null(hd_any);
    row["volume_ml"] = vol_pred[0];
    row["volume_true_ml"] = vol_true[0];
    nlohmann::json per_class = nlohmann::json::object();
    for (int c = 1; c < K; ++c) {
        const size_t ci = static_cast<size_t>(c);
        per_class[names[ci]] = {{"dice", case_dice[ci]}, {"volume_ml", vol_pred[ci]}, {"volume_true_ml", vol_true[ci]}};
    }
    row["classes"] = per_class;
    rec["row"] = row;
    std::ostringstream csv;
    csv << csv_escape(sv.id) << ',' << csv_escape(sv.patient) << ',' << num(case_dice[0]) << ',' << num(ov.any.iou())
        << ',' << num(hd_any, 2) << ',' << num(vol_pred[0], 3) << ',' << num(vol_true[0], 3);
    for (int c = 1; c < K; ++c) csv << ',' << num(case_dice[static_cast<size_t>(c)]);
    for (int c = 1; c < K; ++c) csv << ',' << num(vol_pred[static_cast<size_t>(c)], 3);
    for (int c = 1; c < K; ++c) csv << ',' << num(vol_true[static_cast<size_t>(c)], 3);
    rec["csv"] = csv.str();
    return rec;
}

// The records of the cases [begin, end), each case read while the one before is segmented.
std::vector<nlohmann::json> case_records(SegPredictor& predictor, const SegDataset& dataset, size_t begin, size_t end,
                                         const std::function<void(size_t done, size_t total)>& progress) {
    std::vector<nlohmann::json> records;
    if (begin >= end) return records;
    auto load = [&dataset](size_t i) { return load_seg_case(dataset, i); };
    std::future<SegVolume> next = std::async(std::launch::async, load, begin);
    for (size_t i = begin; i < end; ++i) {
        SegVolume sv = next.get();
        if (i + 1 < end) next = std::async(std::launch::async, load, i + 1);
        records.push_back(case_record(predictor, sv));
        if (progress) progress(i + 1 - begin, end - begin);
    }
    return records;
}

// Every rank's records, in rank (= case) order.
std::vector<nlohmann::json> gather_records(ProcessGroup& group, const std::vector<nlohmann::json>& mine) {
    std::vector<nlohmann::json> all;
    for (const std::string& text : group.all_gather_strings(nlohmann::json(mine).dump())) {
        for (auto& rec : nlohmann::json::parse(text)) all.push_back(std::move(rec));
    }
    return all;
}

// metrics.json's summary of the records of every case (in case order) and the text of cases.csv.
nlohmann::json summarise(const SegPredictor& predictor, const std::vector<nlohmann::json>& records,
                         std::string& csv_text) {
    const auto& names = predictor.class_names();
    const int K = static_cast<int>(names.size());
    const std::vector<int>& bleed = predictor.bleed_classes();
    const size_t k = static_cast<size_t>(K);
    std::vector<Mean> dice(k), iou(k), hd95(k), vol_err(k), dice_pos(k);
    std::vector<Overlap> pooled(k);
    std::vector<Overlap> any_overlaps;  // per case, for the bootstrap intervals of Dice any bleed
    long long lesions = 0, detected = 0, false_components = 0;
    nlohmann::json cases = nlohmann::json::array();
    std::ostringstream csv;
    csv << "id,patient,dice_any,iou_any,hd95_any_mm,volume_ml,volume_true_ml";
    for (int c = 1; c < K; ++c) csv << ',' << csv_escape("dice_" + names[static_cast<size_t>(c)]);
    for (int c = 1; c < K; ++c) csv << ',' << csv_escape(names[static_cast<size_t>(c)] + "_ml");
    for (int c = 1; c < K; ++c) csv << ',' << csv_escape(names[static_cast<size_t>(c)] + "_true_ml");
    csv << '\n';
    for (const nlohmann::json& rec : records) {
        for (size_t c = 0; c < k; ++c) {
            const nlohmann::json& cj = rec["classes"][c];
            if (cj.is_null()) continue;
            const Overlap o{cj["tp"].get<long long>(), cj["fp"].get<long long>(), cj["fn"].get<long long>()};
            if (c == 0) any_overlaps.push_back(o);
            dice[c].add(number_or_nan(cj["dice"]));
            iou[c].add(number_or_nan(cj["iou"]));
            pooled[c].tp += o.tp, pooled[c].fp += o.fp, pooled[c].fn += o.fn;
            if (o.tp + o.fn > 0) dice_pos[c].add(number_or_nan(cj["dice"]));
            hd95[c].add(number_or_nan(cj["hd95"]));
            vol_err[c].add(number_or_nan(cj["vol_err"]));
        }
        lesions += rec["lesions"].get<long long>();
        detected += rec["detected"].get<long long>();
        false_components += rec["false_components"].get<long long>();
        cases.push_back(rec["row"]);
        csv << rec["csv"].get<std::string>() << '\n';
    }
    csv_text = csv.str();
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
    nlohmann::json m = {{"n", records.size()},
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
    if (!bleed.empty() && !any_overlaps.empty()) add_dice_intervals(m, any_overlaps);
    logger().info("evaluated {} cases: Dice any bleed {}, mean {}", records.size(), num(dice[0].value()),
                  num(dice_mean.value()));
    return m;
}

}  // namespace

nlohmann::json evaluate_segmentation(SegPredictor& predictor, const SegDataset& dataset, const fs::path& out,
                                     const std::function<void(size_t done, size_t total)>& progress,
                                     ProcessGroup* group) {
    const auto& names = predictor.class_names();
    if (dataset.class_names != names) {
        throw InputError(dataset.root.string() + ": classes (" + join(dataset.class_names) +
                         ") differ from the model's (" + join(names) + ")");
    }
    if (dataset.cases.empty()) throw InputError(dataset.root.string() + ": no cases to evaluate");
    const size_t n = dataset.cases.size();
    const auto [begin, end] = group ? shard_range(n, group->rank(), group->size()) : std::pair<size_t, size_t>(0, n);
    std::vector<nlohmann::json> records = case_records(predictor, dataset, begin, end, progress);
    if (group) records = gather_records(*group, records);
    if (records.size() != n) throw Error("evaluate: the ranks gathered a wrong number of cases");
    std::string csv;
    const nlohmann::json m = summarise(predictor, records, csv);
    if (group && group->rank() != 0) return m;  // rank 0 writes for the group
    write_file_atomic(out / "metrics.json", m.dump(2) + "\n");
    write_file_atomic(out / "cases.csv", csv);
    return m;
}

}  // namespace hemoscan
