#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <opencv2/imgcodecs.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/report/plot.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

// First colour of the chart palette (BGR): single-series bars and the first line use it.
const cv::Vec3b kFirst(176, 114, 76);
const cv::Vec3b kSecond(82, 132, 221);

PlotOptions options(int width = 800, int height = 500) {
    PlotOptions o;
    o.title = "Title";
    o.x_label = "x label";
    o.y_label = "y label";
    o.width = width;
    o.height = height;
    return o;
}

long count_colour(const cv::Mat& img, const cv::Vec3b& colour) {
    long n = 0;
    for (int r = 0; r < img.rows; ++r)
        for (int c = 0; c < img.cols; ++c) n += img.at<cv::Vec3b>(r, c) == colour;
    return n;
}

// Heights (in pixels) of the solid runs of `colour`, one per bar, left to right: for each column
// the number of pixels of that colour, then the maximum over each run of consecutive columns.
std::vector<int> bar_heights(const cv::Mat& img, const cv::Vec3b& colour) {
    std::vector<int> heights;
    bool in_bar = false;
    for (int c = 0; c < img.cols; ++c) {
        int n = 0;
        for (int r = 0; r < img.rows; ++r) n += img.at<cv::Vec3b>(r, c) == colour;
        if (n > 0 && !in_bar) heights.push_back(0);
        if (n > 0) heights.back() = std::max(heights.back(), n);
        in_bar = n > 0;
    }
    return heights;
}

bool blueish(const cv::Vec3b& p) { return p[0] > p[2] + 5; }

}  // namespace

TEST(Plot, ChartSizesMatchOptions) {
    for (auto [w, h] : {std::pair{800, 500}, std::pair{640, 480}, std::pair{1200, 300}, std::pair{200, 150}}) {
        const PlotOptions o = options(w, h);
        const cv::Mat bar = bar_chart({"a", "b"}, {Series{"s", {}, {1, 2}}}, o);
        const cv::Mat line = line_plot({Series{"s", {0, 1, 2}, {3, 1, 2}}}, o);
        const cv::Mat conf = confusion_plot({{5, 1}, {2, 7}}, {"neg", "pos"}, o);
        for (const cv::Mat* m : {&bar, &line, &conf}) {
            EXPECT_EQ(m->cols, w);
            EXPECT_EQ(m->rows, h);
            EXPECT_EQ(m->type(), CV_8UC3);
        }
    }
}

TEST(Plot, BackgroundIsWhite) {
    const cv::Mat img = line_plot({Series{"s", {0, 1}, {0, 1}}}, options());
    EXPECT_EQ(img.at<cv::Vec3b>(0, 0), cv::Vec3b(255, 255, 255));
    EXPECT_EQ(img.at<cv::Vec3b>(img.rows - 1, img.cols - 1), cv::Vec3b(255, 255, 255));
    // Mostly white: a clean chart, not a filled canvas.
    EXPECT_GT(count_colour(img, cv::Vec3b(255, 255, 255)), img.total() * 8 / 10);
}

TEST(Plot, BiggerValuesHaveTallerBars) {
    const cv::Mat img = bar_chart({"small", "big", "mid"}, {Series{"count", {}, {2, 8, 4}}}, options());
    const std::vector<int> h = bar_heights(img, kFirst);
    ASSERT_EQ(h.size(), 3u);
    EXPECT_GT(h[1], h[2]);
    EXPECT_GT(h[2], h[0]);
    // Bars start at 0, so heights are proportional to values (within a pixel of rounding).
    EXPECT_NEAR(static_cast<double>(h[1]) / h[0], 4.0, 4.0 / h[0] + 0.05);
    EXPECT_NEAR(static_cast<double>(h[2]) / h[0], 2.0, 2.0 / h[0] + 0.05);
    EXPECT_GT(h[1], 100);  // the tallest bar uses a good part of the 500 px chart
}

