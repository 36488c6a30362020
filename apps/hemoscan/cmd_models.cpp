// hemoscan models: the registered architectures (classifiers, then segmentation models).
#include <cstdio>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/models/registry.hpp"
#include "hemoscan/models/seg_registry.hpp"

namespace hemoscan::cli {

void add_models(CLI::App& root, std::vector<Command>& commands) {
    auto* app = root.add_subcommand("models", "List the model architectures (--model NAME)");
    commands.push_back({app, [] {
        std::printf("Classification (hemoscan train):\n");
        bool first = true;
        for (const auto& m : list_models()) {
            std::printf("  %-16s %s%s\n", m.name.c_str(), cli_message(m.description).c_str(), first ? " (default)" : "");
            first = false;
        }
        std::printf("\nSegmentation (hemoscan train --task segment):\n");
        first = true;
        for (const auto& m : list_seg_models()) {
            std::printf("  %-16s %s%s\n", m.name.c_str(), cli_message(m.description).c_str(), first ? " (default)" : "");
            first = false;
        }
        std::printf("\nSpeeds: bench/classify_speed.sh on this project's 2-core machine (docs/results.md); they scale with "
                    "cores and about with the square of --size.\n");
        return 0;
    }});
}

}  // namespace hemoscan::cli
