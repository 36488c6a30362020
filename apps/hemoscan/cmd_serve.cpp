// hemoscan serve: the web page and REST API (src/serve/). Ctrl-C or SIGTERM stops it cleanly.
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <stdexcept>
#include <thread>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/serve/server.hpp"
#include "serve_cli.hpp"

namespace hemoscan::cli {

namespace {

int g_stop_pipe = -1;

// Async-signal-safe: one byte into the pipe that the watcher thread waits on.
void on_stop_signal(int) {
    const int saved = errno;
    const char c = 1;
    if (g_stop_pipe >= 0) {
        const ssize_t n = ::write(g_stop_pipe, &c, 1);
        (void)n;
    }
    errno = saved;
}

}  // namespace

int run_server(const ServerOptions& options) {
    // SIGINT/SIGTERM may land on any thread (OpenBLAS starts its own before main): the handler
    // only writes to a pipe, and a watcher thread stops the server, which lets requests in
    // flight finish before listen() returns.
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("serve: cannot create a pipe");
    g_stop_pipe = fds[1];
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    Server server(options);
    server.bind();
    std::thread watcher([&server, fd = fds[0]] {
        char c = 0;
        while (::read(fd, &c, 1) < 0 && errno == EINTR) {
        }
        server.stop();
    });
    const bool ok = server.listen();
    // Wake the watcher if the server ended without a signal.
    on_stop_signal(0);
    watcher.join();
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    return ok ? 0 : 1;
}

void add_dicom_node_options(CLI::App& app, ServerOptions& o, std::string& deid_key_file) {
    app.add_option("--aet", o.dicom_aet, "The node's AE title (what senders call it)")->capture_default_str();
    app.add_option("--allow-caller", o.dicom_allowed_callers,
                   "A calling AE title accepted (repeatable; none given: any caller)")
        ->allow_extra_args(false);
    app.add_option("--send-to", o.dicom_send_to,
                   "AET@HOST:PORT to C-STORE the results to (SEG, SR, secondary captures), e.g. PACS@10.0.0.5:104");
    app.add_option("--idle", o.dicom_idle_s, "A series is complete after this many seconds without a new image")
        ->check(CLI::Range(0.1, 3600.0))
        ->capture_default_str();
    app.add_option("--after-release", o.dicom_after_release_s,
                   "...or this many seconds after the association that brought it ended")
        ->check(CLI::Range(0.0, 3600.0))
        ->capture_default_str();
    app.add_option("--send-retries", o.dicom_send_retries,
                   "Attempts before the worklist says send-failed (the outbox keeps retrying, also after a restart)")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    app.add_option("--deid-key-file", deid_key_file,
                   "Keep only de-identified copies of what arrives (key file of `hemoscan deid`)")
        ->check(CLI::ExistingFile);
    app.add_flag("!--no-dicom-outputs", o.dicom_outputs, "Write no SEG/SR/secondary captures");
}

void add_serve(CLI::App& root, std::vector<Command>& commands) {
    auto o = std::make_shared<ServerOptions>();
    auto model = std::make_shared<std::string>();
    auto seg_models = std::make_shared<std::vector<std::string>>();
    auto data_dir = std::make_shared<std::string>(o->data_dir.string());
    auto* app = root.add_subcommand("serve", "Web page and REST API: upload CT images, see probabilities and heatmaps");
    app->add_option("--model", *model, "RUN/model.pt of a classifier")->required()->check(CLI::ExistingFile);
    app->add_option("--seg-model", *seg_models,
                    "RUN/model.pt of a segmentation model (mask and bleed volume); repeat it for an ensemble")
        ->allow_extra_args(false)  // one file per --seg-model
        ->check(CLI::ExistingFile);
    add_min_component_option(*app, o->min_component_ml);
    app->add_option("--host", o->host, "Address to listen on (0.0.0.0: every interface)")->capture_default_str();
    app->add_option("--port", o->port, "Port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
    app->add_option("--data-dir", *data_dir, "Results database and images (kept across restarts)")
        ->capture_default_str();
    app->add_option("--max-upload-mb", o->max_upload_mb, "Largest upload, as received (larger: HTTP 413)")
        ->check(CLI::Range(1, 1 << 16))
        ->capture_default_str();
    app->add_option("--max-files", o->max_files, "Most files (plus zip entries) in one upload")
        ->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    app->add_option("--max-unzipped-mb", o->max_unzipped_mb, "Most bytes a zip may expand to")
        ->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    app->add_option("--threads", o->threads, "HTTP polling threads (slow clients do not hold them)")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    app->add_option("--workers", o->workers, "Uploads analysed at once")->check(CLI::Range(1, 64))->capture_default_str();
    app->add_option("--queue", o->queue, "Uploads waiting for analysis; more get HTTP 503 with Retry-After")
        ->check(CLI::Range(0, 10000))
        ->capture_default_str();
    app->add_option("--max-connections", o->max_connections, "Open connections in all (a quarter per client)")
        ->check(CLI::Range(8, 100000))
        ->capture_default_str();
    app->add_option("--compute-threads", o->compute_threads, "Compute threads of the model (0 = all cores)")
        ->check(CLI::Range(0, 1024))
        ->capture_default_str();
    app->add_option("--timeout", o->timeout_s, "A connection idle for this many seconds is closed")
        ->check(CLI::Range(1, 3600))
        ->capture_default_str();
    auto token_file = std::make_shared<std::string>();
    auto tls_cert = std::make_shared<std::string>();
    auto tls_key = std::make_shared<std::string>();
    app->add_option("--token-file", *token_file,
                    "File holding a bearer token that /api/* requires (e.g. from `openssl rand -hex 32`)")
        ->check(CLI::ExistingFile);
    app->add_option("--tls-cert", *tls_cert, "PEM certificate (chain): serve HTTPS")->check(CLI::ExistingFile);
    app->add_option("--tls-key", *tls_key, "PEM private key of --tls-cert")->check(CLI::ExistingFile);
    app->add_flag("--insecure", o->insecure,
                  "Allow a non-loopback --host without --token-file (behind a proxy that checks access)");
    app->add_option("--allowed-host", o->allowed_hosts,
                    "A Host name to answer besides IP addresses, localhost and this machine's name; repeatable")
        ->allow_extra_args(false);
    app->add_option("--keep-days", o->keep_days, "Delete results older than this many days (0: keep them)")
        ->check(CLI::Range(0, 100000))
        ->capture_default_str();
    auto deid_key = std::make_shared<std::string>();
    app->add_option("--dicom-port", o->dicom_port,
                    "Also run the DICOM node on this port (see `hemoscan listen`; its options below)")
        ->check(CLI::Range(1, 65535));
    add_dicom_node_options(*app, *o, *deid_key);
    app->add_option("--memory-decay-ms", o->memory_decay_ms,
                    "Freed memory returns to the system after this many milliseconds (0 = at once)")
        ->check(CLI::Range(0L, 3600000L))
        ->capture_default_str();
    commands.push_back({app, [o, model, seg_models, data_dir, token_file, tls_cert, tls_key, deid_key] {
        o->deid_key_file = *deid_key;
        o->model = *model;
        o->token_file = *token_file;
        o->tls_cert = *tls_cert;
        o->tls_key = *tls_key;
        o->seg_models.assign(seg_models->begin(), seg_models->end());
        o->data_dir = *data_dir;
        return run_server(*o);
    }});
}

}  // namespace hemoscan::cli
