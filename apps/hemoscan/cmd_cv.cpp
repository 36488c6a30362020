// hemoscan cv: k-fold cross-validation, patient-grouped, pooled out-of-fold metrics.
#include <cstdio>
#include <cstdlib>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/models/seg_registry.hpp"
#include "hemoscan/train/cv.hpp"
#include "hemoscan/train/study.hpp"
#include "launch.hpp"
#include "train_options.hpp"

namespace hemoscan::cli {

void add_cv(CLI::App& root, std::vector<Command>& commands) {
    auto a = std::make_shared<TrainArgs>();
    auto* app = root.add_subcommand("cv", "Cross-validate: train every fold, pool the out-of-fold predictions");
    add_train_options(app, *a, true);
    app->footer("Example: hemoscan cv --data ../shared/data/head_ct --model cnn --folds 5 --out runs/cv-cnn --size 128\n"
                "Study level: hemoscan cv --task study --data rsna-folder --folds 5 --out runs/cv-study --size 128");
    // Distributed: each (stage-1) fold trains as the group of torchrun's variables or --nproc-per-node.
    auto group = std::make_shared<GroupArgs>();
    add_group_options(*app, *group, "Train every fold as N processes on this machine (as torchrun)");
    commands.push_back({app, [a, group] {
        DistEnv dist;
        if (const auto launched = launch_or_join(*group, dist)) return *launched;
        TrainProgress progress;
        CvCallbacks cb;
        if (dist.rank == 0) cb.train = progress.callbacks();
        cb.fold_start = [](int k, int K) { logger().info("fold {}/{}", k + 1, K); };
        TrainOptions o = finish_train_options(*a);
        o.dist = dist;
        o.dist_timeout_s = group->timeout_s;
        if (is_seg_model(o.model)) {
            throw UsageError("cv cross-validates classifiers; --model " + o.model +
                             " is a segmentation model (use train --task segment, which validates on a holdout)");
        }
        if (o.task == "study") {
            nlohmann::json m = cross_validate_study(o, cb);
            if (dist.rank > 0) return 0;  // rank 0 trains the study models and reports
            print_study_metrics(m, o.folds);
            logger().info("wrote {}/metrics.json", o.out);
            return 0;
        }
        if (o.task != "classify") throw UsageError("--task must be classify or study for cv, not '" + o.task + "'");
        nlohmann::json m = cross_validate(o, cb);
        if (dist.rank > 0) return 0;  // rank 0 reports for the group
        std::printf("\n%d-fold cross-validation, %d cases (pooled out-of-fold)\n", o.folds, m["n"].get<int>());
        print_label_table(m);
        for (const auto& [key, s] : m["summary"].items()) {
            std::printf("per fold %-28s mean %.4f sd %.4f\n", key.c_str(), s["mean"].get<double>(), s["sd"].get<double>());
        }
        logger().info("wrote {}/metrics.json", o.out);
        return 0;
    }});
}

}  // namespace hemoscan::cli
