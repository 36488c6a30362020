#include "hemoscan/metrics/classification.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <unordered_map>
#include <utility>

#include "hemoscan/error.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double ratio(double num, double den) { return den == 0 ? 0.0 : num / den; }

// Checks the shared preconditions; `probabilities` also asks for scores in [0, 1].
void check_binary(const char* fn, const std::vector<double>& scores, const std::vector<int>& truths,
                  bool probabilities = false) {
    if (scores.size() != truths.size())
        throw UsageError(std::string(fn) + ": " + std::to_string(scores.size()) + " scores but " +
                         std::to_string(truths.size()) + " truths");
    if (scores.empty()) throw InputError(std::string(fn) + ": empty input (no cases)");
    for (size_t i = 0; i < scores.size(); ++i) {
        if (truths[i] != 0 && truths[i] != 1)
            throw InputError(std::string(fn) + ": truth at index " + std::to_string(i) + " is " +
                             std::to_string(truths[i]) + " (expected 0 or 1)");
        if (!std::isfinite(scores[i]))
            throw InputError(std::string(fn) + ": score at index " + std::to_string(i) + " is not finite");
        if (probabilities && (scores[i] < 0.0 || scores[i] > 1.0))
            throw InputError(std::string(fn) + ": score at index " + std::to_string(i) + " is " +
                             std::to_string(scores[i]) + ", expected a probability in [0, 1]");
    }
}

long count_positives(const std::vector<int>& truths) {
    return static_cast<long>(std::count(truths.begin(), truths.end(), 1));
}

void require_both_classes(const char* fn, const std::vector<int>& truths) {
    const long pos = count_positives(truths);
    const long neg = static_cast<long>(truths.size()) - pos;
    if (pos == 0 || neg == 0)
        throw InputError(std::string(fn) + ": undefined with a single class (" + std::to_string(pos) + " positives, " +
                         std::to_string(neg) + " negatives)");
}

void require_positive(const char* fn, const std::vector<int>& truths) {
    if (count_positives(truths) == 0) throw InputError(std::string(fn) + ": undefined without a positive case");
}

// Cases grouped by distinct score, highest score first, with the class counts of each group:
// every threshold metric walks these groups.
struct ScoreGroups {
    std::vector<double> score;
    std::vector<long> pos, neg;
    long total_pos = 0, total_neg = 0;
};

