// The analysis pipeline (infer/study.hpp): reading a study, and running the models on it.
#include "hemoscan/infer/study.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <spdlog/fmt/fmt.h>

#include "hemoscan/error.hpp"
#include "hemoscan/io/archive.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/io/sequences.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/metrics/segmentation.hpp"
#include "hemoscan/preprocess/volume.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Whether millimetres (and so mL) come from the file: every axis finite and positive and, for DICOM,
// PixelSpacing present and positive on every slice (the reader leaves 1 mm placeholders otherwise) and
// a slice step from positions (several slices) or SliceThickness (one slice).
bool spacing_from_file(const Volume& v, const std::string& kind) {
    for (double s : v.geometry.spacing) {
        if (!(std::isfinite(s) && s > 0)) return false;
    }
    if (kind == "nifti") return true;
    bool positioned = v.depth() > 1;
    for (const ImageMeta& m : v.slice_meta) {
        if (!m.has_pixel_spacing) return false;
        positioned = positioned && m.has_position;
    }
    return positioned || (!v.slice_meta.empty() && v.slice_meta.front().slice_thickness > 0);
}

StudyInput from_volume(std::string name, std::string kind, Volume v) {
    fill_slice_meta(v);
    StudyInput in;
    in.name = std::move(name);
    in.kind = std::move(kind);
    in.warnings = v.warnings;
    in.spacing_known = spacing_from_file(v, in.kind);
    if (!in.spacing_known) {
        in.warnings.push_back("the pixel spacing or slice step is missing, not positive or not finite: sizes and "
                              "volumes assume 1 mm and are not in mm or mL");
    }
    for (int k = 0; k < v.depth(); ++k) {
        const ImageMeta& m = v.slice_meta[static_cast<size_t>(k)];
        // A NIfTI volume is one file: its slices are named by their number.
        const bool one_file = in.kind == "nifti" || m.path.empty();
        in.items.push_back(one_file ? fmt::format("slice_{:03d}", k + 1) : m.path);
        in.slices.push_back(DicomSlice{v.slices[static_cast<size_t>(k)], m});
    }
    in.volume = std::move(v);
    return in;
}

// A 2D image: one slice, a one-slice volume when the file knows its spacing (DICOM); PNG/JPEG do not.
StudyInput from_slice(std::string name, DicomSlice s) {
    const bool dicom = !s.meta.modality.empty();
    if (dicom) return from_volume(std::move(name), "dicom", slice_volume(s));
    StudyInput in;
    in.name = std::move(name);
    in.kind = "image";
    in.items = {s.meta.path.empty() ? in.name : s.meta.path};
    in.slices.push_back(std::move(s));
    in.spacing_known = in.slices.front().meta.has_pixel_spacing;
    return in;
}

// "3 series; using the largest: series 1 of 3 (SeriesNumber 2, 120 slices)".
std::string largest_series_warning(const std::vector<Volume>& series) {
    return std::to_string(series.size()) + " series; using the largest: " +
           series_label(0, series.size(), series.front());
}

std::vector<StudyInput> read_folder(const fs::path& path, ModalityPolicy policy, SeriesChoice choice) {
    const std::string name = path.string();
    std::vector<fs::path> dicoms, images;
    for (const auto& e : fs::recursive_directory_iterator(path)) {
        if (!e.is_regular_file()) continue;
        if (is_image_2d_path(e.path())) {
            images.push_back(e.path());
        } else if (is_dicom_file(e.path())) {
            dicoms.push_back(e.path());
        }
    }
    std::vector<StudyInput> out;
    if (!dicoms.empty()) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<Volume> series = read_dicom_series({path}, policy);
        logger().debug("{}: read in {:.3f} s", name, seconds_since(t0));
        if (series.empty()) throw InputError(name + ": no DICOM series in this folder");
        const size_t count = series.size();
        if (count > 1 && choice == SeriesChoice::Largest) {
            const std::string w = largest_series_warning(series);
            logger().warn("{}: {}", name, w);
            series.resize(1);
            series.front().warnings.push_back(w);
        }
        // Several series: each named by its number, never by its UID (which identifies the patient's study).
        for (size_t k = 0; k < series.size(); ++k) {
            const std::string shown = series.size() > 1 ? name + "#" + series_label(k, count, series[k], false) : name;
            out.push_back(from_volume(shown, "series", std::move(series[k])));
        }
        return out;
    }
    if (images.empty()) throw InputError(name + ": no images or DICOM files in this folder");
    std::sort(images.begin(), images.end());
    for (const auto& p : images) out.push_back(from_slice(p.string(), load_image(p, policy)));
    return out;
}

