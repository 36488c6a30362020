// `hemoscan serve`: routes, access control, errors, logging and the life cycle of the server.
#include "hemoscan/serve/server.hpp"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <set>
#include <thread>

#include "hemoscan/error.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/infer/seg_predictor.hpp"
#include "hemoscan/io/deid.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/runtime.hpp"
#include "hemoscan/util/strings.hpp"
#include "hemoscan/version.hpp"
#include "serve/analysis.hpp"
#include "serve/assets.hpp"
#include "serve/dicom_node.hpp"
#include "serve/http.hpp"
#include "serve/store.hpp"
#include "serve/uploads.hpp"

namespace hemoscan {

namespace fs = std::filesystem;
using nlohmann::json;
using serve::HttpRequest;
using serve::HttpResponse;
using serve::RequestError;

namespace {

constexpr const char* kResultId = "([0-9a-f]{16})";  // what new_result_id() makes; nothing else matches
constexpr const char* kStagingMarker = ".hemoscan-staging";
constexpr const char* kCookie = "hemoscan_token";

std::string utc_time(std::time_t t) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

void send_json(HttpResponse& res, int status, const json& body) {
    res.status = status;
    res.content_type = "application/json";
    res.body = body.dump();
}

void send_png(HttpResponse& res, std::string png) {
    // A result never changes once stored.
    res.set_header("Cache-Control", "private, max-age=86400, immutable");
    res.content_type = "image/png";
    res.body = std::move(png);
}

// Removes a server-made folder however the request ends.
struct ScopedFolder {
    fs::path path;
    explicit ScopedFolder(fs::path p) : path(std::move(p)) { fs::create_directories(path); }
    ~ScopedFolder() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    ScopedFolder(const ScopedFolder&) = delete;
    ScopedFolder& operator=(const ScopedFolder&) = delete;
};

// Library messages name the files they read: show the client's names, never the server's paths.
std::string client_message(std::string message, const serve::StagedUpload* upload, const fs::path& staging) {
    auto replace_all = [&](const std::string& from, const std::string& to) {
        if (from.empty()) return;
        for (size_t at = message.find(from); at != std::string::npos; at = message.find(from, at + to.size())) {
            message.replace(at, from.size(), to);
        }
    };
    if (upload) {
        for (const auto* list : {&upload->images, &upload->dicoms}) {
            for (const auto& f : *list) replace_all(f.path.string(), "'" + f.display_name + "'");
        }
    }
    replace_all(staging.string() + "/", "");
    replace_all(staging.string(), "upload");
    return message;
}

int int_param(const HttpRequest& req, const char* key, int fallback, int lo, int hi) {
    if (!req.has_param(key)) return fallback;
    const std::string v = req.param(key);
    try {
        size_t used = 0;
        const int n = std::stoi(v, &used);
        if (used == v.size() && n >= lo && n <= hi) return n;
    } catch (const std::exception&) {
    }
    throw RequestError(400, std::string("'") + key + "' must be an integer in " + std::to_string(lo) + ".." +
                                std::to_string(hi));
}

bool is_ip_literal(const std::string& host) {
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool is_loopback(const std::string& host) {
    if (host == "localhost" || host == "::1") return true;
    in_addr a{};
    return inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

// The host part of a Host header or of an origin's authority ("[::1]:8080" -> "::1").
std::string host_of(const std::string& authority) {
    if (!authority.empty() && authority.front() == '[') {
        const size_t close = authority.find(']');
        return close == std::string::npos ? authority : authority.substr(1, close - 1);
    }
    const size_t colon = authority.find(':');
    return to_lower(colon == std::string::npos ? authority : authority.substr(0, colon));
}

// Compares in time independent of where the strings differ (a token is not guessed byte by byte).
bool same_secret(const std::string& a, const std::string& b) {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(1, b.size())]);
    return diff == 0;
}

std::string cookie_value(const std::string& cookies, const std::string& name) {
    for (const auto& item : split(cookies, ';')) {
        const std::string c = trim(item);
        if (c.rfind(name + "=", 0) == 0) return c.substr(name.size() + 1);
    }
    return "";
}

std::string join(const std::set<std::string>& items, const char* sep) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : sep) + item;
    return out;
}

std::string read_secret(const fs::path& path, const char* what) {
    if (!fs::is_regular_file(path)) throw InputError(path.string() + ": no such " + what + " file");
    return read_file(path);
}

long long epoch_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

json time_json(long long ms) { return ms > 0 ? json(utc_time(static_cast<std::time_t>(ms / 1000))) : json(); }

json seconds_json(long long from_ms, long long to_ms) {
    return from_ms > 0 && to_ms >= from_ms ? json(static_cast<double>(to_ms - from_ms) / 1000.0) : json();
}

