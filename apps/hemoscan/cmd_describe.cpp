// hemoscan describe: dataset EDA (seed 003): counts, sizes, intensities, shortcut warnings.
#include <cstdio>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/data/describe.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/report/plot.hpp"
#include "hemoscan/util/fs.hpp"
#include "progress.hpp"

namespace hemoscan::cli {

namespace {

struct DescribeArgs {
    std::string data;
    std::string out;
    std::string labels;
    std::string modality = "ct";
    int threads = 2;
};

void print_summary(const DatasetSummary& s) {
    std::printf("Dataset   %s  (%s)\n", s.root.c_str(), s.form.c_str());
    std::printf("Images    %zu   patients %zu   images per patient %.0f-%.0f (mean %.2f)\n", s.images, s.patients,
                s.images_per_patient.min, s.images_per_patient.max, s.images_per_patient.mean);
    if (s.studies > 0) {
        std::printf("Studies   %zu   slices per study %.0f-%.0f (median %.0f)\n", s.studies, s.slices_per_study.min,
                    s.slices_per_study.max, s.slices_per_study.median);
    }
    std::printf("\n%-24s %9s %9s %11s", s.multiclass ? "Class" : "Label", "Positive", "Negative", "Prevalence");
    if (s.studies > 0) std::printf(" %9s %11s", "Studies+", "per study");
    std::printf("\n");
    for (const auto& l : s.labels) {
        double prev = s.images ? 100.0 * static_cast<double>(l.positives) / static_cast<double>(s.images) : 0.0;
        std::printf("%-24s %9zu %9zu %10.1f%%", l.name.c_str(), l.positives, l.negatives, prev);
        if (s.studies > 0) {
            std::printf(" %9zu %10.1f%%", l.positive_studies,
                        100.0 * static_cast<double>(l.positive_studies) / static_cast<double>(s.studies));
        }
        std::printf("\n");
    }
    std::printf("\n%-24s %9s %9s %9s %9s\n", "Image", "min", "median", "max", "mean");
    auto row = [](const char* name, const Stats& st) {
        std::printf("%-24s %9.1f %9.1f %9.1f %9.1f\n", name, st.min, st.median, st.max, st.mean);
    };
    row("width (px)", s.width);
    row("height (px)", s.height);
    row("mean intensity", s.intensity_mean);
    row("intensity sd", s.intensity_sd);
    std::printf("value range %.1f .. %.1f  (%zu DICOM CT image(s) in HU)\n", s.intensity_min, s.intensity_max,
                s.hu_images);
    if (!s.multiclass) {
        std::printf("\n%-24s %19s %19s %19s\n", "By class (median)", "width pos/neg", "height pos/neg",
                    "intensity pos/neg");
        for (const auto& l : s.labels) {
            std::printf("%-24s %9.0f/%-9.0f %9.0f/%-9.0f %9.1f/%-9.1f\n", l.name.c_str(), l.width_pos.median,
                        l.width_neg.median, l.height_pos.median, l.height_neg.median, l.intensity_pos.median,
                        l.intensity_neg.median);
        }
    }
    std::printf("\nFormats  ");
    for (const auto& [ext, count] : s.formats) std::printf(" %s: %zu", ext.c_str(), count);
    std::printf("\n");
    for (const auto& w : s.warnings) std::printf("warning: %s\n", w.c_str());
    std::fflush(stdout);
}

}  // namespace

void add_describe(CLI::App& root, std::vector<Command>& commands) {
    auto a = std::make_shared<DescribeArgs>();
    auto* app = root.add_subcommand("describe", "Summarise a dataset: labels, patients, image sizes, intensities");
    app->add_option("data", a->data, "Dataset folder (manifest.csv, labels.csv or one subfolder per class)")
        ->required();
    app->add_option("--out", a->out, "Write describe.json and describe.png (label counts) here");
    app->add_option("--labels", a->labels, "Only these label columns, comma-separated");
    app->add_option("--modality", a->modality, "Accepted DICOM modality: ct, mr, any")->capture_default_str();
    app->add_option("--threads", a->threads, "Decoding threads")->check(CLI::Range(1, 256))->capture_default_str();

    commands.push_back({app, [a] {
        DatasetOptions dopt;
        dopt.labels = parse_list(a->labels);
        Dataset ds = open_dataset(a->data, dopt);
        DescribeOptions opt;
        opt.threads = a->threads;
        opt.modality = parse_modality_policy(a->modality);
        ProgressBar bar("reading images", ds.size());
        opt.progress = [&bar](size_t done, size_t) { bar.update(done); };
        DatasetSummary s = describe_dataset(ds, opt);
        bar.finish();
        print_summary(s);
        if (!a->out.empty()) {
            fs::path out(a->out);
            write_file_atomic(out / "describe.json", s.to_json().dump(2) + "\n");
            std::vector<std::string> names;
            Series pos{s.multiclass ? "images" : "positive", {}, {}}, neg{"negative", {}, {}};
            for (size_t i = 0; i < s.labels.size(); ++i) {
                names.push_back(s.labels[i].name);
                pos.y.push_back(static_cast<double>(s.labels[i].positives));
                neg.y.push_back(static_cast<double>(s.labels[i].negatives));
            }
            std::vector<Series> groups{pos};
            if (!s.multiclass) groups.push_back(neg);
            PlotOptions po;
            po.title = "Images per " + std::string(s.multiclass ? "class" : "label") + " (" +
                       std::to_string(s.images) + " images, " + std::to_string(s.patients) + " patients)";
            po.y_label = "images";
            save_plot(out / "describe.png", bar_chart(names, groups, po));
            logger().info("wrote {} and {}", (out / "describe.json").string(), (out / "describe.png").string());
        }
        return 0;
    }});
}

}  // namespace hemoscan::cli
