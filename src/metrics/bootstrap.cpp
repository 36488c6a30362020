#include "hemoscan/metrics/bootstrap.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "hemoscan/error.hpp"

namespace hemoscan {

double percentile(const std::vector<double>& sorted, double q) {
    const double h = (static_cast<double>(sorted.size()) - 1) * q;
    const auto lo = static_cast<size_t>(std::floor(h));
    const size_t hi = std::min(lo + 1, sorted.size() - 1);
    return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

void check_bootstrap_options(const char* fn, const BootstrapOptions& options) {
    if (options.resamples < 1)
        throw UsageError(std::string(fn) + ": resamples must be >= 1, got " + std::to_string(options.resamples));
    if (!(options.level > 0 && options.level < 1))
        throw UsageError(std::string(fn) + ": level must be in (0, 1), got " + std::to_string(options.level));
}

ConfidenceInterval interval_of(std::vector<double> values, const BootstrapOptions& options) {
    ConfidenceInterval ci;
    ci.used = static_cast<int>(values.size());
    if (values.empty()) {
        ci.lo = ci.hi = std::numeric_limits<double>::quiet_NaN();
        return ci;
    }
    std::sort(values.begin(), values.end());
    ci.lo = percentile(values, (1 - options.level) / 2);
    ci.hi = percentile(values, (1 + options.level) / 2);
    return ci;
}

}  // namespace hemoscan
