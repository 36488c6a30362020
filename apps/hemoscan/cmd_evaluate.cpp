// hemoscan evaluate: metrics of a trained model on a labelled dataset.
#include <chrono>
#include <cmath>
#include <cstdio>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/train/evaluate.hpp"
#include "hemoscan/train/predictor.hpp"
#include "progress.hpp"

namespace hemoscan::cli {

void add_evaluate(CLI::App& root, std::vector<Command>& commands) {
    struct Args {
        std::string model, data, out, labels;
        double threshold = -1;
        int threads = 0, batch = 32, workers = 2;
    };
    auto a = std::make_shared<Args>();
    auto* app = root.add_subcommand("evaluate", "Evaluate a trained model on a labelled dataset");
    app->add_option("--model", a->model, "RUN/model.pt")->required()->check(CLI::ExistingFile);
    app->add_option("--data", a->data, "Dataset folder")->required();
    app->add_option("--out", a->out, "Output folder: metrics.json, predictions.csv, roc/pr/confusion PNGs")->required();
    app->add_option("--labels", a->labels, "Label columns (default: the model's labels)");
    app->add_option("--threshold", a->threshold, "Decision threshold for every label (default: the model's)");
    app->add_option("--batch", a->batch, "Batch size")->capture_default_str();
    app->add_option("--threads", a->threads, "Compute threads (0 = all cores)")->capture_default_str();
    app->add_option("--workers", a->workers, "Data loading threads")->capture_default_str();
    commands.push_back({app, [a] {
        Predictor predictor(a->model, a->threads);
        DatasetOptions dopt;
        dopt.labels = parse_list(a->labels);
        if (dopt.labels.empty() && !predictor.multiclass()) dopt.labels = predictor.labels();
        Dataset ds = open_dataset(a->data, dopt);
        ProgressBar bar("evaluate", ds.size());
        EvaluateOptions eo;
        eo.threshold = a->threshold;
        eo.batch = a->batch;
        eo.workers = a->workers;
        eo.progress = [&bar](size_t done, size_t) { bar.update(done); };
        auto t0 = std::chrono::steady_clock::now();
        nlohmann::json m = evaluate_dataset(predictor, ds, a->out, eo);
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        bar.finish();
        std::printf("%zu cases in %.1f s (%.1f images/s, loading and preprocessing included)\n", ds.size(), secs,
                    static_cast<double>(ds.size()) / secs);
        print_label_table(m);
        if (m.contains("multiclass")) std::printf("multi-class accuracy %.4f\n", m["multiclass"]["accuracy"].get<double>());
        logger().info("wrote {}/metrics.json", a->out);
        return 0;
    }});
}

}  // namespace hemoscan::cli
