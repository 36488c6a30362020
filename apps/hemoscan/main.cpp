// hemoscan: the command-line tool. Subcommands are in cmd_*.cpp.
#include <iostream>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/limits.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/log_format.hpp"
#include "hemoscan/version.hpp"

int main(int argc, char** argv) {
    using namespace hemoscan;
    CLI::App app{"hemoscan: brain hemorrhage detection on head CT (and brain MRI)", "hemoscan"};
    app.set_version_flag("--version", std::string("hemoscan ") + kVersion);
    app.require_subcommand(1);
    std::string log_level = "info";
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")->capture_default_str();
    // What the readers accept, checked before they allocate (io/limits.hpp).
    ReadLimits limits;
    app.add_option("--max-slice-pixels", limits.max_pixels_per_slice,
                   "Refuse images and slices of more pixels (rows x columns)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--max-slices", limits.max_slices, "Refuse series of more slices")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--max-voxels", limits.max_voxels, "Refuse DICOM inputs of more voxels in all")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.footer("Run 'hemoscan <command> --help' for a command's options.");

    std::vector<cli::Command> commands;
    cli::add_convert(app, commands);
    cli::add_deid(app, commands);
    cli::add_describe(app, commands);
    cli::add_models(app, commands);
    cli::add_train(app, commands);
    cli::add_evaluate(app, commands);
    cli::add_cv(app, commands);
    cli::add_predict(app, commands);
    cli::add_segment(app, commands);
    cli::add_export(app, commands);
    cli::add_synth(app, commands);
    cli::add_demo(app, commands);
    cli::add_serve(app, commands);
    cli::add_listen(app, commands);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 2;
    }

    try {
        set_log_rewrite(cli::cli_message);  // the library's `field` names shown as this tool's --flags
        set_log_level(log_level);
        set_read_limits(limits);
        for (auto& cmd : commands) {
            if (cmd.app->parsed()) return cmd.run();
        }
        return 2;
    } catch (const UsageError& e) {
        logger().error("{}", e.what());
        return 2;
    } catch (const InputError& e) {
        logger().error("{}", e.what());
        return 1;
    } catch (const std::exception& e) {
        logger().error("{}", e.what());
        return 1;
    }
}
