#pragma once
// Small, dependency-free charts drawn with OpenCV (imgproc) and saved as PNG: bar charts for the
// dataset summary, line plots for training curves, ROC/PR curves and confusion matrices.
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
cv::Mat bar_chart(const std::vector<std::string>& categories, const std::vector<Series>& groups,
                  const PlotOptions& options);
// Line plot of several series with a legend and ticked axes.
cv::Mat line_plot(const std::vector<Series>& series, const PlotOptions& options);
// Confusion matrix as a heat map with counts in cells; rows = truth, columns = prediction.
cv::Mat confusion_plot(const std::vector<std::vector<long>>& matrix, const std::vector<std::string>& names,
                       const PlotOptions& options);

// Saves a BGR chart as PNG atomically.
void save_plot(const std::filesystem::path& path, const cv::Mat& image);

}  // namespace hemoscan
