// `hemoscan serve`: routes, errors, logging and the life cycle of the HTTP server.
#include "hemoscan/serve/server.hpp"

#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <thread>

#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/runtime.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/infer/seg_predictor.hpp"
#include "hemoscan/version.hpp"
#include "serve/analysis.hpp"
#include "serve/assets.hpp"
#include "serve/store.hpp"
#include "serve/uploads.hpp"

namespace hemoscan {

namespace fs = std::filesystem;
using nlohmann::json;
using serve::RequestError;

namespace {

constexpr const char* kJson = "application/json";
constexpr const char* kResultId = "([0-9a-f]{16})";  // what new_result_id() makes; nothing else matches

// Request start, per worker thread (a request is served start to end on one thread).
thread_local std::chrono::steady_clock::time_point t_request_start{};

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(), kJson);
}

void send_error(httplib::Response& res, int status, const std::string& message) {
    send_json(res, status, json{{"error", message}});
}

void send_png(httplib::Response& res, const std::string& png) {
    // A result never changes once stored.
    res.set_header("Cache-Control", "private, max-age=86400, immutable");
    res.set_content(png, "image/png");
}

const char* reason(int status) {
    switch (status) {
        case 400: return "bad request";
        case 404: return "not found";
        case 405: return "method not allowed";
        case 408: return "request time-out";
        case 413: return "upload too large";
        case 415: return "unsupported media type";
        default: return status >= 500 ? "internal server error" : "error";
    }
}

constexpr const char* kStagingMarker = ".hemoscan-staging";

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

int int_param(const httplib::Request& req, const char* key, int fallback, int lo, int hi) {
    if (!req.has_param(key)) return fallback;
    const std::string v = req.get_param_value(key);
    try {
        size_t used = 0;
        const int n = std::stoi(v, &used);
        if (used == v.size() && n >= lo && n <= hi) return n;
    } catch (const std::exception&) {
    }
    throw RequestError(400, std::string("'") + key + "' must be an integer in " + std::to_string(lo) + ".." +
                                std::to_string(hi));
}

}  // namespace

struct Server::Impl {
    ServerOptions options;
    std::unique_ptr<Predictor> predictor;
    std::unique_ptr<SegPredictor> seg_predictor;  // with --seg-model
    std::unique_ptr<serve::ResultStore> store;
    std::unique_ptr<serve::Renderer> renderer;
    json model_info;
    httplib::Server http;
    int port = -1;
    std::atomic<bool> listening{false}, stop_requested{false};

    fs::path results_dir() const { return options.data_dir / "results"; }
    fs::path tmp_dir() const { return options.data_dir / "tmp"; }

