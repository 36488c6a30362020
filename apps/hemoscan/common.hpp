#pragma once
// Option parsing shared by several subcommands.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>


namespace CLI {
class App;
}

namespace hemoscan::cli {

// "a,b" -> {"a", "b"} (trimmed, empty items dropped).
std::vector<std::string> parse_list(const std::string& csv);

// Prints metrics.json's per-label table: AUC with CI, accuracy, sensitivity, specificity and the
// threshold ("per fold" where each fold had its own, as in cv).
void print_label_table(const nlohmann::json& metrics);
// Both levels of a study model's metrics (metrics.json of train/cv/evaluate --task study), and the
// comparison with stage 1 alone.
void print_study_metrics(const nlohmann::json& m, int folds = 0);

// The flag of a library option field: "--" + the field with '-' for '_', except where the CLI's flag is
// shorter (ema_epochs -> --ema, warmup_epochs -> --warmup, timeout_s -> --timeout, seg_models -> --seg-model).
std::string flag_of(const std::string& field);
// A library message with its `fields` written as flags.
std::string cli_message(const std::string& message);

// --min-component-ml ML of the commands that segment (segment, evaluate, serve); `ml` keeps its value
// (< 0: the model's own) unless the option is given.
void add_min_component_option(CLI::App& app, double& ml);

}  // namespace hemoscan::cli
