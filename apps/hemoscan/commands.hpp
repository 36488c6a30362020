#pragma once
// Each subcommand lives in its own cmd_<name>.cpp and registers itself here. The CLI is thin: it
// parses options, calls the library, and maps errors to exit codes (0 ok, 1 input error, 2 usage).
#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace hemoscan::cli {

struct Command {
    CLI::App* app = nullptr;
    std::function<int()> run;
};

void add_convert(CLI::App& root, std::vector<Command>& commands);
void add_deid(CLI::App& root, std::vector<Command>& commands);
void add_describe(CLI::App& root, std::vector<Command>& commands);
void add_export(CLI::App& root, std::vector<Command>& commands);
void add_models(CLI::App& root, std::vector<Command>& commands);
void add_train(CLI::App& root, std::vector<Command>& commands);
void add_cv(CLI::App& root, std::vector<Command>& commands);
void add_evaluate(CLI::App& root, std::vector<Command>& commands);
void add_predict(CLI::App& root, std::vector<Command>& commands);
void add_segment(CLI::App& root, std::vector<Command>& commands);
void add_synth(CLI::App& root, std::vector<Command>& commands);
void add_demo(CLI::App& root, std::vector<Command>& commands);
void add_serve(CLI::App& root, std::vector<Command>& commands);
void add_listen(CLI::App& root, std::vector<Command>& commands);

}  // namespace hemoscan::cli