TEST(Plot, GroupedBarsUseOneColourPerSeries) {
    const cv::Mat img = bar_chart({"a", "b"}, {Series{"train", {}, {10, 20}}, Series{"val", {}, {5, 30}}}, options());
    const std::vector<int> first = bar_heights(img, kFirst), second = bar_heights(img, kSecond);
    // Two bars per series, plus one legend swatch each (a short run next to the title).
    ASSERT_GE(first.size(), 2u);
    ASSERT_GE(second.size(), 2u);
    std::vector<int> tall_first, tall_second;
    for (int v : first)
        if (v > 20) tall_first.push_back(v);
    for (int v : second)
        if (v > 20) tall_second.push_back(v);
    ASSERT_EQ(tall_first.size(), 2u);
    ASSERT_EQ(tall_second.size(), 2u);
    EXPECT_NEAR(static_cast<double>(tall_first[1]) / tall_first[0], 2.0, 0.05);
    EXPECT_NEAR(static_cast<double>(tall_second[1]) / tall_second[0], 6.0, 0.2);
    EXPECT_GT(tall_second[1], tall_first[1]);  // 30 > 20
}

TEST(Plot, NegativeBarsGoDownFromZero) {
    const cv::Mat img = bar_chart({"up", "down"}, {Series{"delta", {}, {3, -3}}}, options());
    const std::vector<int> h = bar_heights(img, kFirst);
    ASSERT_EQ(h.size(), 2u);
    EXPECT_NEAR(h[0], h[1], 1);
}

TEST(Plot, LinePlotMapsIncreasingDataUpwards) {
    PlotOptions o = options();
    o.x_unit_range = o.y_unit_range = true;
    const cv::Mat img = line_plot({Series{"", {0, 1}, {0, 1}}}, o);
    // Lowest and highest rows holding the line colour, in the left and the right third.
    auto mean_row = [&](int c0, int c1) {
        double sum = 0;
        long n = 0;
        for (int r = 0; r < img.rows; ++r)
            for (int c = c0; c < c1; ++c)
                if (img.at<cv::Vec3b>(r, c) == kFirst) sum += r, ++n;
        return n ? sum / n : -1.0;
    };
    const double left = mean_row(0, img.cols / 3), right = mean_row(2 * img.cols / 3, img.cols);
    ASSERT_GT(left, 0);
    ASSERT_GT(right, 0);
    EXPECT_GT(left, right + 100);  // image rows grow downwards: high y is a small row
}

TEST(Plot, LinePlotBreaksAtMissingValuesAndDrawsDiagonal) {
    PlotOptions o = options();
    o.diagonal = true;
    o.x_unit_range = o.y_unit_range = true;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    cv::Mat img;
    ASSERT_NO_THROW(img = line_plot({Series{"roc", {0, 0.2, nan, 1}, {0, 0.8, 0.9, 1}}}, o));
    EXPECT_GT(count_colour(img, kFirst), 0);
    EXPECT_THROW(line_plot({Series{"bad", {0, 1, 2}, {0, 1}}}, o), UsageError);
}

TEST(Plot, LegendAvoidsTheData) {
    // A ROC-like path up the left side and along the top passes through three of the four corners
    // where a legend can go; the legend must take the free one (bottom right).
    PlotOptions o = options(600, 600);
    o.x_unit_range = o.y_unit_range = true;
    const std::vector<double> x = {0.05, 0.05, 0.95}, y = {0.05, 0.95, 0.95};
    const cv::Mat with = line_plot({Series{"model (AUC 0.90)", x, y}}, o);
    const cv::Mat without = line_plot({Series{"", x, y}}, o);
    // The legend only adds pixels: wherever the unlabelled chart shows the curve, so does this one.
    long lost = 0;
    for (int r = 0; r < with.rows; ++r)
        for (int c = 0; c < with.cols; ++c)
            lost += without.at<cv::Vec3b>(r, c) == kFirst && with.at<cv::Vec3b>(r, c) != kFirst;
    EXPECT_EQ(lost, 0);
    EXPECT_GT(count_colour(with, kFirst), count_colour(without, kFirst));  // the swatch
}