    explicit Impl(const ServerOptions& o) : options(o) {
        if (options.max_upload_mb < 1) throw UsageError("`max_upload_mb` must be at least 1");
        if (options.threads < 1) throw UsageError("`threads` must be at least 1");
        if (options.timeout_s < 1) throw UsageError("`timeout_s` must be at least 1 second");
        if (options.max_files < 1 || options.max_unzipped_mb < 1) throw UsageError("upload limits must be positive");
        if (options.min_component_ml >= 0 && options.seg_models.empty()) {
            throw UsageError("`min_component_ml` is for a segmentation model: give `seg_models` too");
        }
        if (options.memory_decay_ms < 0) throw UsageError("`memory_decay_ms` must be >= 0");
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
        predictor = std::make_unique<Predictor>(options.model, options.compute_threads);
        if (!options.seg_models.empty()) {
            seg_predictor = std::make_unique<SegPredictor>(options.seg_models, options.compute_threads);
            if (options.min_component_ml >= 0) seg_predictor->set_min_component_ml(options.min_component_ml);
        }
        store = std::make_unique<serve::ResultStore>(options.data_dir / "results.db");
        renderer = std::make_unique<serve::Renderer>(results_dir());
        describe_model();
        routes();
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
                                 {"windows", windows},
                                 {"keep_aspect", pre.resize.keep_aspect},
                                 {"crop_head", pre.crop_head}}},
                      {"segmentation", segmentation_info()},
                      {"limits", {{"max_upload_mb", options.max_upload_mb}, {"max_files", options.max_files}}}};
    }

    json segmentation_info() const {
        if (!seg_predictor) return nullptr;
        return {{"model", serve::model_name(seg_predictor->meta())},
                {"models", seg_predictor->models()},
                {"min_component_ml", seg_predictor->min_component_ml()},
                {"class_names", seg_predictor->class_names()},
                {"bleed_classes", seg_predictor->bleed_classes()}};
    }

    // Runs a handler, mapping errors to JSON answers.
    template <class F>
    httplib::Server::Handler guarded(F f) {
        return [this, f](const httplib::Request& req, httplib::Response& res) {
            try {
                f(req, res);
            } catch (const RequestError& e) {
                send_error(res, e.status(), e.what());
            } catch (const UsageError& e) {
                send_error(res, 400, e.what());
            } catch (const InputError& e) {
                send_error(res, 400, client_message(e.what(), nullptr, tmp_dir()));
            } catch (const std::exception& e) {
                logger().error("{} {}: {}", req.method, req.path, e.what());
                send_error(res, 500, "internal server error");
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

    void predict(const httplib::Request& req, httplib::Response& res) {
        const auto start = std::chrono::steady_clock::now();
        if (!req.is_multipart_form_data()) {
            throw RequestError(415, "send the files as multipart/form-data (field 'file')");
        }
        std::vector<serve::UploadedFile> files;
        for (const auto& [field, f] : req.files) {
            if (!f.filename.empty() || field == "file" || field == "files") {
                files.push_back({f.filename, f.content_type, f.content});
            }
        }
        ScopedFolder staging(tmp_dir() / serve::new_result_id());
        serve::StagedUpload upload;
        json result;
        const std::string id = serve::new_result_id();
        const fs::path partial = results_dir() / (id + ".partial");
        try {
            serve::UploadLimits limits;
            limits.max_files = static_cast<size_t>(options.max_files);
            limits.max_unzipped_bytes = static_cast<size_t>(options.max_unzipped_mb) << 20;
            upload = serve::stage_uploads(files, staging.path, limits);
            fs::create_directories(partial);
            result = serve::analyze(*predictor, seg_predictor.get(), upload, id, partial);
        } catch (const InputError& e) {
            std::error_code ec;
            fs::remove_all(partial, ec);
            throw RequestError(400, client_message(e.what(), &upload, staging.path));
        } catch (...) {
            std::error_code ec;
            fs::remove_all(partial, ec);
            throw;
        }
        result["created"] = utc_now();
        result["name"] = upload.display_name;
        result["elapsed_ms"] =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
        fs::rename(partial, results_dir() / id);
        try {
            store->insert(result);
        } catch (...) {
            std::error_code ec;
            fs::remove_all(results_dir() / id, ec);
            throw;
        }
        // No file names here: they may carry a patient's name.
        logger().info("result {}: {} with {} slice(s), finding '{}'", id, result["kind"].get<std::string>(),
                      result["n_slices"].get<size_t>(), result["finding"].get<std::string>());
        res.set_header("Location", "/api/results/" + id);
        send_json(res, 201, result);
    }

    void list_results(const httplib::Request& req, httplib::Response& res) {
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

    void serve_asset(const std::string& name, httplib::Response& res) {
        const serve::Asset* a = serve::find_asset(name);
        if (!a) throw RequestError(404, "not found");
        res.set_header("Cache-Control", "no-cache");
        res.set_content(reinterpret_cast<const char*>(a->data), a->size, a->content_type);
    }

    void method_not_allowed(const std::string& pattern, const char* allow) {
        auto handler = [allow](const httplib::Request& req, httplib::Response& res) {
            res.set_header("Allow", allow);
            send_error(res, 405, req.method + " is not allowed here (allowed: " + allow + ")");
        };
        if (std::string(allow) != "POST") http.Post(pattern, handler);
        if (std::string(allow) != "GET") http.Get(pattern, handler);
        http.Put(pattern, handler);
        http.Patch(pattern, handler);
        http.Delete(pattern, handler);
    }

    void routes() {
        const std::string result_path = std::string("/api/results/") + kResultId;
        http.Get("/", guarded([this](const httplib::Request&, httplib::Response& res) {
                     serve_asset("index.html", res);
                 }));
        http.Get("/index.html",
                 guarded([this](const httplib::Request&, httplib::Response& res) { serve_asset("index.html", res); }));
        http.Get(R"(/assets/([A-Za-z0-9._-]{1,64}))",
                 guarded([this](const httplib::Request& req, httplib::Response& res) {
                     serve_asset(req.matches[1].str(), res);
                 }));
        http.Get("/favicon.ico",
                 guarded([this](const httplib::Request&, httplib::Response& res) { serve_asset("favicon.svg", res); }));
        http.Get("/health", guarded([](const httplib::Request&, httplib::Response& res) {
                     send_json(res, 200, json{{"status", "ok"}, {"version", kVersion}});
                 }));
        http.Get("/api/model", guarded([this](const httplib::Request&, httplib::Response& res) {
                     send_json(res, 200, model_info);
                 }));
        http.Post("/api/predict",
                  guarded([this](const httplib::Request& req, httplib::Response& res) { predict(req, res); }));
        http.Get("/api/results",
                 guarded([this](const httplib::Request& req, httplib::Response& res) { list_results(req, res); }));
        http.Get(result_path, guarded([this](const httplib::Request& req, httplib::Response& res) {
                     send_json(res, 200, stored_result(req.matches[1].str()));
                 }));
        http.Get(result_path + R"(/(slices|heatmaps|overlays|masks)/([0-9]{1,9})\.png)",
                 guarded([this](const httplib::Request& req, httplib::Response& res) {
                     const json result = stored_result(req.matches[1].str());
                     const std::string what = req.matches[2].str();
                     const int k = slice_index(result, req.matches[3].str());
                     const std::string window = req.has_param("window") ? req.get_param_value("window") : "";
                     if (what == "slices") {
                         send_png(res, renderer->slice_png(result, k, window));
                     } else if (what == "heatmaps") {
                         send_png(res, renderer->heatmap_png(result, k));
                     } else if (what == "overlays") {
                         send_png(res, renderer->overlay_png(result, k, window));
                     } else {
                         if (!result.contains("segmentation")) {
                             throw RequestError(404, "this result has no segmentation");
                         }
                         send_png(res, renderer->mask_png(result, k));
                     }
                 }));
        method_not_allowed("/api/predict", "POST");
        for (const std::string& p : {std::string("/health"), std::string("/api/model"), std::string("/api/results"),
                                     result_path, result_path + "/.*"}) {
            method_not_allowed(p, "GET");
        }

        http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
            t_request_start = std::chrono::steady_clock::now();
            res.set_header("X-Content-Type-Options", "nosniff");
            res.set_header("Referrer-Policy", "no-referrer");
            // Everything comes from this server: a page that tries to load from elsewhere is refused.
            res.set_header("Content-Security-Policy",
                           "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                           "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'");
            // Refused before the body is read: the upload limit counts Content-Length, so a chunked body
            // (no length) could pass it, and a compressed one would be inflated in memory beyond it.
            // Browsers send form uploads with a length and uncompressed.
            const std::string encoding = req.get_header_value("Content-Encoding");
            const bool chunked = req.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos;
            if (!(encoding.empty() || encoding == "identity") || chunked) {
                send_error(res, chunked ? 411 : 415,
                           chunked ? "an upload needs a Content-Length (chunked bodies are refused)"
                                   : "compressed request bodies are refused");
                res.set_header("Connection", "close");
                return httplib::Server::HandlerResponse::Handled;
            }
            return httplib::Server::HandlerResponse::Unhandled;
        });
        const int max_mb = options.max_upload_mb;
        http.set_error_handler(httplib::Server::HandlerWithResponse([max_mb](const httplib::Request&,
                                                                             httplib::Response& res) {
            // Errors of the handlers already carry a JSON body; this fills in httplib's own (404, 413, ...).
            if (!res.body.empty()) return httplib::Server::HandlerResponse::Handled;
            std::string message = reason(res.status);
            if (res.status == 413) message += " (at most " + std::to_string(max_mb) + " MB)";
            send_error(res, res.status, message);
            return httplib::Server::HandlerResponse::Handled;
        }));
        http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
            try {
                if (ep) std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                logger().error("{} {}: {}", req.method, req.path, e.what());
            } catch (...) {
                logger().error("{} {}: unknown exception", req.method, req.path);
            }
            send_error(res, 500, "internal server error");
        });
        // Method, path (ids only: client file names never reach a path), status and time; nothing else.
        http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
            if (t_request_start == std::chrono::steady_clock::time_point{}) {
                logger().info("{} {} {}", req.method, req.path, res.status);
                return;
            }
            const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                                  t_request_start)
                                .count();
            t_request_start = {};
            logger().info("{} {} {} {} ms", req.method, req.path, res.status, ms);
        });

        // httplib's default also sets SO_REUSEPORT, which lets a second server bind the same port
        // silently and share its connections: keep SO_REUSEADDR only (a restart can rebind at once).
        http.set_socket_options([](socket_t sock) {
            int yes = 1;
            setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
        });
        const auto workers = static_cast<size_t>(options.threads);
        http.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
        http.set_payload_max_length(static_cast<size_t>(options.max_upload_mb) << 20);
        http.set_read_timeout(options.timeout_s, 0);
        http.set_write_timeout(options.timeout_s, 0);
        http.set_keep_alive_timeout(5);
    }
};