json work_json(const serve::WorkItem& w, bool has_result) {
    return {{"id", w.id},
            {"source", w.source},
            {"name", w.name},
            {"patient", w.patient},
            {"caller", w.caller},
            {"status", w.status},
            {"positive", w.positive},
            {"finding", w.finding},
            {"error", w.error},
            {"slices", w.slices},
            {"received", time_json(w.received_ms)},
            {"complete", time_json(w.complete_ms)},
            {"done", time_json(w.done_ms)},
            {"sent", time_json(w.sent_ms)},
            // From the last image (or the upload) to the stored result, and to the result in the PACS.
            {"seconds_to_result", seconds_json(w.complete_ms, w.done_ms)},
            {"seconds_to_sent", seconds_json(w.complete_ms, w.sent_ms)},
            {"url", has_result ? json("/api/results/" + w.id) : json()}};
}

}  // namespace

struct Server::Impl {
    ServerOptions options;
    std::unique_ptr<Predictor> predictor;
    std::unique_ptr<SegPredictor> seg_predictor;  // with --seg-model
    std::unique_ptr<serve::ResultStore> store;
    std::unique_ptr<serve::Renderer> renderer;
    std::unique_ptr<serve::HttpServer> http;       // null without the web page (`listen`)
    std::unique_ptr<serve::DicomNode> dicom;       // with a DICOM port
    std::unique_ptr<serve::Outbox> outbox;         // with a destination for results
    std::unique_ptr<Deidentifier> deid;            // received files kept only de-identified
    DicomOutputOptions dicom_out;
    std::mutex work_mutex;                         // read-modify-write of worklist items
    json model_info;
    std::string token;                 // empty: no access control
    std::set<std::string> host_names;  // Host values answered besides IP literals
    int port = -1;
    bool bound = false;
    std::mutex mutex;
    std::condition_variable stopped;
    bool stop_requested = false;
    std::thread retention;

    fs::path results_dir() const { return options.data_dir / "results"; }
    fs::path tmp_dir() const { return options.data_dir / "tmp"; }

    explicit Impl(const ServerOptions& o) : options(o) {
        check_options();
        prepare_data_dir();
        read_access_control();
        predictor = std::make_unique<Predictor>(options.model, options.compute_threads);
        if (!options.seg_models.empty()) {
            seg_predictor = std::make_unique<SegPredictor>(options.seg_models, options.compute_threads);
            if (options.min_component_ml >= 0) seg_predictor->set_min_component_ml(options.min_component_ml);
        }
        store = std::make_unique<serve::ResultStore>(options.data_dir / "results.db");
        renderer = std::make_unique<serve::Renderer>(results_dir());
        describe_model();
        dicom_out.model_name = serve::model_name(predictor->meta());
        if (seg_predictor) dicom_out.seg_model_name = serve::model_name(seg_predictor->meta());
        if (options.http) {
            make_http();
            routes();
        }
        if (options.dicom_port >= 0) make_dicom();
    }

    void check_options() const {
        if (options.max_upload_mb < 1) throw UsageError("`max_upload_mb` must be at least 1");
        if (options.threads < 1 || options.workers < 1) throw UsageError("`threads` and `workers` must be at least 1");
        if (options.queue < 0) throw UsageError("`queue` must be >= 0");
        if (options.max_connections < 8) throw UsageError("`max_connections` must be at least 8");
        if (options.timeout_s < 1) throw UsageError("`timeout_s` must be at least 1 second");
        if (options.keep_days < 0) throw UsageError("`keep_days` must be >= 0 (0: keep results)");
        if (options.max_files < 1 || options.max_unzipped_mb < 1) throw UsageError("upload limits must be positive");
        if (options.min_component_ml >= 0 && options.seg_models.empty()) {
            throw UsageError("`min_component_ml` is for a segmentation model: give `seg_models` too");
        }
        if (options.memory_decay_ms < 0) throw UsageError("`memory_decay_ms` must be >= 0");
        if (!options.http && options.dicom_port < 0) throw UsageError("neither the web page nor a DICOM port is on");
        if (options.dicom_port < 0 && (!options.dicom_send_to.empty() || !options.deid_key_file.empty())) {
            throw UsageError("`dicom_send_to` and `deid_key_file` are for the DICOM node: give `dicom_port` too");
        }
        if (options.tls_cert.empty() != options.tls_key.empty()) {
            throw UsageError("HTTPS needs both `tls_cert` and `tls_key`");
        }
        if (!is_loopback(options.host) && options.token_file.empty() && !options.insecure) {
            throw UsageError("refusing to listen on " + options.host +
                             " without a token: anyone who reaches the port would see every result. Give "
                             "`token_file` (and `tls_cert`/`tls_key`), or `insecure` behind a proxy that checks access");
        }
    }

