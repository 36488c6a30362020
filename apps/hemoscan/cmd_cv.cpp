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
    // Distributed (classification): each fold trains as the group of torchrun's variables or --nproc-per-node.
    auto nproc = std::make_shared<int>(1);
    auto dist_timeout = std::make_shared<int>(300);
    app->add_option("--nproc-per-node", *nproc, "Train every fold as N processes on this machine (as torchrun)")
        ->check(CLI::Range(1, 1024));
    app->add_option("--dist-timeout", *dist_timeout, "Seconds a rank may not answer before the others stop")
        ->check(CLI::Range(1, 86400))
        ->capture_default_str();
    commands.push_back({app, [a, nproc, dist_timeout] {
        if (*nproc > 1) {
            if (std::getenv("WORLD_SIZE")) throw UsageError("--nproc-per-node with WORLD_SIZE already set: one launcher");
            return launch_local_group(*nproc);
        }
        const DistEnv dist = dist_env_from();
        if (dist.rank > 0) set_log_level("warn");
        TrainProgress progress;
        CvCallbacks cb;
        if (dist.rank == 0) cb.train = progress.callbacks();
        cb.fold_start = [](int k, int K) { logger().info("fold {}/{}", k + 1, K); };
        TrainOptions o = finish_train_options(*a);
        o.dist = dist;
        o.dist_timeout_s = *dist_timeout;
        if (is_seg_model(o.model)) {
            throw UsageError("cv cross-validates classifiers; --model " + o.model +
                             " is a segmentation model (use train --task segment, which validates on a holdout)");
        }
        if (o.task == "study") {
            if (dist.distributed()) throw UsageError("distributed cv covers --task classify so far, not study");
            nlohmann::json m = cross_validate_study(o, cb);
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
