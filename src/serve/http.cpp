#include "serve/http.hpp"

#include <microhttpd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "serve/store.hpp"

namespace hemoscan::serve {

namespace fs = std::filesystem;

std::string HttpRequest::header(const std::string& lower_case_name) const {
    auto it = headers.find(lower_case_name);
    return it == headers.end() ? std::string() : it->second;
}

std::string HttpRequest::param(const std::string& key) const {
    auto it = query.find(key);
    return it == query.end() ? std::string() : it->second;
}

void HttpResponse::json_error(int s, const std::string& message) {
    status = s;
    content_type = "application/json";
    body = nlohmann::json{{"error", message}}.dump();
    static_data = nullptr;
}

namespace {

constexpr size_t kSmallBody = 64 * 1024;  // bodies of the routes that take no upload

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

}  // namespace

// Outside the anonymous namespace: Exchange and Impl (external linkage) hold them.
struct Route {
    std::string method;
    std::regex pattern;
    HttpHandler handler;
    bool upload = false;
};

// One request on one connection, from its headers to the end of its answer.
struct Exchange {
    HttpServer::Impl* server = nullptr;
    MHD_Connection* connection = nullptr;
    HttpRequest request;
    HttpResponse response;
    const Route* route = nullptr;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    bool answered = false;   // a response was queued
    bool ready = false;      // `response` holds the answer, to be queued at the next call
    bool queued = false;     // waiting for or running on a worker (connection suspended)
    size_t received = 0;     // body bytes, as received
    int refusal = 0;         // a status to answer once the body is over (413, 400)
    std::string refusal_message;
    MHD_PostProcessor* post = nullptr;
    std::FILE* part_file = nullptr;
    fs::path spool;          // this request's spool folder (created on the first part)

    ~Exchange() {
        if (post) MHD_destroy_post_processor(post);
        if (part_file) std::fclose(part_file);
        if (!spool.empty()) {
            std::error_code ec;
            fs::remove_all(spool, ec);
        }
    }
};

struct HttpServer::Impl {
    HttpOptions options;
    std::vector<Route> routes;
    HttpGate gate;
    HttpLogger log;
    std::vector<std::pair<std::string, std::string>> default_headers;
    MHD_Daemon* daemon = nullptr;
    int port = -1;

    // The upload workers and their bounded queue.
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<Exchange*> jobs;
    std::vector<std::thread> workers;
    std::atomic<size_t> running{0};
    bool stopping = false;

    explicit Impl(HttpOptions o) : options(std::move(o)) {}

