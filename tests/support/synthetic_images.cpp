#include "synthetic_images.hpp"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace hemoscan::test {

void write_blob_dataset(const std::filesystem::path& dir, int n_per_class, int size, unsigned seed, int blob) {
    std::filesystem::create_directories(dir);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> pos(size / 3, size - size / 3);
    std::ofstream csv(dir / "labels.csv");
    csv << "id, hemorrhage\n";
    for (int i = 0; i < 2 * n_per_class; ++i) {
        const bool positive = i % 2 == 0;
        cv::Mat img(size, size, CV_8UC1, cv::Scalar(0));
        cv::circle(img, {size / 2, size / 2}, size * 2 / 5, cv::Scalar(90), -1);
        cv::Mat noise(size, size, CV_8UC1);
        cv::randn(noise, 0, 8);
        img += noise;
        if (positive) cv::circle(img, {pos(rng), pos(rng)}, std::max(2, size / 10), cv::Scalar(blob), -1);
        char id[16];
        std::snprintf(id, sizeof id, "%03d", i);
        cv::imwrite((dir / (std::string(id) + ".png")).string(), img);
        csv << id << "," << (positive ? 1 : 0) << "\n";
    }
}

void write_blob_class_folders(const std::filesystem::path& dir, int n_per_class, int size, unsigned seed) {
    const std::filesystem::path flat = dir / ".flat";
    write_blob_dataset(flat, n_per_class, size, seed);
    for (int i = 0; i < 2 * n_per_class; ++i) {
        char id[16];
        std::snprintf(id, sizeof id, "%03d", i);
        const std::filesystem::path to = dir / (i % 2 == 0 ? "hemorrhage" : "normal");
        std::filesystem::create_directories(to);
        std::filesystem::rename(flat / (std::string(id) + ".png"), to / (std::string(id) + ".png"));
    }
    std::filesystem::remove_all(flat);
}

void write_bleed_calcified_folders(const std::filesystem::path& dir, int n_per_class, bool with_normal, int size,
                                   unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> left(size / 4, size / 2 - 2), right(size / 2 + 2, size - size / 4);
    std::vector<std::string> classes = {"bleed", "calcified", "bleed+calcified"};
    if (with_normal) classes.insert(classes.begin(), "normal");
    int id = 0;  // image ids are unique across the folders
    for (const auto& name : classes) {
        const bool bleed = name.find("bleed") != std::string::npos;
        const bool calcified = name.find("calcified") != std::string::npos;
        std::filesystem::create_directories(dir / name);
        for (int i = 0; i < n_per_class; ++i) {
            cv::Mat img(size, size, CV_8UC1, cv::Scalar(0));
            cv::circle(img, {size / 2, size / 2}, size * 2 / 5, cv::Scalar(90), -1);
            cv::Mat noise(size, size, CV_8UC1);
            cv::randn(noise, 0, 8);
            img += noise;
            if (bleed) cv::circle(img, {left(rng), left(rng)}, std::max(3, size / 7), cv::Scalar(170), -1);
            if (calcified) cv::circle(img, {right(rng), right(rng)}, std::max(2, size / 16), cv::Scalar(255), -1);
            char file[32];
            std::snprintf(file, sizeof file, "%03d.png", id++);
            cv::imwrite((dir / name / file).string(), img);
        }
    }
}

cv::Mat brain_window_head(int channels, unsigned seed) {
    const cv::Point centre(64, 64);
    cv::Mat g(128, 128, CV_32FC1, cv::Scalar(0));
    cv::circle(g, centre, 57, cv::Scalar(1.0), -1);
    cv::circle(g, centre, 52, cv::Scalar(0.45), -1);
    cv::Mat noise(g.size(), CV_32FC1);
    cv::RNG(seed).fill(noise, cv::RNG::NORMAL, 0.0, 0.02);
    cv::Mat brain(g.size(), CV_8UC1, cv::Scalar(0));
    cv::circle(brain, centre, 52, cv::Scalar(255), -1);
    cv::add(g, noise, g, brain);
    cv::ellipse(g, cv::Point(54, 64), cv::Size(4, 10), 0, 0, 360, cv::Scalar(0.12), -1);
    cv::ellipse(g, cv::Point(74, 64), cv::Size(4, 10), 0, 0, 360, cv::Scalar(0.12), -1);
    if (channels == 1) return g;
    std::vector<cv::Mat> planes(static_cast<size_t>(channels), g);
    cv::Mat out;
    cv::merge(planes, out);
    return out;
}

}  // namespace hemoscan::test
