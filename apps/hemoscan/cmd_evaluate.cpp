// hemoscan evaluate: metrics of a trained model (classifier or segmenter) on a labelled dataset.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/dist/env.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/evaluate/classification.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/evaluate/segmentation.hpp"
#include "hemoscan/infer/seg_predictor.hpp"
#include "launch.hpp"
#include "progress.hpp"

namespace hemoscan::cli {

namespace {

// A segmentation model: Dice, IoU, HD95 and volume error per class on a dataset with masks.
// In a group (issue 31) each rank segments its block of the cases and rank 0 reports and writes.
int evaluate_segmenter(const std::vector<std::string>& models, const std::string& data, const std::string& out,
                       int threads, double min_component_ml, const DistEnv& dist, int timeout_s) {
    SegPredictor predictor(std::vector<std::filesystem::path>(models.begin(), models.end()), threads);
    if (min_component_ml >= 0) predictor.set_min_component_ml(min_component_ml);
    const SegDataset ds = open_seg_dataset(data);
    const std::shared_ptr<ProcessGroup> process_group = join_process_group(dist, timeout_s);
    const auto [begin, end] = shard_range(ds.size(), dist.rank, dist.world_size);
    ProgressBar bar("evaluate", end - begin);  // rank 0's block: one bar per group
    std::function<void(size_t, size_t)> progress;
    if (dist.rank == 0) progress = [&bar](size_t done, size_t) { bar.update(done); };
    const auto t0 = std::chrono::steady_clock::now();
    const nlohmann::json m = evaluate_segmentation(predictor, ds, out, progress, process_group.get());
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dist.rank > 0) return 0;  // rank 0 reports for the group
    bar.finish();
    std::printf("%zu cases in %.1f s\n", ds.size(), secs);
    auto get = [&](const char* key, const std::string& name) {
        const auto& j = m[key];
        return j.contains(name) && j[name].is_number() ? j[name].get<double>() : std::nan("");
    };
    std::printf("%-20s %8s %8s %8s %10s %12s\n", "class", "Dice", "Dice+", "IoU", "HD95 mm", "|dVol| mL");
    std::vector<std::string> rows(predictor.class_names().begin() + 1, predictor.class_names().end());
    if (m["dice"].contains("any")) rows.push_back("any");
    for (const auto& name : rows) {
        std::printf("%-20s %8.4f %8.4f %8.4f %10.2f %12.3f\n", name.c_str(), get("dice", name), get("dice_positive", name),
                    get("iou", name), get("hd95_mm", name), get("volume_abs_err_ml", name));
    }
    auto num = [&](const char* key) { return m[key].is_number() ? m[key].get<double>() : std::nan(""); };
    std::printf("Dice mean of classes %.4f; lesion sensitivity %.4f (%lld of %lld lesions), %lld false-positive "
                "components\n(Dice: per case, empty-empty counts 1; Dice+: cases whose truth has the class)\n",
                num("dice_mean"), num("lesion_sensitivity"), m["lesions_detected"].get<long long>(),
                m["lesions"].get<long long>(), m["false_positive_components"].get<long long>());
    std::fflush(stdout);
    logger().info("wrote {}/metrics.json and cases.csv", out);
    return 0;
}

}  // namespace

void add_evaluate(CLI::App& root, std::vector<Command>& commands) {
    struct Args {
        std::vector<std::string> models;
        std::string data, out, labels;
        double threshold = -1, min_component_ml = -1;
        int threads = 0, batch = 32, workers = 2;
    };
    auto a = std::make_shared<Args>();
    auto* app = root.add_subcommand("evaluate", "Evaluate a trained model on a labelled dataset");
    app->add_option("--model", a->models, "RUN/model.pt (segmentation: repeat it for an ensemble)")
        ->required()
        ->allow_extra_args(false)  // one file per --model: the inputs after it stay inputs
        ->check(CLI::ExistingFile);
    app->add_option("--data", a->data, "Dataset folder (segmentation models: nnU-Net folder or manifest.csv with masks)")
        ->required();
    app->add_option("--out", a->out, "Output folder: metrics.json, predictions.csv, roc/pr/confusion PNGs")->required();
    app->add_option("--labels", a->labels, "Label columns (default: the model's labels)");
    app->add_option("--threshold", a->threshold, "Decision threshold for every label (default: the model's)");
    app->add_option("--batch", a->batch, "Batch size")->capture_default_str();
    app->add_option("--threads", a->threads, "Compute threads (0 = all cores)")->capture_default_str();
    app->add_option("--workers", a->workers, "Data loading threads")->capture_default_str();
    // Distributed: the items (segmenters: the cases; study models: the slices) are sharded over the ranks
    // of torchrun's environment or of --nproc-per-node; rank 0 gathers and writes.
    auto group = std::make_shared<GroupArgs>();
    add_group_options(*app, *group, "Evaluate as N processes on this machine (as torchrun)");
    add_min_component_option(*app, a->min_component_ml);
    commands.push_back({app, [a, group] {
        DistEnv dist;
        if (const auto launched = launch_or_join(*group, dist)) return *launched;
        const bool segment = read_model_meta(a->models.front()).value("task", std::string("classify")) == "segment";
        if (segment) {
            return evaluate_segmenter(a->models, a->data, a->out, a->threads, a->min_component_ml, dist,
                                      group->timeout_s);
        }
        if (a->models.size() > 1) {
            throw UsageError("--model given " + std::to_string(a->models.size()) +
                             " times: ensembles are for segmentation models; a classifier is evaluated alone");
        }
        Predictor predictor(a->models.front(), a->threads);
        DatasetOptions dopt;
        dopt.labels = parse_list(a->labels);
        if (dopt.labels.empty() && !predictor.multiclass()) dopt.labels = predictor.labels();
        dopt.sequences = predictor.preprocess_options().sequences;
        Dataset ds = open_dataset(a->data, dopt);
        const std::shared_ptr<ProcessGroup> process_group = join_process_group(dist, group->timeout_s);
        ProgressBar bar("evaluate", ds.size());
        EvaluateOptions eo;
        eo.group = process_group.get();
        eo.threshold = a->threshold;
        eo.batch = a->batch;
        eo.workers = a->workers;
        if (dist.rank == 0) eo.progress = [&bar](size_t done, size_t) { bar.update(done); };  // one bar per group
        auto t0 = std::chrono::steady_clock::now();
        nlohmann::json m = evaluate_dataset(predictor, ds, a->out, eo);
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (dist.rank > 0) return 0;  // rank 0 reports for the group
        bar.finish();
        std::printf("%zu cases in %.1f s (%.1f images/s, loading and preprocessing included)\n", ds.size(), secs,
                    static_cast<double>(ds.size()) / secs);
        if (m.contains("slice")) {
            print_study_metrics(m);  // a study model: both levels, and stage 1 alone
        } else {
            print_label_table(m);
        }
        if (m.contains("multiclass")) std::printf("multi-class accuracy %.4f\n", m["multiclass"]["accuracy"].get<double>());
        logger().info("wrote {}/metrics.json", a->out);
        return 0;
    }});
}

}  // namespace hemoscan::cli