    void prepare_data_dir() {
        // Patient images and results: readable by the server's user only (files 0600, folders 0700).
        ::umask(077);
        if (!return_freed_memory(options.memory_decay_ms)) {
            logger().warn("the allocator is not jemalloc or did not take the server's settings: freed memory may "
                          "not return to the system");
        }
        std::error_code ec;
        fs::create_directories(results_dir(), ec);
        if (ec) throw InputError(options.data_dir.string() + ": cannot create the data folder (" + ec.message() + ")");
        // Leftovers of a crash: staged uploads and results that were never stored. The staging folder is
        // removed only when it carries the marker the server wrote: never a folder of the user's.
        const fs::path marker = tmp_dir() / kStagingMarker;
        if (fs::exists(tmp_dir(), ec) && !fs::exists(marker, ec)) {
            throw InputError(tmp_dir().string() + " exists and was not made by hemoscan serve (no " + kStagingMarker +
                             "): move it away or give another `data_dir`");
        }
        fs::remove_all(tmp_dir(), ec);
        fs::create_directories(tmp_dir(), ec);
        write_file_atomic(marker, "hemoscan serve staging folder: emptied at every start\n");
        for (const auto& e : fs::directory_iterator(results_dir(), ec)) {
            if (e.path().extension() == ".partial") fs::remove_all(e.path(), ec);
        }
    }

    void read_access_control() {
        if (!options.token_file.empty()) {
            token = trim(read_secret(options.token_file, "token"));
            if (token.size() < 16 || token.find_first_of(" \t\r\n;,\"") != std::string::npos) {
                throw InputError(options.token_file.string() +
                                 ": the token must be one line of at least 16 characters without spaces, ';', ',' "
                                 "or quotes (e.g. `openssl rand -hex 32`)");
            }
        }
        host_names = {"localhost"};
        char name[256] = {};
        if (gethostname(name, sizeof(name) - 1) == 0 && name[0]) host_names.insert(to_lower(name));
        for (const auto& h : options.allowed_hosts) host_names.insert(to_lower(h));
        if (!is_loopback(options.host)) {
            if (options.insecure && token.empty()) {
                logger().warn("listening on {} without a token: anyone who reaches the port sees every result",
                              options.host);
            } else if (options.tls_cert.empty()) {
                logger().warn("listening on {} without TLS: the token and the images travel in clear text (use "
                              "`tls_cert`/`tls_key` or a reverse proxy with TLS)",
                              options.host);
            }
        }
    }

    void make_http() {
        serve::HttpOptions h;
        h.host = options.host;
        h.port = options.port;
        h.io_threads = options.threads;
        h.workers = options.workers;
        h.queue = options.queue;
        h.idle_timeout_s = options.timeout_s;
        h.max_upload_bytes = static_cast<size_t>(options.max_upload_mb) << 20;
        h.max_parts = static_cast<size_t>(options.max_files);
        h.max_connections = options.max_connections;
        h.max_connections_per_client = std::max(4, options.max_connections / 4);
        h.spool_dir = tmp_dir();
        if (!options.tls_cert.empty()) {
            h.tls_cert_pem = read_secret(options.tls_cert, "certificate");
            h.tls_key_pem = read_secret(options.tls_key, "key");
        }
        http = std::make_unique<serve::HttpServer>(std::move(h));
    }

    void describe_model() {
        const auto& pre = predictor->preprocess_options();
        json windows = json::array();
        for (const auto& w : pre.windows) windows.push_back({{"name", w.name}, {"level", w.level}, {"width", w.width}});
        json thresholds = json::object();
        for (size_t l = 0; l < predictor->labels().size(); ++l) {
            thresholds[predictor->labels()[l]] = predictor->thresholds()[l];
        }
        const auto& meta = predictor->meta();
        model_info = {{"version", kVersion},
                      {"model", serve::model_name(meta)},
                      {"labels", predictor->labels()},
                      {"multiclass", predictor->multiclass()},
                      {"thresholds", thresholds},
                      {"threshold",
                       predictor->thresholds().size() == 1 ? json(predictor->thresholds().front()) : json()},
                      {"input", {{"width", pre.resize.width},
                                 {"height", pre.resize.height},
                                 {"channels", pre.channels()},
                                 {"modality", pre.mr ? "MR" : "CT"},
                                 {"sequences", pre.sequences},
                                 {"windows", windows},
                                 {"keep_aspect", pre.resize.keep_aspect},
                                 {"crop_head", pre.crop_head}}},
                      {"segmentation", segmentation_info()},
                      {"limits", {{"max_upload_mb", options.max_upload_mb}, {"max_files", options.max_files}}},
                      {"retention_days", options.keep_days > 0 ? json(options.keep_days) : json()}};
    }

