#pragma once
// hemoscan demo: its options, and the MRI variant (demo_mr.cpp).
#include <cstdint>
#include <filesystem>
#include <string>

#include "hemoscan/synth/synth.hpp"

namespace hemoscan::cli {

struct DemoArgs {
    std::string out = "demo-out";
    int train_studies = 120;
    int test_studies = 30;
    int slices = 8;
    int size = 128;
    int epochs = 10;
    std::uint64_t seed = 2026;
    int threads = 0;
    bool overwrite = false;
    std::string modality = "ct";
};

// A figure for the report: "n/a" for NaN, else `digits` decimals.
std::string fixed(double v, int digits = 3);
// write_cohort with a progress bar named "synthesize <what>".
CohortSummary synthesize(const std::string& what, const SynthOptions& so, const std::filesystem::path& out, int formats);

// `hemoscan demo --modality mr` (defaults there: 300 training and 60 held-out studies, 30 epochs):
// synthesizes multi-sequence MRI of the three classes (bleed, calcified,
// bleed+calcified), trains the MR classifier, evaluates it on studies of another seed, predicts one
// DICOM MR study and writes report.html. Returns the exit code.
int run_mr_demo(const DemoArgs& a);

}  // namespace hemoscan::cli
