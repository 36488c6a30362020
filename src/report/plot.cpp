#include "hemoscan/report/plot.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <tuple>

#include "hemoscan/error.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace {

// ---- Style --------------------------------------------------------------------------------------

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr int kMinWidth = 200, kMinHeight = 150;
constexpr int kShift = 4;  // sub-pixel bits for anti-aliased lines
constexpr double kSub = 1 << kShift;

// Colours are constexpr (cv::Scalar is not), so that charts drawn during another file's static
// initialisation do not see them uninitialised.
struct Bgr {
    double b, g, r;
    operator cv::Scalar() const { return cv::Scalar(b, g, r); }
};
constexpr Bgr kWhite{255, 255, 255};
constexpr Bgr kTitle{40, 40, 40};
constexpr Bgr kText{70, 70, 70};
constexpr Bgr kTick{110, 110, 110};
constexpr Bgr kGrid{236, 236, 236};
constexpr Bgr kAxis{170, 170, 170};
constexpr Bgr kDiagonal{175, 175, 175};

// Muted qualitative palette (seaborn "deep").
constexpr std::array<Bgr, 10> kPalette = {{{176, 114, 76},
                                           {82, 132, 221},
                                           {104, 168, 85},
                                           {82, 78, 196},
                                           {178, 114, 129},
                                           {96, 120, 147},
                                           {195, 139, 218},
                                           {140, 140, 140},
                                           {116, 185, 204},
                                           {205, 181, 100}}};

cv::Scalar palette(size_t i) { return kPalette[i % kPalette.size()]; }

// Font sizes follow the chart size (tuned at 800 x 500), never below a legible minimum.
struct Style {
    double s = 1;
    double title = 0.68, label = 0.52, tick = 0.45, legend = 0.46;
    int pad = 12, gap = 6, tick_len = 5;

    explicit Style(const PlotOptions& o) {
        s = std::clamp(std::min(o.width / 800.0, o.height / 500.0), 0.6, 2.5);
        title = std::max(0.5, 0.68 * s);
        label = std::max(0.42, 0.52 * s);
        tick = std::max(0.38, 0.45 * s);
        legend = std::max(0.38, 0.46 * s);
        pad = static_cast<int>(std::lround(14 * s));
        gap = static_cast<int>(std::lround(6 * s));
        tick_len = std::max(3, static_cast<int>(std::lround(5 * s)));
    }
    int thickness(double scale) const { return scale >= 0.9 ? 2 : 1; }
};

// ---- Text ---------------------------------------------------------------------------------------

struct TextBox {
    int w = 0, h = 0, base = 0;  // width, height above the baseline, depth below it
};

TextBox measure(const std::string& text, double scale, int thickness = 1) {
    int base = 0;
    const cv::Size size = cv::getTextSize(text, kFont, scale, thickness, &base);
    return {size.width, size.height, base};
}

// Draws text with its baseline-left corner at `org`.
void put(cv::Mat& img, const std::string& text, cv::Point org, double scale, const cv::Scalar& color,
         int thickness = 1) {
    cv::putText(img, text, org, kFont, scale, color, thickness, cv::LINE_AA);
}

enum class Align { left, center, right };

// Draws text whose box's vertical middle is at y, horizontally aligned on x.
void put_at(cv::Mat& img, const std::string& text, int x, int y_mid, double scale, const cv::Scalar& color,
            Align align = Align::center, int thickness = 1) {
    const TextBox b = measure(text, scale, thickness);
    int left = x;
    if (align == Align::center) left = x - b.w / 2;
    if (align == Align::right) left = x - b.w;
    put(img, text, {left, y_mid + b.h / 2}, scale, color, thickness);
}

// Text rotated 90 degrees counter-clockwise (reads bottom to top), centred on `center`. Drawn on a
// white tile, rotated, and laid on the chart with a darken blend so that it never erases lines.
void put_vertical(cv::Mat& img, const std::string& text, cv::Point center, double scale, const cv::Scalar& color,
                  int thickness = 1) {
    const TextBox b = measure(text, scale, thickness);
    cv::Mat tile(b.h + b.base + 4, b.w + 4, img.type(), kWhite);
    put(tile, text, {2, 2 + b.h}, scale, color, thickness);
    cv::Mat rotated;
    cv::rotate(tile, rotated, cv::ROTATE_90_COUNTERCLOCKWISE);
    cv::Rect dst(center.x - rotated.cols / 2, center.y - rotated.rows / 2, rotated.cols, rotated.rows);
    const cv::Rect clipped = dst & cv::Rect(0, 0, img.cols, img.rows);
    if (clipped.empty()) return;
    cv::Mat src = rotated(cv::Rect(clipped.x - dst.x, clipped.y - dst.y, clipped.width, clipped.height));
    cv::Mat target = img(clipped);
    cv::min(target, src, target);
}

// Shortens text with ".." until it fits max_width pixels.
std::string fit_text(const std::string& text, double scale, int max_width) {
    if (measure(text, scale).w <= max_width) return text;
    std::string t = text;
    while (!t.empty() && measure(t + "..", scale).w > max_width) t.pop_back();
    return t + "..";
}

// ---- Numbers ------------------------------------------------------------------------------------

// Heckbert's "nice numbers": 1, 2 or 5 times a power of ten.
double nice_number(double x, bool round) {
    const double e = std::floor(std::log10(x));
    const double f = x / std::pow(10.0, e);
    double nf;
    if (round)
        nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else
        nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * std::pow(10.0, e);
}

struct Ticks {
    double lo = 0, hi = 1, step = 0.2;
    std::vector<double> values;
    std::vector<std::string> labels;
};

