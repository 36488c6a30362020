#pragma once
// What the serve tests share: a small classifier trained once per test process, a 4-slice CT series of
// a patient with a name (files and a zip), and helpers to talk to a running server.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "support/test_util.hpp"

namespace hemoscan::test {

struct Part {
    std::string name, bytes, type;
};

// POST /api/predict with the parts as multipart "file" fields.
httplib::Result post(httplib::Client& c, const std::vector<Part>& parts);
nlohmann::json body(const httplib::Result& r);
// A socket connected to 127.0.0.1:port; -1 (and a test failure) when it cannot connect.
int connect_loopback(int port);
// Resident memory of a process (VmRSS), MB; -1 when it cannot be read.
double rss_mb(int pid);
// Sends raw bytes to 127.0.0.1:port and returns everything answered until the server closes (or wait_s pass).
std::string raw_request(int port, const std::string& request, int wait_s = 10);
cv::Mat decode(const std::string& png);
// Uniform disc of 50 HU (head) on air, optionally a 75 HU blob: windows give exact grey values there.
cv::Mat head_slice(int size, bool blob);

constexpr int kSeriesSlices = 4;

class ServeFixture : public ::testing::Test {
protected:
    static void SetUpTestSuite();
    static void TearDownTestSuite();

    static std::filesystem::path path(const std::string& name) { return dir_->path() / name; }
    static std::filesystem::path model() { return path("run/model.pt"); }
    static std::string bytes(const std::string& name);
    static std::vector<Part> series_files();

    static TempDir* dir_;
};

}  // namespace hemoscan::test