    // ---- answers ----
    MHD_Result queue(Exchange& ex) {
        const HttpResponse& r = ex.response;
        MHD_Response* response =
            r.static_data ? MHD_create_response_from_buffer(r.static_size, const_cast<unsigned char*>(r.static_data),
                                                            MHD_RESPMEM_PERSISTENT)
                          : MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()),
                                                            MHD_RESPMEM_MUST_COPY);
        if (!response) return MHD_NO;
        for (const auto& [name, value] : default_headers) MHD_add_response_header(response, name.c_str(), value.c_str());
        for (const auto& [name, value] : r.headers) MHD_add_response_header(response, name.c_str(), value.c_str());
        if (!r.content_type.empty()) MHD_add_response_header(response, "Content-Type", r.content_type.c_str());
        const MHD_Result ok = MHD_queue_response(ex.connection, static_cast<unsigned>(r.status), response);
        MHD_destroy_response(response);
        ex.answered = true;
        return ok;
    }

    MHD_Result answer_error(Exchange& ex, int status, const std::string& message) {
        ex.response.json_error(status, message);
        return queue(ex);
    }

    // ---- the request's headers ----
    void read_request(Exchange& ex, const char* url, const char* method) {
        HttpRequest& r = ex.request;
        r.method = method;
        r.path = url;
        MHD_get_connection_values(
            ex.connection, MHD_HEADER_KIND,
            [](void* cls, MHD_ValueKind, const char* key, const char* value) {
                static_cast<HttpRequest*>(cls)->headers[lower(key)] = value ? value : "";
                return MHD_YES;
            },
            &r);
        MHD_get_connection_values(
            ex.connection, MHD_GET_ARGUMENT_KIND,
            [](void* cls, MHD_ValueKind, const char* key, const char* value) {
                static_cast<HttpRequest*>(cls)->query.emplace(key, value ? value : "");
                return MHD_YES;
            },
            &r);
        r.tls = !options.tls_cert_pem.empty();
    }

    // The route for the request; answers 404/405 itself (nullptr then).
    const Route* find_route(Exchange& ex) {
        std::string allow;
        for (const Route& route : routes) {
            std::smatch m;
            if (!std::regex_match(ex.request.path, m, route.pattern)) continue;
            const bool head_of_get = ex.request.method == "HEAD" && route.method == "GET";
            if (route.method != ex.request.method && !head_of_get) {
                if (allow.find(route.method) == std::string::npos) allow += (allow.empty() ? "" : ", ") + route.method;
                continue;
            }
            ex.request.matches.assign(m.begin(), m.end());
            return &route;
        }
        if (allow.empty()) {
            answer_error(ex, 404, "not found");
        } else {
            ex.response.set_header("Allow", allow);
            answer_error(ex, 405, ex.request.method + " is not allowed here (allowed: " + allow + ")");
        }
        return nullptr;
    }

    // First call: headers are in, no body read yet. Refusals here stop the body from being read at all.
    MHD_Result on_headers(Exchange& ex) {
        HttpRequest& r = ex.request;
        if (gate && !gate(r, ex.response)) return queue(ex);
        ex.route = find_route(ex);
        if (!ex.route) return MHD_YES;
        const std::string encoding = lower(r.header("content-encoding"));
        if (!(encoding.empty() || encoding == "identity")) {
            return answer_error(ex, 415, "compressed request bodies are refused");
        }
        const size_t limit = ex.route->upload ? options.max_upload_bytes : kSmallBody;
        const std::string length = r.header("content-length");
        if (!length.empty()) {
            char* end = nullptr;
            const unsigned long long n = std::strtoull(length.c_str(), &end, 10);
            // Far over the limit: answered now and the connection closed unread. A little over: the body is
            // read and dropped first, so that a client still sending sees the 413 instead of a reset.
            if (n > limit + discard_allowance(limit)) return answer_error(ex, 413, too_large_message(ex));
            if (n > limit) {
                ex.refusal = 413;
                ex.refusal_message = too_large_message(ex);
            }
        }
        if (ex.route->upload) {
            ex.post = MHD_create_post_processor(ex.connection, 64 * 1024, &Impl::on_part, &ex);
            if (!ex.post) return answer_error(ex, 415, "send the files as multipart/form-data (field 'file')");
        }
        return MHD_YES;
    }

    static size_t discard_allowance(size_t limit) { return std::max(limit, size_t(16) << 20); }

    std::string too_large_message(const Exchange& ex) const {
        if (!ex.route || !ex.route->upload) return "request body too large";
        return "upload too large (at most " + std::to_string(options.max_upload_bytes >> 20) + " MB)";
    }

    // ---- the body ----
    MHD_Result on_body(Exchange& ex, const char* data, size_t size) {
        ex.received += size;
        const size_t limit = ex.route->upload ? options.max_upload_bytes : kSmallBody;
        if (ex.received > limit && ex.refusal != 413) {
            ex.refusal = 413;
            ex.refusal_message = too_large_message(ex);
        }
        // A refused body is read on (and dropped) so that the client gets its answer, within reason.
        if (ex.refusal) return ex.received > limit + discard_allowance(limit) ? MHD_NO : MHD_YES;
        if (!ex.route->upload) return MHD_YES;  // no route but uploads reads a body
        if (MHD_post_process(ex.post, data, size) != MHD_YES && !ex.refusal) {
            ex.refusal = 400;
            ex.refusal_message = "the multipart body cannot be parsed";
        }
        return MHD_YES;
    }

    static MHD_Result on_part(void* cls, MHD_ValueKind, const char* key, const char* filename, const char* content_type,
                              const char*, const char* data, uint64_t off, size_t size) {
        auto& ex = *static_cast<Exchange*>(cls);
        return ex.server->write_part(ex, key ? key : "", filename, content_type, data, off, size);
    }

    MHD_Result write_part(Exchange& ex, const std::string& key, const char* filename, const char* content_type,
                          const char* data, uint64_t off, size_t size) {
        auto& parts = ex.request.parts;
        if (off == 0 && (parts.empty() || parts.back().size > 0 || parts.back().field != key)) {
            if (parts.size() >= options.max_parts) {
                ex.refusal = 413;
                ex.refusal_message = "too many files (at most " + std::to_string(options.max_parts) + ")";
                return MHD_NO;
            }
            if (ex.part_file) std::fclose(ex.part_file);
            ex.part_file = nullptr;
            std::error_code ec;
            if (ex.spool.empty()) {
                ex.spool = options.spool_dir / new_result_id();
                fs::create_directories(ex.spool, ec);
            }
            char name[32];
            std::snprintf(name, sizeof(name), "part_%04zu", parts.size() + 1);
            parts.push_back({key, filename ? filename : "", content_type ? content_type : "", ex.spool / name, 0});
            ex.part_file = std::fopen(parts.back().path.c_str(), "wb");
            if (!ex.part_file) {
                ex.refusal = 500;
                ex.refusal_message = "internal server error";
                logger().error("cannot write an upload to the spool folder: {}", std::strerror(errno));
                return MHD_NO;
            }
        }
        if (size > 0 && std::fwrite(data, 1, size, ex.part_file) != size) {
            ex.refusal = 500;
            ex.refusal_message = "internal server error";
            logger().error("cannot write an upload to the spool folder: {}", std::strerror(errno));
            return MHD_NO;
        }
        parts.back().size += size;
        return MHD_YES;
    }

    // ---- the end of the body ----
    MHD_Result on_complete(Exchange& ex) {
        if (ex.ready) return queue(ex);
        if (ex.post) {
            if (MHD_destroy_post_processor(ex.post) != MHD_YES && !ex.refusal) {
                ex.refusal = 400;
                ex.refusal_message = "the multipart body is incomplete or malformed";
            }
            ex.post = nullptr;
        }
        if (ex.part_file) {
            const bool ok = std::fclose(ex.part_file) == 0;
            ex.part_file = nullptr;
            if (!ok && !ex.refusal) {
                ex.refusal = 500;
                ex.refusal_message = "internal server error";
            }
        }
        if (ex.refusal) return answer_error(ex, ex.refusal, ex.refusal_message);
        if (!ex.route->upload) {
            run(ex);
            return queue(ex);
        }
        {
            std::lock_guard<std::mutex> lock(mutex);
            // At most `workers` analyses run and `queue` wait; a full house answers at once.
            if (jobs.size() + running >= static_cast<size_t>(options.workers + options.queue) || stopping) {
                ex.response.set_header("Retry-After", "10");
                ex.response.json_error(503, stopping ? "the server is stopping"
                                                     : "busy: " + std::to_string(jobs.size()) +
                                                           " uploads are waiting for analysis; try again shortly");
                ex.ready = true;
            } else {
                ex.queued = true;
                MHD_suspend_connection(ex.connection);
                jobs.push_back(&ex);
            }
        }
        if (ex.ready) return queue(ex);
        wake.notify_one();
        return MHD_YES;
    }

    void run(Exchange& ex) {
        try {
            ex.route->handler(ex.request, ex.response);
        } catch (const std::exception& e) {
            logger().error("{} {}: {}", ex.request.method, ex.request.path, e.what());
            ex.response = HttpResponse{};
            ex.response.json_error(500, "internal server error");
        }
        if (ex.request.method == "HEAD") ex.response.body.clear();
    }

    void work() {
        for (;;) {
            Exchange* ex = nullptr;
            {
                std::unique_lock<std::mutex> lock(mutex);
                wake.wait(lock, [&] { return stopping || !jobs.empty(); });
                if (jobs.empty()) return;
                ex = jobs.front();
                jobs.pop_front();
                ++running;
            }
            run(*ex);
            ex->ready = true;
            --running;
            // MHD calls the access handler again, which queues the answer.
            MHD_resume_connection(ex->connection);
        }
    }

    static MHD_Result on_request(void* cls, MHD_Connection* connection, const char* url, const char* method,
                                 const char*, const char* upload_data, size_t* upload_data_size, void** con_cls) {
        auto& self = *static_cast<Impl*>(cls);
        auto* ex = static_cast<Exchange*>(*con_cls);
        if (!ex) {
            ex = new Exchange;
            *con_cls = ex;
            ex->server = &self;
            ex->connection = connection;
            self.read_request(*ex, url, method);
            return self.on_headers(*ex);
        }
        if (ex->answered) {
            *upload_data_size = 0;  // an early answer: MHD drops the rest of the body
            return MHD_YES;
        }
        if (*upload_data_size > 0) {
            const MHD_Result r = self.on_body(*ex, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return r;
        }
        return self.on_complete(*ex);
    }

    static void on_completed(void* cls, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
        auto& self = *static_cast<Impl*>(cls);
        std::unique_ptr<Exchange> ex(static_cast<Exchange*>(*con_cls));
        *con_cls = nullptr;
        if (!ex) return;
        if (self.log) {
            const double ms =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - ex->start).count();
            self.log(ex->request, ex->answered ? ex->response.status : 0, ms);
        }
    }

    static void on_mhd_log(void*, const char* format, va_list ap) {
        char buf[512];
        std::vsnprintf(buf, sizeof(buf), format, ap);
        std::string line(buf);
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        logger().debug("http: {}", line);
    }

    void start_daemon();
};