    json segmentation_info() const {
        if (!seg_predictor) return nullptr;
        return {{"model", serve::model_name(seg_predictor->meta())},
                {"models", seg_predictor->models()},
                {"min_component_ml", seg_predictor->min_component_ml()},
                {"class_names", seg_predictor->class_names()},
                {"bleed_classes", seg_predictor->bleed_classes()}};
    }

    // ---- access control: runs on every request before its route and body ----
    bool admit(const HttpRequest& req, HttpResponse& res) {
        // DNS rebinding: a page of another site that made its name resolve here sends its own name as Host.
        const std::string host_header = req.header("host");
        const std::string host = host_of(host_header);
        if (host.empty()) {
            res.json_error(400, "a Host header is required");
            return false;
        }
        if (!is_ip_literal(host) && !host_names.count(host)) {
            res.json_error(421, "this server does not answer to the name '" + safe_filename(host, 64) +
                                    "' (allowed: IP addresses, " + join(host_names, ", ") + ")");
            return false;
        }
        // Cross-site requests that change state: a browser says where a request comes from.
        if (req.method != "GET" && req.method != "HEAD" && req.method != "OPTIONS") {
            const std::string origin = req.header("origin");
            const std::string site = req.header("sec-fetch-site");
            const std::string own = std::string(req.tls ? "https://" : "http://") + host_header;
            if ((!origin.empty() && to_lower(origin) != to_lower(own)) ||
                (origin.empty() && !site.empty() && site != "same-origin" && site != "none")) {
                res.json_error(403, "cross-origin requests that change data are refused");
                return false;
            }
        }
        if (token.empty() || !needs_token(req)) return true;
        const std::string auth = req.header("authorization");
        std::string given = auth.rfind("Bearer ", 0) == 0 ? trim(auth.substr(7)) : cookie_value(req.header("cookie"), kCookie);
        if (given.empty() || !same_secret(given, token)) {
            res.set_header("WWW-Authenticate", "Bearer realm=\"hemoscan\"");
            res.json_error(401, given.empty() ? "this server needs a token (Authorization: Bearer ...)"
                                              : "the token is not valid");
            return false;
        }
        return true;
    }

    // The page and its assets load without a token (it asks for one); /health stays open for probes.
    static bool needs_token(const HttpRequest& req) {
        const std::string& p = req.path;
        if (req.method != "GET" && req.method != "HEAD") return true;
        return !(p == "/" || p == "/index.html" || p == "/favicon.ico" || p == "/health" || p.rfind("/assets/", 0) == 0);
    }

    // Runs a handler, mapping errors to JSON answers.
    template <class F>
    serve::HttpHandler guarded(F f) {
        return [this, f](const HttpRequest& req, HttpResponse& res) {
            try {
                f(req, res);
            } catch (const RequestError& e) {
                res.json_error(e.status(), e.what());
            } catch (const UsageError& e) {
                res.json_error(400, e.what());
            } catch (const InputError& e) {
                res.json_error(400, client_message(e.what(), nullptr, tmp_dir()));
            } catch (const std::exception& e) {
                logger().error("{} {}: {}", req.method, req.path, e.what());
                res.json_error(500, "internal server error");
            }
        };
    }

    json stored_result(const std::string& id) {
        auto r = store->get(id);
        if (!r) throw RequestError(404, "no result with id " + id);
        return *r;
    }

    int slice_index(const json& result, const std::string& k) {
        const long n = result.at("n_slices").get<long>();
        const long i = k.size() > 7 ? n : std::stol(k);  // the route allows digits only
        if (i >= n) throw RequestError(404, "result " + result.at("id").get<std::string>() + " has " +
                                                std::to_string(n) + " slice(s)");
        return static_cast<int>(i);
    }

