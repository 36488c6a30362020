// hemoscan train: trains a classifier into a run folder (or resumes one).
#include "commands.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "train_options.hpp"

namespace hemoscan::cli {

void add_train(CLI::App& root, std::vector<Command>& commands) {
    auto a = std::make_shared<TrainArgs>();
    auto resume = std::make_shared<std::string>();
    auto* app = root.add_subcommand("train", "Train a classifier: RUN/ gets model.pt, metrics, predictions, curves");
    add_train_options(app, *a, false);
    app->add_option("--resume", *resume, "Continue the run in this folder from its last checkpoint (other options "
                                         "are taken from RUN/config.json)");
    app->footer("Example: hemoscan train --data ../shared/data/head_ct --model cnn --out runs/cnn --size 128");
    // With --resume the other options come from the run folder, so --data and --out are checked later.
    for (auto* opt : app->get_options()) {
        if (opt->get_name() == "--data" || opt->get_name() == "--out") opt->required(false);
    }
    commands.push_back({app, [a, resume] {
        TrainProgress progress;
        TrainOptions o;
        bool is_resume = !resume->empty();
        if (is_resume) {
            o = load_run_options(*resume);
            o.out = *resume;
        } else {
            if (a->options.data.empty()) throw UsageError("--data is required");
            if (a->options.out.empty()) throw UsageError("--out is required");
            o = finish_train_options(*a);
        }
        TrainResult r = train_classifier(o, progress.callbacks(), is_resume);
        std::string auc = r.metrics.contains("macro_auc") && !r.metrics["macro_auc"].is_null()
                              ? std::to_string(r.metrics["macro_auc"].get<double>())
                              : "n/a";
        logger().info("done: {} epochs, best epoch {}, validation macro AUC {}; model {}", r.epochs_run,
                      r.best_epoch + 1, auc, r.model_path.string());
        return 0;
    }});
}

}  // namespace hemoscan::cli
