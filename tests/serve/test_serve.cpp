// Black-box tests of `hemoscan serve`: the built binary on a free loopback port, driven with
// httplib::Client through every endpoint and error case; plus one in-process start/stop.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <regex>
#include <set>
#include <thread>

#include "hemoscan/io/dicom.hpp"
#include "hemoscan/serve/server.hpp"
#include "hemoscan/infer/seg_predictor.hpp"
#include "hemoscan/util/fs.hpp"
#include "serve_fixture.hpp"
#include "serve_process.hpp"
#include "support/synthetic_images.hpp"
#include "support/test_util.hpp"
#include "support/zip_writer.hpp"

using namespace hemoscan;
using hemoscan::test::write_zip;
using nlohmann::json;
using test::body;
using test::decode;
using test::head_slice;
using test::kSeriesSlices;
using test::Part;
using test::post;
using test::raw_request;
using test::rss_mb;
using test::ServeProcess;
using test::TempDir;
namespace fs = std::filesystem;

// The fixture (a small model trained once per process, a named patient's series) and helpers.
class Serve : public test::ServeFixture {};


TEST_F(Serve, HealthModelPageAndAssets) {
    TempDir data;
    ServeProcess s(model(), data.path());
    ASSERT_TRUE(s.up());
    auto c = s.client();

    auto r = c.Get("/health");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(body(r)["status"], "ok");
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");

    r = c.Get("/api/model");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    json m = body(r);
    EXPECT_EQ(m["labels"], json({"hemorrhage"}));
    EXPECT_EQ(m["input"]["width"], 48);
    EXPECT_EQ(m["input"]["height"], 48);
    EXPECT_EQ(m["model"], "cnn-simple");
    const double t = m["threshold"].get<double>();
    EXPECT_GT(t, 0.0);
    EXPECT_LT(t, 1.0);
    EXPECT_EQ(m["thresholds"]["hemorrhage"].get<double>(), t);
    EXPECT_FALSE(m["version"].get<std::string>().empty());

    // The page and every asset it names come from the server; nothing points elsewhere.
    r = c.Get("/");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
    EXPECT_NE(r->get_header_value("Content-Security-Policy").find("default-src 'self'"), std::string::npos);
    const std::string html = r->body;
    std::regex asset(R"re((?:src|href)="(/assets/[^"]+)")re");
    std::set<std::string> assets;
    for (std::sregex_iterator it(html.begin(), html.end(), asset), end; it != end; ++it) assets.insert((*it)[1]);
    EXPECT_GE(assets.size(), 3u);
    assets.insert("/assets/inter.woff2");  // named by style.css
    for (const auto& a : assets) {
        auto ar = c.Get(a.c_str());
        ASSERT_TRUE(ar) << a;
        EXPECT_EQ(ar->status, 200) << a;
        EXPECT_FALSE(ar->body.empty()) << a;
        if (a.size() > 4 && (a.substr(a.size() - 3) == ".js" || a.substr(a.size() - 4) == ".css")) {
            EXPECT_EQ(ar->body.find("http://"), std::string::npos) << a;
            EXPECT_EQ(ar->body.find("https://"), std::string::npos) << a;
        }
    }
    EXPECT_EQ(html.find("https://"), std::string::npos);
    EXPECT_EQ(c.Get("/assets/nope.js")->status, 404);
    EXPECT_EQ(c.Get("/assets/..%2F..%2Fetc%2Fpasswd")->status, 404);
}

TEST_F(Serve, PredictPngAgreesWithCli) {
    TempDir data;
    ServeProcess s(model(), data.path());
    ASSERT_TRUE(s.up());
    auto c = s.client();
    auto r = post(c, {{"000.png", bytes("data/000.png"), "image/png"}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
    json j = body(r);
    const std::string id = j["id"];
    EXPECT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{16}")));
    EXPECT_EQ(r->get_header_value("Location"), "/api/results/" + id);
    EXPECT_EQ(j["kind"], "image");
    EXPECT_EQ(j["name"], "000.png");
    EXPECT_EQ(j["n_slices"], 1);
    EXPECT_EQ(j["windows"], json::array());

    auto cli = test::run_hemoscan("predict --model " + test::shell_quote(model()) + " " +
                                  test::shell_quote(path("data/000.png")) + " --threads 1 --out " +
                                  test::shell_quote(data.path() / "cli.json"));
    ASSERT_EQ(cli.exit_code, 0) << cli.output;
    const json expected = test::read_json(data.path() / "cli.json")[0]["result"]["hemorrhage"];
    const json& got = j["result"]["hemorrhage"];
    EXPECT_NEAR(got["probability"].get<double>(), expected["probability"].get<double>(), 1e-6);
    EXPECT_EQ(got["decision"], expected["decision"]);
    EXPECT_EQ(got["threshold"], expected["threshold"]);
    EXPECT_EQ(got["decision"].get<bool>(), got["probability"].get<double>() >= got["threshold"].get<double>());
    EXPECT_EQ(j["finding"], got["decision"].get<bool>() ? "hemorrhage" : "normal");
    EXPECT_EQ(j["slices"][0]["result"], j["result"]);

    // The stored result is what the upload answered.
    r = c.Get(("/api/results/" + id).c_str());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(body(r), j);

    // Images: the slice as uploaded (grey), the heatmap as RGBA, the overlay as colour, all one size.
    const int w = j["render"]["width"], h = j["render"]["height"];
    EXPECT_GE(std::max(w, h), 256);
    r = c.Get(j["image_url"].get<std::string>().c_str());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), "image/png");
    cv::Mat img = decode(r->body);
    ASSERT_FALSE(img.empty());
    EXPECT_EQ(img.channels(), 1);
    EXPECT_EQ(img.cols, w);
    EXPECT_EQ(img.rows, h);
    cv::Mat heat = decode(c.Get(j["heatmap_url"].get<std::string>().c_str())->body);
    ASSERT_FALSE(heat.empty());
    EXPECT_EQ(heat.channels(), 4);
    EXPECT_EQ(heat.size(), img.size());
    cv::Mat overlay = decode(c.Get(j["overlay_url"].get<std::string>().c_str())->body);
    ASSERT_FALSE(overlay.empty());
    EXPECT_EQ(overlay.channels(), 3);
    EXPECT_EQ(overlay.size(), img.size());

    // The same picture as a JPEG (quality 100 is still lossy, so only close).
    std::vector<uchar> jpeg;
    ASSERT_TRUE(cv::imencode(".jpg", cv::imread(path("data/000.png").string(), cv::IMREAD_GRAYSCALE), jpeg,
                             {cv::IMWRITE_JPEG_QUALITY, 100}));
    r = post(c, {{"scan.jpg", std::string(jpeg.begin(), jpeg.end()), "image/jpeg"}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
    EXPECT_EQ(body(r)["kind"], "image");
    EXPECT_NEAR(body(r)["result"]["hemorrhage"]["probability"].get<double>(), got["probability"].get<double>(), 0.05);
}

TEST_F(Serve, SeriesZipSlicesWindowsAndHeatmaps) {
    TempDir data;
    ServeProcess s(model(), data.path());
    ASSERT_TRUE(s.up());
    auto c = s.client();
    auto r = post(c, {{"Doe_Jane.zip", bytes("Doe_Jane.zip"), "application/zip"}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
    json j = body(r);
    const std::string id = j["id"];
    EXPECT_EQ(j["kind"], "series");
    EXPECT_EQ(j["study_rule"], "highest slice");
    EXPECT_EQ(j["n_slices"], kSeriesSlices);
    EXPECT_EQ(j["windows"], json({"brain", "subdural", "bone"}));
    EXPECT_EQ(j["render"]["default_window"], "brain");
    ASSERT_EQ(j["warnings"].size(), 1u);  // README.txt skipped
    EXPECT_NE(j["warnings"][0].get<std::string>().find("skipped"), std::string::npos);
    EXPECT_EQ(j.dump().find("Doe^Jane"), std::string::npos);
    EXPECT_EQ(j.dump().find("P-DOE"), std::string::npos);

    // Per slice the same probabilities as `hemoscan predict` on the folder, in slice order; the
    // study is the maximum.
    auto cli = test::run_hemoscan("predict --model " + test::shell_quote(model()) + " " +
                                  test::shell_quote(path("series")) + " --threads 1 --out " +
                                  test::shell_quote(data.path() / "cli.json"));
    ASSERT_EQ(cli.exit_code, 0) << cli.output;
    const json expected = test::read_json(data.path() / "cli.json")[0];
    ASSERT_EQ(expected["slices"].size(), static_cast<size_t>(kSeriesSlices));
    double max_p = 0;
    for (int i = 0; i < kSeriesSlices; ++i) {
        const double p = j["slices"][i]["result"]["hemorrhage"]["probability"];
        EXPECT_NEAR(p, expected["slices"][i]["result"]["hemorrhage"]["probability"].get<double>(), 1e-6) << i;
        max_p = std::max(max_p, p);
    }
    EXPECT_DOUBLE_EQ(j["result"]["hemorrhage"]["probability"].get<double>(), max_p);
    EXPECT_NEAR(max_p, expected["result"]["hemorrhage"]["probability"].get<double>(), 1e-6);
    const int top = j["top_slice"];
    EXPECT_DOUBLE_EQ(j["slices"][top]["result"]["hemorrhage"]["probability"].get<double>(), max_p);

    // Windows: the centre of the head is 50 HU, so its grey value is exact in every preset:
    // brain 40/80 -> 0.625 -> 159, subdural 80/200 -> 0.35 -> 89, bone 600/2800 -> 850/2800 -> 77.
    const std::string base = "/api/results/" + id + "/slices/0.png";
    std::map<std::string, int> centre{{"", 159}, {"brain", 159}, {"subdural", 89}, {"bone", 77}, {"40,80", 159}};
    for (const auto& [window, value] : centre) {
        const std::string url = window.empty() ? base : base + "?window=" + window;
        auto wr = c.Get(url.c_str());
        ASSERT_TRUE(wr);
        ASSERT_EQ(wr->status, 200) << url << " " << wr->body;
        cv::Mat g = decode(wr->body);
        ASSERT_EQ(g.type(), CV_8UC1);
        EXPECT_EQ(g.cols, j["render"]["width"].get<int>());
        EXPECT_EQ(static_cast<int>(g.at<uchar>(g.rows / 2, g.cols / 2)), value) << window;
        EXPECT_EQ(static_cast<int>(g.at<uchar>(0, 0)), 0) << "air is black in " << window;
    }
    // Slices in position order (not file order): only the third (z = 10 mm) has the 75 HU blob.
    for (int k = 0; k < kSeriesSlices; ++k) {
        auto wr = c.Get(("/api/results/" + id + "/slices/" + std::to_string(k) + ".png").c_str());
        ASSERT_EQ(wr->status, 200);
        double lo, hi;
        cv::minMaxLoc(decode(wr->body), &lo, &hi);
        EXPECT_EQ(hi, k == 2 ? 239 : 159) << k;  // 75 HU in the brain window: 0.9375 -> 239
    }
    for (const char* bad : {"rgb", "nope", "40,0"}) {
        auto wr = c.Get((base + "?window=" + bad).c_str());
        ASSERT_TRUE(wr);
        EXPECT_EQ(wr->status, 400) << bad;
        EXPECT_TRUE(body(wr).contains("error"));
    }
    for (int k = 0; k < kSeriesSlices; ++k) {
        for (const char* what : {"heatmaps", "overlays"}) {
            auto hr = c.Get(("/api/results/" + id + "/" + what + "/" + std::to_string(k) + ".png").c_str());
            ASSERT_TRUE(hr);
            EXPECT_EQ(hr->status, 200) << what << k;
        }
    }
    auto hr = c.Get(("/api/results/" + id + "/slices/" + std::to_string(kSeriesSlices) + ".png").c_str());
    EXPECT_EQ(hr->status, 404);
    hr = c.Get(("/api/results/" + id + "/masks/0.png").c_str());
    EXPECT_EQ(hr->status, 404);

    // The same slices sent as separate files make the same series.
    r = post(c, series_files());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
    json j2 = body(r);
    EXPECT_EQ(j2["kind"], "series");
    EXPECT_EQ(j2["name"], std::to_string(kSeriesSlices) + " files");
    EXPECT_EQ(j2["result"], j["result"]);
    EXPECT_NE(j2["id"], j["id"]);

    // One DICOM file alone.
    r = post(c, {series_files().front()});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
    EXPECT_EQ(body(r)["kind"], "dicom");
    EXPECT_EQ(body(r)["n_slices"], 1);

    // History: newest first, paged.
    r = c.Get("/api/results?limit=2");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    json h = body(r);
    EXPECT_EQ(h["total"], 3);
    ASSERT_EQ(h["results"].size(), 2u);
    EXPECT_EQ(h["results"][0]["kind"], "dicom");
    EXPECT_EQ(h["results"][1]["id"], j2["id"]);
    r = c.Get("/api/results?limit=2&offset=2");
    ASSERT_EQ(body(r)["results"].size(), 1u);
    EXPECT_EQ(body(r)["results"][0]["id"], id);
    EXPECT_EQ(body(r)["results"][0]["name"], "Doe_Jane.zip");
}

// A study model (`train --task study`) behind the server: the per-slice and study results are the study
// model's, the same as `hemoscan predict` gives, and the page is told so.
TEST_F(Serve, StudyModelPerSliceAndStudyResults) {
    TempDir d;
    auto r = test::run_hemoscan("synth --out " + test::shell_quote(d / "cohort") +
                                " --studies 6 --seed 2 --size 48 --slices 4 --format rsna");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = test::run_hemoscan("train --task study --data " + test::shell_quote(d / "cohort" / "rsna") + " --out " +
                           test::shell_quote(d / "run") +
                           " --model cnn-simple --size 48 --batch 8 --threads 1 --workers 1 --augment off --epochs 1"
                           " --stage1-folds 2 --study-epochs 2 --study-hidden 8");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ServeProcess s(d / "run" / "model.pt", d / "served");
    ASSERT_TRUE(s.up());
    auto c = s.client();
    auto res = post(c, series_files());
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    const json j = body(res);
    EXPECT_EQ(j["study_rule"], "study model");
    ASSERT_EQ(j["slices"].size(), static_cast<size_t>(kSeriesSlices));
    auto cli = test::run_hemoscan("predict --model " + test::shell_quote(d / "run" / "model.pt") + " " +
                                  test::shell_quote(path("series")) + " --threads 1 --out " +
                                  test::shell_quote(d / "cli.json"));
    ASSERT_EQ(cli.exit_code, 0) << cli.output;
    const json expected = test::read_json(d / "cli.json")[0];
    EXPECT_EQ(expected["study_rule"], "study model");
    for (const char* label : {"any", "subdural"}) {
        double top = 0;
        for (int i = 0; i < kSeriesSlices; ++i) {
            const double p = j["slices"][i]["result"][label]["probability"];
            EXPECT_NEAR(p, expected["slices"][i]["result"][label]["probability"].get<double>(), 1e-6) << i;
            top = std::max(top, p);
        }
        EXPECT_NEAR(j["result"][label]["probability"].get<double>(), top, 1e-6) << label;
        EXPECT_NEAR(expected["result"][label]["probability"].get<double>(), top, 1e-6) << label;
    }
}

TEST_F(Serve, ErrorsAreJson) {
    TempDir data;
    ServeProcess s(model(), data.path());
    ASSERT_TRUE(s.up());
    auto c = s.client();
    auto expect_error = [](const httplib::Result& r, int status, const std::string& part) {
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, status) << r->body;
        EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
        json j = json::parse(r->body);
        ASSERT_TRUE(j.contains("error")) << r->body;
        EXPECT_NE(j["error"].get<std::string>().find(part), std::string::npos) << r->body;
    };
    // Not an image, DICOM or zip: 415; not multipart: 415.
    expect_error(post(c, {{"notes.txt", "hello, this is text", "text/plain"}}), 415, "notes.txt");
    expect_error(c.Post("/api/predict", "{}", "application/json"), 415, "multipart");
    // Broken DICOM: the marker, then garbage: 400, naming the client's file (not a server path).
    std::string broken(128, '\0');
    broken += "DICM";
    broken += std::string(300, 'x');
    auto r = post(c, {{"broken.dcm", broken, "application/dicom"}});
    expect_error(r, 400, "broken.dcm");
    EXPECT_EQ(r->body.find(data.path().string()), std::string::npos) << r->body;
    // A truncated real DICOM file.
    std::string truncated = bytes("series/Doe_Jane_1.dcm");
    truncated.resize(truncated.size() / 2);
    r = post(c, {{"cut.dcm", truncated, ""}});
    expect_error(r, 400, "cut.dcm");
    EXPECT_EQ(r->body.find(data.path().string()), std::string::npos) << r->body;
    // A truncated PNG.
    std::string png = bytes("data/000.png");
    png.resize(60);
    r = post(c, {{"cut.png", png, "image/png"}});
    expect_error(r, 400, "cut.png");
    EXPECT_EQ(r->body.find(data.path().string()), std::string::npos) << r->body;
    // Empty upload, empty file, broken zip, images mixed with DICOM.
    expect_error(c.Post("/api/predict", httplib::MultipartFormDataItems{{"comment", "hi", "", ""}}), 400, "no file");
    expect_error(post(c, {{"empty.png", "", "image/png"}}), 400, "empty");
    expect_error(post(c, {{"bad.zip", std::string("PK\x03\x04", 4) + std::string(100, 'z'), "application/zip"}}),
                 400, "bad.zip");
    expect_error(post(c, {{"a.png", bytes("data/000.png"), "image/png"}, series_files().front()}), 400, "mixes");
    // Unknown ids: 404 (valid hex but absent, or not an id at all).
    expect_error(c.Get("/api/results/0123456789abcdef"), 404, "0123456789abcdef");
    expect_error(c.Get("/api/results/0123456789abcdef/slices/0.png"), 404, "no result");
    expect_error(c.Get("/api/results/XYZ"), 404, "not found");
    expect_error(c.Get("/api/results/..%2F..%2Fresults.db"), 404, "not found");
    expect_error(c.Get("/nowhere"), 404, "not found");
    // Wrong methods: 405 with Allow.
    r = c.Get("/api/predict");
    expect_error(r, 405, "GET");
    EXPECT_EQ(r->get_header_value("Allow"), "POST");
    r = c.Put("/api/results/0123456789abcdef", "", "text/plain");
    expect_error(r, 405, "PUT");
    EXPECT_EQ(r->get_header_value("Allow"), "GET, DELETE");
    expect_error(c.Delete("/api/results/0123456789abcdef"), 404, "no result");
    expect_error(c.Post("/health", "", "text/plain"), 405, "POST");
    // Bad paging.
    expect_error(c.Get("/api/results?limit=0"), 400, "limit");
    expect_error(c.Get("/api/results?offset=x"), 400, "offset");
    // Nothing was stored by any of these.
    EXPECT_EQ(body(c.Get("/api/results"))["total"], 0);
    EXPECT_TRUE(fs::is_empty(data.path() / "results"));
}

TEST_F(Serve, UploadLimits413) {
    TempDir data;
    ServeProcess s(model(), data.path(), {"--max-upload-mb", "1", "--max-unzipped-mb", "1", "--max-files", "3"});
    ASSERT_TRUE(s.up());
    auto c = s.client();
    auto r = post(c, {{"big.png", bytes("data/000.png") + std::string(1536 * 1024, '\0'), "image/png"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_NE(json::parse(r->body)["error"].get<std::string>().find("1 MB"), std::string::npos) << r->body;
    // Zip bomb: 3 MB of zeros compress to a few KB, but expand past the 1 MB limit.
    write_zip(data.path() / "bomb.zip", {{"a.dcm", std::string(3 << 20, '\0')}});
    const std::string bomb = read_file(data.path() / "bomb.zip");
    ASSERT_LT(bomb.size(), 64u * 1024);
    r = post(c, {{"bomb.zip", bomb, "application/zip"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413) << r->body;
    EXPECT_NE(r->body.find("expands"), std::string::npos) << r->body;
    // Too many files (uploads plus zip entries).
    r = post(c, series_files());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413) << r->body;
    EXPECT_NE(r->body.find("too many"), std::string::npos) << r->body;
    // Within the limits all is well.
    r = post(c, {{"000.png", bytes("data/000.png"), "image/png"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 201) << r->body;
}

TEST_F(Serve, ClientNamesNeverBecomePaths) {
    TempDir data;
    ServeProcess s(model(), data.path());
    ASSERT_TRUE(s.up());
    auto c = s.client();
    const std::string evil = "hemoscan_evil_" + std::to_string(::getpid()) + ".png";
    const fs::path target = fs::temp_directory_path() / evil;
    auto r = post(c, {{"../../../../../../.." + target.string(), bytes("data/000.png"), "image/png"}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
    const std::string name = body(r)["name"];
    EXPECT_EQ(name, evil);  // the last component, for display only
    write_zip(data.path() / "evil.zip", {{"../../" + evil, bytes("data/000.png")},
                                         {"/" + target.string(), bytes("data/001.png")},
                                         {"..\\..\\" + evil, bytes("data/002.png")}});
    r = post(c, {{"evil.zip", read_file(data.path() / "evil.zip"), "application/zip"}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
    json j = body(r);
    EXPECT_EQ(j["kind"], "images");
    ASSERT_EQ(j["slices"].size(), 3u);
    for (const auto& sl : j["slices"]) {
        EXPECT_EQ(sl["name"].get<std::string>().find('/'), std::string::npos);
        EXPECT_EQ(sl["name"].get<std::string>().find('\\'), std::string::npos);
    }
    fs::remove(data.path() / "evil.zip");
    EXPECT_FALSE(fs::exists(target));
    EXPECT_FALSE(fs::exists(data.path().parent_path() / evil));
    // The data folder holds only names the server made.
    const std::regex allowed(R"(results\.db(-wal|-shm)?|(image|cam)_[0-9]+\.png|volume\.nii\.gz|\.hemoscan-staging|part_[0-9]+)");
    for (const auto& e : fs::recursive_directory_iterator(data.path())) {
        if (e.is_directory()) continue;
        EXPECT_TRUE(std::regex_match(e.path().filename().string(), allowed)) << e.path();
    }
}

TEST_F(Serve, ConcurrentRequests) {
    TempDir data;
    ServeProcess s(model(), data.path(), {"--threads", "4"});
    ASSERT_TRUE(s.up());
    const int n = 6;
    std::vector<int> status(n, 0);
    std::vector<double> prob(n, -1);
    std::vector<std::string> ids(n);
    std::vector<std::thread> threads;
    const std::vector<Part> image = {{"000.png", bytes("data/000.png"), "image/png"}};
    const std::vector<Part> series = {{"Doe_Jane.zip", bytes("Doe_Jane.zip"), "application/zip"}};
    for (int i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
            auto c = s.client();
            auto r = post(c, i % 2 ? series : image);
            if (!r) return;
            status[static_cast<size_t>(i)] = r->status;
            if (r->status != 201) return;
            json j = json::parse(r->body);
            prob[static_cast<size_t>(i)] = j["result"]["hemorrhage"]["probability"];
            ids[static_cast<size_t>(i)] = j["id"];
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < n; ++i) {
        EXPECT_EQ(status[static_cast<size_t>(i)], 201) << i;
        // Inference is deterministic whatever runs beside it.
        EXPECT_DOUBLE_EQ(prob[static_cast<size_t>(i)], prob[static_cast<size_t>(i % 2)]) << i;
    }
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), static_cast<size_t>(n));
    auto c = s.client();
    EXPECT_EQ(json::parse(c.Get("/api/results")->body)["total"], n);
}

TEST_F(Serve, RestartKeepsResults) {
    TempDir data;
    std::string id;
    json first;
    {
        ServeProcess s(model(), data.path());
        ASSERT_TRUE(s.up());
        auto c = s.client();
        auto r = post(c, {{"Doe_Jane.zip", bytes("Doe_Jane.zip"), "application/zip"}});
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 201) << r->body;
        first = body(r);
        id = first["id"];
        EXPECT_EQ(s.stop(), 0) << "SIGTERM stops the server cleanly\n" << s.log();
    }
    ServeProcess s(model(), data.path());
    ASSERT_TRUE(s.up());
    auto c = s.client();
    json list = body(c.Get("/api/results"));
    ASSERT_EQ(list["total"], 1);
    EXPECT_EQ(list["results"][0]["id"], id);
    EXPECT_EQ(list["results"][0]["finding"], first["finding"]);
    auto r = c.Get(("/api/results/" + id).c_str());
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(body(r), first);
    // Its slices render again from the stored volume, in any window.
    r = c.Get(("/api/results/" + id + "/slices/2.png?window=bone").c_str());
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(static_cast<int>(decode(r->body).at<uchar>(first["render"]["height"].get<int>() / 2,
                                                         first["render"]["width"].get<int>() / 2)),
              77);
}

TEST_F(Serve, LogsHaveNoPatientNames) {
    TempDir data;
    ServeProcess s(model(), data.path());
    ASSERT_TRUE(s.up());
    auto c = s.client();
    ASSERT_EQ(post(c, {{"Doe_Jane.zip", bytes("Doe_Jane.zip"), "application/zip"}})->status, 201);
    ASSERT_EQ(post(c, series_files())->status, 201);
    ASSERT_EQ(post(c, {{"Doe_Jane_broken.dcm", std::string(128, '\0') + "DICMxx", ""}})->status, 400);
    // A slice sent twice: the warning names the uploader's files in the result, and stays out of the log.
    auto files = series_files();
    files.push_back({"Doe_Jane_again.dcm", files.front().bytes, "application/dicom"});
    auto r = post(c, files);
    ASSERT_EQ(r->status, 201) << r->body;
    const std::string warnings = body(r)["warnings"].dump();
    EXPECT_NE(warnings.find("duplicate slice"), std::string::npos) << warnings;
    EXPECT_NE(warnings.find("Doe_Jane_again.dcm"), std::string::npos) << warnings;
    EXPECT_EQ(warnings.find("upload_0"), std::string::npos) << "staged names: " << warnings;
    EXPECT_EQ(warnings.find("1.2.826.0.1.3680043.10.1"), std::string::npos) << "a UID: " << warnings;
    EXPECT_EQ(warnings.find(data.path().string()), std::string::npos) << "a server path: " << warnings;
    EXPECT_EQ(s.stop(), 0);
    const std::string log = s.log();
    EXPECT_EQ(log.find("1.2.826.0.1.3680043.10.1"), std::string::npos) << log;
    EXPECT_EQ(log.find(data.path().string() + "/tmp"), std::string::npos) << log;
    EXPECT_NE(log.find("POST /api/predict 201"), std::string::npos) << log;
    EXPECT_NE(log.find("POST /api/predict 400"), std::string::npos) << log;
    EXPECT_EQ(log.find("Doe"), std::string::npos) << log;
    EXPECT_EQ(log.find("P-DOE"), std::string::npos) << log;
}

// Issue 28, item 2: the upload limit counted Content-Length only: a 20 MB chunked upload with a 1 MB limit
// reached the handler, and a small gzip body was inflated in memory. Now the bytes actually received
// count, chunked or not (a chunked upload within the limit is analysed), compressed bodies are refused
// before they are read, and the server answers the next client.
TEST_F(Serve, ChunkedBodiesCountAndCompressedAreRefused) {
    TempDir data;
    ServeProcess s(model(), data.path(), {"--max-upload-mb", "1"});
    ASSERT_TRUE(s.up());
    const std::string head = "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                             "Content-Type: multipart/form-data; boundary=hemoscan-test-boundary\r\n";
    auto chunked = [&](const std::string& body, size_t piece) {
        std::string out = head + "Transfer-Encoding: chunked\r\n\r\n";
        for (size_t at = 0; at < body.size(); at += piece) {
            const std::string part = body.substr(at, piece);
            char size[32];
            std::snprintf(size, sizeof(size), "%zx\r\n", part.size());
            out += size + part + "\r\n";
        }
        return out + "0\r\n\r\n";
    };
    auto multipart = [](const std::string& name, const std::string& bytes) {
        return "--hemoscan-test-boundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name +
               "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + bytes + "\r\n--hemoscan-test-boundary--\r\n";
    };
    // 2 MB in 64 KB chunks, no Content-Length: over the limit as received.
    std::string r = raw_request(s.port(), chunked(multipart("big.png", std::string(2 << 20, 'a')), 64 * 1024));
    EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r.substr(0, 200);
    EXPECT_NE(r.find("at most 1 MB"), std::string::npos) << r;
    // A real image sent chunked, within the limit: analysed as any upload.
    r = raw_request(s.port(), chunked(multipart("000.png", bytes("data/000.png")), 1000));
    EXPECT_EQ(r.rfind("HTTP/1.1 201", 0), 0u) << r.substr(0, 300);
    r = raw_request(s.port(), head + "Content-Encoding: gzip\r\nContent-Length: 20\r\n\r\n" + std::string(20, 'z'));
    EXPECT_EQ(r.rfind("HTTP/1.1 415", 0), 0u) << r.substr(0, 200);
    EXPECT_NE(r.find("compressed request bodies are refused"), std::string::npos) << r;
    auto c = s.client();
    auto h = c.Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    EXPECT_EQ(body(c.Get("/api/results"))["total"], 1);
}

TEST_F(Serve, SlowClientTimesOut) {
    TempDir data;
    ServeProcess s(model(), data.path(), {"--timeout", "1"});
    ASSERT_TRUE(s.up());
    const int fd = test::connect_loopback(s.port());
    ASSERT_GE(fd, 0);
    const std::string head =
        "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        "Content-Length: 100000\r\n\r\n--x\r\n";
    ASSERT_EQ(::send(fd, head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const auto t0 = std::chrono::steady_clock::now();
    // Meanwhile other clients are served.
    auto c = s.client();
    auto h = c.Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    char buf[512];
    const ssize_t got = ::recv(fd, buf, sizeof(buf), 0);
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::close(fd);
    // The stalled upload is dropped (closed, or answered with an error) after about a second.
    EXPECT_LT(waited, 8.0);
    if (got > 0) {
        EXPECT_EQ(std::string(buf, static_cast<size_t>(got)).rfind("HTTP/1.1 4", 0), 0u);
    }
}

TEST_F(Serve, CliErrors) {
    TempDir data;
    ServeProcess s(model(), data.path());
    ASSERT_TRUE(s.up());
    // The port is taken: usage error, exit code 2.
    auto r = test::run_hemoscan("serve --model " + test::shell_quote(model()) + " --port " + std::to_string(s.port()) +
                                " --data-dir " + test::shell_quote(data.path() / "other"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("cannot listen"), std::string::npos) << r.output;
    // A model that is not one.
    test::write_text(data.path() / "fake.pt", "not a model");
    r = test::run_hemoscan("serve --model " + test::shell_quote(data.path() / "fake.pt") + " --port 0 --data-dir " +
                           test::shell_quote(data.path() / "other"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("fake.pt"), std::string::npos) << r.output;
    r = test::run_hemoscan("serve --model " + test::shell_quote(data.path() / "missing.pt"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    // Post-processing without a segmentation model to apply it to.
    r = test::run_hemoscan("serve --model " + test::shell_quote(model()) + " --min-component-ml 1 --port 0" +
                           " --data-dir " + test::shell_quote(data.path() / "other"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--seg-model"), std::string::npos) << r.output;
}

// Issue 28, item 3: memory the server freed after a burst of large uploads goes back to the system
// (it used to stay: the training allocator setting kept every freed page). The same burst with decay
// switched off (an hour) keeps it, so the first half measures the setting, not the workload.
TEST_F(Serve, MemoryReturnsAfterABurst) {
    TempDir big;
    std::vector<std::pair<std::string, std::string>> entries;
    for (int i = 0; i < 48; ++i) {  // a 25 MB series of 512 x 512 slices
        DicomWriteOptions o;
        o.series_uid = "1.2.826.0.1.3680043.10.1.9";
        o.instance_number = i + 1;
        o.position = {0, 0, 2.5 * i};
        const fs::path f = big.path() / (std::to_string(i) + ".dcm");
        write_dicom_ct(f, head_slice(512, i == 20), o);
        entries.push_back({"big/" + f.filename().string(), read_file(f)});
    }
    write_zip(big.path() / "big.zip", entries);
    const std::string zip = read_file(big.path() / "big.zip");
    // Idle RSS, and the RSS some seconds after three uploads (polled until within 100 MB of idle, up to 10 s).
    auto burst = [&](const std::string& decay_ms) {
        TempDir data;
        ServeProcess s(model(), data.path(), {"--memory-decay-ms", decay_ms});
        EXPECT_TRUE(s.up());
        auto c = s.client();
        const double idle = rss_mb(s.pid());
        double peak = idle;
        for (int k = 0; k < 3; ++k) {
            auto r = post(c, {{"big.zip", zip, "application/zip"}});
            EXPECT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
            peak = std::max(peak, rss_mb(s.pid()));
        }
        double now = rss_mb(s.pid());
        for (int i = 0; i < 20 && now > idle + 50; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
            now = rss_mb(s.pid());
        }
        return std::array<double, 3>{idle, peak, now};
    };
    const auto kept = burst("3600000");
    const auto returned = burst("200");
    const std::string seen = "idle/peak/after MB: kept " + std::to_string(kept[0]) + "/" + std::to_string(kept[1]) + "/" +
                             std::to_string(kept[2]) + ", returned " + std::to_string(returned[0]) + "/" +
                             std::to_string(returned[1]) + "/" + std::to_string(returned[2]);
    EXPECT_GT(kept[2], kept[0] + 100) << seen;  // uploads stream to disk now: the climb is analysis alone
    EXPECT_LT(returned[2], returned[0] + 100) << seen;
    std::printf("%s\n", seen.c_str());
}

// Issue 28: the server empties only the staging folder it made (a marker file), never a <data-dir>/tmp of
// the user's (it used to delete it whatever it held), and keeps its data to its own user (0600/0700).
TEST_F(Serve, DataFolderIsPrivateAndAUsersTmpIsKept) {
    TempDir data;
    fs::create_directories(data.path() / "tmp");
    test::write_text(data.path() / "tmp" / "notes.txt", "mine");
    auto r = test::run_hemoscan("serve --model " + test::shell_quote(model()) + " --port 0 --data-dir " +
                                test::shell_quote(data.path()));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("was not made by hemoscan serve"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::exists(data.path() / "tmp" / "notes.txt"));

    fs::remove_all(data.path() / "tmp");
    {
        ServeProcess s(model(), data.path());
        ASSERT_TRUE(s.up());
        auto c = s.client();
        auto res = post(c, {{"Doe_Jane.zip", bytes("Doe_Jane.zip"), "application/zip"}});
        ASSERT_TRUE(res);
        ASSERT_EQ(res->status, 201) << res->body;
        EXPECT_EQ(s.stop(), 0);
    }
    EXPECT_TRUE(fs::exists(data.path() / "tmp" / ".hemoscan-staging"));
    size_t checked = 0;
    for (const auto& e : fs::recursive_directory_iterator(data.path())) {
        const auto perms = fs::status(e.path()).permissions();
        EXPECT_EQ(perms & (fs::perms::group_all | fs::perms::others_all), fs::perms::none) << e.path();
        ++checked;
    }
    EXPECT_GT(checked, 5u);
    // A leftover in the marked staging folder (a crash mid-upload) goes at the next start.
    test::write_text(data.path() / "tmp" / "upload-1" / "x.dcm", "partial");
    ServeProcess again(model(), data.path());
    ASSERT_TRUE(again.up());
    EXPECT_FALSE(fs::exists(data.path() / "tmp" / "upload-1"));
}

// With --seg-model: a mask per slice and the bleed volume, the same as `hemoscan segment` computes.
TEST_F(Serve, SegmentationModelMasksAndVolume) {
    TempDir work;
    const fs::path& w = work.path();
    auto r = test::run_hemoscan("synth --out " + test::shell_quote(w / "synth") +
                                " --studies 4 --seed 5 --size 48 --slices 3 --format nnunet,dicom --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = test::run_hemoscan("train --task segment --data " + test::shell_quote(w / "synth" / "nnunet") + " --out " +
                           test::shell_quote(w / "seg") +
                           " --model unet --size 32 --epochs 1 --batch 4 --threads 1 --workers 1 --augment off");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path study = w / "synth" / "dicom" / "study_0000";
    r = test::run_hemoscan("segment --model " + test::shell_quote(w / "seg" / "model.pt") + " " +
                           test::shell_quote(study) + " --out " + test::shell_quote(w / "cli") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const json cli = test::read_json(w / "cli" / "volumes.json");

    ServeProcess s(model(), w / "data", {"--seg-model", (w / "seg" / "model.pt").string()});
    ASSERT_TRUE(s.up());
    auto c = s.client();
    const json m = body(c.Get("/api/model"));
    ASSERT_TRUE(m["segmentation"].is_object()) << m.dump();
    EXPECT_EQ(m["segmentation"]["class_names"], cli["classes"]);
    EXPECT_EQ(m["segmentation"]["bleed_classes"], cli["bleed_classes"]);
    EXPECT_EQ(m["segmentation"]["models"], 1);

    std::vector<Part> parts;
    for (const auto& e : fs::directory_iterator(study)) {
        parts.push_back({e.path().filename().string(), read_file(e.path()), "application/dicom"});
    }
    auto res = post(c, parts);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    const json j = body(res);
    ASSERT_TRUE(j.contains("segmentation")) << res->body;
    const double expected = cli["inputs"][0]["bleed_volume_ml"];
    EXPECT_NEAR(j["bleed_volume_ml"].get<double>(), expected, 1e-6 * std::max(1.0, expected));
    EXPECT_TRUE(j["segmentation"]["spacing_known"].get<bool>());
    double per_slice = 0;
    for (const auto& sl : j["slices"]) per_slice += sl["bleed_ml"].get<double>();
    EXPECT_NEAR(per_slice, j["bleed_volume_ml"].get<double>(), 1e-6 * std::max(1.0, expected));
    const int n = j["n_slices"];
    for (int k = 0; k < n; ++k) {
        const std::string url = j["slices"][k]["mask_url"];
        auto mr = c.Get(url.c_str());
        ASSERT_TRUE(mr);
        ASSERT_EQ(mr->status, 200) << url << " " << mr->body;
        const cv::Mat mask = decode(mr->body);
        EXPECT_EQ(mask.channels(), 4);
        EXPECT_EQ(mask.cols, j["render"]["width"].get<int>());
        EXPECT_EQ(mask.rows, j["render"]["height"].get<int>());
        // A slice with bleed volume shows it.
        std::vector<cv::Mat> ch;
        cv::split(mask, ch);
        if (j["slices"][k]["bleed_ml"].get<double>() > 0) {
            EXPECT_GT(cv::countNonZero(ch[3]), 0) << k;
        }
    }
    EXPECT_EQ(c.Get(("/api/results/" + j["id"].get<std::string>() + "/masks/" + std::to_string(n) + ".png").c_str())
                  ->status,
              404);
    // A PNG has no spacing: said so in the warnings.
    res = post(c, {{"000.png", bytes("data/000.png"), "image/png"}});
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    const json p = body(res);
    EXPECT_FALSE(p["segmentation"]["spacing_known"].get<bool>());
    EXPECT_NE(p["warnings"].dump().find("spacing"), std::string::npos) << p.dump();
    EXPECT_EQ(c.Get(p["slices"][0]["mask_url"].get<std::string>().c_str())->status, 200);

    // --seg-model repeated: an ensemble, as `segment --model A --model B`. The same model twice averages
    // equal probabilities, so the volumes must stay exactly the single model's.
    const std::string seg = (w / "seg" / "model.pt").string();
    ServeProcess e(model(), w / "data_ens", {"--seg-model", seg, "--seg-model", seg});
    ASSERT_TRUE(e.up());
    auto ce = e.client();
    EXPECT_EQ(body(ce.Get("/api/model"))["segmentation"]["models"], 2);
    res = post(ce, parts);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    const json je = body(res);
    EXPECT_EQ(je["segmentation"]["models"], 2) << res->body;
    EXPECT_EQ(je["bleed_volume_ml"].get<double>(), j["bleed_volume_ml"].get<double>());
    EXPECT_EQ(je["segmentation"]["volume_ml"], j["segmentation"]["volume_ml"]);

    // --min-component-ml overrides the model's post-processing, as it does for `segment`.
    EXPECT_EQ(m["segmentation"]["min_component_ml"].get<double>(), SegPredictor(seg, 1).min_component_ml());
    r = test::run_hemoscan("segment --model " + test::shell_quote(seg) + " " + test::shell_quote(study) + " --out " +
                           test::shell_quote(w / "cli_pp") + " --threads 1 --min-component-ml 1000");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const double filtered = test::read_json(w / "cli_pp" / "volumes.json")["inputs"][0]["bleed_volume_ml"];
    ServeProcess f(model(), w / "data_pp", {"--seg-model", seg, "--min-component-ml", "1000"});
    ASSERT_TRUE(f.up());
    auto cf = f.client();
    EXPECT_EQ(body(cf.Get("/api/model"))["segmentation"]["min_component_ml"].get<double>(), 1000.0);
    res = post(cf, parts);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    EXPECT_NEAR(body(res)["bleed_volume_ml"].get<double>(), filtered, 1e-6 * std::max(1.0, filtered));
    EXPECT_LE(filtered, expected);  // removing components can only lower the volume
    r = test::run_hemoscan("serve --model " + test::shell_quote(model()) + " --seg-model " + test::shell_quote(seg) +
                           " --min-component-ml -1 --port 0 --data-dir " + test::shell_quote(w / "data_bad"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--min-component-ml"), std::string::npos) << r.output;
}

TEST_F(Serve, InProcessStartStop) {
    TempDir data;
    ServerOptions o;
    o.model = model();
    o.data_dir = data.path();
    o.port = 0;
    o.compute_threads = 1;
    Server server(o);
    const int port = server.bind();
    ASSERT_GT(port, 0);
    EXPECT_EQ(server.port(), port);
    std::atomic<bool> ok{false};
    std::thread t([&] { ok = server.listen(); });
    httplib::Client c("127.0.0.1", port);
    int status = 0;
    for (int i = 0; i < 200 && status == 0; ++i) {
        if (auto r = c.Get("/health")) status = r->status;
        else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    server.stop();
    t.join();
    EXPECT_EQ(status, 200);
    EXPECT_TRUE(ok);
    EXPECT_TRUE(fs::exists(data.path() / "results.db"));
    // stop() before listen(): listen returns at once.
    Server early(o);
    early.stop();
    EXPECT_TRUE(early.listen());
}