    void predict(const HttpRequest& req, HttpResponse& res) {
        const auto start = std::chrono::steady_clock::now();
        const long long start_ms = epoch_ms();
        std::vector<serve::UploadedFile> files;
        for (const auto& part : req.parts) {
            if (!part.filename.empty() || part.field == "file" || part.field == "files") {
                files.push_back({part.filename, part.content_type, part.path});
            }
        }
        ScopedFolder staging(tmp_dir() / serve::new_result_id());
        serve::StagedUpload upload;
        json result;
        const std::string id = serve::new_result_id();
        const fs::path partial = results_dir() / (id + ".partial");
        try {
            // The library's warnings name the uploader's files: they go into the result, not the log.
            ScopedLogQuiet quiet(spdlog::level::err);
            serve::UploadLimits limits;
            limits.max_files = static_cast<size_t>(options.max_files);
            limits.max_unzipped_bytes = static_cast<size_t>(options.max_unzipped_mb) << 20;
            upload = serve::stage_uploads(files, staging.path, limits);
            fs::create_directories(partial);
            put_work(web_item(id, upload.display_name, start_ms));
            result = serve::analyze(*predictor, seg_predictor.get(), upload, id, partial,
                                    options.dicom_outputs ? &dicom_out : nullptr);
        } catch (const InputError& e) {
            std::error_code ec;
            fs::remove_all(partial, ec);
            drop_work(id);  // the uploader has the error; the list keeps studies, not rejected uploads
            throw RequestError(400, client_message(e.what(), &upload, staging.path));
        } catch (...) {
            std::error_code ec;
            fs::remove_all(partial, ec);
            drop_work(id);
            throw;
        }
        result["created"] = utc_time(std::time(nullptr));
        result["name"] = upload.display_name;
        result["elapsed_ms"] =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
        fs::rename(partial, results_dir() / id);
        try {
            store->insert(result);
        } catch (...) {
            std::error_code ec;
            fs::remove_all(results_dir() / id, ec);
            drop_work(id);
            throw;
        }
        finish_work(id, result, start_ms);
        // No file names here: they may carry a patient's name.
        logger().info("result {}: {} with {} slice(s), finding '{}'", id, result["kind"].get<std::string>(),
                      result["n_slices"].get<size_t>(), result["finding"].get<std::string>());
        res.set_header("Location", "/api/results/" + id);
        send_json(res, 201, result);
    }

    // ---- the worklist ----
    static serve::WorkItem web_item(const std::string& id, const std::string& name, long long start_ms) {
        serve::WorkItem w;
        w.id = id;
        w.source = "web";
        w.name = name;
        w.status = "analysing";
        w.received_ms = w.complete_ms = start_ms;
        return w;
    }

    void put_work(const serve::WorkItem& w) {
        std::lock_guard<std::mutex> lock(work_mutex);
        store->put(w);
    }

    // Changes one item under the lock (read, modify, write); nothing when it is gone (deleted meanwhile).
    template <class F>
    void update_work(const std::string& id, F change) {
        std::lock_guard<std::mutex> lock(work_mutex);
        auto w = store->work_item(id);
        if (!w) return;
        change(*w);
        store->put(*w);
    }

    void drop_work(const std::string& id) {
        try {
            std::lock_guard<std::mutex> lock(work_mutex);
            store->remove(id);
        } catch (const std::exception& e) {
            logger().error("worklist: {}", e.what());
        }
    }

    void finish_work(const std::string& id, const json& result, long long received_ms) {
        update_work(id, [&](serve::WorkItem& w) {
            if (w.received_ms == 0) w.received_ms = received_ms;
            w.status = "done";
            w.done_ms = epoch_ms();
            w.slices = static_cast<int>(result.value("n_slices", 0));
            w.positive = result.value("positive", false);
            w.finding = result.value("finding", std::string());
            if (result.contains("bleed_volume_ml")) {
                w.finding += fmt::format(" ({:.1f} mL)", result["bleed_volume_ml"].get<double>());
            }
        });
    }

    void list_worklist(const HttpRequest& req, HttpResponse& res) {
        const int limit = int_param(req, "limit", 100, 1, 1000);
        const int offset = int_param(req, "offset", 0, 0, 1 << 30);
        json items = json::array();
        for (const auto& w : store->worklist(limit, offset)) {
            const bool has_result = w.status == "done" || w.status == "sending" || w.status == "sent" ||
                                    w.status == "send-failed";
            items.push_back(work_json(w, has_result));
        }
        json dicom_info = nullptr;
        if (dicom) {
            dicom_info = {{"aet", options.dicom_aet},
                          {"port", options.dicom_port},
                          {"pending", dicom->pending()},
                          {"send_to", options.dicom_send_to.empty() ? json() : json(options.dicom_send_to)},
                          {"outbox", outbox ? json(outbox->waiting()) : json()}};
        }
        send_json(res, 200, json{{"items", items}, {"total", store->worklist_count()}, {"limit", limit},
                                 {"offset", offset}, {"dicom", dicom_info}});
    }

    void send_dicom_file(const HttpRequest& req, HttpResponse& res) {
        const std::string id = req.matches[1];
        const json result = stored_result(id);
        const fs::path file = results_dir() / id / "dicom" / req.matches[2];
        if (!result.contains("dicom") || !fs::is_regular_file(file)) {
            throw RequestError(404, "result " + id + " has no " + std::string(req.matches[2]));
        }
        res.content_type = "application/dicom";
        res.set_header("Content-Disposition", "attachment; filename=\"" + id + "_" + std::string(req.matches[2]) + "\"");
        res.body = read_file(file);
    }

