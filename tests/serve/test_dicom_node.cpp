// The DICOM node: the storage SCP (DCMTK's storescu/echoscu as the senders), its hand-over of complete
// series, what a killed run leaves behind, the outbox against DCMTK's storescp, and the node inside
// `hemoscan serve` end to end (worklist, results, DICOM objects, restart after SIGKILL).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/util/fs.hpp"
#include "serve/dicom_node.hpp"
#include "serve/store.hpp"
#include "serve_fixture.hpp"
#include "serve_process.hpp"
#include "support/test_util.hpp"

namespace {

namespace fs = std::filesystem;
using hemoscan::DicomWriteOptions;
using hemoscan::serve::ArrivedSeries;
using hemoscan::serve::DicomNode;
using hemoscan::serve::DicomNodeHooks;
using hemoscan::serve::DicomNodeOptions;
using hemoscan::test::free_tcp_port;
using hemoscan::test::q;
using hemoscan::test::run_command;
using hemoscan::test::TempDir;
using nlohmann::json;

const fs::path kGoldenModels = fs::path(HEMOSCAN_SOURCE_DIR) / "tests" / "golden";

// `n` CT slices of one series (5 mm apart) in `dir`; returns the files.
std::vector<fs::path> write_node_series(const fs::path& dir, int n, const std::string& series_uid,
                                        const std::string& transfer_syntax = "uncompressed") {
    std::vector<fs::path> files;
    for (int i = 0; i < n; ++i) {
        DicomWriteOptions o;
        o.patient_id = "P-NODE";
        o.study_uid = series_uid + ".0";
        o.series_uid = series_uid;
        o.series_description = "Head CT";
        o.instance_number = i + 1;
        o.position = {0, 0, 5.0 * i};
        o.transfer_syntax = transfer_syntax;
        files.push_back(dir / ("slice_" + std::to_string(i) + ".dcm"));
        hemoscan::write_dicom_ct(files.back(), hemoscan::test::head_slice(64, i == 1), o);
    }
    return files;
}

std::string storescu(int port, const std::vector<fs::path>& files, const std::string& calling = "SENDER",
                     const std::string& called = "HEMOSCAN", int* exit_code = nullptr, const std::string& options = "") {
    std::string cmd = "storescu " + options + " -aet " + calling + " -aec " + called + " 127.0.0.1 " + std::to_string(port);
    for (const auto& f : files) cmd += " " + q(f);
    const auto r = run_command(cmd + " 2>&1");
    if (exit_code) *exit_code = r.exit_code;
    return r.output;
}

// Collects what the node hands over (copies of the files: the node removes its own once handed over).
struct Handed {
    TempDir copies;
    int copied = 0;
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<ArrivedSeries> arrived;
    std::vector<std::pair<ArrivedSeries, std::vector<fs::path>>> complete;

    DicomNodeHooks hooks() {
        DicomNodeHooks h;
        h.arrived = [this](const ArrivedSeries& a) {
            std::lock_guard<std::mutex> lock(mutex);
            arrived.push_back(a);
        };
        h.complete = [this](const ArrivedSeries& a, const std::vector<fs::path>& files, long long, long long) {
            std::lock_guard<std::mutex> lock(mutex);
            const fs::path dir = copies.path() / std::to_string(++copied);
            fs::create_directories(dir);
            std::vector<fs::path> kept;
            for (const auto& f : files) {
                kept.push_back(dir / f.filename());
                fs::copy_file(f, kept.back());
            }
            complete.push_back({a, kept});
            cv.notify_all();
        };
        return h;
    }
    bool wait_for(size_t n, int seconds = 30) {
        std::unique_lock<std::mutex> lock(mutex);
        return cv.wait_for(lock, std::chrono::seconds(seconds), [&] { return complete.size() >= n; });
    }
};

DicomNodeOptions node_options(int port) {
    DicomNodeOptions o;
    o.port = port;
    o.idle_s = 30;            // the association's end completes a series in these tests...
    o.after_release_s = 0.2;  // ...quickly
    return o;
}

}  // namespace