ScoreGroups group_by_score(const std::vector<double>& scores, const std::vector<int>& truths) {
    std::vector<size_t> order(scores.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
    ScoreGroups g;
    for (size_t i : order) {
        if (g.score.empty() || scores[i] != g.score.back()) {
            g.score.push_back(scores[i]);
            g.pos.push_back(0);
            g.neg.push_back(0);
        }
        if (truths[i] == 1) {
            ++g.pos.back();
            ++g.total_pos;
        } else {
            ++g.neg.back();
            ++g.total_neg;
        }
    }
    return g;
}

// Mann-Whitney AUC from class weights per tie group, groups in increasing score order: each
// positive beats the negatives below its group and ties with half of those in its group.
template <typename Weight>
double auc_from_groups(const std::vector<Weight>& pos, const std::vector<Weight>& neg) {
    double num = 0, neg_below = 0, total_pos = 0;
    for (size_t k = 0; k < pos.size(); ++k) {
        num += static_cast<double>(pos[k]) * (neg_below + 0.5 * static_cast<double>(neg[k]));
        neg_below += static_cast<double>(neg[k]);
        total_pos += static_cast<double>(pos[k]);
    }
    return num / (total_pos * neg_below);
}

double clipped_log_loss(double p, int y, double eps) {
    p = std::clamp(p, eps, 1.0 - eps);
    return y == 1 ? -std::log(p) : -std::log(1.0 - p);
}

void check_eps(const char* fn, double eps) {
    if (!(eps > 0 && eps < 0.5)) throw UsageError(std::string(fn) + ": eps must be in (0, 0.5)");
}

// Serialises a value that may be NaN as null (nlohmann would write null anyway; this says so).
nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

// ---- Rank metrics -------------------------------------------------------------------------------

double roc_auc(const std::vector<double>& scores, const std::vector<int>& truths) {
    check_binary("roc_auc", scores, truths);
    require_both_classes("roc_auc", truths);
    ScoreGroups g = group_by_score(scores, truths);
    std::reverse(g.pos.begin(), g.pos.end());
    std::reverse(g.neg.begin(), g.neg.end());
    return auc_from_groups(g.pos, g.neg);
}

RocCurve roc_curve(const std::vector<double>& scores, const std::vector<int>& truths) {
    check_binary("roc_curve", scores, truths);
    require_both_classes("roc_curve", truths);
    const ScoreGroups g = group_by_score(scores, truths);
    RocCurve c;
    c.fpr.push_back(0);
    c.tpr.push_back(0);
    c.thresholds.push_back(kInf);
    long tp = 0, fp = 0;
    for (size_t k = 0; k < g.score.size(); ++k) {
        tp += g.pos[k];
        fp += g.neg[k];
        c.fpr.push_back(static_cast<double>(fp) / static_cast<double>(g.total_neg));
        c.tpr.push_back(static_cast<double>(tp) / static_cast<double>(g.total_pos));
        c.thresholds.push_back(g.score[k]);
    }
    return c;
}

PrCurve pr_curve(const std::vector<double>& scores, const std::vector<int>& truths) {
    check_binary("pr_curve", scores, truths);
    require_positive("pr_curve", truths);
    const ScoreGroups g = group_by_score(scores, truths);
    PrCurve c;
    c.precision.push_back(1);
    c.recall.push_back(0);
    c.thresholds.push_back(kInf);
    long tp = 0, fp = 0;
    for (size_t k = 0; k < g.score.size() && tp < g.total_pos; ++k) {
        tp += g.pos[k];
        fp += g.neg[k];
        c.precision.push_back(static_cast<double>(tp) / static_cast<double>(tp + fp));
        c.recall.push_back(static_cast<double>(tp) / static_cast<double>(g.total_pos));
        c.thresholds.push_back(g.score[k]);
    }
    return c;
}

double pr_auc(const std::vector<double>& scores, const std::vector<int>& truths) {
    check_binary("pr_auc", scores, truths);
    require_positive("pr_auc", truths);
    const PrCurve c = pr_curve(scores, truths);
    double ap = 0;
    for (size_t k = 1; k < c.recall.size(); ++k) ap += (c.recall[k] - c.recall[k - 1]) * c.precision[k];
    return ap;
}

// ---- Calibration and loss -----------------------------------------------------------------------

double brier_score(const std::vector<double>& probabilities, const std::vector<int>& truths) {
    check_binary("brier_score", probabilities, truths, true);
    double sum = 0;
    for (size_t i = 0; i < probabilities.size(); ++i) {
        const double d = probabilities[i] - truths[i];
        sum += d * d;
    }
    return sum / static_cast<double>(probabilities.size());
}

double expected_calibration_error(const std::vector<double>& probabilities, const std::vector<int>& truths, int bins) {
    if (bins < 1) throw UsageError("expected_calibration_error: bins must be >= 1, got " + std::to_string(bins));
    check_binary("expected_calibration_error", probabilities, truths, true);
    std::vector<double> sum_p(static_cast<size_t>(bins), 0.0), sum_y(static_cast<size_t>(bins), 0.0);
    std::vector<long> count(static_cast<size_t>(bins), 0);
    for (size_t i = 0; i < probabilities.size(); ++i) {
        const int b = std::min(static_cast<int>(std::floor(probabilities[i] * bins)), bins - 1);
        sum_p[static_cast<size_t>(b)] += probabilities[i];
        sum_y[static_cast<size_t>(b)] += truths[i];
        ++count[static_cast<size_t>(b)];
    }
    const double n = static_cast<double>(probabilities.size());
    double ece = 0;
    for (size_t b = 0; b < count.size(); ++b) {
        if (count[b] == 0) continue;
        const double nb = static_cast<double>(count[b]);
        ece += nb / n * std::abs(sum_p[b] / nb - sum_y[b] / nb);
    }
    return ece;
}

double log_loss(const std::vector<double>& probabilities, const std::vector<int>& truths, double eps) {
    check_eps("log_loss", eps);
    check_binary("log_loss", probabilities, truths, true);
    double sum = 0;
    for (size_t i = 0; i < probabilities.size(); ++i) sum += clipped_log_loss(probabilities[i], truths[i], eps);
    return sum / static_cast<double>(probabilities.size());
}

bool has_rsna_any_label(const std::vector<std::string>& label_names) {
    return std::any_of(label_names.begin(), label_names.end(),
                       [](const std::string& name) { return to_lower(trim(name)) == "any"; });
}

double rsna_weighted_log_loss(const std::vector<std::vector<double>>& probabilities,
                              const std::vector<std::vector<int>>& truths, const std::vector<std::string>& label_names,
                              double eps) {
    const char* fn = "rsna_weighted_log_loss";
    check_eps(fn, eps);
    if (!has_rsna_any_label(label_names))
        throw UsageError(std::string(fn) + ": the labels have no 'any' column, the RSNA metric does not apply");
    if (probabilities.size() != truths.size())
        throw UsageError(std::string(fn) + ": " + std::to_string(probabilities.size()) + " rows of probabilities but " +
                         std::to_string(truths.size()) + " rows of truths");
    if (probabilities.empty()) throw InputError(std::string(fn) + ": empty input (no cases)");
    std::vector<double> weights;
    double weight_sum = 0;
    for (const auto& name : label_names) {
        weights.push_back(to_lower(trim(name)) == "any" ? 2.0 : 1.0);
        weight_sum += weights.back();
    }
    double total = 0;
    for (size_t i = 0; i < probabilities.size(); ++i) {
        if (probabilities[i].size() != label_names.size() || truths[i].size() != label_names.size())
            throw UsageError(std::string(fn) + ": row " + std::to_string(i) + " has " +
                             std::to_string(probabilities[i].size()) + " probabilities and " +
                             std::to_string(truths[i].size()) + " truths for " + std::to_string(label_names.size()) +
                             " labels");
        double row = 0;
        for (size_t l = 0; l < label_names.size(); ++l) {
            const double p = probabilities[i][l];
            const int y = truths[i][l];
            if (y != 0 && y != 1)
                throw InputError(std::string(fn) + ": truth at row " + std::to_string(i) + ", label '" +
                                 label_names[l] + "' is " + std::to_string(y) + " (expected 0 or 1)");
            if (!(p >= 0.0 && p <= 1.0))
                throw InputError(std::string(fn) + ": probability at row " + std::to_string(i) + ", label '" +
                                 label_names[l] + "' is not in [0, 1]");
            row += weights[l] * clipped_log_loss(p, y, eps);
        }
        total += row / weight_sum;
    }
    return total / static_cast<double>(probabilities.size());
}

// ---- Threshold metrics --------------------------------------------------------------------------

double Confusion::accuracy() const { return ratio(static_cast<double>(tp + tn), static_cast<double>(n())); }
double Confusion::precision() const { return ratio(static_cast<double>(tp), static_cast<double>(tp + fp)); }
double Confusion::recall() const { return ratio(static_cast<double>(tp), static_cast<double>(tp + fn)); }
double Confusion::specificity() const { return ratio(static_cast<double>(tn), static_cast<double>(tn + fp)); }
double Confusion::f1() const { return ratio(2.0 * static_cast<double>(tp), static_cast<double>(2 * tp + fp + fn)); }

Confusion confusion_of(const std::vector<int>& truths, const std::vector<int>& decisions) {
    if (truths.size() != decisions.size()) {
        throw UsageError("confusion_of: " + std::to_string(truths.size()) + " truths for " +
                         std::to_string(decisions.size()) + " decisions");
    }
    Confusion c;
    for (size_t i = 0; i < truths.size(); ++i) {
        const bool predicted = decisions[i] != 0;
        if (truths[i] == 1)
            (predicted ? c.tp : c.fn)++;
        else
            (predicted ? c.fp : c.tn)++;
    }
    return c;
}

Confusion confusion_at(const std::vector<double>& scores, const std::vector<int>& truths, double threshold) {
    if (std::isnan(threshold)) throw UsageError("confusion_at: threshold is NaN");
    check_binary("confusion_at", scores, truths);
    std::vector<int> decisions(scores.size());
    for (size_t i = 0; i < scores.size(); ++i) decisions[i] = scores[i] >= threshold ? 1 : 0;
    return confusion_of(truths, decisions);
}

namespace {

// A run of consecutive distinct scores (highest first) at which Youden's J is at its maximum:
// thresholds in (score[last + 1], score[first]] all classify alike.
struct YoudenRun {
    size_t first = 0, last = 0;
};

// Every maximal run of J-optimal scores, highest first.
std::vector<YoudenRun> best_youden_runs(const ScoreGroups& g) {
    std::vector<YoudenRun> runs;
    double best_j = -kInf;
    bool in_run = false;
    long tp = 0, fp = 0;
    for (size_t k = 0; k < g.score.size(); ++k) {
        tp += g.pos[k];
        fp += g.neg[k];
        const double j = static_cast<double>(tp) / static_cast<double>(g.total_pos) -
                         static_cast<double>(fp) / static_cast<double>(g.total_neg);
        if (j > best_j + 1e-12) {
            best_j = j;
            runs.assign(1, YoudenRun{k, k});
        } else if (std::abs(j - best_j) <= 1e-12) {
            if (in_run)
                runs.back().last = k;
            else
                runs.push_back(YoudenRun{k, k});
        } else {
            in_run = false;
            continue;
        }
        in_run = true;
    }
    return runs;
}

double logit(double p) {
    p = std::min(std::max(p, 1e-7), 1 - 1e-7);
    return std::log(p / (1 - p));
}

}  // namespace

double youden_threshold(const std::vector<double>& scores, const std::vector<int>& truths) {
    check_binary("youden_threshold", scores, truths);
    require_both_classes("youden_threshold", truths);
    const ScoreGroups g = group_by_score(scores, truths);
    return g.score[best_youden_runs(g).front().first];
}

double youden_margin_threshold(const std::vector<double>& scores, const std::vector<int>& truths,
                               std::optional<double> prior) {
    check_binary("youden_margin_threshold", scores, truths);
    require_both_classes("youden_margin_threshold", truths);
    const ScoreGroups g = group_by_score(scores, truths);  // distinct scores, highest first
    const bool probs = std::all_of(scores.begin(), scores.end(), [](double v) { return v >= 0 && v <= 1; });
    if (prior && probs && !(*prior > 0 && *prior < 1)) {
        throw UsageError("youden_margin_threshold: prior must be in (0, 1) for probabilities, got " +
                         std::to_string(*prior));
    }
    // Margins on the logit scale for probabilities (where the model's margins live), linear otherwise.
    auto scale = [probs](double v) { return probs ? logit(v) : v; };
    auto unscale = [probs](double v) { return probs ? 1.0 / (1.0 + std::exp(-v)) : v; };

    // The gap (lo, hi] of each J-optimal run.
    struct Gap {
        double lo, hi;
    };
    std::vector<Gap> gaps;
    for (const YoudenRun& run : best_youden_runs(g)) {
        const double hi = g.score[run.first];
        if (run.last + 1 < g.score.size()) {
            gaps.push_back({scale(g.score[run.last + 1]), scale(hi)});
        } else {  // below the lowest score everything is positive: stay just under it
            const double under = probs ? hi / 2 : hi - 0.5 * std::max(1e-6, std::abs(hi));
            gaps.push_back({2 * scale(under) - scale(hi), scale(hi)});
        }
    }
    const Gap* chosen = &gaps.front();
    if (prior) {
        const double p = scale(*prior);
        double nearest = kInf;
        for (const Gap& gap : gaps) {
            const double d = p > gap.lo && p <= gap.hi ? 0.0 : std::min(std::abs(p - gap.lo), std::abs(p - gap.hi));
            if (d < nearest) {  // strict: equally near gaps keep the higher one
                nearest = d;
                chosen = &gap;
            }
        }
        if (nearest == 0.0) return *prior;
    }
    return unscale(0.5 * (chosen->lo + chosen->hi));
}

// ---- Bootstrap ----------------------------------------------------------------------------------

ConfidenceInterval bootstrap_auc_ci(const std::vector<double>& scores, const std::vector<int>& truths,
                                    const BootstrapOptions& options, const std::vector<std::string>& groups) {
    const char* fn = "bootstrap_auc_ci";
    check_bootstrap_options(fn, options);
    if (!groups.empty() && groups.size() != scores.size())
        throw UsageError(std::string(fn) + ": " + std::to_string(groups.size()) + " group ids for " +
                         std::to_string(scores.size()) + " scores");
    check_binary(fn, scores, truths);
    require_both_classes(fn, truths);

    // Sort once; a resample is then a multiplicity per sorted position, and its AUC one linear
    // sweep over the tie groups (O(n) per resample instead of a sort).
    const size_t n = scores.size();
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
    std::vector<size_t> rank_of(n);                 // case index -> position in increasing score order
    std::vector<char> positive(n), last_of_tie(n);  // by position
    for (size_t r = 0; r < n; ++r) {
        rank_of[order[r]] = r;
        positive[r] = truths[order[r]] == 1;
        last_of_tie[r] = r + 1 == n || scores[order[r + 1]] != scores[order[r]];
    }

    // Units drawn with replacement: single cases, or all cases of one group. Stored flat as sorted
    // positions: unit u holds unit_ranks[unit_start[u] .. unit_start[u + 1]).
    std::vector<size_t> unit_start, unit_ranks(n);
    if (groups.empty()) {
        unit_start.resize(n + 1);
        std::iota(unit_start.begin(), unit_start.end(), size_t{0});
        unit_ranks = rank_of;
    } else {
        std::unordered_map<std::string, size_t> index;  // group id -> unit, in order of first appearance
        std::vector<size_t> unit_of(n);
        for (size_t i = 0; i < n; ++i) unit_of[i] = index.emplace(groups[i], index.size()).first->second;
        unit_start.assign(index.size() + 1, 0);
        for (size_t i = 0; i < n; ++i) ++unit_start[unit_of[i] + 1];
        std::partial_sum(unit_start.begin(), unit_start.end(), unit_start.begin());
        std::vector<size_t> fill = unit_start;
        for (size_t i = 0; i < n; ++i) unit_ranks[fill[unit_of[i]]++] = rank_of[i];
    }
    const size_t n_units = unit_start.size() - 1;

    std::mt19937_64 rng(options.seed);
    std::uniform_int_distribution<size_t> draw(0, n_units - 1);
    std::vector<std::uint32_t> weight(n);
    std::vector<double> aucs;
    aucs.reserve(static_cast<size_t>(options.resamples));
    for (int r = 0; r < options.resamples; ++r) {
        std::fill(weight.begin(), weight.end(), 0);
        for (size_t d = 0; d < n_units; ++d) {
            const size_t u = draw(rng);
            for (size_t k = unit_start[u]; k < unit_start[u + 1]; ++k) ++weight[unit_ranks[k]];
        }
        // Mann-Whitney sweep as auc_from_groups(), with the tie groups read off the sorted order.
        double num = 0, neg_below = 0, n_pos = 0, group_pos = 0, group_neg = 0;
        for (size_t k = 0; k < n; ++k) {
            (positive[k] ? group_pos : group_neg) += weight[k];
            if (last_of_tie[k]) {
                num += group_pos * (neg_below + 0.5 * group_neg);
                neg_below += group_neg;
                n_pos += group_pos;
                group_pos = group_neg = 0;
            }
        }
        if (n_pos == 0 || neg_below == 0) continue;  // one class only: AUC undefined, skipped
        aucs.push_back(num / (n_pos * neg_below));
    }
    return interval_of(std::move(aucs), options);
}

// ---- Per-label report ---------------------------------------------------------------------------

nlohmann::json label_metrics_json(const std::vector<double>& scores, const std::vector<int>& truths,
                                  const LabelReportOptions& options) {
    check_binary("label_metrics_json", scores, truths, true);
    const long positives = count_positives(truths);
    const long negatives = static_cast<long>(truths.size()) - positives;
    const bool both = positives > 0 && negatives > 0;

    double threshold = 0.5;
    if (options.threshold)
        threshold = *options.threshold;
    else if (both)
        threshold = youden_threshold(scores, truths);
    const Confusion c = confusion_at(scores, truths, threshold);

    nlohmann::json j;
    if (both) {
        j["auc"] = roc_auc(scores, truths);
        const ConfidenceInterval ci = bootstrap_auc_ci(scores, truths, options.bootstrap, options.groups);
        j["auc_ci95"] = std::isfinite(ci.lo) ? nlohmann::json::array({ci.lo, ci.hi}) : nlohmann::json(nullptr);
    } else {
        j["auc"] = nullptr;
        j["auc_ci95"] = nullptr;
    }
    j["pr_auc"] = positives > 0 ? number_or_null(pr_auc(scores, truths)) : nlohmann::json(nullptr);
    j["accuracy"] = c.accuracy();
    j["sensitivity"] = c.sensitivity();
    j["specificity"] = c.specificity();
    j["precision"] = c.precision();
    j["f1"] = c.f1();
    j["brier"] = brier_score(scores, truths);
    j["ece"] = expected_calibration_error(scores, truths);
    j["threshold"] = number_or_null(threshold);
    j["confusion"] = nlohmann::json::array({nlohmann::json::array({c.tn, c.fp}), nlohmann::json::array({c.fn, c.tp})});
    j["n"] = c.n();
    j["positives"] = positives;
    return j;
}

// ---- Multi-class --------------------------------------------------------------------------------

std::vector<std::vector<long>> confusion_matrix(const std::vector<int>& truths, const std::vector<int>& predicted,
                                                int classes) {
    const char* fn = "confusion_matrix";
    if (classes < 1) throw UsageError(std::string(fn) + ": classes must be >= 1, got " + std::to_string(classes));
    if (truths.size() != predicted.size())
        throw UsageError(std::string(fn) + ": " + std::to_string(truths.size()) + " truths but " +
                         std::to_string(predicted.size()) + " predictions");
    if (truths.empty()) throw InputError(std::string(fn) + ": empty input (no cases)");
    std::vector<std::vector<long>> m(static_cast<size_t>(classes), std::vector<long>(static_cast<size_t>(classes), 0));
    for (size_t i = 0; i < truths.size(); ++i) {
        if (truths[i] < 0 || truths[i] >= classes)
            throw InputError(std::string(fn) + ": truth at index " + std::to_string(i) + " is " +
                             std::to_string(truths[i]) + ", outside 0.." + std::to_string(classes - 1));
        if (predicted[i] < 0 || predicted[i] >= classes)
            throw UsageError(std::string(fn) + ": prediction at index " + std::to_string(i) + " is " +
                             std::to_string(predicted[i]) + ", outside 0.." + std::to_string(classes - 1));
        ++m[static_cast<size_t>(truths[i])][static_cast<size_t>(predicted[i])];
    }
    return m;
}

MultiClassMetrics multiclass_metrics(const std::vector<std::vector<double>>& probabilities,
                                     const std::vector<int>& truths) {
    const char* fn = "multiclass_metrics";
    if (probabilities.size() != truths.size())
        throw UsageError(std::string(fn) + ": " + std::to_string(probabilities.size()) + " rows of probabilities but " +
                         std::to_string(truths.size()) + " truths");
    if (probabilities.empty()) throw InputError(std::string(fn) + ": empty input (no cases)");
    const size_t k = probabilities.front().size();
    if (k < 2) throw UsageError(std::string(fn) + ": needs at least 2 classes, got " + std::to_string(k));
    std::vector<int> predicted(probabilities.size());
    for (size_t i = 0; i < probabilities.size(); ++i) {
        const auto& row = probabilities[i];
        if (row.size() != k)
            throw UsageError(std::string(fn) + ": row " + std::to_string(i) + " has " + std::to_string(row.size()) +
                             " probabilities, row 0 has " + std::to_string(k));
        for (double p : row)
            if (!std::isfinite(p))
                throw InputError(std::string(fn) + ": row " + std::to_string(i) + " has a non-finite probability");
        // max_element returns the first maximum: ties go to the lower class index.
        predicted[i] = static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
    }

    return metrics_of_confusion(confusion_matrix(truths, predicted, static_cast<int>(k)));
}

MultiClassMetrics metrics_of_confusion(std::vector<std::vector<long>> confusion) {
    const size_t k = confusion.size();
    MultiClassMetrics m;
    m.confusion = std::move(confusion);
    long correct = 0, total = 0;
    for (size_t c = 0; c < k; ++c) {
        long row_sum = 0, col_sum = 0;
        for (size_t o = 0; o < k; ++o) {
            row_sum += m.confusion[c][o];
            col_sum += m.confusion[o][c];
        }
        const long hit = m.confusion[c][c];
        correct += hit;
        total += row_sum;
        const double p = ratio(static_cast<double>(hit), static_cast<double>(col_sum));
        const double r = ratio(static_cast<double>(hit), static_cast<double>(row_sum));
        m.precision.push_back(p);
        m.recall.push_back(r);
        m.f1.push_back(ratio(2.0 * static_cast<double>(hit), static_cast<double>(row_sum + col_sum)));
    }
    m.accuracy = ratio(static_cast<double>(correct), static_cast<double>(total));
    m.macro_f1 = std::accumulate(m.f1.begin(), m.f1.end(), 0.0) / static_cast<double>(k);
    m.macro_precision = std::accumulate(m.precision.begin(), m.precision.end(), 0.0) / static_cast<double>(k);
    m.macro_recall = std::accumulate(m.recall.begin(), m.recall.end(), 0.0) / static_cast<double>(k);
    return m;
}

MultiClassIntervals bootstrap_multiclass_ci(const std::vector<std::vector<double>>& probabilities,
                                            const std::vector<int>& truths, const BootstrapOptions& options,
                                            const std::vector<std::string>& groups) {
    const char* fn = "bootstrap_multiclass_ci";
    check_bootstrap_options(fn, options);
    if (!groups.empty() && groups.size() != truths.size()) {
        throw UsageError(std::string(fn) + ": " + std::to_string(groups.size()) + " group ids for " +
                         std::to_string(truths.size()) + " cases");
    }
    const MultiClassMetrics all = multiclass_metrics(probabilities, truths);  // validates the input
    const size_t k = all.confusion.size(), n = truths.size();
    std::vector<int> predicted(n);
    for (size_t i = 0; i < n; ++i) {
        predicted[i] = static_cast<int>(std::max_element(probabilities[i].begin(), probabilities[i].end()) -
                                        probabilities[i].begin());
    }
    std::vector<std::vector<size_t>> units;  // cases drawn together
    std::unordered_map<std::string, size_t> index;
    for (size_t i = 0; i < n; ++i) {
        const size_t u = groups.empty() ? units.size() : index.emplace(groups[i], units.size()).first->second;
        if (u == units.size()) units.emplace_back();
        units[u].push_back(i);
    }
    std::mt19937_64 rng(options.seed);
    std::uniform_int_distribution<size_t> draw(0, units.size() - 1);
    std::vector<double> acc, mp, mr, mf;
    for (int r = 0; r < options.resamples; ++r) {
        std::vector<std::vector<long>> confusion(k, std::vector<long>(k, 0));
        for (size_t d = 0; d < units.size(); ++d) {
            for (size_t i : units[draw(rng)]) ++confusion[static_cast<size_t>(truths[i])][static_cast<size_t>(predicted[i])];
        }
        const MultiClassMetrics m = metrics_of_confusion(std::move(confusion));
        acc.push_back(m.accuracy);
        mp.push_back(m.macro_precision);
        mr.push_back(m.macro_recall);
        mf.push_back(m.macro_f1);
    }
    return {interval_of(acc, options), interval_of(mp, options), interval_of(mr, options), interval_of(mf, options)};
}

nlohmann::json multiclass_json(const MultiClassMetrics& metrics, const std::vector<std::string>& class_names,
                               const MultiClassIntervals* intervals) {
    const size_t k = metrics.confusion.size();
    if (class_names.size() != k)
        throw UsageError("multiclass_json: " + std::to_string(class_names.size()) + " class names for " +
                         std::to_string(k) + " classes");
    nlohmann::json j;
    j["accuracy"] = metrics.accuracy;
    j["macro_f1"] = metrics.macro_f1;
    j["macro_precision"] = metrics.macro_precision;
    j["macro_recall"] = metrics.macro_recall;
    j["confusion"] = metrics.confusion;
    nlohmann::json classes = nlohmann::json::object();
    for (size_t c = 0; c < k; ++c) {
        const long support = std::accumulate(metrics.confusion[c].begin(), metrics.confusion[c].end(), 0L);
        classes[class_names[c]] = {{"precision", metrics.precision.at(c)},
                                   {"recall", metrics.recall.at(c)},
                                   {"f1", metrics.f1.at(c)},
                                   {"support", support}};
    }
    j["classes"] = classes;
    if (intervals) {
        auto pair = [](const ConfidenceInterval& ci) {
            return std::isfinite(ci.lo) ? nlohmann::json::array({ci.lo, ci.hi}) : nlohmann::json(nullptr);
        };
        j["ci95"] = {{"accuracy", pair(intervals->accuracy)},
                     {"macro_precision", pair(intervals->macro_precision)},
                     {"macro_recall", pair(intervals->macro_recall)},
                     {"macro_f1", pair(intervals->macro_f1)}};
    }
    return j;
}

}  // namespace hemoscan
