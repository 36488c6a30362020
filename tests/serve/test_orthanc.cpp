// The round trip against a real PACS: Debian's Orthanc, started here on loopback with a generated
// configuration, routes a synthetic CT series to `hemoscan serve --dicom-port` (C-STORE from Orthanc);
// hemoscan's SEG, SR and secondary captures must arrive back in Orthanc. They are fetched through
// Orthanc's REST API and checked by tools that are not hemoscan's: dciodvfy (dicom3tools), dsr2xml
// (DCMTK) and pydicom, whose decoding of the SEG frames must give the voxels of hemoscan's NIfTI mask.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/util/fs.hpp"
#include "serve_process.hpp"
#include "support/test_util.hpp"

namespace {

namespace fs = std::filesystem;
using hemoscan::test::q;
using hemoscan::test::run_command;
using hemoscan::test::TempDir;
using nlohmann::json;

const fs::path kOrthancModels = fs::path(HEMOSCAN_SOURCE_DIR) / "tests" / "golden";

// Orthanc in a throwaway folder with its own ports, stopped (SIGTERM) at the end.
class OrthancProcess {
public:
    OrthancProcess(const fs::path& dir, int http_port, int dicom_port, int hemoscan_port) : http_port_(http_port) {
        fs::create_directories(dir / "db");
        const json config = {{"Name", "hemoscan-test"},
                             {"StorageDirectory", (dir / "db").string()},
                             {"IndexDirectory", (dir / "db").string()},
                             {"HttpPort", http_port},
                             {"DicomPort", dicom_port},
                             {"DicomAet", "ORTHANC"},
                             {"RemoteAccessAllowed", false},
                             {"AuthenticationEnabled", false},
                             {"DicomModalities", {{"hemoscan", {"HEMOSCAN", "127.0.0.1", hemoscan_port}}}},
                             {"Plugins", json::array()}};
        hemoscan::test::write_text(dir / "orthanc.json", config.dump(2));
        log_ = dir / "orthanc.log";
        pid_ = ::fork();
        if (pid_ == 0) {
            const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::execl("/usr/sbin/Orthanc", "Orthanc", (dir / "orthanc.json").c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        auto c = client();
        for (int i = 0; i < 300; ++i) {
            auto r = c.Get("/system");
            if (r && r->status == 200) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        ADD_FAILURE() << "Orthanc did not come up:\n" << hemoscan::read_file(log_);
    }
    ~OrthancProcess() {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
    }
    httplib::Client client() const {
        httplib::Client c("127.0.0.1", http_port_);
        c.set_read_timeout(120, 0);
        return c;
    }
    std::string log() const { return hemoscan::read_file(log_); }

private:
    int http_port_;
    pid_t pid_ = -1;
    fs::path log_;
};

json orthanc_get(httplib::Client& c, const std::string& path) {
    auto r = c.Get(path);
    EXPECT_TRUE(r && r->status == 200) << path;
    return r && r->status == 200 ? json::parse(r->body) : json();
}

// hemoscan's worklist item once its results are in the PACS.
json wait_until_sent(httplib::Client& c, int seconds) {
    json last;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
        auto r = c.Get("/api/worklist");
        if (r && r->status == 200) {
            last = json::parse(r->body);
            for (const auto& item : last["items"]) {
                if (item["status"] == "sent") return item;
                if (item["status"] == "failed" || item["status"] == "send-failed") return item;
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return last;
}

// dciodvfy's verdict: its lines that report an error (warnings are allowed).
std::string dciodvfy_errors(const fs::path& file) {
    const auto r = run_command("dciodvfy " + q(file) + " 2>&1");
    std::string errors;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("Error", 0) == 0) errors += line + "\n";
    }
    return errors;
}

}  // namespace

TEST(Orthanc, RoundTripSeriesFromThePacsResultsBackIntoIt) {
    ASSERT_TRUE(fs::exists("/usr/sbin/Orthanc")) << "Debian's orthanc is a test dependency (scripts/setup.sh --tests)";
    TempDir d;
    auto r = hemoscan::test::run_hemoscan("synth --out " + q(d / "syn") +
                                          " --studies 1 --seed 21 --size 64 --slices 6 --p-bleed 1 --format dicom --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path series = d / "syn" / "dicom" / "study_0000";
    // hemoscan's own mask of the series, the reference for the SEG that comes back.
    r = hemoscan::test::run_hemoscan("segment --model " + q(kOrthancModels / "seg.pt") + " " + q(series) + " --out " +
                                     q(d / "seg") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const json volumes = hemoscan::test::read_json(d / "seg" / "volumes.json");

    const int hemoscan_dicom = hemoscan::test::free_tcp_port();
    const int orthanc_http = hemoscan::test::free_tcp_port();
    const int orthanc_dicom = hemoscan::test::free_tcp_port();
    OrthancProcess orthanc(d / "orthanc", orthanc_http, orthanc_dicom, hemoscan_dicom);
    hemoscan::test::ServeProcess server(
        kOrthancModels / "cls.pt", d / "data",
        {"--seg-model", (kOrthancModels / "seg.pt").string(), "--dicom-port", std::to_string(hemoscan_dicom),
         "--allow-caller", "ORTHANC", "--send-to", "ORTHANC@127.0.0.1:" + std::to_string(orthanc_dicom)});
    ASSERT_TRUE(server.up());

    // The series goes into Orthanc over its REST API, then Orthanc sends it to hemoscan (C-STORE).
    auto pacs = orthanc.client();
    std::string study;
    size_t sent = 0;
    for (const auto& e : fs::directory_iterator(series)) {
        auto res = pacs.Post("/instances", hemoscan::read_file(e.path()), "application/dicom");
        ASSERT_TRUE(res && res->status == 200) << (res ? res->body : "no answer");
        study = json::parse(res->body)["ParentStudy"];
        ++sent;
    }
    auto routed = pacs.Post("/modalities/hemoscan/store", study, "text/plain");
    ASSERT_TRUE(routed && routed->status == 200) << (routed ? routed->body : "no answer") << orthanc.log();

    auto hc = server.client();
    const json item = wait_until_sent(hc, 120);
    ASSERT_EQ(item.value("status", ""), "sent") << item.dump() << "\n" << server.log();
    EXPECT_EQ(item["caller"], "ORTHANC");
    EXPECT_EQ(item["slices"], static_cast<int>(sent));
    EXPECT_TRUE(item["seconds_to_sent"].is_number());

    // What Orthanc now holds of the study besides the CT: hemoscan's series, fetched back by REST.
    std::map<std::string, std::vector<fs::path>> by_modality;
    for (const auto& s : orthanc_get(pacs, "/studies/" + study + "/series")) {
        const std::string modality = s["MainDicomTags"].value("Modality", "");
        if (modality == "CT") continue;
        for (const auto& instance : orthanc_get(pacs, "/series/" + s["ID"].get<std::string>() + "/instances")) {
            const std::string id = instance["ID"];
            auto file = pacs.Get("/instances/" + id + "/file");
            ASSERT_TRUE(file && file->status == 200);
            const fs::path path = d / "back" / (modality + "_" + id + ".dcm");
            hemoscan::write_file_atomic(path, file->body);
            by_modality[modality].push_back(path);
        }
    }
    ASSERT_EQ(by_modality["SEG"].size(), 1u);
    ASSERT_EQ(by_modality["SR"].size(), 1u);
    size_t captures = 0;
    for (const auto& [modality, files] : by_modality) {
        if (modality != "SEG" && modality != "SR") captures += files.size();
    }
    EXPECT_GE(captures, 1u) << "no secondary capture came back";

    // Independent validation of every object: dciodvfy (IOD rules), dsr2xml (the SR's tree).
    for (const auto& [modality, files] : by_modality) {
        for (const auto& f : files) EXPECT_EQ(dciodvfy_errors(f), "") << modality << " " << f;
    }
    const auto xml = run_command("dsr2xml " + q(by_modality["SR"][0]) + " 2>&1");
    EXPECT_EQ(xml.exit_code, 0) << xml.output;
    EXPECT_NE(xml.output.find("ml"), std::string::npos) << "no volume in mL in the SR";

    // The SEG's frames, decoded by pydicom, are hemoscan's NIfTI mask voxel for voxel.
    const auto decoded = run_command(std::string(hemoscan::test::kPython) + " " +
                                     q(fs::path(HEMOSCAN_SOURCE_DIR) / "tests/serve/check_seg.py") + " " +
                                     q(by_modality["SEG"][0]) + " 2>&1");
    ASSERT_EQ(decoded.exit_code, 0) << decoded.output;
    const json seg = json::parse(decoded.output);
    const auto ct = hemoscan::read_dicom_series({series});
    ASSERT_EQ(ct.size(), 1u);
    const auto mask = hemoscan::read_nifti_labels(d / "seg" / "study_0000_seg.nii.gz");
    ASSERT_EQ(mask.depth(), ct[0].depth());  // the label map is in the series' own slice order
    EXPECT_EQ(seg["study"], ct[0].slice_meta[0].study_uid);
    EXPECT_EQ(seg["rows"], ct[0].rows());
    std::map<std::string, int> slice_of;
    for (int k = 0; k < ct[0].depth(); ++k) slice_of[ct[0].slice_meta[static_cast<size_t>(k)].sop_uid] = k;
    std::map<std::string, int> class_of;
    const auto& names = volumes["classes"];
    for (size_t c = 0; c < names.size(); ++c) class_of[names[c].get<std::string>()] = static_cast<int>(c);
    std::map<std::pair<int, int>, std::set<long>> from_seg;  // (slice, class) -> set pixels
    for (const auto& f : seg["frames"]) {
        ASSERT_TRUE(slice_of.count(f["sop"])) << "a frame references an instance outside the series";
        ASSERT_TRUE(class_of.count(f["label"])) << f["label"];
        auto& ones = from_seg[{slice_of[f["sop"]], class_of[f["label"]]}];
        for (const auto& i : f["ones"]) ones.insert(i.get<long>());
    }
    long voxels = 0;
    for (int k = 0; k < mask.depth(); ++k) {
        const cv::Mat& m = mask.slices[static_cast<size_t>(k)];
        std::map<int, std::set<long>> expected;
        for (int y = 0; y < m.rows; ++y) {
            for (int x = 0; x < m.cols; ++x) {
                const int label = m.at<uchar>(y, x);
                if (label > 0) expected[label].insert(static_cast<long>(y) * m.cols + x);
            }
        }
        for (const auto& [label, ones] : expected) {
            EXPECT_EQ(from_seg[std::make_pair(k, label)], ones) << "slice " << k << ", class " << label;
            voxels += static_cast<long>(ones.size());
        }
        for (const auto& [key, ones] : from_seg) {
            if (key.first == k && !expected.count(key.second)) {
                EXPECT_TRUE(ones.empty()) << "slice " << k;
            }
        }
    }
    EXPECT_GT(voxels, 100) << "the check needs a mask with a bleed in it";
}
