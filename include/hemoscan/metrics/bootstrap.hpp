#pragma once
// Percentile bootstrap: the options and interval shared by the classification (AUC) and segmentation
// (Dice) confidence intervals.
#include <cstdint>
#include <vector>

namespace hemoscan {

struct BootstrapOptions {
    int resamples = 1000;
    std::uint64_t seed = 0;
    double level = 0.95;  // central interval: percentiles (1-level)/2 and (1+level)/2
};

struct ConfidenceInterval {
    double lo = 0, hi = 0;  // NaN when no resample had the statistic defined
    int used = 0;           // resamples where it was defined (the others are skipped)
};

// numpy.percentile's default (linear interpolation between closest ranks); `sorted` is ascending
// and not empty; q in [0, 1].
double percentile(const std::vector<double>& sorted, double q);

// UsageError naming `fn` unless resamples >= 1 and 0 < level < 1.
void check_bootstrap_options(const char* fn, const BootstrapOptions& options);

// The interval from the statistic of every usable resample (sorted here); NaN bounds when empty.
ConfidenceInterval interval_of(std::vector<double> values, const BootstrapOptions& options);

}  // namespace hemoscan