TEST(DicomPeer, ParsesAndRefuses) {
    const auto p = hemoscan::serve::parse_dicom_peer("PACS@10.0.0.5:104");
    EXPECT_EQ(p.aet, "PACS");
    EXPECT_EQ(p.host, "10.0.0.5");
    EXPECT_EQ(p.port, 104);
    for (const char* bad : {"PACS", "PACS@host", "@host:104", "PACS@:104", "PACS@host:0", "PACS@host:70000",
                            "PACS@host:1x", "AN_AE_TITLE_TOO_LONG@h:1", "BACK\\SLASH@h:1"}) {
        EXPECT_THROW(hemoscan::serve::parse_dicom_peer(bad), hemoscan::UsageError) << bad;
    }
}

TEST(DicomNode, ReceivesASeriesAndHandsItOverOnceWhenTheSenderIsDone) {
    TempDir d;
    const auto files = write_node_series(d / "in", 5, "1.2.826.0.1.3680043.10.7.1");
    const int port = free_tcp_port();
    Handed handed;
    DicomNode node(node_options(port), d / "node", handed.hooks());
    ASSERT_EQ(node.start(), port);
    EXPECT_EQ(run_command("echoscu -aec HEMOSCAN 127.0.0.1 " + std::to_string(port)).exit_code, 0);
    int rc = -1;
    const std::string out = storescu(port, files, "SENDER", "HEMOSCAN", &rc);
    ASSERT_EQ(rc, 0) << out;
    ASSERT_TRUE(handed.wait_for(1)) << "no series was handed over";
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::lock_guard<std::mutex> lock(handed.mutex);
    ASSERT_EQ(handed.arrived.size(), 1u);
    ASSERT_EQ(handed.complete.size(), 1u);
    const auto& [series, kept] = handed.complete.front();
    EXPECT_EQ(series.caller, "SENDER");
    EXPECT_EQ(series.series_uid, "1.2.826.0.1.3680043.10.7.1");
    EXPECT_EQ(series.patient_id, "P-NODE");
    EXPECT_EQ(series.series_description, "Head CT");
    EXPECT_TRUE(hemoscan::serve::valid_result_id(series.id));
    ASSERT_EQ(kept.size(), files.size());
    // The files are the ones sent, pixel for pixel, and read as one series.
    const auto volumes = hemoscan::read_dicom_series(kept);
    ASSERT_EQ(volumes.size(), 1u);
    EXPECT_EQ(volumes[0].depth(), 5);
    for (int i = 0; i < 5; ++i) {
        hemoscan::test::expect_mat_exact(volumes[0].slices[static_cast<size_t>(i)],
                                         hemoscan::read_dicom_file(files[static_cast<size_t>(i)]).pixels);
    }
}

TEST(DicomNode, KeepsCompressedTransferSyntaxesAndDecodesThem) {
    TempDir d;
    const int port = free_tcp_port();
    Handed handed;
    DicomNode node(node_options(port), d / "node", handed.hooks());
    node.start();
    size_t n = 0;
    // storescu proposes each compression beside the uncompressed syntaxes; the file goes in its own.
    for (const auto& [ts, propose] : std::vector<std::pair<std::string, std::string>>{
             {"rle", "-xr"}, {"jpeg-ls", "-xt"}, {"jpeg-lossless", "-xs"}}) {
        const auto files = write_node_series(d / ts, 2, "1.2.826.0.1.3680043.10.7.2." + std::to_string(++n), ts);
        int rc = -1;
        const std::string out = storescu(port, files, "SENDER", "HEMOSCAN", &rc, propose);
        ASSERT_EQ(rc, 0) << ts << ": " << out;
        ASSERT_TRUE(handed.wait_for(n)) << ts;
        std::lock_guard<std::mutex> lock(handed.mutex);
        const auto& kept = handed.complete.back().second;
        ASSERT_EQ(kept.size(), 2u) << ts;
        for (size_t i = 0; i < 2; ++i) {
            const auto slice = hemoscan::read_dicom_file(kept[i]);
            EXPECT_EQ(slice.meta.transfer_syntax, hemoscan::read_dicom_file(files[i]).meta.transfer_syntax) << ts;
            EXPECT_NE(slice.meta.transfer_syntax, "1.2.840.10008.1.2.1") << ts << " was decompressed on the way";
            hemoscan::test::expect_mat_exact(slice.pixels, hemoscan::read_dicom_file(files[i]).pixels);
        }
    }
}