    // ---- the DICOM node ----
    void make_dicom() {
        serve::DicomNodeOptions d;
        d.aet = options.dicom_aet;
        d.port = options.dicom_port;
        d.allowed_callers = options.dicom_allowed_callers;
        d.idle_s = options.dicom_idle_s;
        d.after_release_s = options.dicom_after_release_s;
        serve::DicomNodeHooks hooks;
        hooks.arrived = [this](const serve::ArrivedSeries& a) { on_arrived(a); };
        hooks.complete = [this](const serve::ArrivedSeries& a, const std::vector<fs::path>& files, long long first,
                                long long last) { on_complete(a, files, first, last); };
        if (!options.deid_key_file.empty()) {
            DeidOptions o;
            o.key = trim(read_secret(options.deid_key_file, "de-identification key"));
            deid = std::make_unique<Deidentifier>(o);
            hooks.transform = [this](const fs::path& in, const fs::path& out) { deid->deidentify_file(in, out); };
        }
        if (!options.dicom_send_to.empty()) {
            serve::OutboxOptions o;
            o.peer = serve::parse_dicom_peer(options.dicom_send_to);
            o.own_aet = options.dicom_aet;
            o.retries = options.dicom_send_retries;
            o.retry_s = options.dicom_retry_s;
            outbox = std::make_unique<serve::Outbox>(o, options.data_dir / "dicom" / "outbox",
                                                     [this](const std::string& id, bool sent, const std::string& error) {
                                                         on_sent(id, sent, error);
                                                     });
        }
        dicom = std::make_unique<serve::DicomNode>(d, options.data_dir / "dicom", std::move(hooks));
    }

    void on_arrived(const serve::ArrivedSeries& a) {
        serve::WorkItem w;
        w.id = a.id;
        w.source = "dicom";
        w.name = (a.series_description.empty() ? a.modality + " series" : a.series_description);
        w.patient = a.patient_id;
        w.caller = a.caller;
        w.status = "received";
        w.received_ms = epoch_ms();
        put_work(w);
    }

    void on_complete(const serve::ArrivedSeries& a, const std::vector<fs::path>& files, long long first_ms,
                     long long last_ms) {
        if (store->get(a.id)) return;  // stored before a restart cut the clean-up short
        if (!store->work_item(a.id)) on_arrived(a);  // the arrival predates this database's worklist
        update_work(a.id, [&](serve::WorkItem& w) {
            w.status = "analysing";
            w.complete_ms = last_ms;
            if (w.received_ms == 0) w.received_ms = first_ms;
            w.slices = static_cast<int>(files.size());
        });
        serve::StagedUpload upload;
        for (const auto& f : files) upload.dicoms.push_back({f, f.filename().string()});
        upload.display_name = a.series_description.empty() ? std::to_string(files.size()) + " DICOM files"
                                                           : a.series_description;
        const fs::path partial = results_dir() / (a.id + ".partial");
        json result;
        try {
            ScopedLogQuiet quiet(spdlog::level::err);
            fs::create_directories(partial);
            result = serve::analyze(*predictor, seg_predictor.get(), upload, a.id, partial,
                                    options.dicom_outputs ? &dicom_out : nullptr);
            result["created"] = utc_time(std::time(nullptr));
            result["name"] = upload.display_name;
            result["source"] = {{"dicom", true}, {"caller", a.caller}};
            result["elapsed_ms"] = epoch_ms() - last_ms;
            fs::rename(partial, results_dir() / a.id);
            store->insert(result);
        } catch (const std::exception& e) {
            std::error_code ec;
            fs::remove_all(partial, ec);
            const std::string why = client_message(e.what(), &upload, options.data_dir);
            logger().warn("dicom: arrival {} failed: {}", a.id, why);
            update_work(a.id, [&](serve::WorkItem& w) {
                w.status = "failed";
                w.error = why;
                w.done_ms = epoch_ms();
            });
            return;
        }
        finish_work(a.id, result, first_ms);
        logger().info("dicom: result {}: {} slice(s), finding '{}' ({} ms after the last file; {})", a.id,
                      result["n_slices"].get<size_t>(), result["finding"].get<std::string>(),
                      result["elapsed_ms"].get<long long>(), result["timing_s"].dump());
        post_outputs(a.id, result);
    }

    void post_outputs(const std::string& id, const json& result) {
        if (!outbox || !result.contains("dicom") || result["dicom"].empty()) return;
        std::vector<fs::path> files;
        for (const auto& f : result["dicom"]) files.push_back(results_dir() / id / "dicom" / f["file"].get<std::string>());
        update_work(id, [](serve::WorkItem& w) { w.status = "sending"; });
        outbox->post(id, files);
    }