TEST(Plot, ConfusionCellsDarkenWithTheRowFraction) {
    const cv::Mat img = confusion_plot({{9, 1}, {5, 5}}, {"neg", "pos"}, options(500, 500));
    // Bounding box of the blue-tinted cells = the matrix.
    int x0 = img.cols, y0 = img.rows, x1 = -1, y1 = -1;
    for (int r = 0; r < img.rows; ++r)
        for (int c = 0; c < img.cols; ++c)
            if (blueish(img.at<cv::Vec3b>(r, c))) {
                x0 = std::min(x0, c), x1 = std::max(x1, c);
                y0 = std::min(y0, r), y1 = std::max(y1, r);
            }
    ASSERT_GT(x1, x0 + 50);
    EXPECT_NEAR(x1 - x0, y1 - y0, 4);  // square cells
    const int cell = (x1 - x0 + 1) / 2;
    auto fill = [&](int row, int col) {  // a pixel near the top-left corner of the cell, away from text
        const cv::Vec3b p = img.at<cv::Vec3b>(y0 + row * cell + 4, x0 + col * cell + 4);
        return p[0] + p[1] + p[2];
    };
    EXPECT_LT(fill(0, 0), fill(1, 0));  // 90 % darker than 50 %
    EXPECT_LT(fill(1, 0), fill(0, 1));  // 50 % darker than 10 %
    EXPECT_NEAR(fill(1, 0), fill(1, 1), 3);
}

TEST(Plot, BadArgumentsAreUsageErrors) {
    EXPECT_THROW(bar_chart({"a", "b"}, {Series{"s", {}, {1}}}, options()), UsageError);
    EXPECT_THROW(bar_chart({"a"}, {Series{"s", {}, {1}}}, options(100, 80)), UsageError);
    EXPECT_THROW(line_plot({}, options(199, 500)), UsageError);
    EXPECT_THROW(confusion_plot({{1, 2}, {3}}, {}, options()), UsageError);
    EXPECT_THROW(confusion_plot({{1, 2}, {3, 4}}, {"only one"}, options()), UsageError);
    EXPECT_THROW(confusion_plot({{1, -2}, {3, 4}}, {}, options()), UsageError);
}

// Empty input is not an error: the chart comes back blank, with its title, axes and a "no data"
// note, so a report can still be assembled.
TEST(Plot, EmptyInputGivesBlankLabelledChart) {
    const PlotOptions o = options();
    PlotOptions untitled = o;
    untitled.title.clear();
    const std::vector<cv::Mat> charts = {bar_chart({}, {}, o), line_plot({}, o), line_plot({Series{"s", {}, {}}}, o),
                                         confusion_plot({}, {}, o)};
    for (const cv::Mat& img : charts) {
        ASSERT_EQ(img.size(), cv::Size(o.width, o.height));
        EXPECT_EQ(count_colour(img, kFirst), 0);                              // no data drawn
        EXPECT_LT(count_colour(img, cv::Vec3b(255, 255, 255)), img.total());  // but labels are
    }
    // The title is there: removing it changes the image.
    EXPECT_GT(cv::norm(charts[1], line_plot({}, untitled), cv::NORM_L1), 0);
}

TEST(Plot, SameInputSameImage) {
    const std::vector<Series> s = {Series{"a", {1, 2, 3}, {0.3, 0.2, 0.25}}, Series{"b", {1, 2, 3}, {0.4, 0.3, 0.1}}};
    EXPECT_EQ(cv::norm(line_plot(s, options()), line_plot(s, options()), cv::NORM_L1), 0);
}

TEST(Plot, SavePlotWritesReadablePngAndNoTempFile) {
    test::TempDir dir;
    const cv::Mat img = bar_chart({"a", "b"}, {Series{"s", {}, {1, 2}}}, options(320, 240));
    const auto path = dir / "charts" / "bars.png";
    save_plot(path, img);
    ASSERT_TRUE(fs::exists(path));
    const cv::Mat back = cv::imread(path.string(), cv::IMREAD_UNCHANGED);
    ASSERT_FALSE(back.empty());
    EXPECT_EQ(back.size(), img.size());
    EXPECT_EQ(back.type(), CV_8UC3);
    EXPECT_EQ(cv::norm(back, img, cv::NORM_L1), 0);  // PNG is lossless
    // Only the target is left in the folder.
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path.parent_path())) names.push_back(e.path().filename().string());
    EXPECT_EQ(names, std::vector<std::string>{"bars.png"});
}

TEST(Plot, SavePlotRejectsBadTargets) {
    test::TempDir dir;
    const cv::Mat img = line_plot({}, options(320, 240));
    EXPECT_THROW(save_plot(dir / "chart.jpg", img), UsageError);
    EXPECT_THROW(save_plot(dir / "empty.png", cv::Mat()), UsageError);
    EXPECT_THROW(save_plot(dir / "float.png", cv::Mat(10, 10, CV_32FC3, cv::Scalar(0))), UsageError);
    EXPECT_TRUE(fs::is_empty(dir.path()));
}