Server::Server(const ServerOptions& options) : impl_(std::make_unique<Impl>(options)) {}

Server::~Server() { stop(); }

int Server::bind() {
    Impl& s = *impl_;
    if (s.port >= 0) return s.port;
    if (s.options.port < 0 || s.options.port > 65535) throw UsageError("`port` must be 0..65535");
    if (s.options.port == 0) {
        s.port = s.http.bind_to_any_port(s.options.host);
    } else if (s.http.bind_to_port(s.options.host, s.options.port)) {
        s.port = s.options.port;
    }
    if (s.port < 0) {
        throw UsageError("cannot listen on " + s.options.host + ":" + std::to_string(s.options.port) +
                         " (address in use, or not an address of this machine)");
    }
    return s.port;
}

bool Server::listen() {
    Impl& s = *impl_;
    bind();
    if (s.stop_requested) return true;
    s.listening = true;
    logger().info("hemoscan serve: http://{}:{}/ (data in {})", s.options.host, s.port, s.options.data_dir.string());
    const bool ok = s.http.listen_after_bind();
    s.listening = false;
    return ok;
}

void Server::stop() {
    Impl& s = *impl_;
    s.stop_requested = true;
    // httplib ignores stop() until its accept loop runs: wait for it briefly when listen() has begun.
    for (int i = 0; i < 2000 && s.listening && !s.http.is_running(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    s.http.stop();
}

int Server::port() const { return impl_->port; }

}  // namespace hemoscan
