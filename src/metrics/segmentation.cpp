// Segmentation metrics on label slices: overlap, HD95 (exact anisotropic 3D distance transform),
// volume, lesion-wise detection (26-connected components).
#include "hemoscan/metrics/segmentation.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "hemoscan/error.hpp"

namespace hemoscan {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInfinity = std::numeric_limits<double>::infinity();

void check_slice(const char* fn, const cv::Mat& m, size_t z) {
    if (m.empty() || m.type() != CV_8UC1)
        throw UsageError(std::string(fn) + ": slice " + std::to_string(z) + " is not a non-empty CV_8UC1 label map");
}

// Both volumes: same number of slices, every slice CV_8UC1 and of the same size.
void check_pair(const char* fn, const LabelSlices& a, const LabelSlices& b) {
    if (a.size() != b.size())
        throw UsageError(std::string(fn) + ": " + std::to_string(a.size()) + " predicted slices but " +
                         std::to_string(b.size()) + " truth slices");
    for (size_t z = 0; z < a.size(); ++z) {
        check_slice(fn, a[z], z);
        check_slice(fn, b[z], z);
        if (a[z].size() != b[z].size())
            throw UsageError(std::string(fn) + ": slice " + std::to_string(z) + " sizes differ (" +
                             std::to_string(a[z].cols) + "x" + std::to_string(a[z].rows) + " vs " +
                             std::to_string(b[z].cols) + "x" + std::to_string(b[z].rows) + ")");
    }
    for (size_t z = 1; z < a.size(); ++z)
        if (a[z].size() != a[0].size())
            throw UsageError(std::string(fn) + ": slice " + std::to_string(z) + " differs in size from slice 0");
}

// A volume as one flat 0/1 buffer, index (z * h + y) * w + x.
struct Grid {
    int w = 0, h = 0, d = 0;
    std::vector<std::uint8_t> v;
    size_t at(int x, int y, int z) const { return (size_t(z) * h + y) * w + x; }
};

Grid to_grid(const LabelSlices& s) {
    Grid g;
    g.d = static_cast<int>(s.size());
    if (s.empty()) return g;
    g.w = s[0].cols;
    g.h = s[0].rows;
    g.v.resize(size_t(g.w) * g.h * g.d);
    for (int z = 0; z < g.d; ++z)
        for (int y = 0; y < g.h; ++y) {
            const std::uint8_t* row = s[z].ptr<std::uint8_t>(y);
            for (int x = 0; x < g.w; ++x) g.v[g.at(x, y, z)] = row[x] != 0;
        }
    return g;
}

struct Voxel {
    int x, y, z;
};

// Surface voxels: foreground with a 6-neighbour in the background or outside the volume (as
// scipy's binary_erosion with border_value 0, which medpy and MONAI use). An axis of size 1 is not
// an axis: a one-slice volume is a 2D image, whose surface is its 4-connected contour.
std::vector<Voxel> surface(const Grid& g) {
    std::vector<Voxel> out;
    auto bg = [&](int x, int y, int z) {
        return x < 0 || y < 0 || z < 0 || x >= g.w || y >= g.h || z >= g.d || !g.v[g.at(x, y, z)];
    };
    for (int z = 0; z < g.d; ++z)
        for (int y = 0; y < g.h; ++y)
            for (int x = 0; x < g.w; ++x) {
                if (!g.v[g.at(x, y, z)]) continue;
                bool edge = (g.w > 1 && (bg(x - 1, y, z) || bg(x + 1, y, z))) ||
                            (g.h > 1 && (bg(x, y - 1, z) || bg(x, y + 1, z))) ||
                            (g.d > 1 && (bg(x, y, z - 1) || bg(x, y, z + 1)));
                // A single voxel in a 1x1x1 volume (no axis at all) is its own surface.
                if (g.w == 1 && g.h == 1 && g.d == 1) edge = true;
                if (edge) out.push_back({x, y, z});
            }
    return out;
}

// Squared Euclidean distance transform along one line (Felzenszwalb & Huttenlocher 2012), in
// physical units: sample i sits at i * step. f: squared distances so far (kInfinity = no feature).
void edt_1d(std::vector<double>& f, double step, std::vector<double>& d, std::vector<int>& v, std::vector<double>& zb) {
    const int n = static_cast<int>(f.size());
    d.resize(n);
    v.resize(n);
    zb.resize(n + 1);
    int k = -1;
    for (int q = 0; q < n; ++q) {
        if (f[q] == kInfinity) continue;  // no parabola: keeps the envelope finite and exact
        const double xq = q * step;
        while (k >= 0) {
            const double xv = v[k] * step;
            const double s = ((f[q] + xq * xq) - (f[v[k]] + xv * xv)) / (2 * (xq - xv));
            if (s <= zb[k]) {
                --k;
            } else {
                ++k;
                v[k] = q;
                zb[k] = s;
                zb[k + 1] = kInfinity;
                break;
            }
        }
        if (k < 0) {
            k = 0;
            v[0] = q;
            zb[0] = -kInfinity;
            zb[1] = kInfinity;
        }
    }
    if (k < 0) return;  // no feature on this line: all stay kInfinity
    int j = 0;
    for (int q = 0; q < n; ++q) {
        const double xq = q * step;
        while (zb[j + 1] < xq) ++j;
        const double dx = xq - v[j] * step;
        d[q] = dx * dx + f[v[j]];
    }
    f.swap(d);
}

// Squared distance (mm^2) from every voxel of a w x h x dd box to the nearest feature voxel.
std::vector<double> squared_edt(const std::vector<Voxel>& features, int x0, int y0, int z0, int w, int h, int dd,
                                const std::array<double, 3>& spacing) {
    std::vector<double> g(size_t(w) * h * dd, kInfinity);
    auto at = [&](int x, int y, int z) { return (size_t(z) * h + y) * w + x; };
    for (const auto& p : features) g[at(p.x - x0, p.y - y0, p.z - z0)] = 0;
    std::vector<double> line, d, zb;
    std::vector<int> v;
    // Separable: one 1D transform per axis (x, then y, then z).
    const int dims[3] = {w, h, dd};
    for (int axis = 0; axis < 3; ++axis) {
        const int n = dims[axis];
        if (n == 1) continue;
        const int a = axis == 0 ? h : w, b = axis == 2 ? h : dd;  // the two other axes
        line.resize(n);
        for (int j = 0; j < b; ++j)
            for (int i = 0; i < a; ++i) {
                auto idx = [&](int t) {
                    if (axis == 0) return at(t, i, j);
                    if (axis == 1) return at(i, t, j);
                    return at(i, j, t);
                };
                line.assign(n, kInfinity);
                bool any = false;
                for (int t = 0; t < n; ++t) {
                    line[t] = g[idx(t)];
                    any = any || line[t] != kInfinity;
                }
                if (!any) continue;
                edt_1d(line, spacing[axis], d, v, zb);
                for (int t = 0; t < n; ++t) g[idx(t)] = line[t];
            }
    }
    return g;
}

// numpy.percentile's default ("linear"): the value at rank q/100 * (n - 1), interpolated.
double percentile_linear(std::vector<double>& values, double q) {
    std::sort(values.begin(), values.end());
    const double pos = q / 100.0 * double(values.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, values.size() - 1);
    const double frac = pos - double(lo);
    return values[lo] + frac * (values[hi] - values[lo]);
}

// Labels the 26-connected components of a grid; returns the count, labels 1..count (0 = background).
int components_26(const Grid& g, std::vector<int>& labels) {
    labels.assign(g.v.size(), 0);
    int count = 0;
    std::vector<size_t> stack;
    for (size_t start = 0; start < g.v.size(); ++start) {
        if (!g.v[start] || labels[start]) continue;
        ++count;
        labels[start] = count;
        stack.push_back(start);
        while (!stack.empty()) {
            const size_t i = stack.back();
            stack.pop_back();
            const int x = static_cast<int>(i % g.w), y = static_cast<int>((i / g.w) % g.h),
                      z = static_cast<int>(i / (size_t(g.w) * g.h));
            for (int dz = -1; dz <= 1; ++dz)
                for (int dy = -1; dy <= 1; ++dy)
                    for (int dx = -1; dx <= 1; ++dx) {
                        const int nx = x + dx, ny = y + dy, nz = z + dz;
                        if (nx < 0 || ny < 0 || nz < 0 || nx >= g.w || ny >= g.h || nz >= g.d) continue;
                        const size_t j = g.at(nx, ny, nz);
                        if (g.v[j] && !labels[j]) {
                            labels[j] = count;
                            stack.push_back(j);
                        }
                    }
        }
    }
    return count;
}

}  // namespace