void HttpServer::Impl::start_daemon() {
    // The address to bind: a name or a literal, IPv4 or IPv6.
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string port_text = std::to_string(options.port);
    if (getaddrinfo(options.host.c_str(), port_text.c_str(), &hints, &found) != 0 || !found) {
        throw UsageError("cannot listen on " + options.host + ":" + port_text + " (not an address of this machine)");
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (found->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    const bool tls = !options.tls_cert_pem.empty();
    if (tls) flags |= MHD_USE_TLS;
    const auto timeout = static_cast<unsigned>(options.idle_timeout_s);
    const auto pool = static_cast<unsigned>(std::max(1, options.io_threads));
    const auto limit = static_cast<unsigned>(options.max_connections);
    const auto per_client = static_cast<unsigned>(options.max_connections_per_client);
    // Unused options are passed as MHD_OPTION_ARRAY-free pairs: TLS keys only with TLS.
    MHD_OptionItem tls_items[] = {
        {tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, const_cast<char*>(options.tls_key_pem.c_str())},
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, const_cast<char*>(options.tls_cert_pem.c_str())},
        {MHD_OPTION_END, 0, nullptr}};
    daemon = MHD_start_daemon(flags, static_cast<uint16_t>(options.port), nullptr, nullptr, &Impl::on_request, this,
                              MHD_OPTION_SOCK_ADDR, found->ai_addr,                         //
                              MHD_OPTION_THREAD_POOL_SIZE, pool,                            //
                              MHD_OPTION_CONNECTION_TIMEOUT, timeout,                       //
                              MHD_OPTION_CONNECTION_LIMIT, limit,                           //
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_client,               //
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, options.header_memory,    //
                              MHD_OPTION_NOTIFY_COMPLETED, &Impl::on_completed, this,       //
                              MHD_OPTION_EXTERNAL_LOGGER, &Impl::on_mhd_log, nullptr,       //
                              MHD_OPTION_ARRAY, tls_items,                                  //
                              MHD_OPTION_END);
    if (!daemon) {
        throw UsageError("cannot listen on " + options.host + ":" + port_text +
                         (tls ? " (address in use, not an address of this machine, or the TLS key/certificate are "
                                "unusable)"
                              : " (address in use, or not an address of this machine)"));
    }
    const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    port = info ? info->port : options.port;
}

HttpServer::HttpServer(HttpOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::route(const std::string& method, const std::string& pattern, HttpHandler handler, bool upload) {
    impl_->routes.push_back({method, std::regex(pattern), std::move(handler), upload});
}

void HttpServer::set_gate(HttpGate gate) { impl_->gate = std::move(gate); }
void HttpServer::set_logger(HttpLogger logger) { impl_->log = std::move(logger); }
void HttpServer::set_default_headers(std::vector<std::pair<std::string, std::string>> headers) {
    impl_->default_headers = std::move(headers);
}

int HttpServer::start() {
    Impl& s = *impl_;
    if (s.daemon) return s.port;
    if (s.options.workers < 1 || s.options.queue < 0) throw UsageError("workers must be >= 1 and queue >= 0");
    s.start_daemon();
    for (int i = 0; i < s.options.workers; ++i) s.workers.emplace_back([&s] { s.work(); });
    return s.port;
}

void HttpServer::stop() {
    Impl& s = *impl_;
    if (!s.daemon) return;
    const MHD_socket listener = MHD_quiesce_daemon(s.daemon);  // no new connections
    std::deque<Exchange*> dropped;
    {
        std::lock_guard<std::mutex> lock(s.mutex);
        s.stopping = true;
        dropped.swap(s.jobs);
    }
    s.wake.notify_all();
    for (Exchange* ex : dropped) {
        ex->response.set_header("Retry-After", "10");
        ex->response.json_error(503, "the server is stopping");
        ex->ready = true;
        MHD_resume_connection(ex->connection);
    }
    for (auto& t : s.workers) t.join();  // analyses in flight finish and are answered
    s.workers.clear();
    // Give the answers just resumed a moment to leave before the connections close.
    auto open_connections = [&] {
        const MHD_DaemonInfo* info = MHD_get_daemon_info(s.daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        return info ? info->num_connections : 0u;
    };
    for (int i = 0; i < 100 && open_connections() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    MHD_stop_daemon(s.daemon);
    s.daemon = nullptr;
    if (listener != MHD_INVALID_SOCKET) ::close(listener);  // quiesce hands the socket to us
}

size_t HttpServer::waiting() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->jobs.size();
}

size_t HttpServer::running() const { return impl_->running; }

}  // namespace hemoscan::serve
