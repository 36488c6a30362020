// hemoscan train: trains a classifier or a segmentation model into a run folder (or resumes one).
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/models/seg_registry.hpp"
#include "hemoscan/train/segment.hpp"
#include "hemoscan/train/study.hpp"
#include "launch.hpp"
#include "train_options.hpp"

namespace hemoscan::cli {

void add_train(CLI::App& root, std::vector<Command>& commands) {
    auto a = std::make_shared<TrainArgs>();
    auto resume = std::make_shared<std::string>();
    auto* app = root.add_subcommand("train", "Train a classifier (or with --task segment a U-Net): RUN/ gets model.pt, "
                                             "metrics, curves");
    add_train_options(app, *a, false);
    app->add_option("--resume", *resume, "Continue the run in this folder from its last checkpoint (other options "
                                         "are taken from RUN/config.json)");
    // Distributed training (every task): torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
    // MASTER_ADDR, MASTER_PORT) make this process one rank of a group; --nproc-per-node starts a local group.
    auto group = std::make_shared<GroupArgs>();
    add_group_options(*app, *group, "Train as N processes on this machine (as torchrun; --batch stays the global batch)");
    app->footer("Example: hemoscan train --data ../shared/data/head_ct --model cnn --out runs/cnn --size 128\n"
                "Segmentation: hemoscan train --task segment --data synth/nnunet --model unet --out runs/unet "
                "--size 128 (see docs/segmentation.md)\n"
                "Study level: hemoscan train --task study --data rsna-folder --model cnn --out runs/study --size 128 "
                "(see docs/study.md)");
    // With --resume the other options come from the run folder, so --data and --out are checked later.
    for (auto* opt : app->get_options()) {
        if (opt->get_name() == "--data" || opt->get_name() == "--out") opt->required(false);
    }
    commands.push_back({app, [a, resume, app, group] {
        DistEnv dist;
        if (const auto launched = launch_or_join(*group, dist)) return *launched;
        TrainOptions o;
        bool is_resume = !resume->empty();
        if (is_resume) {
            o = load_run_options(*resume);
            o.out = *resume;
        } else {
            if (a->options.data.empty()) throw UsageError("--data is required");
            if (a->options.out.empty()) throw UsageError("--out is required");
            o = finish_train_options(*a);
            const bool task_given = app->count("--task") > 0, model_given = app->count("--model") > 0;
            // A segmentation architecture implies the task; the task picks the default architecture.
            if (!task_given && is_seg_model(o.model)) o.task = "segment";
            if (o.task == "segment") {
                if (!model_given) o.model = "unet";
                // Cropping to the head is off for masks unless asked for (predictions are put back either way).
                if (app->count("--crop-head") == 0) o.crop_head = false;
            }
        }
        o.dist = dist;
        o.dist_timeout_s = group->timeout_s;
        if (o.task != "classify" && o.task != "segment" && o.task != "study") {
            throw UsageError("--task must be classify, segment or study, not '" + o.task + "'");
        }
        if (o.task == "study") {
            if (is_resume) {
                throw UsageError("--resume does not apply to --task study: run the same command again with a new "
                                 "--out, or with --stage1 RUN/stage1/model.pt to reuse a trained slice model");
            }
            if (is_seg_model(o.model)) throw UsageError("--model " + o.model + " is a segmentation model, not a slice classifier");
            TrainProgress progress;
            CvCallbacks cb;
            if (dist.rank == 0) cb.train = progress.callbacks();
            cb.fold_start = [](int k, int K) { logger().info("stage 1 out-of-fold: fold {}/{}", k + 1, K); };
            TrainResult r = train_study(o, cb);
            if (dist.rank > 0) return 0;  // stage 1 done; rank 0 trains the study model and reports
            if (r.metrics.contains("slice")) print_study_metrics(r.metrics);
            logger().info("done: study model best epoch {}; model {}", r.best_epoch + 1, r.model_path.string());
            return 0;
        }
        if (o.task == "segment") {
            TrainProgress progress(true);
            TrainResult r = train_segmenter(o, dist.rank == 0 ? progress.callbacks() : TrainCallbacks{}, is_resume);
            if (dist.rank > 0) return 0;
            auto val = [&](const char* key) {
                const auto& d = r.metrics.contains("dice") ? r.metrics["dice"] : nlohmann::json();
                return d.contains(key) && d[key].is_number() ? std::to_string(d[key].get<double>()) : std::string("n/a");
            };
            std::string mean = r.metrics.contains("dice_mean") && r.metrics["dice_mean"].is_number()
                                   ? std::to_string(r.metrics["dice_mean"].get<double>())
                                   : "n/a";
            logger().info("done: {} epochs, best epoch {}, validation Dice any bleed {}, mean of classes {}; model {}",
                          r.epochs_run, r.best_epoch + 1, val("any"), mean, r.model_path.string());
            return 0;
        }
        if (is_seg_model(o.model)) {
            throw UsageError("--model " + o.model + " is a segmentation model: use --task segment");
        }
        TrainProgress progress;
        // Rank 0 draws the group's progress; the others train quietly.
        TrainResult r = train_classifier(o, dist.rank == 0 ? progress.callbacks() : TrainCallbacks{}, is_resume);
        if (dist.rank > 0) return 0;
        std::string auc = r.metrics.contains("macro_auc") && !r.metrics["macro_auc"].is_null()
                              ? std::to_string(r.metrics["macro_auc"].get<double>())
                              : "n/a";
        logger().info("done: {} epochs, best epoch {}, validation macro AUC {}; model {}", r.epochs_run,
                      r.best_epoch + 1, auc, r.model_path.string());
        return 0;
    }});
}

}  // namespace hemoscan::cli