    void on_sent(const std::string& id, bool sent, const std::string& error) {
        update_work(id, [&](serve::WorkItem& w) {
            w.status = sent ? "sent" : "send-failed";
            w.error = sent ? "" : error;
            if (sent) w.sent_ms = epoch_ms();
        });
    }

    // The row first (the result is gone for every reader at once), then its files.
    bool delete_result(const std::string& id) {
        const bool had = store->remove(id);
        renderer->forget(id);
        std::error_code ec;
        const fs::path doomed = tmp_dir() / ("deleted-" + id);
        fs::rename(results_dir() / id, doomed, ec);
        fs::remove_all(ec ? results_dir() / id : doomed, ec);
        return had;
    }

    void apply_retention() {
        if (options.keep_days <= 0) return;
        const std::time_t cutoff = std::time(nullptr) - static_cast<std::time_t>(options.keep_days) * 86400;
        size_t n = 0;
        for (const auto& id : store->created_before(utc_time(cutoff))) n += delete_result(id) ? 1 : 0;
        if (n > 0) logger().info("retention: deleted {} result(s) older than {} day(s)", n, options.keep_days);
    }

    void list_results(const HttpRequest& req, HttpResponse& res) {
        const int limit = int_param(req, "limit", 50, 1, 500);
        const int offset = int_param(req, "offset", 0, 0, 1 << 30);
        json items = json::array();
        for (const auto& s : store->list(limit, offset)) {
            items.push_back({{"id", s.id},
                             {"created", s.created},
                             {"kind", s.kind},
                             {"name", s.name},
                             {"finding", s.finding},
                             {"url", "/api/results/" + s.id}});
        }
        send_json(res, 200, json{{"results", items}, {"total", store->count()}, {"limit", limit}, {"offset", offset}});
    }

    void serve_asset(const std::string& name, HttpResponse& res) {
        const serve::Asset* a = serve::find_asset(name);
        if (!a) throw RequestError(404, "not found");
        res.set_header("Cache-Control", "no-cache");
        res.content_type = a->content_type;
        res.static_data = a->data;
        res.static_size = a->size;
    }

    void render(const HttpRequest& req, HttpResponse& res) {
        const json result = stored_result(req.matches[1]);
        const std::string& what = req.matches[2];
        const int k = slice_index(result, req.matches[3]);
        const std::string window = req.param("window");
        if (what == "slices") {
            send_png(res, renderer->slice_png(result, k, window));
        } else if (what == "heatmaps") {
            send_png(res, renderer->heatmap_png(result, k));
        } else if (what == "overlays") {
            send_png(res, renderer->overlay_png(result, k, window));
        } else {
            if (!result.contains("segmentation")) throw RequestError(404, "this result has no segmentation");
            send_png(res, renderer->mask_png(result, k));
        }
    }

    // The page keeps the token as a session cookie (HttpOnly: its scripts never read it back), so that
    // <img> requests carry it too; SameSite=Strict keeps other sites' pages from sending it.
    void session(const HttpRequest& req, HttpResponse& res, bool open) {
        std::string cookie = std::string(kCookie) + "=" + (open ? token : "") + "; Path=/; HttpOnly; SameSite=Strict";
        if (req.tls) cookie += "; Secure";
        if (!open) cookie += "; Max-Age=0";
        res.set_header("Set-Cookie", cookie);
        send_json(res, 200, json{{"session", open}, {"token_required", !token.empty()}});
    }