// A private folder under the system's temporary folder, removed with everything in it.
class ScratchFolder {
public:
    ScratchFolder() {
        std::random_device rd;
        for (int attempt = 0; attempt < 16; ++attempt) {
            path_ = fs::temp_directory_path() / fmt::format("hemoscan-zip-{:016x}", (std::uint64_t(rd()) << 32) ^ rd());
            if (fs::create_directory(path_)) return;
        }
        throw Error("cannot make a temporary folder under " + fs::temp_directory_path().string());
    }
    ~ScratchFolder() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    ScratchFolder(const ScratchFolder&) = delete;
    ScratchFolder& operator=(const ScratchFolder&) = delete;
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

// A zip entry's name as messages show it: printable ASCII (others '_': entry names are the uploader's
// bytes, in any encoding), at most `max_length` characters.
std::string printable(const std::string& s, size_t max_length) {
    std::string r;
    for (char c : s.substr(0, max_length)) r += (c >= 0x20 && c < 0x7f) ? c : '_';
    return r;
}

bool is_zip_path(const fs::path& path) { return to_lower(path.extension().string()) == ".zip"; }

// A zip of DICOM files (a series) or of PNG/JPEG images, as the server's uploads: the entries are
// written under a scratch folder with names chosen here (an entry name never becomes a path) and
// read as files; other entries are skipped with a warning.
StudyInput read_zip(const fs::path& path, ModalityPolicy policy) {
    const std::string name = path.string();
    ScratchFolder scratch;
    std::vector<fs::path> dicoms, images;
    std::vector<std::string> image_names, dicom_names;  // messages name entries, never the scratch files
    size_t skipped = 0, nested = 0, written = 0;
    for_each_zip_entry(read_file(path), name, ZipLimits{}, [&](const std::string& entry, const std::string& bytes) {
        const FileType type = sniff_file_type(bytes, entry);
        if (type == FileType::Zip || type == FileType::Unknown) {
            ++(type == FileType::Zip ? nested : skipped);
            return;
        }
        const fs::path file = scratch.path() / fmt::format("entry_{:05d}{}", ++written, file_extension(type));
        write_file_atomic(file, bytes);
        if (type == FileType::Dicom) {
            dicoms.push_back(file);
            dicom_names.push_back(printable(entry, 200));
        } else {
            images.push_back(file);
            image_names.push_back(safe_filename(fs::path(entry).filename().string(), 80));
        }
    });
    if (dicoms.empty() && images.empty()) throw InputError(name + ": no image or DICOM file in the zip");
    if (!dicoms.empty() && !images.empty()) {
        throw InputError(name + ": the zip mixes PNG/JPEG images with DICOM files; give one kind at a time");
    }
    StudyInput in = read_study_files(dicoms, images, image_names, policy, dicom_names);
    in.name = name;
    if (skipped > 0) in.warnings.push_back(std::to_string(skipped) + " file(s) in the zip skipped (not images)");
    if (nested > 0) in.warnings.push_back(std::to_string(nested) + " zip(s) inside the zip skipped");
    const auto& logged = in.volume.warnings;  // read_dicom_series logged the series' own warnings
    for (const auto& w : in.warnings) {
        if (std::find(logged.begin(), logged.end(), w) == logged.end()) logger().warn("{}: {}", name, w);
    }
    return in;
}

// An image of an upload or a zip; its errors name it by `shown` (when given) instead of its path, which
// is a staging or scratch file the caller chose.
cv::Mat read_named_image(const fs::path& path, const std::string& shown, ImageMeta& meta) {
    try {
        return read_image_2d(path, &meta);
    } catch (const InputError& e) {
        if (shown.empty()) throw;
        const std::string what = e.what(), name = path.string();
        throw InputError(shown + (what.rfind(name, 0) == 0 ? what.substr(name.size()) : ": " + what));
    }
}

// A multi-sequence input: slices keep every sequence as channels for the model; the volume that is
// shown and stored keeps the first sequence.
StudyInput from_sequences(std::string name, Volume v) {
    const bool one = v.depth() == 1 && v.slice_meta.front().modality.empty();
    StudyInput in = from_volume(std::move(name), "sequences", v);
    for (auto& s : in.volume.slices) {
        cv::Mat first;
        cv::extractChannel(s, first, 0);
        s = first;
    }
    if (one) in.spacing_known = false;
    return in;
}

// A multi-sequence case, or a folder of them (one level down).
std::vector<StudyInput> read_sequence_cases(const fs::path& path, ModalityPolicy policy,
                                            const std::vector<std::string>& sequences) {
    std::vector<StudyInput> out;
    auto add = [&](const fs::path& folder) {
        out.push_back(from_sequences(folder.string(), read_sequence_case(folder, sequences, policy)));
    };
    if (is_sequence_case(path, sequences)) {
        add(path);
        return out;
    }
    std::vector<fs::path> subs;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(path)) {
        if (e.is_directory(ec) && is_sequence_case(e.path(), sequences)) subs.push_back(e.path());
    }
    std::sort(subs.begin(), subs.end());
    if (subs.empty()) {
        std::string wanted;
        for (const auto& s : sequences) wanted += (wanted.empty() ? "" : ", ") + s;
        throw InputError(path.string() + ": no MR case here (the model reads the sequences " + wanted +
                         ": a folder with one image, volume or DICOM series per sequence)");
    }
    for (const auto& s : subs) add(s);
    return out;
}

}  // namespace