std::string format_number(double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", std::max(0, decimals), v);
    return buf;
}

// Tick labels share one format: as many decimals as the step needs, and k/M/G for big values.
void label_ticks(Ticks& t) {
    const double big = std::max(std::abs(t.lo), std::abs(t.hi));
    double unit = 1;
    const char* suffix = "";
    if (big >= 1e9) {
        unit = 1e9;
        suffix = "G";
    } else if (big >= 1e6) {
        unit = 1e6;
        suffix = "M";
    } else if (big >= 1e4) {
        unit = 1e3;
        suffix = "k";
    }
    const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(t.step / unit) + 1e-9)));
    t.labels.clear();
    for (double v : t.values) {
        if (std::abs(v) < t.step * 1e-9) v = 0;  // no "-0.0"
        t.labels.push_back(format_number(v / unit, decimals) + (v == 0 ? "" : suffix));
    }
}

Ticks make_ticks(double lo, double hi, int max_ticks) {
    if (!(hi > lo)) {  // one value (or none): open a range around it
        const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
        lo -= pad;
        hi += pad;
    }
    max_ticks = std::max(max_ticks, 3);
    Ticks t;
    const double range = nice_number(hi - lo, false);
    t.step = nice_number(range / (max_ticks - 1), true);
    double first = std::floor(lo / t.step + 1e-9), last = std::ceil(hi / t.step - 1e-9);
    // Rounding can nearly double the count: then take the next nice step (1 -> 2 -> 5 -> 10).
    while (last - first + 1 > max_ticks + 1) {
        const double e = std::pow(10.0, std::floor(std::log10(t.step) + 1e-9));
        const double f = std::round(t.step / e);
        t.step = (f < 2 ? 2 : f < 5 ? 5 : 10) * e;
        first = std::floor(lo / t.step + 1e-9);
        last = std::ceil(hi / t.step - 1e-9);
    }
    t.lo = first * t.step;
    t.hi = last * t.step;
    for (double k = first; k <= last + 0.5; k += 1) t.values.push_back(k * t.step);
    label_ticks(t);
    return t;
}

// A fixed 0..1 axis: steps of 0.2 when there is room, else 0.5 (or 1).
Ticks unit_ticks(int max_ticks) { return make_ticks(0, 1, std::min(max_ticks, 6)); }

// Value printed above a bar: whole numbers as integers with thousands separators, others with
// three significant-ish digits.
std::string format_value(double v) {
    if (std::abs(v - std::round(v)) < 1e-9 && std::abs(v) < 1e15) {
        std::string digits = format_number(std::abs(v), 0);
        std::string out;
        for (size_t i = 0; i < digits.size(); ++i) {
            if (i > 0 && (digits.size() - i) % 3 == 0 && digits.size() > 4) out += ',';
            out += digits[i];
        }
        return (v < 0 ? "-" : "") + out;
    }
    const double a = std::abs(v);
    return format_number(v, a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : 3);
}

// ---- Frame: title, axes, grid, labels -----------------------------------------------------------

void check_size(const char* fn, const PlotOptions& o) {
    if (o.width < kMinWidth || o.height < kMinHeight)
        throw UsageError(std::string(fn) + ": chart size " + std::to_string(o.width) + "x" + std::to_string(o.height) +
                         " is too small (minimum " + std::to_string(kMinWidth) + "x" + std::to_string(kMinHeight) +
                         ")");
}

struct LegendItem {
    std::string name;
    cv::Scalar color;
};

// Legend laid out in rows under the title (used when it cannot sit inside the plot area).
struct RowLegend {
    std::vector<std::vector<size_t>> rows;
    int row_h = 0, height = 0, swatch = 0;
};

RowLegend layout_row_legend(const std::vector<LegendItem>& items, const Style& st, int max_width) {
    RowLegend L;
    if (items.empty()) return L;
    L.swatch = static_cast<int>(std::lround(18 * st.s));
    L.row_h = measure("Ag", st.legend).h + 2 * st.gap;
    int x = 0;
    L.rows.emplace_back();
    for (size_t i = 0; i < items.size(); ++i) {
        const int w = L.swatch + st.gap + measure(items[i].name, st.legend).w + 3 * st.gap;
        if (x > 0 && x + w > max_width) {
            L.rows.emplace_back();
            x = 0;
        }
        L.rows.back().push_back(i);
        x += w;
    }
    L.height = static_cast<int>(L.rows.size()) * L.row_h;
    return L;
}

int item_width(const LegendItem& item, const Style& st, int swatch) {
    return swatch + st.gap + measure(item.name, st.legend).w;
}

void draw_swatch(cv::Mat& img, cv::Point left_mid, int swatch, const cv::Scalar& color, bool line, const Style& st) {
    if (line) {
        cv::line(img, cv::Point(left_mid.x, left_mid.y) * kSub, cv::Point(left_mid.x + swatch, left_mid.y) * kSub,
                 color, std::max(2, static_cast<int>(std::lround(2 * st.s))), cv::LINE_AA, kShift);
    } else {
        const int h = std::max(6, swatch * 2 / 3);
        cv::rectangle(img, cv::Rect(left_mid.x, left_mid.y - h / 2, swatch, h), color, cv::FILLED);
    }
}

