#pragma once
// The HTTP layer of `hemoscan serve`, over GNU libmicrohttpd (README: why this library).
//
// libmicrohttpd multiplexes connections on a few polling threads (epoll), so a slow or idle client
// costs a socket, not a worker; it bounds the request line plus headers by a per-connection memory
// limit (414/431 beyond it), drops connections idle past a time-out, caps connections in all and per
// client address, never decodes compressed bodies and ignores Range. On top of it this layer:
//   - streams multipart uploads to files under a spool folder (never whole in memory) and counts the
//     bytes actually received, chunked or not, against the upload limit (413);
//   - runs cheap routes on the polling threads and upload routes on a few worker threads fed by a
//     bounded queue: when it is full the answer is 503 at once (with Retry-After), while /health and
//     the other cheap routes keep answering;
//   - answers its own errors (404, 405, 411, 413, 415, 503) as JSON {"error": "..."}.
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace hemoscan::serve {

// One part of a multipart upload, spooled to a file under the request's spool folder.
struct SpooledPart {
    std::string field;         // the form field's name
    std::string filename;      // as the client sent it (display only: never a path)
    std::string content_type;  // as the client sent it
    std::filesystem::path path;
    size_t size = 0;
};

struct HttpRequest {
    std::string method;
    std::string path;                            // without the query
    std::map<std::string, std::string> headers;  // names in lower case
    std::map<std::string, std::string> query;
    std::vector<std::string> matches;  // the route's regex groups; [0] is the whole path
    std::vector<SpooledPart> parts;    // upload routes
    bool tls = false;

    std::string header(const std::string& lower_case_name) const;
    bool has_param(const std::string& key) const { return query.count(key) > 0; }
    std::string param(const std::string& key) const;
};

struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    // Static bytes (the embedded page) are sent without a copy when set.
    const unsigned char* static_data = nullptr;
    size_t static_size = 0;
    std::vector<std::pair<std::string, std::string>> headers;

    void set_header(const std::string& name, const std::string& value) { headers.emplace_back(name, value); }
    void json_error(int status, const std::string& message);
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponse&)>;
// Runs once the request line and headers are in, before any route or body: returns false (with the
// answer in the response) to refuse the request, whose body is then never read.
using HttpGate = std::function<bool(const HttpRequest&, HttpResponse&)>;
// Every finished exchange: status 0 when the connection ended without an answer (time-out, reset).
using HttpLogger = std::function<void(const HttpRequest&, int status, double ms)>;

struct HttpOptions {
    std::string host = "127.0.0.1";
    int port = 0;                       // 0: any free port
    int io_threads = 2;                 // polling threads (cheap routes run here)
    int workers = 1;                    // threads of the upload routes
    int queue = 16;                     // uploads waiting for a worker; more: 503
    int idle_timeout_s = 10;            // a connection that sends nothing for this long is closed
    size_t max_upload_bytes = 256u << 20;  // bytes of an upload route's body, as received
    size_t max_parts = 2000;            // parts of a multipart upload
    size_t header_memory = 64 * 1024;   // request line + headers (+ read buffer) per connection
    int max_connections = 512;
    int max_connections_per_client = 128;
    std::string tls_cert_pem, tls_key_pem;  // both set: HTTPS
    std::filesystem::path spool_dir;    // upload parts go to <spool_dir>/<random>/ (removed afterwards)
};

class HttpServer {
public:
    explicit HttpServer(HttpOptions options);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // `pattern` is a regex over the whole path. Upload routes take multipart/form-data bodies and run on
    // the workers; other routes take no body beyond a few KB.
    void route(const std::string& method, const std::string& pattern, HttpHandler handler, bool upload = false);
    void set_gate(HttpGate gate);
    void set_logger(HttpLogger logger);
    // Headers added to every answer (security headers).
    void set_default_headers(std::vector<std::pair<std::string, std::string>> headers);

    // Binds and starts serving on background threads; returns the bound port. Throws UsageError when the
    // address cannot be bound.
    int start();
    // Stops accepting, lets the analyses in flight finish (queued ones get 503), closes every connection.
    void stop();
    // Uploads waiting for a worker and being analysed now.
    size_t waiting() const;
    size_t running() const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace hemoscan::serve
