#include "train/run_loop.hpp"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>
#include <functional>
#include <thread>

#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/report/plot.hpp"
#include "train/fine_tune.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/runtime.hpp"
#include "hemoscan/version.hpp"
#include "train/optimizer.hpp"

namespace hemoscan::train_detail {

namespace fs = std::filesystem;

int use_threads(const TrainOptions& o) {
    const int threads =
        o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(threads);
    return threads;
}

nlohmann::json json_number(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

RunFolder::RunFolder(const TrainOptions& o, bool resume, const std::string& fingerprint)
    : run_(o.out), resume_(resume), fingerprint_(fingerprint) {
    if (run_.empty()) throw UsageError("`out` RUN is required");
    const fs::path state_file = run_ / "state.json";
    if (!resume) {
        if (fs::exists(state_file) || fs::exists(run_ / "model.pt")) {
            throw UsageError(run_.string() + " already holds a run: use `resume` " + run_.string() +
                             " or another `out`");
        }
        return;
    }
    if (!fs::exists(state_file)) throw InputError(state_file.string() + ": nothing to resume (no checkpoint)");
    try {
        state_ = nlohmann::json::parse(read_file(state_file));
    } catch (const nlohmann::json::exception& e) {
        throw InputError(state_file.string() + ": " + e.what());
    }
    if (state_.value("fingerprint", std::string()) != fingerprint) {
        throw InputError(o.data + ": the data changed since " + run_.string() + " was started (fingerprint differs)");
    }
    if (state_.value("finished", false)) {
        throw UsageError(run_.string() + ": this run has already finished (" +
                         std::to_string(state_.value("epoch_done", -1) + 1) + " epochs)");
    }
}

void RunFolder::start(const TrainOptions& o, const nlohmann::json& task_fields,
                      const std::function<void(const fs::path&)>& write_split) const {
    fs::create_directories(run_);
    if (resume_) return;
    nlohmann::json config = {{"hemoscan_version", kVersion},
                             {"command", "train"},
                             {"task", o.task},
                             {"options", train_options_to_json(o)},
                             {"data_fingerprint", fingerprint_},
                             {"runtime", runtime_json()}};
    config.update(task_fields);
    write_file_atomic(run_ / "config.json", config.dump(2) + "\n");
    write_split(run_ / "split.csv");
}

namespace {

std::string fixed(double v, int prec) { return std::isfinite(v) ? fmt::format("{:.{}f}", v, prec) : std::string(); }

void write_log_csv(const fs::path& file, const nlohmann::json& history, const LogLayout& layout) {
    std::ostringstream ss;
    ss << "epoch";
    for (const auto& c : layout.columns) ss << ',' << c;
    ss << ",seconds," << layout.rate;
    for (const auto& g : layout.group_names) ss << ',' << layout.group_prefix << g;
    ss << "\n";
    auto num = [](const nlohmann::json& v, int prec) { return v.is_null() ? std::string() : fixed(v.get<double>(), prec); };
    for (const auto& row : history) {
        ss << row["epoch"].get<int>();
        for (const auto& c : layout.columns) ss << ',' << num(row[c], 6);
        ss << ',' << num(row["seconds"], 1) << ',' << num(row.value(layout.rate, nlohmann::json(0.0)), 1);
        const auto& group = row[layout.group];
        for (const auto& g : layout.group_names) ss << ',' << (group.contains(g) ? num(group[g], 6) : std::string());
        ss << "\n";
    }
    write_file_atomic(file, ss.str());
}

void write_curves(const fs::path& file, const nlohmann::json& history, const CurveLayout& layout) {
    Series tl{"train loss", {}, {}}, vl{"validation loss", {}, {}};
    std::vector<Series> scores;
    for (const auto& s : layout.series) scores.push_back({s.first, {}, {}});
    auto add = [](Series& s, double x, const nlohmann::json& v) {
        if (v.is_null()) return;
        s.x.push_back(x);
        s.y.push_back(v.get<double>());
    };
    for (const auto& row : history) {
        const double e = row["epoch"].get<int>() + 1;
        add(tl, e, row["train_loss"]);
        add(vl, e, row["val_loss"]);
        for (size_t i = 0; i < scores.size(); ++i) add(scores[i], e, row[layout.series[i].second]);
    }
    PlotOptions lo;
    lo.title = "Loss";
    lo.x_label = "epoch";
    lo.y_label = "loss";
    lo.width = 640;
    lo.height = 420;
    PlotOptions so = lo;
    so.title = layout.title;
    so.y_label = layout.y_label;
    so.y_unit_range = true;
    std::vector<Series> losses{tl};
    if (!vl.x.empty()) losses.push_back(vl);
    scores.erase(std::remove_if(scores.begin(), scores.end(), [](const Series& s) { return s.x.empty(); }),
                 scores.end());
    cv::Mat left = line_plot(losses, lo);
    cv::Mat right =
        scores.empty() ? cv::Mat(left.size(), left.type(), cv::Scalar(255, 255, 255)) : line_plot(scores, so);
    cv::Mat both;
    cv::hconcat(left, right, both);
    save_plot(file, both);
}

}  // namespace

EpochLoop::EpochLoop(RunFolder& folder, const TrainOptions& o, torch::nn::Module& model,
                     torch::optim::Optimizer& opt, LogLayout log, CurveLayout curves, const FineTune* fine_tune)
    : folder_(folder),
      o_(o),
      model_(model),
      opt_(opt),
      fine_tune_(fine_tune),
      log_(std::move(log)),
      curves_(std::move(curves)),
      schedule_options_(schedule_options(o)),
      schedule_(schedule_options_),
      stopper_(o.patience, 1e-6) {}

void EpochLoop::restore(TrainingTask& task) {
    if (!folder_.resumed()) return;
    const nlohmann::json& state = folder_.state();
    start_epoch_ = state["epoch_done"].get<int>() + 1;
    history_ = state["history"];
    stopper_.restore(state["best_metric"].get<double>(), state["best_epoch"].get<int>(),
                     state["bad_epochs"].get<int>(), start_epoch_);
    schedule_.restore(state["plateau_lr"].get<double>(), state["plateau_best"].get<double>(),
                      state["plateau_bad"].get<int>());
    task.load(folder_ / state["checkpoint"].get<std::string>());
    load_optimizer(folder_ / state["optimizer"].get<std::string>(), opt_);
    logger().info("resuming {} after epoch {}", folder_.path().string(), start_epoch_);
}

int EpochLoop::run(TrainingTask& task, const TrainCallbacks& cb) {
    int epoch = start_epoch_;
    for (; epoch < o_.epochs; ++epoch) {
        if (start_epoch_ > 0 && epoch == start_epoch_ && stopper_.should_stop()) break;
        const auto t0 = std::chrono::steady_clock::now();
        const double lr = schedule_.lr(epoch);
        if (fine_tune_) {
            fine_tune_->set_learning_rate(opt_, lr);
        } else {
            set_learning_rate(opt_, lr);
        }
        // Per-epoch seeds (dropout, shuffling, augmentation) make a resumed run repeat the same epochs.
        torch::manual_seed(o_.seed * 1000003ULL + static_cast<std::uint64_t>(epoch));
        model_.train();
        if (fine_tune_) fine_tune_->begin_epoch(epoch);
        if (cb.epoch_start) cb.epoch_start(epoch, o_.epochs, task.batches_per_epoch());
        const EpochStats train = task.train_epoch(epoch, cb);
        const double train_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const EpochScore score = task.validate(epoch, train);
        if (schedule_options_.kind == ScheduleKind::Plateau) schedule_.observe(score.monitor);
        const bool improved = stopper_.update(score.monitor);
        nlohmann::json row = score.fields;
        row["epoch"] = epoch;
        row["lr"] = lr;
        row["train_loss"] = train.loss;
        row["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        row["best"] = improved;
        row[log_.rate] = train_secs > 0 ? static_cast<double>(train.seen) / train_secs : 0.0;
        history_.push_back(row);
        checkpoint(task, epoch, improved);
        write_log_csv(folder_ / "log.csv", history_, log_);
        if (cb.epoch_end) cb.epoch_end(epoch, row);
        if (stopper_.should_stop()) {
            logger().info("early stopping after epoch {}: no validation improvement for {} epochs", epoch + 1,
                          o_.patience);
            ++epoch;
            break;
        }
    }
    return epoch;
}

// Weights and optimizer under the epoch's name, then state.json (the commit point) naming them: a
// kill at any moment leaves a consistent previous checkpoint.
void EpochLoop::checkpoint(TrainingTask& task, int epoch, bool improved) {
    if (improved) task.save(folder_ / "best.pt");
    nlohmann::json fields = task.checkpoint_extra(epoch, improved);
    const std::string ck = "checkpoint_e" + std::to_string(epoch) + ".pt";
    const std::string op = "optimizer_e" + std::to_string(epoch) + ".pt";
    task.save(folder_ / ck);
    save_optimizer(folder_ / op, opt_);
    fields.update({{"epoch_done", epoch},
                   {"checkpoint", ck},
                   {"optimizer", op},
                   {"fingerprint", folder_.fingerprint()},
                   {"history", history_}});
    std::vector<std::string> files{"checkpoint", "optimizer"};
    for (const auto& f : task.extra_files()) files.push_back(f);
    folder_.set_state(
        commit_epoch(folder_.path(), folder_ / "state.json", folder_.state(), stopper_, schedule_, fields, files));
}

const nlohmann::json& EpochLoop::best_row() const {
    return history_.at(static_cast<size_t>(std::max(0, stopper_.best_epoch())));
}

void EpochLoop::finish(const TrainingTask& task) {
    write_curves(folder_ / "curves.png", history_, curves_);
    nlohmann::json state = folder_.state();
    std::vector<std::string> files{"checkpoint", "optimizer"};
    for (const auto& f : task.extra_files()) files.push_back(f);
    std::error_code ec;
    for (const auto& key : files) {
        const std::string file = state.value(key, std::string());
        if (!file.empty()) fs::remove(folder_ / file, ec);
        state[key] = "";
    }
    fs::remove(folder_ / "best.pt", ec);
    state["finished"] = true;
    write_file_atomic(folder_ / "state.json", state.dump() + "\n");
    folder_.set_state(state);
}

void recalibrate_batchnorm(torch::nn::Module& model, const std::function<void()>& feed,
                           const std::vector<torch::nn::Module*>& keep, ProcessGroup* group) {
    std::vector<torch::nn::BatchNorm2dImpl*> bns;
    for (auto& m : model.modules(/*include_self=*/false)) {
        if (std::find(keep.begin(), keep.end(), m.get()) != keep.end()) continue;
        if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) bns.push_back(bn);
    }
    if (bns.empty()) return;
    std::vector<c10::optional<double>> momenta;
    for (auto* bn : bns) {
        momenta.push_back(bn->options.momentum());
        bn->options.momentum(c10::nullopt);  // cumulative average over the batches fed
        bn->reset_running_stats();
    }
    model.train();
    for (auto* m : keep) m->eval();
    {
        torch::NoGradGuard ng;
        feed();
    }
    for (size_t i = 0; i < bns.size(); ++i) bns[i]->options.momentum(momenta[i]);
    if (!group) return;
    // Sums of count-weighted averages over the ranks, then divided by the total count (in double).
    torch::NoGradGuard ng;
    std::vector<torch::Tensor> sums;
    for (auto* bn : bns) {
        const auto n = bn->num_batches_tracked.to(torch::kFloat64);
        sums.push_back(bn->running_mean.to(torch::kFloat64) * n);
        sums.push_back(bn->running_var.to(torch::kFloat64) * n);
        sums.push_back(n.reshape({1}));
    }
    group->all_reduce_sum(sums);
    for (size_t i = 0; i < bns.size(); ++i) {
        const double n = sums[3 * i + 2].item<double>();
        if (n <= 0) continue;
        bns[i]->running_mean.copy_(sums[3 * i] / n);
        bns[i]->running_var.copy_(sums[3 * i + 1] / n);
        bns[i]->num_batches_tracked.fill_(static_cast<int64_t>(n));
    }
}

ScratchFolder::~ScratchFolder() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
}

fs::path ScratchFolder::take_over(const fs::path& run, bool resume, int rank) {
    // Named by the run folder, so that a rank killed with its group leaves no second copy behind after a
    // resume: the next run of this rank on this run replaces it.
    const std::string key = fs::absolute(run).lexically_normal().string();
    path_ = fs::temp_directory_path() /
            ("hemoscan-rank" + std::to_string(rank) + "-" + fmt::format("{:016x}", std::hash<std::string>{}(key)));
    std::error_code ec;
    fs::remove_all(path_, ec);
    if (resume) {
        if (!fs::is_directory(run)) throw InputError(run.string() + ": no run folder to resume (rank " +
                                                     std::to_string(rank) + " reads rank 0's checkpoint there)");
        fs::copy(run, path_, fs::copy_options::recursive);
    }
    return path_;
}

}  // namespace hemoscan::train_detail