void draw_row_legend(cv::Mat& img, const RowLegend& L, const std::vector<LegendItem>& items, int top, int center_x,
                     bool lines, const Style& st) {
    for (size_t r = 0; r < L.rows.size(); ++r) {
        int total = 0;
        for (size_t i : L.rows[r]) total += item_width(items[i], st, L.swatch) + 3 * st.gap;
        total -= 3 * st.gap;
        int x = center_x - total / 2;
        const int y = top + static_cast<int>(r) * L.row_h + L.row_h / 2;
        for (size_t i : L.rows[r]) {
            draw_swatch(img, {x, y}, L.swatch, items[i].color, lines, st);
            put_at(img, items[i].name, x + L.swatch + st.gap, y, st.legend, kText, Align::left);
            x += item_width(items[i], st, L.swatch) + 3 * st.gap;
        }
    }
}

// The top part shared by every chart: title (and a legend row under it). Returns the y where the
// plot area may start.
int draw_title(cv::Mat& img, const std::string& title, const Style& st, int center_x) {
    int y = st.pad;
    if (!title.empty()) {
        const int th = st.thickness(st.title);
        const std::string t = fit_text(title, st.title, img.cols - 2 * st.pad);
        const TextBox b = measure(t, st.title, th);
        const int left = std::clamp(center_x - b.w / 2, st.pad, std::max(st.pad, img.cols - st.pad - b.w));
        put(img, t, {left, y + b.h}, st.title, kTitle, th);
        y += b.h + b.base + st.pad;
    }
    return y;
}

struct Margins {
    int left = 0, right = 0, top = 0, bottom = 0;
};

// Left margin needed by the y axis: its label (vertical) and its widest tick label.
int y_axis_width(const Ticks& y, const std::string& y_label, const Style& st) {
    int widest = 0;
    for (const auto& l : y.labels) widest = std::max(widest, measure(l, st.tick).w);
    int w = st.pad + widest + st.gap + st.tick_len;
    if (!y_label.empty()) w += measure("Ag", st.label).h + measure("Ag", st.label).base + st.gap * 2;
    return w;
}

int x_tick_height(const Style& st) { return st.tick_len + st.gap + measure("0", st.tick).h + st.gap; }

int x_label_height(const std::string& x_label, const Style& st) {
    if (x_label.empty()) return st.pad;
    const TextBox b = measure("Ag", st.label);
    return b.h + b.base + st.gap + st.pad;
}

int to_px(double v, double lo, double hi, int p0, int p1) {
    return static_cast<int>(std::lround(p0 + (v - lo) / (hi - lo) * (p1 - p0)));
}

double to_px_f(double v, double lo, double hi, int p0, int p1) { return p0 + (v - lo) / (hi - lo) * (p1 - p0); }

// Horizontal grid lines, y ticks and labels, the left and bottom axis lines, the y axis label.
void draw_y_axis(cv::Mat& img, const cv::Rect& plot, const Ticks& y, const std::string& y_label, const Style& st) {
    for (size_t i = 0; i < y.values.size(); ++i) {
        const int py = to_px(y.values[i], y.lo, y.hi, plot.y + plot.height, plot.y);
        if (py != plot.y + plot.height) cv::line(img, {plot.x, py}, {plot.x + plot.width, py}, kGrid, 1);
        cv::line(img, {plot.x - st.tick_len, py}, {plot.x, py}, kAxis, 1);
        put_at(img, y.labels[i], plot.x - st.tick_len - st.gap, py, st.tick, kTick, Align::right);
    }
    if (!y_label.empty()) {
        const TextBox b = measure("Ag", st.label);
        const std::string t = fit_text(y_label, st.label, plot.height);
        put_vertical(img, t, {st.pad + (b.h + b.base) / 2, plot.y + plot.height / 2}, st.label, kText);
    }
}

void draw_x_label(cv::Mat& img, const cv::Rect& plot, int top, const std::string& x_label, const Style& st) {
    if (x_label.empty()) return;
    const TextBox b = measure("Ag", st.label);
    const std::string t = fit_text(x_label, st.label, img.cols - 2 * st.pad);
    put_at(img, t, plot.x + plot.width / 2, top + b.h / 2, st.label, kText);
}

void draw_axes_lines(cv::Mat& img, const cv::Rect& plot) {
    cv::line(img, {plot.x, plot.y}, {plot.x, plot.y + plot.height}, kAxis, 1);
    cv::line(img, {plot.x, plot.y + plot.height}, {plot.x + plot.width, plot.y + plot.height}, kAxis, 1);
}

void draw_no_data(cv::Mat& img, const cv::Rect& area, const Style& st) {
    put_at(img, "no data", area.x + area.width / 2, area.y + area.height / 2, st.label * 1.3, kTick);
}

cv::Mat blank(const PlotOptions& o) { return cv::Mat(o.height, o.width, CV_8UC3, kWhite); }

}  // namespace

// ---- Bar chart ----------------------------------------------------------------------------------

