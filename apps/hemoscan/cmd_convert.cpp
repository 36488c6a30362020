// hemoscan convert: DICOM files or series folders -> windowed 8-bit PNGs (seed 003's DICOM-to-PNG).
#include <map>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "commands.hpp"
#include "common.hpp"
#include "hemoscan/data/csv.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "progress.hpp"

namespace hemoscan::cli {

namespace {

struct ConvertArgs {
    std::vector<std::string> inputs;
    std::string out;
    std::string window = "brain";
    int size = 0;
    bool keep_aspect = false;
    bool series = false;
    std::string modality = "ct";
};

// The windows to use for one slice. CT (HU) uses the requested windows. Data in other units (MR)
// cannot use HU presets: unless the user gave a window explicitly, take the file's own
// WindowCenter/Width, else the slice's min..max.
std::vector<Window> windows_for(const DicomSlice& s, const std::vector<Window>& requested, bool explicit_window) {
    if (s.meta.is_hu || explicit_window) return requested;
    if (!s.meta.window_center.empty() && !s.meta.window_width.empty() && s.meta.window_width[0] > 0) {
        return {Window{"dicom", s.meta.window_center[0], s.meta.window_width[0]}};
    }
    double lo, hi;
    cv::minMaxLoc(s.pixels, &lo, &hi);
    return {Window{"minmax", (lo + hi) / 2, std::max(hi - lo, 1.0)}};
}

cv::Mat render(const DicomSlice& s, const std::vector<Window>& windows, const ConvertArgs& a) {
    cv::Mat unit = apply_windows(s.pixels, windows);
    if (a.size > 0) unit = resize_image(unit, ResizeOptions{a.size, a.size, a.keep_aspect, 0.f});
    cv::Mat out = to_uint8(unit);
    // OpenCV writes 3-channel images as BGR: reverse so that the PNG's R, G, B are windows 1, 2, 3.
    if (out.channels() == 3) cv::cvtColor(out, out, cv::COLOR_RGB2BGR);
    return out;
}

}  // namespace

void add_convert(CLI::App& root, std::vector<Command>& commands) {
    auto a = std::make_shared<ConvertArgs>();
    auto* app = root.add_subcommand("convert", "DICOM files or series folders -> windowed 8-bit PNGs");
    app->add_option("inputs", a->inputs, "DICOM files and/or folders holding DICOM series")
        ->required()
        ->check(CLI::ExistingPath);
    app->add_option("--out", a->out, "Output folder")->required();
    auto* win = app->add_option("--window", a->window,
                                "brain (40/80), subdural (80/200), bone (600/2800), L,W, or rgb (the three as R,G,B)")
                    ->capture_default_str();
    app->add_option("--size", a->size, "Resize to NxN pixels (0 = keep the scanner's size)")
        ->check(CLI::Range(0, 8192))
        ->capture_default_str();
    app->add_flag("--keep-aspect", a->keep_aspect, "With --size: pad instead of stretching");
    app->add_flag("--series", a->series, "Treat all input files as one series (ordered by position)");
    app->add_option("--modality", a->modality, "Accepted modality: ct, mr (CT or MRI) or any")->capture_default_str();
    app->footer(
        "Folders are read as DICOM series (split by SeriesInstanceUID, ordered by ImagePositionPatient) and\n"
        "written to OUT/<series>/slice_NNNN.png; single files to OUT/<name>.png. OUT/index.csv maps every PNG\n"
        "to its source file and position.");

    commands.push_back({app, [a, win] {
        const auto windows = parse_windows(a->window);
        const bool explicit_window = win->count() > 0;
        const auto policy = parse_modality_policy(a->modality);
        const fs::path out(a->out);

        std::vector<fs::path> files, folders;
        for (const auto& in : a->inputs) (fs::is_directory(in) ? folders : files).emplace_back(in);
        if (a->series && !files.empty()) {
            // Explicit file list as one series: read together with the folders.
            folders.insert(folders.end(), files.begin(), files.end());
            files.clear();
        }

        std::ostringstream index;
        index << "png,source,series_uid,slice,position_z_mm,instance_number,window\n";
        size_t written = 0;
        auto window_names = [](const std::vector<Window>& ws) {
            std::string r;
            for (const auto& w : ws) r += (r.empty() ? "" : "+") + w.name;
            return r;
        };

        for (const auto& f : files) {
            if (!is_dicom_file(f)) throw InputError(f.string() + ": not a DICOM file");
            DicomSlice s = read_dicom_file(f, policy);
            auto ws = windows_for(s, windows, explicit_window);
            fs::path png = out / (safe_filename(f.stem().string()) + ".png");
            write_image_2d(png, render(s, ws, *a));
            index << csv_escape(fs::relative(png, out).string()) << ',' << csv_escape(f.string()) << ','
                  << s.meta.series_uid << ",0," << s.meta.position[2] << ',' << s.meta.instance_number << ','
                  << window_names(ws) << '\n';
            ++written;
        }

        if (!folders.empty()) {
            std::vector<Volume> volumes = read_dicom_series(folders, policy);
            std::map<std::string, int> used;
            for (const auto& v : volumes) {
                const ImageMeta& m0 = v.slice_meta.front();
                std::string name = m0.series_description.empty() ? "series" : safe_filename(m0.series_description, 48);
                std::string uid_tail = m0.series_uid.size() > 8 ? m0.series_uid.substr(m0.series_uid.size() - 8)
                                                                 : m0.series_uid;
                name += "_" + safe_filename(uid_tail);
                if (used[name]++) name += "_" + std::to_string(used[name]);
                ProgressBar bar("convert " + name, static_cast<size_t>(v.depth()));
                // Position along the normal, for the index (the order the slices are in).
                const auto& d = v.geometry.direction;
                for (int i = 0; i < v.depth(); ++i) {
                    DicomSlice s{v.slices[i], v.slice_meta[i]};
                    auto ws = windows_for(s, windows, explicit_window);
                    char fname[32];
                    std::snprintf(fname, sizeof fname, "slice_%04d.png", i + 1);
                    fs::path png = out / name / fname;
                    write_image_2d(png, render(s, ws, *a));
                    const auto& p = s.meta.position;
                    double z = p[0] * d[6] + p[1] * d[7] + p[2] * d[8];
                    index << csv_escape(fs::relative(png, out).string()) << ',' << csv_escape(s.meta.path) << ','
                          << s.meta.series_uid << ',' << i << ',' << z << ',' << s.meta.instance_number << ','
                          << window_names(ws) << '\n';
                    ++written;
                    bar.update(static_cast<size_t>(i + 1));
                }
                bar.finish();  // read_dicom_series logged the series' warnings (named without UIDs)
            }
        }
        write_file_atomic(out / "index.csv", index.str());
        logger().info("wrote {} PNG(s) to {} (index: {})", written, out.string(), (out / "index.csv").string());
        return 0;
    }});
}

}  // namespace hemoscan::cli