std::vector<StudyInput> read_study_inputs(const fs::path& path, ModalityPolicy policy, SeriesChoice choice,
                                          const std::vector<std::string>& sequences) {
    const std::string name = path.string();
    std::error_code ec;
    if (!fs::exists(path, ec)) throw InputError(name + ": no such file or folder");
    try {
        if (!sequences.empty() && fs::is_directory(path, ec)) return read_sequence_cases(path, policy, sequences);
        if (fs::is_directory(path, ec)) return read_folder(path, policy, choice);
        if (is_zip_path(path)) return {read_zip(path, policy)};
        if (is_nifti_path(path)) {
            std::vector<StudyInput> out;
            out.push_back(from_volume(name, "nifti", read_nifti(path)));
            return out;
        }
        std::vector<StudyInput> out;
        out.push_back(from_slice(name, load_image(path, policy)));
        return out;
    } catch (const InputError& e) {
        if (std::string(e.what()).find(name) != std::string::npos) throw;
        throw InputError(name + ": " + e.what());
    } catch (const UsageError&) {
        throw;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        throw InputError(name + ": " + e.what());
    }
}

StudyInput read_study_files(const std::vector<fs::path>& dicoms, const std::vector<fs::path>& images,
                            const std::vector<std::string>& names, ModalityPolicy policy,
                            const std::vector<std::string>& dicom_names, const std::vector<std::string>& sequences) {
    if (!sequences.empty()) {
        // An MR model: the files are one case, a series or an image per sequence (matched by name).
        std::vector<fs::path> files = dicoms;
        std::vector<std::string> keys(dicoms.size());
        for (size_t i = 0; i < dicoms.size(); ++i) keys[i] = i < dicom_names.size() ? dicom_names[i] : "";
        for (size_t i = 0; i < images.size(); ++i) {
            files.push_back(images[i]);
            keys.push_back(i < names.size() ? names[i] : images[i].filename().string());
        }
        if (files.empty()) throw InputError("no image in the upload");
        StudyInput in = from_sequences(std::to_string(files.size()) + " files",
                                       read_sequence_files(files, keys, sequences, policy, "the upload"));
        for (size_t i = 0; i < in.items.size(); ++i) in.items[i] = "slice " + std::to_string(i + 1);
        return in;
    }
    if (!dicoms.empty()) {
        std::vector<Volume> volumes = read_dicom_series(dicoms, policy, dicom_names);
        if (volumes.empty()) throw InputError("no DICOM image in the upload");
        std::vector<std::string> warnings;
        if (volumes.size() > 1) warnings.push_back(largest_series_warning(volumes));
        const std::string kind = volumes.front().depth() == 1 ? "dicom" : "series";
        StudyInput in = from_volume(std::to_string(dicoms.size()) + " files", kind, std::move(volumes.front()));
        in.warnings.insert(in.warnings.begin(), warnings.begin(), warnings.end());
        for (size_t i = 0; i < in.items.size(); ++i) in.items[i] = "slice " + std::to_string(i + 1);
        return in;
    }
    if (images.empty()) throw InputError("no image in the upload");
    StudyInput in;
    in.name = std::to_string(images.size()) + " files";
    in.kind = images.size() == 1 ? "image" : "images";
    for (size_t i = 0; i < images.size(); ++i) {
        DicomSlice s;
        s.pixels = read_named_image(images[i], i < names.size() ? names[i] : std::string(), s.meta);
        in.spacing_known = in.spacing_known && s.meta.has_pixel_spacing;
        in.slices.push_back(std::move(s));
        in.items.push_back(i < names.size() ? names[i] : images[i].filename().string());
    }
    return in;
}