LabelSlices class_mask(const LabelSlices& labels, int cls, const std::vector<int>& foreground) {
    if (cls != kAnyForeground && cls < 1)
        throw UsageError("class_mask: class must be >= 1 or kAnyForeground (got " + std::to_string(cls) + ")");
    LabelSlices out;
    out.reserve(labels.size());
    for (size_t z = 0; z < labels.size(); ++z) {
        check_slice("class_mask", labels[z], z);
        cv::Mat m;
        if (cls != kAnyForeground) {
            m = labels[z] == cls;
        } else if (foreground.empty()) {
            m = labels[z] > 0;
        } else {
            m = cv::Mat::zeros(labels[z].size(), CV_8UC1);
            for (int v : foreground) m |= labels[z] == v;
        }
        out.push_back(m / 255);  // OpenCV comparisons give 0/255
    }
    return out;
}

double Overlap::dice() const {
    const long long den = 2 * tp + fp + fn;
    return den == 0 ? 1.0 : 2.0 * double(tp) / double(den);
}

double Overlap::iou() const {
    const long long den = tp + fp + fn;
    return den == 0 ? 1.0 : double(tp) / double(den);
}

Overlap overlap(const LabelSlices& pred, const LabelSlices& truth) {
    check_pair("overlap", pred, truth);
    Overlap o;
    for (size_t z = 0; z < pred.size(); ++z)
        for (int y = 0; y < pred[z].rows; ++y) {
            const std::uint8_t* p = pred[z].ptr<std::uint8_t>(y);
            const std::uint8_t* t = truth[z].ptr<std::uint8_t>(y);
            for (int x = 0; x < pred[z].cols; ++x) {
                const bool a = p[x] != 0, b = t[x] != 0;
                o.tp += a && b;
                o.fp += a && !b;
                o.fn += !a && b;
            }
        }
    return o;
}