TEST(DicomNode, RefusesCallersNotAllowedAndOtherCalledTitles) {
    TempDir d;
    const auto files = write_node_series(d / "in", 2, "1.2.826.0.1.3680043.10.7.3");
    const int port = free_tcp_port();
    Handed handed;
    DicomNodeOptions o = node_options(port);
    o.allowed_callers = {"PACS"};
    DicomNode node(o, d / "node", handed.hooks());
    node.start();
    int rc = 0;
    storescu(port, files, "STRANGER", "HEMOSCAN", &rc);
    EXPECT_NE(rc, 0) << "a caller outside the allow-list was served";
    storescu(port, files, "PACS", "SOMEONE_ELSE", &rc);
    EXPECT_NE(rc, 0) << "an association for another called AE title was accepted";
    EXPECT_NE(run_command("echoscu -aet STRANGER -aec HEMOSCAN 127.0.0.1 " + std::to_string(port)).exit_code, 0);
    EXPECT_EQ(run_command("echoscu -aet PACS -aec HEMOSCAN 127.0.0.1 " + std::to_string(port)).exit_code, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    {
        std::lock_guard<std::mutex> lock(handed.mutex);
        EXPECT_TRUE(handed.arrived.empty());
    }
    storescu(port, files, "PACS", "HEMOSCAN", &rc);
    EXPECT_EQ(rc, 0);
    EXPECT_TRUE(handed.wait_for(1));
}

TEST(DicomNode, TakesUpTheFilesAKilledRunLeftAndIgnoresItsTemporaryFiles) {
    TempDir d;
    const auto files = write_node_series(d / "in", 3, "1.2.826.0.1.3680043.10.7.4");
    // What a run killed mid-series leaves: received files in incoming/<id>/, a half-written one in tmp/.
    const std::string id = "0123456789abcdef";
    fs::create_directories(d / "node" / "incoming" / id);
    fs::create_directories(d / "node" / "tmp");
    for (const auto& f : files) fs::copy_file(f, d / "node" / "incoming" / id / f.filename());
    hemoscan::test::write_text(d / "node" / "tmp" / "half.dcm", "DICM");
    Handed handed;
    DicomNodeOptions o = node_options(free_tcp_port());
    o.idle_s = 0.3;
    DicomNode node(o, d / "node", handed.hooks());
    EXPECT_EQ(node.pending(), 1u);
    node.start();
    ASSERT_TRUE(handed.wait_for(1));
    std::lock_guard<std::mutex> lock(handed.mutex);
    EXPECT_EQ(handed.complete.front().first.id, id);
    EXPECT_EQ(handed.complete.front().first.series_uid, "1.2.826.0.1.3680043.10.7.4");
    EXPECT_EQ(handed.complete.front().second.size(), 3u);
    EXPECT_FALSE(fs::exists(d / "node" / "tmp" / "half.dcm"));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_FALSE(fs::exists(d / "node" / "incoming" / id)) << "handed-over files are removed";
}

TEST(DicomNode, RefusesAPortInUse) {
    TempDir d;
    const int port = free_tcp_port();
    Handed handed;
    DicomNode first(node_options(port), d / "a", handed.hooks());
    first.start();
    DicomNode second(node_options(port), d / "b", handed.hooks());
    hemoscan::test::expect_usage_error([&] { second.start(); }, {"port " + std::to_string(port), "in use"});
}

namespace {

// DCMTK's storescp as the PACS of the outbox tests: accepts every storage SOP class into `dir`.
class StoreScp {
public:
    StoreScp(const fs::path& dir, int port) {
        fs::create_directories(dir);
        pid_ = ::fork();
        if (pid_ == 0) {
            const std::string p = std::to_string(port);
            ::execlp("storescp", "storescp", "-aet", "PACS", "--promiscuous", "-od", dir.c_str(), p.c_str(),
                     static_cast<char*>(nullptr));
            ::_exit(127);
        }
        // Up when it answers an echo.
        for (int i = 0; i < 100; ++i) {
            if (run_command("echoscu -aec PACS 127.0.0.1 " + std::to_string(port) + " 2>/dev/null").exit_code == 0) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        ADD_FAILURE() << "storescp did not come up";
    }
    ~StoreScp() {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
    }

private:
    pid_t pid_ = -1;
};

size_t dicom_files_in(const fs::path& dir) {
    size_t n = 0;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(dir, ec)) n += e.is_regular_file() ? 1 : 0;
    return n;
}

}  // namespace

TEST(DicomOutbox, RetriesUntilThePeerIsUpAndKeepsItemsAcrossRestarts) {
    TempDir d;
    const auto files = write_node_series(d / "in", 3, "1.2.826.0.1.3680043.10.7.5");
    const int port = free_tcp_port();
    hemoscan::serve::OutboxOptions o;
    o.peer = hemoscan::serve::parse_dicom_peer("PACS@127.0.0.1:" + std::to_string(port));
    o.retries = 2;
    o.retry_s = 0.05;
    o.max_retry_s = 0.2;
    o.timeout_s = 5;
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::pair<std::string, bool>> reports;
    auto report = [&](const std::string& id, bool sent, const std::string& error) {
        std::lock_guard<std::mutex> lock(mutex);
        reports.push_back({id, sent});
        if (!sent) {
            EXPECT_NE(error.find("PACS@127.0.0.1"), std::string::npos) << error;
        }
        cv.notify_all();
    };
    {
        // Nobody listens: reported failed after `retries` attempts, kept in the outbox.
        hemoscan::serve::Outbox outbox(o, d / "outbox", report);
        outbox.start();
        outbox.post("00000000000000aa", files);
        std::unique_lock<std::mutex> lock(mutex);
        ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return !reports.empty(); }));
        EXPECT_FALSE(reports.front().second);
    }
    EXPECT_TRUE(fs::is_directory(d / "outbox" / "00000000000000aa")) << "a failed item is never dropped";
    // A new process (a restart) with the peer up: the item left behind is sent, then removed.
    StoreScp pacs(d / "pacs", port);
    reports.clear();
    hemoscan::serve::Outbox outbox(o, d / "outbox", report);
    EXPECT_EQ(outbox.waiting(), 1u);
    outbox.start();
    {
        std::unique_lock<std::mutex> lock(mutex);
        ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return !reports.empty(); }));
        EXPECT_EQ(reports.front(), std::make_pair(std::string("00000000000000aa"), true));
    }
    EXPECT_EQ(dicom_files_in(d / "pacs"), 3u);
    EXPECT_EQ(outbox.waiting(), 0u);
    EXPECT_FALSE(fs::exists(d / "outbox" / "00000000000000aa"));
}

