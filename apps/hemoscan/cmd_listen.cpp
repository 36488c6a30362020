// hemoscan listen: the DICOM node. The PACS or the scanner sends each study (C-STORE); once a series is
// complete it is analysed like an upload, put on the worklist and, with --send-to, its results go back
// to the PACS as DICOM SEG, SR and secondary captures. --http-port adds the web page (worklist, results).
#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/serve/server.hpp"
#include "serve_cli.hpp"

namespace hemoscan::cli {

void add_listen(CLI::App& root, std::vector<Command>& commands) {
    auto o = std::make_shared<ServerOptions>();
    o->http = false;
    o->dicom_port = 11112;
    auto model = std::make_shared<std::string>();
    auto seg_models = std::make_shared<std::vector<std::string>>();
    auto data_dir = std::make_shared<std::string>(o->data_dir.string());
    auto deid_key = std::make_shared<std::string>();
    auto http_port = std::make_shared<int>(-1);
    auto* app = root.add_subcommand("listen", "DICOM node: receive studies (C-STORE), analyse them, send results back");
    app->add_option("--model", *model, "RUN/model.pt of a classifier")->required()->check(CLI::ExistingFile);
    app->add_option("--seg-model", *seg_models, "RUN/model.pt of a segmentation model (DICOM SEG, volumes); repeatable")
        ->allow_extra_args(false)
        ->check(CLI::ExistingFile);
    add_min_component_option(*app, o->min_component_ml);
    app->add_option("--port", o->dicom_port, "DICOM port (every interface)")
        ->check(CLI::Range(1, 65535))
        ->capture_default_str();
    app->add_option("--data-dir", *data_dir, "Received files, outbox, results database (kept across restarts)")
        ->capture_default_str();
    add_dicom_node_options(*app, *o, *deid_key);
    app->add_option("--http-port", *http_port, "Also serve the web page and API (worklist) on this port")
        ->check(CLI::Range(0, 65535));
    app->add_option("--host", o->host, "Address of the web page (with --http-port)")->capture_default_str();
    app->add_option("--compute-threads", o->compute_threads, "Compute threads of the model (0 = all cores)")
        ->check(CLI::Range(0, 1024))
        ->capture_default_str();
    app->footer("Received files are on disk before they are acknowledged; a series left by a killed process is\n"
                "analysed after the restart, and results not yet sent stay in DATA_DIR/dicom/outbox until they are.");
    commands.push_back({app, [o, model, seg_models, data_dir, deid_key, http_port] {
        o->model = *model;
        o->seg_models.assign(seg_models->begin(), seg_models->end());
        o->data_dir = *data_dir;
        o->deid_key_file = *deid_key;
        if (*http_port >= 0) {
            o->http = true;
            o->port = *http_port;
        }
        return run_server(*o);
    }});
}

}  // namespace hemoscan::cli
