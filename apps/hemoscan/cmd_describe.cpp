#include "commands.hpp"
namespace hemoscan::cli {
void add_describe(CLI::App& root, std::vector<Command>& commands) {
    auto* app = root.add_subcommand("describe", "Dataset summary (EDA)");
    commands.push_back({app, [] { return 0; }});
}
}  // namespace hemoscan::cli