namespace {

json get_json(httplib::Client& c, const std::string& path) {
    auto r = c.Get(path);
    if (!r || r->status != 200) return json();
    return json::parse(r->body);
}

// Polls the worklist until `id`'s item (or the only one, when `id` is empty) has `status`.
json wait_for_status(httplib::Client& c, const std::string& status, int seconds = 60, const std::string& id = "") {
    json last;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
        last = get_json(c, "/api/worklist");
        for (const auto& item : last.value("items", json::array())) {
            if ((id.empty() || item["id"] == id) && item["status"] == status) return item;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "no worklist item reached '" << status << "': " << last.dump();
    return json();
}

}  // namespace

TEST(ServeDicom, ASeriesSentToTheNodeIsAnalysedListedAndAnsweredInDicom) {
    TempDir d;
    auto r = hemoscan::test::run_hemoscan("synth --out " + q(d / "syn") +
                                          " --studies 1 --seed 21 --size 64 --slices 6 --p-bleed 1 --format dicom --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(d / "syn" / "dicom" / "study_0000")) files.push_back(e.path());
    const int dport = free_tcp_port();
    hemoscan::test::ServeProcess server(kGoldenModels / "cls.pt", d / "data",
                                        {"--seg-model", (kGoldenModels / "seg.pt").string(), "--dicom-port",
                                         std::to_string(dport), "--aet", "HEMOSCAN", "--idle", "20"});
    ASSERT_TRUE(server.up());
    auto c = server.client();
    int rc = -1;
    const std::string out = storescu(dport, files, "SCANNER", "HEMOSCAN", &rc);
    ASSERT_EQ(rc, 0) << out;
    const json item = wait_for_status(c, "done");
    ASSERT_FALSE(item.is_null()) << server.log();
    EXPECT_EQ(item["source"], "dicom");
    EXPECT_EQ(item["caller"], "SCANNER");
    EXPECT_EQ(item["slices"], 6);
    EXPECT_TRUE(item["seconds_to_result"].is_number());
    EXPECT_LT(item["seconds_to_result"].get<double>(), 15.0) << "completed by the association's end, not the idle time";
    const json result = get_json(c, item["url"].get<std::string>());
    ASSERT_FALSE(result.is_null());
    EXPECT_EQ(result["n_slices"], 6);
    EXPECT_GT(result["bleed_volume_ml"].get<double>(), 1.0);
    ASSERT_TRUE(result.contains("dicom")) << result.dump();
    std::set<std::string> kinds;
    for (const auto& f : result["dicom"]) {
        kinds.insert(f["kind"].get<std::string>());
        auto res = c.Get(f["url"].get<std::string>());
        ASSERT_TRUE(res);
        EXPECT_EQ(res->status, 200);
        EXPECT_EQ(res->get_header_value("Content-Type"), "application/dicom");
        EXPECT_EQ(res->body.substr(128, 4), "DICM");
    }
    EXPECT_EQ(kinds, (std::set<std::string>{"SEG", "SR", "SC"}));
    auto missing = c.Get("/api/results/" + item["id"].get<std::string>() + "/dicom/sc_999.dcm");
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404);
}

TEST(ServeDicom, FilesReceivedBeforeAKillAreAnalysedAfterTheRestart) {
    TempDir d;
    const auto files = write_node_series(d / "in", 4, "1.2.826.0.1.3680043.10.7.6");
    const int dport = free_tcp_port();
    {
        // A long idle time: the process dies before the series is complete.
        hemoscan::test::ServeProcess server(kGoldenModels / "cls.pt", d / "data",
                                            {"--dicom-port", std::to_string(dport), "--idle", "600",
                                             "--after-release", "600"});
        ASSERT_TRUE(server.up());
        int rc = -1;
        storescu(dport, files, "SCANNER", "HEMOSCAN", &rc);
        ASSERT_EQ(rc, 0);
        auto c = server.client();
        EXPECT_FALSE(wait_for_status(c, "received", 10).is_null());
        server.kill_hard();
    }
    hemoscan::test::ServeProcess server(kGoldenModels / "cls.pt", d / "data",
                                        {"--dicom-port", std::to_string(dport), "--idle", "0.3"});
    ASSERT_TRUE(server.up());
    auto c = server.client();
    const json item = wait_for_status(c, "done");
    ASSERT_FALSE(item.is_null()) << server.log();
    EXPECT_EQ(item["slices"], 4);
    EXPECT_EQ(get_json(c, "/api/worklist")["total"], 1) << "one study, not one per run";
}

TEST(ServeDicom, KeepsOnlyDeidentifiedCopiesAndListsFailures) {
    TempDir d;
    const auto files = write_node_series(d / "ct", 3, "1.2.826.0.1.3680043.10.7.7");  // PatientID P-NODE
    // An MR series for a CT model: received, then refused by the analysis.
    std::vector<fs::path> mr;
    for (int i = 0; i < 2; ++i) {
        DicomWriteOptions o;
        o.modality = "MR";
        o.patient_id = "P-NODE";
        o.series_uid = "1.2.826.0.1.3680043.10.7.8";
        o.instance_number = i + 1;
        o.position = {0, 0, 5.0 * i};
        o.rescale_intercept = 0;
        mr.push_back(d / "mr" / ("mr_" + std::to_string(i) + ".dcm"));
        hemoscan::write_dicom_ct(mr.back(), hemoscan::test::head_slice(64, false) + 1024, o);
    }
    hemoscan::test::write_text(d / "deid.key", "0123456789abcdef-node-test-key\n");
    const int dport = free_tcp_port();
    hemoscan::test::ServeProcess server(kGoldenModels / "cls.pt", d / "data",
                                        {"--dicom-port", std::to_string(dport), "--deid-key-file",
                                         (d / "deid.key").string()});
    ASSERT_TRUE(server.up());
    auto c = server.client();
    int rc = -1;
    storescu(dport, files, "SCANNER", "HEMOSCAN", &rc);
    ASSERT_EQ(rc, 0);
    const json done = wait_for_status(c, "done");
    ASSERT_FALSE(done.is_null()) << server.log();
    EXPECT_EQ(done["patient"].get<std::string>().rfind("ANON", 0), 0u) << done.dump();
    storescu(dport, mr, "SCANNER", "HEMOSCAN", &rc);
    ASSERT_EQ(rc, 0);
    const json failed = wait_for_status(c, "failed");
    ASSERT_FALSE(failed.is_null()) << server.log();
    EXPECT_NE(failed["error"].get<std::string>().find("MR"), std::string::npos) << failed.dump();
    EXPECT_TRUE(failed["url"].is_null());
    EXPECT_EQ(get_json(c, "/api/worklist")["total"], 2);
    // Nothing the server keeps holds the patient's identifier: files, database, results.
    const auto grep = run_command("grep -rl P-NODE " + q(d / "data") + " 2>/dev/null");
    EXPECT_EQ(grep.output, "") << "identifying data kept in " << grep.output;
}

TEST(ListenCli, RefusesBadOptions) {
    TempDir d;
    const std::string model = q(kGoldenModels / "cls.pt");
    for (const std::string& args : {"listen --model " + model + " --send-to PACS",
                                   "listen --model " + model + " --aet WAY_TOO_LONG_AE_TITLE",
                                   "serve --model " + model + " --send-to PACS@127.0.0.1:104"}) {
        const auto r = hemoscan::test::run_hemoscan(args + " --data-dir " + q(d / "data"));
        EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    }
    // A port that is taken: a usage error that names it, not a silent listener failure.
    const int port = free_tcp_port();
    Handed handed;
    DicomNode node(node_options(port), d / "node", handed.hooks());
    node.start();
    const auto r = hemoscan::test::run_hemoscan("listen --model " + model + " --port " + std::to_string(port) +
                                                " --data-dir " + q(d / "data2"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("port " + std::to_string(port)), std::string::npos) << r.output;
}

TEST(ServeDicom, AnUploadWhoseDicomObjectsCannotBeWrittenStillGetsItsResult) {
    TempDir d;
    // Two slices of one series that claim different studies: readable, but nothing to reference as one study.
    std::vector<hemoscan::test::Part> parts;
    for (int i = 0; i < 2; ++i) {
        DicomWriteOptions o;
        o.study_uid = "1.2.826.0.1.3680043.10.7.9." + std::to_string(i);
        o.series_uid = "1.2.826.0.1.3680043.10.7.9";
        o.instance_number = i + 1;
        o.position = {0, 0, 5.0 * i};
        const fs::path f = d / ("s" + std::to_string(i) + ".dcm");
        hemoscan::write_dicom_ct(f, hemoscan::test::head_slice(64, false), o);
        parts.push_back({f.filename().string(), hemoscan::read_file(f), "application/dicom"});
    }
    hemoscan::test::ServeProcess server(kGoldenModels / "cls.pt", d / "data");
    ASSERT_TRUE(server.up());
    auto c = server.client();
    auto r = hemoscan::test::post(c, parts);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
    const json result = json::parse(r->body);
    EXPECT_FALSE(result.contains("dicom"));
    EXPECT_NE(result["warnings"].dump().find("no DICOM objects"), std::string::npos) << result["warnings"];
    EXPECT_EQ(get_json(c, "/api/worklist")["items"][0]["status"], "done");
}