Prediction study_prediction(const Predictor& predictor, const std::vector<Prediction>& slices, double threshold) {
    if (slices.empty()) throw UsageError("study_prediction: no slices");
    Prediction overall = slices.front();
    if (slices.size() > 1) {
        const double n = static_cast<double>(slices.size());
        for (size_t l = 0; l < overall.probabilities.size(); ++l) {
            double v = predictor.multiclass() ? 0.0 : overall.probabilities[l];
            for (const auto& p : slices) {
                v = predictor.multiclass() ? v + p.probabilities[l] / n : std::max(v, p.probabilities[l]);
            }
            overall.probabilities[l] = v;
        }
    }
    overall.decisions = predictor.decide(overall.probabilities, threshold);
    return overall;
}

std::string study_rule(const Predictor& predictor) {
    if (predictor.has_study_model()) return "study model";
    return predictor.multiclass() ? "mean of slices" : "highest slice";
}

namespace {

void classify(const StudyInput& input, Predictor& predictor, const AnalysisOptions& options, StudyResult& r) {
    const PreprocessOptions& pre = predictor.preprocess_options();
    auto t0 = std::chrono::steady_clock::now();
    r.samples = preprocess_slices(input.slices, pre);
    // A model with slice context sees each slice with its neighbours (a single image: itself repeated);
    // r.samples keep the slices alone, for the overlays.
    const std::vector<Sample> inputs = stack_slice_context(r.samples, predictor.context());
    logger().debug("{}: {} slices preprocessed in {:.3f} s", r.name, r.samples.size(), seconds_since(t0));
    t0 = std::chrono::steady_clock::now();
    // Per-slice heatmaps come from the same pass as the predictions (each batch's features serve both).
    r.slices = options.heatmaps == HeatmapLabel::PerSlice
                   ? predictor.predict_samples(inputs, options.batch, r.heatmaps)
                   : predictor.predict_samples(inputs, options.batch);
    logger().debug("{}: model on {} images in {:.3f} s", r.name, r.samples.size(), seconds_since(t0));
    if (predictor.has_study_model()) {
        // Stage 2 reads the slice model's outputs over the ordered study (a lone image: a study of one).
        StudyPrediction staged = predictor.predict_study(r.slices, options.threshold);
        r.slices = std::move(staged.slices);
        r.study = std::move(staged.study);
    } else {
        for (auto& p : r.slices) p.decisions = predictor.decide(p.probabilities, options.threshold);
        r.study = study_prediction(predictor, r.slices, options.threshold);
    }
    const auto& probs = r.study.probabilities;
    const size_t label = static_cast<size_t>(std::max_element(probs.begin(), probs.end()) - probs.begin());
    for (size_t i = 0; i < r.slices.size(); ++i) {
        if (r.slices[i].probabilities[label] > r.slices[r.top_slice].probabilities[label]) r.top_slice = i;
    }
    if (options.heatmaps == HeatmapLabel::Study) {
        r.heatmap_label = static_cast<int>(label);
        for (const Sample& s : inputs) r.heatmaps.push_back(predictor.heatmap(s, r.heatmap_label));
    }
}

// Bleed mL of each slice of a label map (voxels of the bleed classes; all foreground without any).
std::vector<double> slice_bleed(const SegmentationResult& r, const std::vector<int>& bleed) {
    const auto& sp = r.labels.geometry.spacing;
    const double voxel_ml = sp[0] * sp[1] * sp[2] / 1000.0;
    std::vector<double> out;
    for (const cv::Mat& m : r.labels.slices) {
        long n = 0;
        for (int y = 0; y < m.rows; ++y) {
            const uchar* row = m.ptr<uchar>(y);
            for (int x = 0; x < m.cols; ++x) {
                const int label = row[x];
                if (label == 0) continue;
                if (bleed.empty() || std::find(bleed.begin(), bleed.end(), label) != bleed.end()) ++n;
            }
        }
        out.push_back(static_cast<double>(n) * voxel_ml);
    }
    return out;
}

void segment(const StudyInput& input, SegPredictor& seg, StudyResult& r) {
    StudySegmentation& out = r.segmentation;
    out.spacing_known = input.spacing_known;
    if (input.is_volume()) {
        out.result = seg.segment(input.volume);
        out.slice_bleed_ml = slice_bleed(out.result, seg.bleed_classes());
    } else {
        // Separate images: one by one (they may differ in size and spacing), volumes summed.
        for (const DicomSlice& s : input.slices) {
            SegmentationResult one = seg.segment(slice_volume(s));
            const std::vector<double> bleed = slice_bleed(one, seg.bleed_classes());
            out.slice_bleed_ml.insert(out.slice_bleed_ml.end(), bleed.begin(), bleed.end());
            if (out.result.labels.slices.empty()) {
                out.result = std::move(one);
                continue;
            }
            for (size_t c = 0; c < one.volume_ml.size() && c < out.result.volume_ml.size(); ++c) {
                out.result.volume_ml[c] += one.volume_ml[c];
            }
            out.result.bleed_volume_ml += one.bleed_volume_ml;
            out.result.labels.slices.push_back(one.labels.slices.front());
        }
        if (!input.spacing_known) {
            r.warnings.push_back(
                "PNG/JPEG images carry no pixel spacing: the bleed volume assumes 1 mm pixels and slices");
        }
    }
    r.segmented = true;
}

}  // namespace

StudyResult analyze_study(const StudyInput& input, Predictor* classifier, SegPredictor* segmenter,
                          const AnalysisOptions& options) {
    if (!classifier && !segmenter) throw UsageError("analyze_study: no model");
    if (input.slices.empty()) throw InputError(input.name + ": no slices");
    StudyResult r;
    r.name = input.name;
    r.kind = input.kind;
    r.items = input.items;
    r.warnings = input.warnings;
    if (classifier) classify(input, *classifier, options, r);
    if (segmenter) segment(input, *segmenter, r);
    return r;
}

}  // namespace hemoscan