cv::Mat bar_chart(const std::vector<std::string>& categories, const std::vector<Series>& groups,
                  const PlotOptions& options) {
    check_size("bar_chart", options);
    for (const auto& g : groups)
        if (g.y.size() != categories.size())
            throw UsageError("bar_chart: series '" + g.name + "' has " + std::to_string(g.y.size()) + " values for " +
                             std::to_string(categories.size()) + " categories");
    const Style st(options);
    cv::Mat img = blank(options);
    const bool empty = categories.empty() || groups.empty();

    // Value range: bars grow from 0.
    double lo = 0, hi = 0;
    for (const auto& g : groups)
        for (double v : g.y)
            if (std::isfinite(v)) {
                lo = std::min(lo, v);
                hi = std::max(hi, v);
            }
    if (options.y_unit_range) {
        lo = std::min(lo, 0.0);
        hi = std::max(hi, 1.0);
    }
    if (hi == lo) hi = lo + 1;

    std::vector<LegendItem> legend;
    if (groups.size() > 1)
        for (size_t g = 0; g < groups.size(); ++g) legend.push_back({groups[g].name, palette(g)});

    const int n = static_cast<int>(categories.size());
    const int n_groups = static_cast<int>(groups.size());
    const TextBox tick_box = measure("0", st.tick);

    Margins m;
    int title_bottom = st.pad;
    if (!options.title.empty()) {  // measured only: the title is drawn once the layout is known
        const TextBox b = measure(options.title, st.title, st.thickness(st.title));
        title_bottom += b.h + b.base + st.pad;
    }
    const RowLegend row_legend = layout_row_legend(legend, st, options.width - 2 * st.pad);
    m.top = title_bottom + (row_legend.height > 0 ? row_legend.height + st.gap : 0);
    m.right = st.pad * 2;

    // Category labels: horizontal when they fit their slot, else vertical.
    const int max_ticks = std::clamp(options.height / 80, 3, 8);
    const bool fixed_unit = options.y_unit_range && lo >= 0 && hi <= 1;
    Ticks y = fixed_unit ? unit_ticks(max_ticks) : make_ticks(lo, hi, max_ticks);
    m.left = y_axis_width(y, options.y_label, st);
    const int plot_w0 = options.width - m.left - m.right;
    const double slot0 = n > 0 ? static_cast<double>(plot_w0) / n : plot_w0;
    bool vertical_labels = false;
    int widest_category = 0;
    for (const auto& c : categories) widest_category = std::max(widest_category, measure(c, st.tick).w);
    if (widest_category > slot0 * 0.92) vertical_labels = true;
    const int max_vertical = options.height * 3 / 10;
    const int category_h = vertical_labels ? std::min(widest_category, max_vertical) : tick_box.h + tick_box.base;
    m.bottom = st.tick_len + st.gap + category_h + st.gap + x_label_height(options.x_label, st);

    cv::Rect plot(m.left, m.top, options.width - m.left - m.right, options.height - m.top - m.bottom);
    if (plot.width < 20 || plot.height < 20)
        throw UsageError("bar_chart: chart size " + std::to_string(options.width) + "x" +
                         std::to_string(options.height) + " leaves no room for the bars");

    const double slot = n > 0 ? static_cast<double>(plot.width) / n : plot.width;
    const double group_w = slot * (n_groups > 1 ? 0.8 : 0.62);
    const double bar_w = n_groups > 0 ? group_w / n_groups : group_w;
    const int bar_gap = n_groups > 1 ? std::max(1, static_cast<int>(bar_w * 0.08)) : 0;

    // Value labels shrink to fit their bar; if they still do not fit they are written vertically.
    double value_scale = st.tick;
    int widest_value = 0;
    for (const auto& g : groups)
        for (double v : g.y)
            if (std::isfinite(v)) widest_value = std::max(widest_value, measure(format_value(v), st.tick).w);
    const double room = bar_w - bar_gap + (n_groups > 1 ? 0 : slot - bar_w) * 0.8;
    if (widest_value > room) value_scale = std::max(st.tick * 0.75, st.tick * room / std::max(1, widest_value));
    bool vertical_values = false;
    int value_extent = measure("0", value_scale).h;  // room a label takes above its bar
    {
        int w = 0;
        for (const auto& g : groups)
            for (double v : g.y)
                if (std::isfinite(v)) w = std::max(w, measure(format_value(v), value_scale).w);
        if (w > room) {
            vertical_values = true;
            value_extent = w;
        }
    }

    // Headroom for the value labels: a fixed 0..1 axis moves its top down, any other axis grows
    // until the tallest bar's label fits under the top of the plot area.
    if (!empty && fixed_unit) {
        plot.y += value_extent + st.gap;
        plot.height -= value_extent + st.gap;
    } else if (!empty) {
        for (int iter = 0; iter < 4; ++iter) {
            const int top_px = to_px(hi, y.lo, y.hi, plot.y + plot.height, plot.y);
            const int bottom_px = to_px(lo, y.lo, y.hi, plot.y + plot.height, plot.y);
            if (top_px - value_extent - st.gap >= plot.y && bottom_px + value_extent + st.gap <= plot.y + plot.height)
                break;
            Ticks grown = y;
            if (top_px - value_extent - st.gap < plot.y) grown.hi += y.step;
            if (bottom_px + value_extent + st.gap > plot.y + plot.height && lo < 0) grown.lo -= y.step;
            grown.values.clear();
            for (double k = std::round(grown.lo / grown.step); k <= std::round(grown.hi / grown.step) + 0.5; k += 1)
                grown.values.push_back(k * grown.step);
            label_ticks(grown);
            y = grown;
        }
    }

    const int title_center = plot.x + plot.width / 2;
    draw_title(img, options.title, st, title_center);
    if (row_legend.height > 0) draw_row_legend(img, row_legend, legend, title_bottom, title_center, false, st);
    draw_y_axis(img, plot, y, options.y_label, st);

    const int base_px = to_px(0.0, y.lo, y.hi, plot.y + plot.height, plot.y);
    if (empty) {
        draw_axes_lines(img, plot);
        draw_no_data(img, plot, st);
    } else {
        for (int c = 0; c < n; ++c) {
            const double slot_x = plot.x + c * slot;
            const double group_x = slot_x + (slot - group_w) / 2;
            for (int g = 0; g < n_groups; ++g) {
                const double v = groups[static_cast<size_t>(g)].y[static_cast<size_t>(c)];
                if (!std::isfinite(v)) continue;
                const int x0 = static_cast<int>(std::lround(group_x + g * bar_w)) + bar_gap / 2;
                const int x1 = static_cast<int>(std::lround(group_x + (g + 1) * bar_w)) - (bar_gap + 1) / 2;
                const int vy = to_px(v, y.lo, y.hi, plot.y + plot.height, plot.y);
                const cv::Scalar color = n_groups > 1 ? palette(static_cast<size_t>(g)) : palette(0);
                // Rows strictly above the zero line for positive values, strictly below it for
                // negative ones: a value's bar is |vy - base_px| pixels tall either way.
                if (vy < base_px && x1 > x0)
                    cv::rectangle(img, cv::Point(x0, vy), cv::Point(x1 - 1, base_px - 1), color, cv::FILLED);
                if (vy > base_px && x1 > x0)
                    cv::rectangle(img, cv::Point(x0, base_px + 1), cv::Point(x1 - 1, vy), color, cv::FILLED);
                const std::string label = format_value(v);
                const int cx = (x0 + x1) / 2;
                const bool above = v >= 0;
                if (vertical_values) {
                    const int w = measure(label, value_scale).w;
                    const int cy = above ? vy - st.gap - w / 2 : vy + st.gap + w / 2;
                    put_vertical(img, label, {cx, cy}, value_scale, kText);
                } else {
                    const TextBox b = measure(label, value_scale);
                    const int baseline = above ? vy - st.gap : vy + st.gap + b.h;
                    put(img, label, {cx - b.w / 2, baseline}, value_scale, kText);
                }
            }
            // Category label under the slot.
            const int cx = static_cast<int>(std::lround(slot_x + slot / 2));
            const int top = plot.y + plot.height + st.tick_len + st.gap;
            if (vertical_labels) {
                const std::string t = fit_text(categories[static_cast<size_t>(c)], st.tick, max_vertical);
                const int w = measure(t, st.tick).w;
                put_vertical(img, t, {cx, top + w / 2}, st.tick, kTick);
            } else {
                put_at(img, categories[static_cast<size_t>(c)], cx, top + tick_box.h / 2, st.tick, kTick);
            }
        }
        draw_axes_lines(img, plot);
        if (base_px != plot.y + plot.height) cv::line(img, {plot.x, base_px}, {plot.x + plot.width, base_px}, kAxis, 1);
    }
    draw_x_label(img, plot, plot.y + plot.height + st.tick_len + st.gap + category_h + st.gap * 2, options.x_label, st);
    return img;
}

