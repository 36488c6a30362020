#include "common.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <map>
#include <cstdio>

#include "hemoscan/error.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan::cli {

std::vector<std::string> parse_list(const std::string& csv) {
    std::vector<std::string> out;
    for (const auto& item : split(csv, ',')) {
        auto t = trim(item);
        if (!t.empty()) out.push_back(t);
    }
    return out;
}

void print_label_table(const nlohmann::json& m) {
    std::printf("%-20s %7s %17s %8s %8s %8s %8s\n", "label", "AUC", "95% CI", "acc", "sens", "spec", "thr");
    for (const auto& [name, l] : m["labels"].items()) {
        auto g = [&](const char* k) { return l[k].is_number() ? l[k].get<double>() : std::nan(""); };
        double lo = l["auc_ci95"].is_array() ? l["auc_ci95"][0].get<double>() : std::nan("");
        double hi = l["auc_ci95"].is_array() ? l["auc_ci95"][1].get<double>() : std::nan("");
        char thr[16];
        if (l["threshold"].is_array()) {
            std::snprintf(thr, sizeof thr, "per fold");
        } else {
            std::snprintf(thr, sizeof thr, "%.4f", g("threshold"));
        }
        std::printf("%-20s %7.4f   [%.4f, %.4f] %8.4f %8.4f %8.4f %8s\n", name.c_str(), g("auc"), lo, hi,
                    g("accuracy"), g("sensitivity"), g("specificity"), thr);
    }
    std::fflush(stdout);
}

void print_study_metrics(const nlohmann::json& m, int folds) {
    auto num = [](const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); };
    for (const char* level : {"slice", "study"}) {
        std::printf("\n%s level, stage 1 + study model%s (%d %s)\n", level, folds > 0 ? ", pooled out-of-fold" : "",
                    m[level]["n"].get<int>(), std::string(level) == "slice" ? "slices" : "studies");
        print_label_table(m[level]);
    }
    std::printf("\n%-34s %12s %12s\n", "", "stage 1", "+ study model");
    const nlohmann::json& s1 = m.contains("stage1") ? m["stage1"] : nlohmann::json::object();
    auto row = [&](const char* name, const nlohmann::json& a, const nlohmann::json& b) {
        std::printf("%-34s %12.4f %12.4f\n", name, num(a), num(b));
    };
    auto at = [](const nlohmann::json& j, const char* level, const char* key) {
        return j.contains(level) && j[level].contains(key) ? j[level][key] : nlohmann::json();
    };
    row("slice macro AUC", at(s1, "slice", "macro_auc"), at(m, "slice", "macro_auc"));
    row("study macro AUC", at(s1, "study", "macro_auc"), at(m, "study", "macro_auc"));
    row("RSNA weighted log loss (slices)", s1.value("rsna_log_loss", nlohmann::json()), m["rsna_log_loss"]);
    std::fflush(stdout);
}

void add_min_component_option(CLI::App& app, double& ml) {
    app.add_option("--min-component-ml", ml,
                   "Segmentation: drop predicted 3D components below this volume in mL (0 = off; default: the "
                   "model's, chosen on validation; an ensemble's largest)")
        ->check(CLI::NonNegativeNumber);
}

std::string flag_of(const std::string& field) {
    static const std::map<std::string, std::string> special = {{"ema_epochs", "--ema"},
                                                               {"warmup_epochs", "--warmup"},
                                                               {"timeout_s", "--timeout"},
                                                               {"seg_models", "--seg-model"},
                                                               {"allowed_hosts", "--allowed-host"}};
    const auto it = special.find(field);
    if (it != special.end()) return it->second;
    std::string flag = "--" + field;
    std::replace(flag.begin(), flag.end(), '_', '-');
    return flag;
}

std::string cli_message(const std::string& message) { return render_fields(message, flag_of); }

}  // namespace hemoscan::cli