DiceIntervals bootstrap_dice_ci(const std::vector<Overlap>& cases, const BootstrapOptions& options) {
    check_bootstrap_options("bootstrap_dice_ci", options);
    if (cases.empty()) throw UsageError("bootstrap_dice_ci: no cases");
    const size_t n = cases.size();
    std::mt19937_64 rng(options.seed);
    std::uniform_int_distribution<size_t> draw(0, n - 1);
    std::vector<double> per_case, positive, pooled;
    per_case.reserve(static_cast<size_t>(options.resamples));
    for (int r = 0; r < options.resamples; ++r) {
        double sum = 0, sum_pos = 0;
        size_t n_pos = 0;
        Overlap total;
        for (size_t d = 0; d < n; ++d) {
            const Overlap& o = cases[draw(rng)];
            const double dice = o.dice();
            sum += dice;
            if (o.tp + o.fn > 0) sum_pos += dice, ++n_pos;
            total.tp += o.tp, total.fp += o.fp, total.fn += o.fn;
        }
        per_case.push_back(sum / double(n));
        if (n_pos > 0) positive.push_back(sum_pos / double(n_pos));
        pooled.push_back(total.dice());
    }
    return {interval_of(std::move(per_case), options), interval_of(std::move(positive), options),
            interval_of(std::move(pooled), options)};
}