// ---- Line plot ----------------------------------------------------------------------------------

namespace {

// Dashed straight line in sub-pixel coordinates.
void dashed_line(cv::Mat& img, cv::Point2d a, cv::Point2d b, const cv::Scalar& color, double on, double off) {
    const double len = std::hypot(b.x - a.x, b.y - a.y);
    if (len <= 0) return;
    const cv::Point2d d = (b - a) / len;
    for (double t = 0; t < len; t += on + off) {
        const cv::Point2d p = a + d * t, q = a + d * std::min(len, t + on);
        cv::line(img, cv::Point(static_cast<int>(p.x * kSub), static_cast<int>(p.y * kSub)),
                 cv::Point(static_cast<int>(q.x * kSub), static_cast<int>(q.y * kSub)), color, 1, cv::LINE_AA, kShift);
    }
}

}  // namespace

cv::Mat line_plot(const std::vector<Series>& series, const PlotOptions& options) {
    check_size("line_plot", options);
    for (const auto& s : series)
        if (s.x.size() != s.y.size())
            throw UsageError("line_plot: series '" + s.name + "' has " + std::to_string(s.x.size()) + " x values but " +
                             std::to_string(s.y.size()) + " y values");
    const Style st(options);
    cv::Mat img = blank(options);

    double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
    size_t points = 0;
    for (const auto& s : series)
        for (size_t i = 0; i < s.x.size(); ++i)
            if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
                x_lo = std::min(x_lo, s.x[i]);
                x_hi = std::max(x_hi, s.x[i]);
                y_lo = std::min(y_lo, s.y[i]);
                y_hi = std::max(y_hi, s.y[i]);
                ++points;
            }
    const bool empty = points == 0;
    if (empty) x_lo = y_lo = 0, x_hi = y_hi = 1;

    std::vector<LegendItem> legend;
    for (size_t i = 0; i < series.size(); ++i)
        if (!series[i].name.empty()) legend.push_back({series[i].name, palette(i)});

    // Layout, done twice at most: first with the legend inside the plot area, then (if it would
    // cover data in every corner) with the legend in rows under the title.
    int title_bottom = st.pad;
    if (!options.title.empty()) {
        const TextBox b = measure(options.title, st.title, st.thickness(st.title));
        title_bottom += b.h + b.base + st.pad;
    }
    const TextBox legend_text = measure("Ag", st.legend);
    const int swatch = static_cast<int>(std::lround(22 * st.s));
    const int entry_h = legend_text.h + legend_text.base + st.gap;
    int legend_w = 0;
    for (const auto& item : legend) legend_w = std::max(legend_w, item_width(item, st, swatch));
    legend_w += 2 * st.gap + 4;
    const int legend_h = static_cast<int>(legend.size()) * entry_h + st.gap + 2;

    Ticks xt, yt;
    cv::Rect plot;
    bool row_legend_mode = false;
    RowLegend row_legend;
    cv::Rect legend_box;
    struct {
        Ticks xt, yt;
        cv::Rect plot, box;
    } inside;  // the layout with the legend inside, kept in case legend rows do not fit
    for (int pass = 0; pass < 2; ++pass) {
        Margins m;
        m.top = title_bottom;
        if (row_legend_mode) {
            row_legend = layout_row_legend(legend, st, options.width - 2 * st.pad);
            m.top += row_legend.height + st.gap;
        }
        const int y_ticks =
            std::clamp((options.height - m.top - x_tick_height(st) - x_label_height(options.x_label, st)) /
                           (measure("0", st.tick).h * 4),
                       3, 9);
        yt = options.y_unit_range ? unit_ticks(y_ticks) : make_ticks(y_lo, y_hi, y_ticks);
        m.left = y_axis_width(yt, options.y_label, st);
        m.bottom = x_tick_height(st) + x_label_height(options.x_label, st);
        // x ticks: as many as fit without their labels touching.
        int x_ticks = std::clamp((options.width - m.left) / 90, 3, 11);
        for (;; --x_ticks) {
            xt = options.x_unit_range ? unit_ticks(x_ticks) : make_ticks(x_lo, x_hi, x_ticks);
            int widest = 0;
            for (const auto& l : xt.labels) widest = std::max(widest, measure(l, st.tick).w);
            m.right = std::max(st.pad * 2, widest / 2 + st.pad);
            const int plot_w = options.width - m.left - m.right;
            const double spacing = plot_w / std::max(1.0, static_cast<double>(xt.values.size()) - 1);
            if (widest + 2 * st.gap <= spacing || x_ticks <= 3) break;
        }
        plot = cv::Rect(m.left, m.top, options.width - m.left - m.right, options.height - m.top - m.bottom);
        if (row_legend_mode) {
            // Legend rows that squeeze the plot too much: back to the inside legend after all.
            if (plot.height < std::max(40, inside.plot.height / 2)) {
                row_legend_mode = false;
                std::tie(xt, yt, plot, legend_box) = std::tie(inside.xt, inside.yt, inside.plot, inside.box);
            }
            break;
        }
        if (plot.width < 20 || plot.height < 20)
            throw UsageError("line_plot: chart size " + std::to_string(options.width) + "x" +
                             std::to_string(options.height) + " leaves no room for the plot");
        if (legend.empty()) break;

        // Pick the inside corner whose box covers the fewest data points (sampled along segments).
        const int inset = st.gap * 2;
        const int lw = std::min(legend_w, plot.width - 2 * inset);  // names are shortened to fit
        const std::array<cv::Rect, 4> corners = {
            cv::Rect(plot.x + plot.width - lw - inset, plot.y + inset, lw, legend_h),
            cv::Rect(plot.x + plot.width - lw - inset, plot.y + plot.height - legend_h - inset, lw, legend_h),
            cv::Rect(plot.x + inset, plot.y + inset, lw, legend_h),
            cv::Rect(plot.x + inset, plot.y + plot.height - legend_h - inset, lw, legend_h)};
        std::array<long, 4> covered{0, 0, 0, 0};
        auto sample = [&](double px, double py) {
            for (size_t c = 0; c < corners.size(); ++c)
                if (corners[c].contains(cv::Point(static_cast<int>(px), static_cast<int>(py)))) ++covered[c];
        };
        for (const auto& s : series) {
            for (size_t i = 0; i < s.x.size(); ++i) {
                if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
                const double px = to_px_f(s.x[i], xt.lo, xt.hi, plot.x, plot.x + plot.width);
                const double py = to_px_f(s.y[i], yt.lo, yt.hi, plot.y + plot.height, plot.y);
                sample(px, py);
                if (i + 1 < s.x.size() && std::isfinite(s.x[i + 1]) && std::isfinite(s.y[i + 1])) {
                    const double qx = to_px_f(s.x[i + 1], xt.lo, xt.hi, plot.x, plot.x + plot.width);
                    const double qy = to_px_f(s.y[i + 1], yt.lo, yt.hi, plot.y + plot.height, plot.y);
                    const int steps = static_cast<int>(std::hypot(qx - px, qy - py) / 3);
                    for (int k = 1; k < steps; ++k) sample(px + (qx - px) * k / steps, py + (qy - py) * k / steps);
                }
            }
        }
        if (options.diagonal)
            for (int k = 0; k <= 200; ++k) {
                const double v = xt.lo + (xt.hi - xt.lo) * k / 200.0;
                if (v >= yt.lo && v <= yt.hi)
                    sample(to_px_f(v, xt.lo, xt.hi, plot.x, plot.x + plot.width),
                           to_px_f(v, yt.lo, yt.hi, plot.y + plot.height, plot.y));
            }
        const size_t best = static_cast<size_t>(std::min_element(covered.begin(), covered.end()) - covered.begin());
        legend_box = corners[best];
        const bool fits = legend_w < plot.width * 0.6 && legend_h < plot.height * 0.7;
        if (covered[best] == 0 && fits) break;
        inside = {xt, yt, plot, legend_box};
        row_legend_mode = true;
    }

    const int title_center = plot.x + plot.width / 2;
    draw_title(img, options.title, st, title_center);
    if (row_legend_mode) draw_row_legend(img, row_legend, legend, title_bottom, title_center, true, st);
    draw_y_axis(img, plot, yt, options.y_label, st);
    for (size_t i = 0; i < xt.values.size(); ++i) {
        const int px = to_px(xt.values[i], xt.lo, xt.hi, plot.x, plot.x + plot.width);
        if (px != plot.x) cv::line(img, {px, plot.y}, {px, plot.y + plot.height}, kGrid, 1);
        cv::line(img, {px, plot.y + plot.height}, {px, plot.y + plot.height + st.tick_len}, kAxis, 1);
        const TextBox b = measure(xt.labels[i], st.tick);
        put(img, xt.labels[i], {px - b.w / 2, plot.y + plot.height + st.tick_len + st.gap + b.h}, st.tick, kTick);
    }
    draw_axes_lines(img, plot);
    draw_x_label(img, plot, plot.y + plot.height + x_tick_height(st) + st.gap, options.x_label, st);

    if (empty) {
        draw_no_data(img, plot, st);
        return img;
    }

    // Data are drawn on a view of the plot area (plus a few pixels for line width): OpenCV clips
    // to it, so points outside a fixed 0..1 range cannot spill onto the labels.
    const int spill = 3;
    const cv::Rect view_rect =
        cv::Rect(plot.x - spill, plot.y - spill, plot.width + 2 * spill, plot.height + 2 * spill) &
        cv::Rect(0, 0, img.cols, img.rows);
    cv::Mat view = img(view_rect);
    auto to_view = [&](double x, double y) {
        return cv::Point2d(to_px_f(x, xt.lo, xt.hi, plot.x, plot.x + plot.width) - view_rect.x,
                           to_px_f(y, yt.lo, yt.hi, plot.y + plot.height, plot.y) - view_rect.y);
    };
    auto sub = [](cv::Point2d p) {
        return cv::Point(static_cast<int>(std::lround(p.x * kSub)), static_cast<int>(std::lround(p.y * kSub)));
    };
    if (options.diagonal) {
        const double a = std::max(xt.lo, yt.lo), b = std::min(xt.hi, yt.hi);
        if (b > a) dashed_line(view, to_view(a, a), to_view(b, b), kDiagonal, 7 * st.s, 5 * st.s);
    }
    const int thickness = std::max(2, static_cast<int>(std::lround(2 * st.s)));
    for (size_t si = 0; si < series.size(); ++si) {
        const auto& s = series[si];
        const cv::Scalar color = palette(si);
        std::vector<cv::Point> run;  // a stretch of finite points; non-finite ones break the line
        auto flush = [&] {
            if (run.size() > 1) cv::polylines(view, run, false, color, thickness, cv::LINE_AA, kShift);
            run.clear();
        };
        for (size_t i = 0; i < s.x.size(); ++i) {
            if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
                run.push_back(sub(to_view(s.x[i], s.y[i])));
            else
                flush();
        }
        flush();
        // Markers when there are few points, so single points and sparse curves stay visible.
        if (s.x.size() <= 30)
            for (size_t i = 0; i < s.x.size(); ++i)
                if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
                    cv::circle(view, sub(to_view(s.x[i], s.y[i])), static_cast<int>(std::lround(3.2 * st.s * kSub)),
                               color, cv::FILLED, cv::LINE_AA, kShift);
    }

    if (!legend.empty() && !row_legend_mode) {
        cv::rectangle(img, legend_box, kWhite, cv::FILLED);
        cv::rectangle(img, legend_box, cv::Scalar(215, 215, 215), 1);
        for (size_t i = 0; i < legend.size(); ++i) {
            const int y = legend_box.y + st.gap / 2 + 1 + static_cast<int>(i) * entry_h + entry_h / 2;
            const int x = legend_box.x + st.gap + 2;
            draw_swatch(img, {x, y}, swatch, legend[i].color, true, st);
            const int room = legend_box.x + legend_box.width - (x + swatch + st.gap) - st.gap;
            put_at(img, fit_text(legend[i].name, st.legend, room), x + swatch + st.gap, y, st.legend, kText,
                   Align::left);
        }
    }
    return img;
}

