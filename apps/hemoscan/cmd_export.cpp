// hemoscan export: a model file's weights as .safetensors for PyTorch (torchvision names where the
// architecture has torchvision's structure), with the metadata needed to rebuild and feed it.
#include <cstdio>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/models/export.hpp"

namespace hemoscan::cli {

namespace {

struct ExportArgs {
    std::string model;
    std::string out;
    bool keep_channels = false;
};

}  // namespace

void add_export(CLI::App& root, std::vector<Command>& commands) {
    auto* app = root.add_subcommand(
        "export", "Write a model's weights as .safetensors for PyTorch/torchvision/MONAI (docs/transfer.md)");
    auto args = std::make_shared<ExportArgs>();
    app->add_option("--model", args->model, "The model file (RUN/model.pt)")->required();
    app->add_option("--out", args->out, "The .safetensors file to write")->required();
    app->add_flag("--keep-channels", args->keep_channels,
                  "Keep a one-channel first conv as it is (default: repeated over 3 channels / 3, so that "
                  "torchvision's constructor loads the file)");
    commands.push_back({app, [args] {
        ExportOptions eo;
        eo.expand_grey = !args->keep_channels;
        const ExportSummary s = export_model(args->model, args->out, eo);
        std::printf("Wrote %s: %zu tensors, %lld values, %s model '%s'\n", args->out.c_str(), s.tensors,
                    static_cast<long long>(s.values), s.task.c_str(), s.architecture.c_str());
        if (!s.torchvision.empty()) {
            std::printf("Loads strictly into torchvision.models.%s(num_classes=%s)%s\n", s.torchvision.c_str(),
                        s.metadata.at("num_classes").c_str(),
                        s.expanded ? "; give it the grey image in all three channels" : "");
        } else {
            std::printf("hemoscan's own parameter names (no torchvision model has this structure%s)\n",
                        s.task == "classify" && !torchvision_name(s.architecture).empty()
                            ? ": another pooling or number of input channels"
                            : "");
        }
        std::printf("Metadata: labels %s, activation %s, preprocessing in \"preprocess\"\n",
                    s.metadata.at("labels").c_str(), s.metadata.at("activation").c_str());
        return 0;
    }});
}

}  // namespace hemoscan::cli
