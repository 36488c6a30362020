// Golden outputs: the probabilities, heatmaps, masks and volumes that `predict`, `segment` and `serve`
// give for two fixed small models (tests/golden/cls.pt, seg.pt) on a deterministic synthetic cohort
// must stay what tests/golden/expected.json recorded. It guards refactors: moving code must not move
// a number. Re-record only when a change of results is intended and explained in the commit:
//   HEMOSCAN_GOLDEN_RECORD=1 ./build/tests/test_golden
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "../serve/serve_process.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using nlohmann::json;
using test::TempDir;
namespace fs = std::filesystem;

namespace {

const fs::path kGolden = fs::path(HEMOSCAN_SOURCE_DIR) / "tests" / "golden";

std::string q(const fs::path& p) { return test::shell_quote(p); }

bool recording() {
    const char* v = std::getenv("HEMOSCAN_GOLDEN_RECORD");
    return v != nullptr && std::string(v) == "1";
}

// A label volume as run-length pairs [value, count, value, count, ...] in slice/row/column order.
json run_lengths(const LabelVolume& v) {
    json out = json::array();
    int value = -1;
    long count = 0;
    for (const cv::Mat& s : v.slices) {
        for (int r = 0; r < s.rows; ++r) {
            for (int c = 0; c < s.cols; ++c) {
                const int x = s.at<uchar>(r, c);
                if (x == value) {
                    ++count;
                    continue;
                }
                if (count > 0) out.push_back({value, count});
                value = x;
                count = 1;
            }
        }
    }
    if (count > 0) out.push_back({value, count});
    return out;
}

std::vector<int> expand(const json& rle) {
    std::vector<int> v;
    for (const auto& p : rle) v.insert(v.end(), p[1].get<size_t>(), p[0].get<int>());
    return v;
}

double mean_grey(const fs::path& png) {
    const cv::Mat m = cv::imread(png.string(), cv::IMREAD_UNCHANGED);
    EXPECT_FALSE(m.empty()) << png;
    if (m.empty()) return -1;
    const cv::Scalar s = cv::mean(m);
    double sum = 0;
    for (int c = 0; c < m.channels(); ++c) sum += s[c];
    return sum / m.channels();
}

std::vector<fs::path> sorted_files(const fs::path& dir) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
        if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

// Compares recorded and current values: numbers with `tol` (absolute), masks voxel by voxel
// (at most 2 voxels may differ: a borderline probability may flip when arithmetic is reordered).
void compare(const json& expected, const json& actual, const std::string& where, double tol) {
    if (expected.is_object() && expected.contains("rle")) {
        ASSERT_TRUE(actual.is_object() && actual.contains("rle")) << where;
        const auto e = expand(expected["rle"]), a = expand(actual["rle"]);
        ASSERT_EQ(e.size(), a.size()) << where;
        size_t differ = 0;
        for (size_t i = 0; i < e.size(); ++i) differ += e[i] != a[i] ? 1 : 0;
        EXPECT_LE(differ, 2u) << where << ": " << differ << " voxels differ";
        return;
    }
    if (expected.is_object()) {
        ASSERT_TRUE(actual.is_object()) << where;
        // A decision may flip only where the probability sits within the tolerance of its threshold.
        const bool borderline = expected.contains("decision") && expected.contains("probability") &&
                                std::abs(expected["probability"].get<double>() - expected["threshold"].get<double>()) < 1e-4;
        for (const auto& [k, v] : expected.items()) {
            ASSERT_TRUE(actual.contains(k)) << where << "." << k;
            if (k == "decision" && borderline) continue;
            const double t = k.find("heatmap") != std::string::npos || k.find("overlay") != std::string::npos ? 0.5 : tol;
            compare(v, actual[k], where + "." + k, t);
        }
        EXPECT_EQ(expected.size(), actual.size()) << where;
    } else if (expected.is_array()) {
        ASSERT_TRUE(actual.is_array()) << where;
        ASSERT_EQ(expected.size(), actual.size()) << where;
        for (size_t i = 0; i < expected.size(); ++i) compare(expected[i], actual[i], where + "[" + std::to_string(i) + "]", tol);
    } else if (expected.is_number()) {
        ASSERT_TRUE(actual.is_number()) << where;
        EXPECT_NEAR(expected.get<double>(), actual.get<double>(), tol) << where;
    } else {
        EXPECT_EQ(expected, actual) << where;
    }
}

std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(Golden, PredictSegmentServe) {
    ASSERT_TRUE(fs::exists(kGolden / "cls.pt")) << kGolden;
    TempDir d;
    // Two studies with bleeds: DICOM series, NIfTI volumes and PNG slices.
    auto r = test::run_hemoscan("synth --out " + q(d / "syn") +
                                " --studies 2 --seed 21 --size 64 --slices 6 --p-bleed 1 --format dicom,nifti,png --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path series = d / "syn" / "dicom" / "study_0000";
    const fs::path png = d / "syn" / "png" / "study_0001" / "slice_003.png";
    const fs::path nifti = d / "syn" / "nifti" / "study_0001.nii.gz";
    json actual;

    // predict: a DICOM series (per slice and study) and one PNG, with Grad-CAM heatmaps.
    r = test::run_hemoscan("predict --model " + q(kGolden / "cls.pt") + " " + q(series) + " " + q(png) +
                           " --threads 1 --out " + q(d / "pred.json") + " --heatmap " + q(d / "cams"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const auto& in : test::read_json(d / "pred.json")) {
        json one = {{"kind", in["kind"]}, {"study", in["result"]}};
        if (in.contains("slices")) {
            one["slices"] = json::array();
            for (const auto& s : in["slices"]) one["slices"].push_back(s["result"]);
        }
        actual["predict"].push_back(one);
    }
    for (const auto& f : sorted_files(d / "cams")) actual["predict_heatmap_means"].push_back(mean_grey(f));

    // segment: the series and the NIfTI volume: label maps, volumes per class, overlays.
    r = test::run_hemoscan("segment --model " + q(kGolden / "seg.pt") + " " + q(series) + " " + q(nifti) + " --out " +
                           q(d / "seg") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const json volumes = test::read_json(d / "seg" / "volumes.json");
    for (const auto& in : volumes["inputs"]) {
        const std::string name = in["name"];
        json overlays = json::array();
        for (const auto& f : sorted_files(d / "seg" / (name + "_overlay"))) overlays.push_back(mean_grey(f));
        actual["segment"].push_back({{"bleed_volume_ml", in["bleed_volume_ml"]},
                                     {"volume_ml", in["volume_ml"]},
                                     {"mask", {{"rle", run_lengths(read_nifti_labels(d / "seg" / in["mask"].get<std::string>()))}}},
                                     {"overlay_means", overlays}});
    }

    // serve: the series' files and the PNG posted to /api/predict, with the segmentation model.
    {
        test::ServeProcess s(kGolden / "cls.pt", d / "data", {"--seg-model", (kGolden / "seg.pt").string()});
        ASSERT_TRUE(s.up()) << s.log();
        auto c = s.client();
        std::vector<httplib::MultipartFormDataItems> posts(2);
        for (const auto& f : sorted_files(series)) {
            posts[0].push_back({"file", read_bytes(f), f.filename().string(), "application/dicom"});
        }
        posts[1].push_back({"file", read_bytes(png), png.filename().string(), "image/png"});
        for (const auto& items : posts) {
            auto res = c.Post("/api/predict", items);
            ASSERT_TRUE(res);
            ASSERT_EQ(res->status, 201) << res->body;
            const json j = json::parse(res->body);
            json one = {{"kind", j["kind"]}, {"study", j["result"]}, {"bleed_volume_ml", j["bleed_volume_ml"]}};
            for (const auto& sl : j["slices"]) {
                one["slices"].push_back({{"result", sl["result"]}, {"bleed_ml", sl["bleed_ml"]}});
            }
            actual["serve"].push_back(one);
        }
    }

    const fs::path expected_path = kGolden / "expected.json";
    if (recording()) {
        write_file_atomic(expected_path, actual.dump(1) + "\n");
        GTEST_SKIP() << "recorded " << expected_path;
    }
    const json expected = test::read_json(expected_path);
    compare(expected, actual, "golden", 1e-5);
}