// ---- Confusion matrix ---------------------------------------------------------------------------

cv::Mat confusion_plot(const std::vector<std::vector<long>>& matrix, const std::vector<std::string>& names,
                       const PlotOptions& options) {
    check_size("confusion_plot", options);
    const size_t k = matrix.size();
    for (size_t r = 0; r < k; ++r) {
        if (matrix[r].size() != k)
            throw UsageError("confusion_plot: the matrix is not square (row " + std::to_string(r) + " has " +
                             std::to_string(matrix[r].size()) + " columns for " + std::to_string(k) + " rows)");
        for (long v : matrix[r])
            if (v < 0) throw UsageError("confusion_plot: negative count in row " + std::to_string(r));
    }
    if (!names.empty() && names.size() != k)
        throw UsageError("confusion_plot: " + std::to_string(names.size()) + " class names for a " + std::to_string(k) +
                         "x" + std::to_string(k) + " matrix");
    std::vector<std::string> labels = names;
    if (labels.empty())
        for (size_t i = 0; i < k; ++i) labels.push_back(std::to_string(i));
    const std::string x_label = options.x_label.empty() ? "Predicted" : options.x_label;
    const std::string y_label = options.y_label.empty() ? "True" : options.y_label;

    const Style st(options);
    cv::Mat img = blank(options);
    int top = st.pad;
    if (!options.title.empty()) {
        const TextBox b = measure(options.title, st.title, st.thickness(st.title));
        top += b.h + b.base + st.pad;
    }
    const TextBox label_box = measure("Ag", st.label);
    const int left_label_w = label_box.h + label_box.base + 2 * st.gap;
    int widest_row = 0, widest_col = 0;
    for (const auto& l : labels) widest_row = std::max(widest_row, measure(l, st.tick).w);
    widest_row = std::min(widest_row, options.width / 4);
    widest_col = widest_row;

    const int left = st.pad + left_label_w + widest_row + st.gap;
    const int bottom_fixed = x_label_height(x_label, st) + st.gap;
    const int avail_w = options.width - left - st.pad * 2;
    // Column names go vertical when they do not fit a cell; the cell size depends on that choice.
    const TextBox tick_box = measure("0", st.tick);
    int cell = 0;
    bool vertical_cols = false;
    int col_h = tick_box.h + tick_box.base;
    for (int pass = 0; pass < 2; ++pass) {
        const int bottom = st.gap + col_h + bottom_fixed;
        const int avail_h = options.height - top - bottom;
        cell = k > 0 ? std::min(avail_w, avail_h) / static_cast<int>(k) : std::min(avail_w, avail_h);
        if (k == 0 || widest_col + st.gap <= cell) break;
        vertical_cols = true;
        col_h = std::min(widest_col, options.height / 4);
    }
    if (cell < 8)
        throw UsageError("confusion_plot: chart size " + std::to_string(options.width) + "x" +
                         std::to_string(options.height) + " is too small for a " + std::to_string(k) + "x" +
                         std::to_string(k) + " matrix");

    const int side = cell * static_cast<int>(std::max<size_t>(k, 1));
    const int mx = left + (avail_w - side) / 2;
    const cv::Rect grid(mx, top, side, side);
    draw_title(img, options.title, st, grid.x + grid.width / 2);
    put_vertical(img, fit_text(y_label, st.label, side),
                 {mx - widest_row - st.gap * 2 - left_label_w / 2, grid.y + side / 2}, st.label, kText);
    const int col_top = grid.y + side + st.gap;
    draw_x_label(img, grid, col_top + col_h + st.gap * 2, x_label, st);

    if (k == 0) {
        cv::rectangle(img, grid, kAxis, 1);
        draw_no_data(img, grid, st);
        return img;
    }

    // Colour by the row fraction (the recall of that class), so rare classes are as readable as
    // common ones; the count and the row percentage are written in each cell.
    const cv::Scalar deep(120, 62, 25), white = kWhite;  // dark muted blue, BGR
    const double count_scale0 = std::max(0.4, st.label * 1.1);
    long widest_count_value = 0;
    for (const auto& row : matrix)
        for (long v : row) widest_count_value = std::max(widest_count_value, v);
    const int count_w = measure(format_value(static_cast<double>(widest_count_value)), count_scale0).w;
    const double count_scale =
        std::max(0.25, std::min(count_scale0, count_scale0 * (cell * 0.7) / std::max(1, count_w)));
    const double pct_scale = std::max(0.3, count_scale * 0.7);
    const bool show_pct = cell >= 3 * (measure("0", count_scale).h + measure("0", pct_scale).h) / 2 + 2 * st.gap &&
                          measure("100.0%", pct_scale).w <= cell * 0.9;
    for (size_t r = 0; r < k; ++r) {
        long row_sum = 0;
        for (long v : matrix[r]) row_sum += v;
        for (size_t c = 0; c < k; ++c) {
            const double f = row_sum > 0 ? static_cast<double>(matrix[r][c]) / static_cast<double>(row_sum) : 0.0;
            cv::Scalar color;
            for (int ch = 0; ch < 3; ++ch) color[ch] = white[ch] * (1 - f) + deep[ch] * f;
            const cv::Rect rect(grid.x + static_cast<int>(c) * cell, grid.y + static_cast<int>(r) * cell, cell, cell);
            cv::rectangle(img, rect, color, cv::FILLED);
            cv::rectangle(img, rect, cv::Scalar(225, 225, 225), 1);
            const cv::Scalar ink = f > 0.5 ? kWhite : kTitle;
            const std::string count = format_value(static_cast<double>(matrix[r][c]));
            const int cx = rect.x + cell / 2, cy = rect.y + cell / 2;
            if (show_pct) {
                const int ch = measure("0", count_scale).h, ph = measure("0", pct_scale).h;
                const int block = ch + st.gap + ph;
                put_at(img, count, cx, cy - block / 2 + ch / 2, count_scale, ink, Align::center,
                       st.thickness(count_scale));
                put_at(img, format_number(100.0 * f, 1) + "%", cx, cy + block / 2 - ph / 2, pct_scale, ink);
            } else {
                put_at(img, count, cx, cy, count_scale, ink, Align::center, st.thickness(count_scale));
            }
        }
        // Row name (truth) on the left, column name (prediction) below.
        const int ry = grid.y + static_cast<int>(r) * cell + cell / 2;
        put_at(img, fit_text(labels[r], st.tick, widest_row), grid.x - st.gap, ry, st.tick, kTick, Align::right);
        const int cx = grid.x + static_cast<int>(r) * cell + cell / 2;
        const std::string col = fit_text(labels[r], st.tick, vertical_cols ? col_h : cell);
        if (vertical_cols)
            put_vertical(img, col, {cx, col_top + measure(col, st.tick).w / 2}, st.tick, kTick);
        else
            put_at(img, col, cx, col_top + tick_box.h / 2, st.tick, kTick);
    }
    return img;
}

// ---- Saving -------------------------------------------------------------------------------------

void save_plot(const std::filesystem::path& path, const cv::Mat& image) {
    if (image.empty()) throw UsageError("save_plot: empty image for " + path.string());
    if (image.depth() != CV_8U || (image.channels() != 3 && image.channels() != 1))
        throw UsageError("save_plot: " + path.string() + ": expected an 8-bit BGR (or grey) image");
    if (to_lower(path.extension().string()) != ".png")
        throw UsageError("save_plot: " + path.string() + ": charts are saved as PNG, use a .png file name");
    write_atomic_with(path, [&](const fs::path& tmp) {
        bool ok = false;
        try {
            ok = cv::imwrite(tmp.string(), image);
        } catch (const cv::Exception& e) {
            throw Error("save_plot: cannot write " + path.string() + ": " + e.what());
        }
        if (!ok) throw Error("save_plot: cannot write " + path.string());
    });
}

}  // namespace hemoscan
