#include "serve_fixture.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "hemoscan/io/dicom.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/synthetic_images.hpp"
#include "support/zip_writer.hpp"

namespace hemoscan::test {

namespace fs = std::filesystem;
using nlohmann::json;

TempDir* ServeFixture::dir_ = nullptr;

httplib::Result post(httplib::Client& c, const std::vector<Part>& parts) {
    httplib::MultipartFormDataItems items;
    for (const auto& p : parts) items.push_back({"file", p.bytes, p.name, p.type});
    return c.Post("/api/predict", items);
}

json body(const httplib::Result& r) { return json::parse(r->body); }

int connect_loopback(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        ADD_FAILURE() << "socket: " << std::strerror(errno);
        return -1;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ADD_FAILURE() << "connect to 127.0.0.1:" << port << ": " << std::strerror(errno);
        ::close(fd);
        return -1;
    }
    return fd;
}

double rss_mb(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
    }
    return -1.0;
}

std::string raw_request(int port, const std::string& request, int wait_s) {
    const int fd = connect_loopback(port);
    if (fd < 0) return "";
    ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    timeval tv{wait_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string answer;
    char buf[4096];
    for (ssize_t got; (got = ::recv(fd, buf, sizeof(buf), 0)) > 0;) answer.append(buf, static_cast<size_t>(got));
    ::close(fd);
    return answer;
}

cv::Mat decode(const std::string& png) {
    return cv::imdecode(cv::Mat(1, static_cast<int>(png.size()), CV_8U, const_cast<char*>(png.data())),
                        cv::IMREAD_UNCHANGED);
}

cv::Mat head_slice(int size, bool blob) {
    cv::Mat hu(size, size, CV_32F, cv::Scalar(-1000));
    cv::circle(hu, {size / 2, size / 2}, size * 2 / 5, cv::Scalar(50), -1);
    if (blob) cv::circle(hu, {size / 2 + 8, size / 2 - 8}, 5, cv::Scalar(75), -1);
    return hu;
}

void ServeFixture::SetUpTestSuite() {
    // A server may answer (413) and close while a client still sends: that is EPIPE, not a crash.
    std::signal(SIGPIPE, SIG_IGN);
    dir_ = new TempDir();
    const fs::path& d = dir_->path();
    write_blob_dataset(d / "data", 8);
    auto r = run_hemoscan("train --data " + shell_quote(d / "data") + " --out " + shell_quote(d / "run") +
                          " --model cnn-simple --size 48 --batch 8 --lr 3e-3 --threads 1 --workers 1"
                          " --augment off --epochs 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // A 4-slice CT series of a patient with a name, written in reverse file order.
    for (int i = 0; i < kSeriesSlices; ++i) {
        DicomWriteOptions o;
        o.patient_name = "Doe^Jane";
        o.patient_id = "P-DOE";
        o.study_uid = "1.2.826.0.1.3680043.10.1.1";
        o.series_uid = "1.2.826.0.1.3680043.10.1.1.2";
        o.instance_number = i + 1;
        o.position = {0, 0, 5.0 * i};
        write_dicom_ct(d / "series" / ("Doe_Jane_" + std::to_string(kSeriesSlices - i) + ".dcm"),
                       head_slice(64, i == 2), o);
    }
    std::vector<std::pair<std::string, std::string>> entries;
    for (const auto& e : fs::directory_iterator(d / "series")) {
        entries.push_back({"Doe_Jane/" + e.path().filename().string(), read_file(e.path())});
    }
    entries.push_back({"Doe_Jane/README.txt", "not an image"});
    write_zip(d / "Doe_Jane.zip", entries);
}

void ServeFixture::TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
}

std::string ServeFixture::bytes(const std::string& name) { return read_file(path(name)); }

std::vector<Part> ServeFixture::series_files() {
    std::vector<Part> parts;
    for (int i = 1; i <= kSeriesSlices; ++i) {
        const std::string name = "Doe_Jane_" + std::to_string(i) + ".dcm";
        parts.push_back({name, bytes("series/" + name), "application/dicom"});
    }
    return parts;
}

}  // namespace hemoscan::test