double hd95_mm(const LabelSlices& pred, const LabelSlices& truth, const std::array<double, 3>& spacing) {
    check_pair("hd95_mm", pred, truth);
    for (double s : spacing)
        if (!(s > 0) || !std::isfinite(s)) throw UsageError("hd95_mm: spacing must be positive and finite");
    const Grid a = to_grid(pred), b = to_grid(truth);
    const auto sa = surface(a), sb = surface(b);
    if (sa.empty() && sb.empty()) return 0.0;
    if (sa.empty() || sb.empty()) return kNaN;

    // The transform only needs the box around both surfaces: every feature and every query lies in it.
    int x0 = a.w, y0 = a.h, z0 = a.d, x1 = -1, y1 = -1, z1 = -1;
    for (const auto* s : {&sa, &sb})
        for (const auto& p : *s) {
            x0 = std::min(x0, p.x), y0 = std::min(y0, p.y), z0 = std::min(z0, p.z);
            x1 = std::max(x1, p.x), y1 = std::max(y1, p.y), z1 = std::max(z1, p.z);
        }
    const int w = x1 - x0 + 1, h = y1 - y0 + 1, dd = z1 - z0 + 1;
    auto at = [&](const Voxel& p) { return (size_t(p.z - z0) * h + (p.y - y0)) * w + (p.x - x0); };

    std::vector<double> dist;
    dist.reserve(sa.size() + sb.size());
    const auto to_b = squared_edt(sb, x0, y0, z0, w, h, dd, spacing);
    for (const auto& p : sa) dist.push_back(std::sqrt(to_b[at(p)]));
    const auto to_a = squared_edt(sa, x0, y0, z0, w, h, dd, spacing);
    for (const auto& p : sb) dist.push_back(std::sqrt(to_a[at(p)]));
    return percentile_linear(dist, 95.0);
}

double volume_ml(const LabelSlices& mask, const std::array<double, 3>& spacing) {
    long long n = 0;
    for (size_t z = 0; z < mask.size(); ++z) {
        check_slice("volume_ml", mask[z], z);
        n += cv::countNonZero(mask[z]);
    }
    return double(n) * spacing[0] * spacing[1] * spacing[2] / 1000.0;
}

double LesionDetection::sensitivity() const { return lesions == 0 ? kNaN : double(detected) / double(lesions); }

LesionDetection lesion_detection(const LabelSlices& pred, const LabelSlices& truth) {
    check_pair("lesion_detection", pred, truth);
    const Grid p = to_grid(pred), t = to_grid(truth);
    std::vector<int> tl, pl;
    LesionDetection r;
    r.lesions = components_26(t, tl);
    const int pred_components = components_26(p, pl);
    std::vector<char> hit_truth(size_t(r.lesions) + 1, 0), hit_pred(size_t(pred_components) + 1, 0);
    for (size_t i = 0; i < p.v.size(); ++i)
        if (p.v[i] && t.v[i]) {
            hit_truth[tl[i]] = 1;
            hit_pred[pl[i]] = 1;
        }
    for (int c = 1; c <= r.lesions; ++c) r.detected += hit_truth[c];
    for (int c = 1; c <= pred_components; ++c) r.false_positive_components += !hit_pred[c];
    return r;
}

int remove_small_components(LabelSlices& labels, const std::array<double, 3>& spacing, double min_ml) {
    check_pair("remove_small_components", labels, labels);
    if (!(min_ml > 0) || labels.empty()) return 0;
    const Grid g = to_grid(labels);
    std::vector<int> comp;
    const int n = components_26(g, comp);
    if (n == 0) return 0;
    std::vector<long long> voxels(size_t(n) + 1, 0);
    for (int c : comp) ++voxels[size_t(c)];
    const double voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0;
    std::vector<char> drop(size_t(n) + 1, 0);
    int removed = 0;
    for (int c = 1; c <= n; ++c) {
        drop[size_t(c)] = double(voxels[size_t(c)]) * voxel_ml < min_ml;
        removed += drop[size_t(c)];
    }
    if (removed == 0) return 0;
    for (int z = 0; z < g.d; ++z)
        for (int y = 0; y < g.h; ++y) {
            std::uint8_t* row = labels[size_t(z)].ptr<std::uint8_t>(y);
            for (int x = 0; x < g.w; ++x)
                if (drop[size_t(comp[g.at(x, y, z)])]) row[x] = 0;
        }
    return removed;
}

}  // namespace hemoscan
