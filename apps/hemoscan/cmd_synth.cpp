// hemoscan synth: synthetic head CT studies with known truth (DICOM, NIfTI + label maps, PNG + manifest).
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cstdio>

#include "commands.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/synth/synth.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "progress.hpp"

namespace hemoscan::cli {

namespace {

struct SynthArgs {
    std::string out;
    int studies = 10;
    std::uint64_t seed = 0;
    int size = 512;
    int slices = 32;
    std::string format = "dicom,nifti,png";
    double p_bleed = 0.5;
    int threads = 2;
    std::string png_window = "brain";
    std::string grid;
    int grid_tile = 256;
    std::string modality = "ct";
    std::string sequences = "t1,t2,flair,swi";
    std::string classes = "bleed,calcified,bleed+calcified";
    bool with_normal = false;
    std::string phase = "right";
    double p_pathological = -1;
};

}  // namespace

void add_synth(CLI::App& root, std::vector<Command>& commands) {
    auto a = std::make_shared<SynthArgs>();
    auto* app = root.add_subcommand("synth", "Generate synthetic head CT studies with known hemorrhage masks");
    app->add_option("--out", a->out, "Output folder");
    app->add_option("--studies", a->studies, "Number of studies")->check(CLI::Range(1, 1000000))->capture_default_str();
    app->add_option("--seed", a->seed, "Random seed (same seed, same bytes)")->capture_default_str();
    app->add_option("--size", a->size, "Image size NxN (same field of view; pixels 0.4-0.5 mm at 512)")
        ->check(CLI::Range(32, 2048))
        ->capture_default_str();
    app->add_option("--slices", a->slices, "Slices per study (2.5-5 mm thick)")
        ->check(CLI::Range(1, 512))
        ->capture_default_str();
    app->add_option("--format", a->format,
                    "Any of dicom, nifti, png, nnunet, rsna, classes (comma-separated; nnunet: a dataset for train --task segment; rsna: the RSNA 2019 layout, CSV + DICOM; classes: bleed/ calcified/ bleed+calcified/ folders, one slice per study)")->capture_default_str();
    app->add_option("--p-bleed", a->p_bleed, "Fraction of studies with at least one hemorrhage")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    app->add_option("--threads", a->threads, "Worker threads (the output does not depend on it)")
        ->check(CLI::Range(1, 256))
        ->capture_default_str();
    app->add_option("--png-window", a->png_window, "PNG slices: brain (40/80) or rgb (brain, subdural, bone)")
        ->check(CLI::IsMember({"brain", "rgb"}))
        ->capture_default_str();
    app->add_option("--modality", a->modality, "ct, or mr: the same heads as brain MRI, one series per sequence")
        ->check(CLI::IsMember({"ct", "mr"}))
        ->capture_default_str();
    app->add_option("--sequences", a->sequences, "MR sequences: t1, t2, flair, swi (= swi_mag + swi_phase)")
        ->capture_default_str();
    app->add_option("--phase", a->phase, "MR phase sign: right-handed (blood negative, calcium positive) or left")
        ->check(CLI::IsMember({"right", "left"}))
        ->capture_default_str();
    app->add_option("--classes", a->classes, "--format classes: the classes, one per study in turn")
        ->capture_default_str();
    app->add_flag("--with-normal", a->with_normal, "--format classes: add a normal class");
    app->add_option("--p-calc-pathological", a->p_pathological,
                    "Chance that a study with calcification also has 1-3 pathological foci (default: 0.35 for MR, 0 for CT)")
        ->check(CLI::Range(-1.0, 1.0));
    app->add_option("--grid", a->grid, "Also write a PNG figure with one example per subtype (mask outlines)");
    app->add_option("--grid-tile", a->grid_tile, "Tile size of the --grid figure")
        ->check(CLI::Range(64, 1024))
        ->capture_default_str();
    app->footer(
        "Writes OUT/dicom/<study>/IM*.dcm, OUT/nifti/<study>.nii.gz + <study>_labels.nii.gz (0 background,\n"
        "1 epidural, 2 intraparenchymal, 3 intraventricular, 4 subarachnoid, 5 subdural, 6 calcification),\n"
        "OUT/png/<study>/slice_NNN.png + mask_NNN.png, OUT/manifest.csv (one row per slice),\n"
        "OUT/nnunet/{dataset.json,imagesTr/<study>_0000.nii.gz,labelsTr/<study>.nii.gz} (nnU-Net v2 layout),\n"
        "OUT/rsna/{stage_2_train.csv,stage_2_train_images/ID_*.dcm} (RSNA 2019 layout) and\n"
        "OUT/studies.csv (labels, bleed volumes in mL, scanner parameters), OUT/classes/<class>/<study>.png.\n"
        "MR (--modality mr): OUT/dicom/<study>/<sequence>/IM*.dcm (MR Image Storage), OUT/nifti/<study>_<sequence>.nii.gz,\n"
        "OUT/png/<study>/slice_NNN/<sequence>.png, OUT/classes/<class>/<study>/<sequence>.png; label 7 = microbleed.\n"
        "See docs/synthetic.md.");

    commands.push_back({app, [a] {
        if (a->out.empty() && a->grid.empty()) throw UsageError("synth: give --out (and/or --grid)");
        if (!a->grid.empty()) {
            // Highest PNG compression: the figure is committed to the repository.
            std::vector<uchar> png;
            const cv::Mat figure = a->modality == "mr" ? synth_mr_example_grid(a->seed, a->grid_tile)
                                                       : synth_example_grid(a->seed, a->grid_tile);
            cv::imencode(".png", figure, png, {cv::IMWRITE_PNG_COMPRESSION, 9});
            write_file_atomic(a->grid, std::string(png.begin(), png.end()));
            logger().info("wrote {}", a->grid);
        }
        if (a->out.empty()) return 0;
        SynthOptions o;
        o.seed = a->seed;
        o.studies = a->studies;
        o.size = a->size;
        o.slices = a->slices;
        o.p_bleed = a->p_bleed;
        o.threads = a->threads;
        o.png_rgb = a->png_window == "rgb";
        o.modality = a->modality;
        o.sequences = parse_mr_sequences(a->sequences);
        o.phase_left_handed = a->phase == "left";
        o.p_pathological_calcification = a->p_pathological;
        o.classes.clear();
        for (const auto& c : split(a->classes, ',')) {
            if (!trim(c).empty()) o.classes.push_back(to_lower(trim(c)));
        }
        if (a->with_normal && std::find(o.classes.begin(), o.classes.end(), "normal") == o.classes.end()) {
            o.classes.push_back("normal");
        }
        const int formats = parse_synth_formats(a->format);
        ProgressBar bar("synth", static_cast<size_t>(a->studies));
        const CohortSummary s = write_cohort(o, a->out, formats, [&bar](size_t done, size_t) { bar.update(done); });
        bar.finish();
        std::printf("Studies   %d (%d with a hemorrhage, %d with calcification), %d slices, %.1f s\n", s.studies,
                    s.with_bleed, s.with_calcification, s.slices, s.seconds);
        const auto& names = synth_subtype_names();
        for (int k = 0; k < kSynthSubtypes; ++k) std::printf("  %-18s %d\n", names[k].c_str(), s.studies_per_subtype[k]);
        std::fflush(stdout);
        return 0;
    }});
}

}  // namespace hemoscan::cli
