#pragma once
// `hemoscan serve`: the web page and REST API around the shared Predictor (and SegPredictor).
// Free of LibTorch and of the HTTP library, so that the CLI and tests include it cheaply.
//
// Endpoints (all answers JSON unless an image; errors are {"error": "..."}):
//   GET  /                                   the page (assets embedded in the binary, no CDN)
//   GET  /assets/<file>                      its scripts, styles and fonts
//   GET  /health                             {"status": "ok", "version": ...}
//   GET  /api/model                          labels, thresholds, input size, windows, version, limits
//   POST /api/predict                        multipart upload (PNG/JPG, DICOM file(s), zip of a series)
//   GET  /api/results[?limit=&offset=]       past results, newest first
//   GET  /api/results/<id>                   one result (id: 16 lower-case hex digits)
//   DELETE /api/results/<id>                 deletes it (its row and its files)
//   POST /api/session                        with the bearer token: sets it as a session cookie for the page
//   GET  /api/results/<id>/slices/<k>.png[?window=brain|subdural|bone|L,W]   slice k, windowed
//   GET  /api/results/<id>/heatmaps/<k>.png  Grad-CAM of slice k as RGBA (JET colours, alpha = evidence)
//   GET  /api/results/<id>/overlays/<k>.png[?window=...]   Grad-CAM blended onto slice k
//   GET  /api/results/<id>/masks/<k>.png     segmentation of slice k as RGBA (with a segmentation model)
//   GET  /api/results/<id>/dicom/<file>      the result as DICOM (seg.dcm, sr.dcm, sc_<k>.dcm; DICOM inputs)
//   GET  /api/worklist[?limit=&offset=]      every study given to the server (page, API, DICOM): suspected
//                                            bleeds first, then those being analysed, newest first
//
// The DICOM node (`dicom_port` >= 0; `hemoscan listen` runs it without the web page): a storage SCP
// (C-ECHO, C-STORE of CT/MR images) whose series are analysed like uploads once complete; their
// results go on the worklist and, with `dicom_send_to`, back to the PACS as SEG, SR and secondary
// captures through a persistent outbox (DATA_DIR/dicom/).
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace hemoscan {

struct ServerOptions {
    std::filesystem::path model;       // RUN/model.pt of a classifier (required)
    std::vector<std::filesystem::path> seg_models;  // RUN/model.pt of segmenters (optional; several: an ensemble)
    double min_component_ml = -1;      // segmentation post-processing; < 0: the models' own (SegPredictor)
    std::filesystem::path data_dir = "hemoscan-data";  // SQLite database and rendered results
    std::string host = "127.0.0.1";
    int port = 8080;                   // 0: any free port (see Server::port())
    int max_upload_mb = 256;           // larger request bodies (as received, chunked or not) get 413
    int max_files = 2000;              // uploaded files plus zip entries
    int max_unzipped_mb = 2048;        // total uncompressed size of the zip entries (zip bombs)
    int threads = 2;                   // HTTP polling threads (slow clients do not hold them)
    int workers = 1;                   // uploads analysed at once
    int queue = 16;                    // uploads waiting for analysis; more: 503 with Retry-After
    int max_connections = 512;         // open connections in all (per client address: a quarter)
    int compute_threads = 0;           // LibTorch intra-op threads (0 = all cores)
    int timeout_s = 10;                // a connection idle for this long is closed
    long memory_decay_ms = 10000;      // freed memory goes back to the OS after this long (util/runtime.hpp)
    // Access control (README, "Security").
    std::filesystem::path token_file;  // bearer token required by /api/* (empty: none; loopback only)
    std::filesystem::path tls_cert, tls_key;  // PEM files: HTTPS
    bool insecure = false;             // allow a non-loopback address without a token
    std::vector<std::string> allowed_hosts;  // Host names answered besides IP literals, localhost, this machine's
    int keep_days = 0;                 // results older than this are deleted (0: kept)
    bool http = true;                  // false: no web page or API (`hemoscan listen` without --http-port)
    // The DICOM node.
    int dicom_port = -1;               // < 0: off
    std::string dicom_aet = "HEMOSCAN";
    std::vector<std::string> dicom_allowed_callers;  // calling AE titles accepted (empty: any)
    double dicom_idle_s = 3;           // a series is complete this long after its last file...
    double dicom_after_release_s = 1;  // ...or this long after its sender's association ended
    std::string dicom_send_to;         // AET@HOST:PORT: C-STORE results there (empty: keep them here)
    int dicom_send_retries = 5;        // attempts before the worklist says send-failed (retried later anyway)
    double dicom_retry_s = 2;          // first retry delay (doubles up to 5 minutes)
    bool dicom_outputs = true;         // write SEG/SR/SC for DICOM inputs (page uploads too)
    std::filesystem::path deid_key_file;  // received files are kept only de-identified (io/deid.hpp)
};

class Server {
public:
    // Loads the model(s) and opens (or creates) DATA_DIR/results.db. Throws InputError for a
    // missing/corrupt model or an unusable data folder, UsageError for impossible options.
    explicit Server(const ServerOptions& options);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds host:port; returns the bound port (the free one chosen for port 0). Throws UsageError
    // when the address cannot be bound.
    int bind();
    // Serves until stop() (binds first if bind() was not called). Returns false on a socket error.
    bool listen();
    // Stops listen() from any thread (idempotent); requests in flight finish first.
    void stop();
    int port() const;
    int dicom_port() const;  // the DICOM node's port (-1 when off)

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace hemoscan