    void routes() {
        auto& h = *http;
        const std::string result_path = std::string("/api/results/") + kResultId;
        auto page = guarded([this](const HttpRequest&, HttpResponse& res) { serve_asset("index.html", res); });
        h.route("GET", "/", page);
        h.route("GET", "/index.html", page);
        h.route("GET", R"(/assets/([A-Za-z0-9._-]{1,64}))", guarded([this](const HttpRequest& req, HttpResponse& res) {
                    serve_asset(req.matches[1], res);
                }));
        h.route("GET", "/favicon.ico",
                guarded([this](const HttpRequest&, HttpResponse& res) { serve_asset("favicon.svg", res); }));
        h.route("GET", "/health", guarded([this](const HttpRequest&, HttpResponse& res) {
                    send_json(res, 200, json{{"status", "ok"}, {"version", kVersion},
                                             {"analyses", {{"running", http->running()}, {"waiting", http->waiting()}}}});
                }));
        h.route("GET", "/api/model",
                guarded([this](const HttpRequest&, HttpResponse& res) { send_json(res, 200, model_info); }));
        h.route("POST", "/api/session",
                guarded([this](const HttpRequest& req, HttpResponse& res) { session(req, res, true); }));
        h.route("DELETE", "/api/session",
                guarded([this](const HttpRequest& req, HttpResponse& res) { session(req, res, false); }));
        h.route("POST", "/api/predict",
                guarded([this](const HttpRequest& req, HttpResponse& res) { predict(req, res); }), true);
        h.route("GET", "/api/results",
                guarded([this](const HttpRequest& req, HttpResponse& res) { list_results(req, res); }));
        h.route("GET", result_path, guarded([this](const HttpRequest& req, HttpResponse& res) {
                    send_json(res, 200, stored_result(req.matches[1]));
                }));
        h.route("DELETE", result_path, guarded([this](const HttpRequest& req, HttpResponse& res) {
                    if (!delete_result(req.matches[1])) throw RequestError(404, "no result with id " + req.matches[1]);
                    logger().info("result {}: deleted", req.matches[1]);
                    res.status = 204;
                    res.content_type.clear();
                }));
        h.route("GET", "/api/worklist",
                guarded([this](const HttpRequest& req, HttpResponse& res) { list_worklist(req, res); }));
        h.route("GET", result_path + R"(/dicom/((?:seg|sr|sc_[0-9]{1,3})\.dcm))",
                guarded([this](const HttpRequest& req, HttpResponse& res) { send_dicom_file(req, res); }));
        h.route("GET", result_path + R"(/(slices|heatmaps|overlays|masks)/([0-9]{1,9})\.png)",
                guarded([this](const HttpRequest& req, HttpResponse& res) { render(req, res); }));
        h.set_gate([this](const HttpRequest& req, HttpResponse& res) { return admit(req, res); });
        std::vector<std::pair<std::string, std::string>> headers = {
            {"X-Content-Type-Options", "nosniff"},
            {"Referrer-Policy", "no-referrer"},
            {"X-Frame-Options", "DENY"},
            // Everything comes from this server: a page that tries to load from elsewhere is refused.
            {"Content-Security-Policy",
             "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
             "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"}};
        if (!options.tls_cert.empty()) headers.emplace_back("Strict-Transport-Security", "max-age=31536000");
        h.set_default_headers(std::move(headers));
        // Method, path (ids only: client file names never reach a path), status and time; nothing else.
        h.set_logger([](const HttpRequest& req, int status, double ms) {
            if (status == 0) {
                logger().info("{} {}: closed before an answer ({:.0f} ms)", req.method, req.path, ms);
            } else {
                logger().info("{} {} {} {:.0f} ms", req.method, req.path, status, ms);
            }
        });
    }

    // Requests and associations in flight finish first; an analysis in flight finishes; what is not sent
    // stays in the outbox for the next start. Before the members go: their threads use them.
    void shut_down() {
        if (http) http->stop();
        if (dicom) dicom->stop();
        if (outbox) outbox->stop();
    }

    // Hourly after the pass bind() made before serving.
    void retention_loop() {
        std::unique_lock<std::mutex> lock(mutex);
        while (!stopped.wait_for(lock, std::chrono::hours(1), [&] { return stop_requested; })) {
            lock.unlock();
            try {
                apply_retention();
            } catch (const std::exception& e) {
                logger().error("retention: {}", e.what());
            }
            lock.lock();
        }
    }
};

Server::Server(const ServerOptions& options) : impl_(std::make_unique<Impl>(options)) {}

Server::~Server() {
    stop();
    if (impl_->retention.joinable()) impl_->retention.join();
    impl_->shut_down();
}

int Server::bind() {
    Impl& s = *impl_;
    if (s.bound) return s.port;
    if (s.options.http && (s.options.port < 0 || s.options.port > 65535)) throw UsageError("`port` must be 0..65535");
    s.apply_retention();  // before the first request can see an expired result
    if (s.dicom) {
        s.dicom->start();
        if (s.outbox) s.outbox->start();
    }
    if (s.http) s.port = s.http->start();
    s.bound = true;
    if (s.options.keep_days > 0) s.retention = std::thread([&s] { s.retention_loop(); });
    return s.port;
}

bool Server::listen() {
    Impl& s = *impl_;
    bind();
    if (s.http) {
        logger().info("hemoscan serve: {}://{}:{}/ (data in {})", s.options.tls_cert.empty() ? "http" : "https",
                      s.options.host, s.port, s.options.data_dir.string());
    }
    std::unique_lock<std::mutex> lock(s.mutex);
    s.stopped.wait(lock, [&] { return s.stop_requested; });
    lock.unlock();
    s.shut_down();
    return true;
}

void Server::stop() {
    Impl& s = *impl_;
    {
        std::lock_guard<std::mutex> lock(s.mutex);
        s.stop_requested = true;
    }
    s.stopped.notify_all();
}

int Server::port() const { return impl_->port; }

int Server::dicom_port() const { return impl_->dicom && impl_->bound ? impl_->options.dicom_port : -1; }

}  // namespace hemoscan
