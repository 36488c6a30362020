// hemoscan cv: k-fold cross-validation, patient-grouped, pooled out-of-fold metrics.
#include <cstdio>

#include "commands.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/train/cv.hpp"
#include "train_options.hpp"

namespace hemoscan::cli {

void add_cv(CLI::App& root, std::vector<Command>& commands) {
    auto a = std::make_shared<TrainArgs>();
    auto* app = root.add_subcommand("cv", "Cross-validate: train every fold, pool the out-of-fold predictions");
    add_train_options(app, *a, true);
    app->footer("Example: hemoscan cv --data ../shared/data/head_ct --model cnn --folds 5 --out runs/cv-cnn --size 128");
    commands.push_back({app, [a] {
        TrainProgress progress;
        CvCallbacks cb;
        cb.train = progress.callbacks();
        cb.fold_start = [](int k, int K) { logger().info("fold {}/{}", k + 1, K); };
        TrainOptions o = finish_train_options(*a);
        nlohmann::json m = cross_validate(o, cb);
        std::printf("\n%d-fold cross-validation, %d cases (pooled out-of-fold)\n", o.folds, m["n"].get<int>());
        std::printf("%-20s %7s %17s %8s %8s %8s\n", "label", "AUC", "95% CI", "acc", "sens", "spec");
        for (const auto& [name, l] : m["labels"].items()) {
            auto g = [&](const char* k) { return l[k].is_null() ? std::nan("") : l[k].get<double>(); };
            double lo = l["auc_ci95"].is_null() ? std::nan("") : l["auc_ci95"][0].get<double>();
            double hi = l["auc_ci95"].is_null() ? std::nan("") : l["auc_ci95"][1].get<double>();
            std::printf("%-20s %7.4f   [%.4f, %.4f] %8.4f %8.4f %8.4f\n", name.c_str(), g("auc"), lo, hi,
                        g("accuracy"), g("sensitivity"), g("specificity"));
        }
        for (const auto& [key, s] : m["summary"].items()) {
            std::printf("per fold %-28s mean %.4f sd %.4f\n", key.c_str(), s["mean"].get<double>(), s["sd"].get<double>());
        }
        logger().info("wrote {}/metrics.json", o.out);
        return 0;
    }});
}

}  // namespace hemoscan::cli
