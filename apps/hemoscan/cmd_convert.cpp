#include "commands.hpp"
namespace hemoscan::cli {
void add_convert(CLI::App& root, std::vector<Command>& commands) {
    auto* app = root.add_subcommand("convert", "DICOM file or series folder -> 8-bit PNGs");
    commands.push_back({app, [] { return 0; }});
}
}  // namespace hemoscan::cli
