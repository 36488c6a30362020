#pragma once
// Small, dependency-free charts drawn with OpenCV (imgproc) and saved as PNG: bar charts for the
// dataset summary, line plots for training curves, ROC/PR curves and confusion matrices.
//
// All charts: white background, muted palette, light grid, "nice" ticks (1/2/5 x 10^k), fonts that
// scale with the size. Sizes below 200 x 150, or inconsistent inputs (a series whose size does not
// match), throw UsageError. Empty input (no category, no series, no finite point, a 0 x 0 matrix)
// is NOT an error: the chart comes back blank, with its title, axes, axis labels and a "no data"
// note, so that a report can always be assembled.
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace hemoscan {

struct Series {
    std::string name;
    std::vector<double> x, y;
};

struct PlotOptions {
    std::string title;
    std::string x_label, y_label;
    int width = 800, height = 500;
    bool x_unit_range = false;  // fix the x axis to 0..1 (ROC, PR)
    bool y_unit_range = false;  // fix the y axis to 0..1
    bool diagonal = false;      // draw the chance diagonal (ROC)
};

// Bar chart: one bar per category, value printed above it. Groups (several series) side by side.
// Only Series::y is used (one value per category); bars grow from 0 (negative values downwards,
// their value printed below); non-finite values are left out. Several groups get a legend under
// the title; long category names are written vertically.
cv::Mat bar_chart(const std::vector<std::string>& categories, const std::vector<Series>& groups,
                  const PlotOptions& options);
// Line plot of several series with a legend and ticked axes.
// Non-finite points break the line; series of <= 30 points get markers. The legend (series with a
// name) sits in the inside corner that covers no data, else in rows under the title.
cv::Mat line_plot(const std::vector<Series>& series, const PlotOptions& options);
// Confusion matrix as a heat map with counts in cells; rows = truth, columns = prediction.
// Cell colour = the row fraction (per-class recall), also written under the count when the cell
// has room. Empty names: classes are numbered 0..K-1. x/y labels default to "Predicted"/"True".
cv::Mat confusion_plot(const std::vector<std::vector<long>>& matrix, const std::vector<std::string>& names,
                       const PlotOptions& options);

// Saves a BGR chart as PNG atomically. UsageError unless the path ends in .png and the image is
// 8-bit (BGR or grey); Error when the file cannot be written (no temp file is left behind).
void save_plot(const std::filesystem::path& path, const cv::Mat& image);

}  // namespace hemoscan
