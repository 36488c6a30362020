// hemoscan deid: DICOM de-identification (PS3.15 Annex E Basic Profile, dates shifted, UIDs remapped).
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "commands.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/deid.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "progress.hpp"

namespace hemoscan::cli {

namespace {

struct DeidArgs {
    std::string in, out;
    std::string key_file, key_env;
    bool allow_burned_in = false;
    int max_date_shift_days = 365;
    std::string patient_id_prefix = "ANON";
};

// The key never comes from the command line, which other users of the machine can read (ps, /proc):
// a file, or an environment variable. Surrounding white space (a file's final newline) is not part of it.
std::string read_deid_key(const DeidArgs& a) {
    std::string key;
    if (!a.key_file.empty()) {
        key = trim(read_file(a.key_file));
        if (key.empty()) throw UsageError(a.key_file + ": the key file is empty");
    } else if (!a.key_env.empty()) {
        const char* value = std::getenv(a.key_env.c_str());
        key = value != nullptr ? trim(value) : std::string();
        if (key.empty()) throw UsageError("the environment variable " + a.key_env + " (--key-env) is not set or empty");
    } else {
        throw UsageError("deid needs a secret key: --key-file FILE (or --key-env NAME)");
    }
    // Pseudonyms and UIDs of known patient ids can be recomputed by whoever guesses a short key.
    if (key.size() < 16) {
        logger().warn("the de-identification key has {} characters: use 16 or more, random ones", key.size());
    }
    return key;
}

void print_deid_summary(const std::vector<DeidReport>& reports, const std::string& out) {
    DeidReport total;
    for (const auto& r : reports) {
        total.removed += r.removed;
        total.emptied += r.emptied;
        total.replaced += r.replaced;
        total.uids_remapped += r.uids_remapped;
        total.dates_shifted += r.dates_shifted;
    }
    std::printf("de-identified %zu file(s) into %s\n", reports.size(), out.c_str());
    std::printf("  attributes removed %d, emptied %d, replaced %d; UIDs remapped %d; dates shifted %d\n",
                total.removed, total.emptied, total.replaced, total.uids_remapped, total.dates_shifted);
}

}  // namespace

void add_deid(CLI::App& root, std::vector<Command>& commands) {
    auto a = std::make_shared<DeidArgs>();
    auto* app = root.add_subcommand("deid", "De-identify DICOM files (PS3.15 Basic Profile, shifted dates, new UIDs)");
    app->add_option("in", a->in, "A DICOM file or a folder of them")->required()->check(CLI::ExistingPath);
    app->add_option("out", a->out, "Output file, or folder (a folder input: the same tree of files)")->required();
    auto* key_file = app->add_option("--key-file", a->key_file, "File holding the secret key (UIDs, pseudonyms, dates)")
                         ->check(CLI::ExistingFile);
    app->add_option("--key-env", a->key_env, "Environment variable holding the key (instead of --key-file)")
        ->excludes(key_file);
    app->add_flag("--allow-burned-in", a->allow_burned_in,
                  "De-identify images marked BurnedInAnnotation YES (their pixel text is NOT removed)");
    app->add_option("--max-date-shift-days", a->max_date_shift_days,
                    "Dates move back by 1..N days, the same for all files of a patient")
        ->check(CLI::Range(1, 36500))
        ->capture_default_str();
    app->add_option("--patient-id-prefix", a->patient_id_prefix, "New PatientID/PatientName: prefix + 10 hex digits")
        ->capture_default_str();
    app->footer(
        "The same key gives the same pseudonyms, UIDs and date offsets (files of one study stay one study, even\n"
        "de-identified in separate runs); keep it secret and keep it. Private tags, overlays, curves and free\n"
        "text are removed, names emptied. Text burned into the pixels is not detected: see docs/deid.md.");

    commands.push_back({app, [a] {
        DeidOptions options;
        options.key = read_deid_key(*a);
        options.max_date_shift_days = a->max_date_shift_days;
        options.patient_id_prefix = a->patient_id_prefix;

        std::unique_ptr<ProgressBar> bar;
        const bool folder = fs::is_directory(a->in);
        auto progress = [&](size_t done, size_t total) {
            if (!folder) return;
            if (!bar) bar = std::make_unique<ProgressBar>("deid", total);
            bar->update(done);
        };
        const auto reports = deidentify_path(a->in, a->out, options, a->allow_burned_in, progress);
        if (bar) bar->finish();
        print_deid_summary(reports, a->out);
        return 0;
    }});
}

}  // namespace hemoscan::cli
