#pragma once
// What `serve` and `listen` share: the DICOM node's options and running the server until a signal.
#include <CLI/CLI.hpp>

#include <string>

#include "hemoscan/serve/server.hpp"

namespace hemoscan::cli {

// --aet, --allow-caller, --send-to, --idle, --after-release, --send-retries, --deid-key-file, --no-dicom-outputs.
void add_dicom_node_options(CLI::App& app, ServerOptions& options, std::string& deid_key_file);

// Runs the server until SIGINT/SIGTERM; requests, associations and analyses in flight finish first.
int run_server(const ServerOptions& options);

}  // namespace hemoscan::cli
