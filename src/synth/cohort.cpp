// Writing synthetic cohorts: DICOM series, NIfTI volumes and label maps, PNG slices, the manifest
// and the study table; studies in parallel threads; the example figure.
#include <spdlog/fmt/fmt.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/synth/synth.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/random.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace {

// What the CSVs need from a study once its files are written (the images are dropped).
struct StudyRow {
    std::string study_id, patient_id, study_uid;
    int slices = 0;
    std::array<bool, kSynthSubtypes> present{};
    bool calcification = false;
    std::array<double, kSynthSubtypes> volume_ml{};
    SynthParams params;
    std::vector<std::array<bool, kSynthSubtypes>> slice_labels;
    std::vector<std::string> slice_paths, mask_paths, rsna_ids;
    std::string class_name, blood_age;  // class-folder form; MR
    int class_slice = -1, microbleeds = 0;
    double field_t = 0;
};

// One study of the cohort: the CT phantom, its MR rendering (modality mr) and, in the class-folder
// form, the class it was drawn for and the slice that shows it.
struct CohortCase {
    SynthStudy ct;
    SynthMrStudy mr;
    bool is_mr = false;
    std::string class_name;
    int class_slice = -1;
    const std::vector<cv::Mat>& labels() const { return is_mr ? mr.labels : ct.labels; }
};

std::string study_file_name(const SynthStudy& st, int k) { return fmt::format("IM{:04d}.dcm", st.instance_numbers[k]); }

std::string slice_name(const char* stem, int k, const char* ext) { return fmt::format("{}_{:03d}.{}", stem, k + 1, ext); }

}  // namespace

int parse_synth_formats(const std::string& spec) {
    int formats = 0;
    for (const std::string& raw : split(spec, ',')) {
        const std::string f = to_lower(trim(raw));
        if (f.empty()) continue;
        if (f == "dicom") formats |= kSynthDicom;
        else if (f == "nifti") formats |= kSynthNifti;
        else if (f == "png") formats |= kSynthPng;
        else if (f == "nnunet") formats |= kSynthNnunet;
        else if (f == "rsna") formats |= kSynthRsna;
        else if (f == "classes") formats |= kSynthClasses;
        else throw UsageError("unknown format '" + f + "' in `format` (dicom, nifti, png, nnunet, rsna, classes)");
    }
    if (formats == 0) throw UsageError("`format` names no format (dicom, nifti, png, nnunet, rsna, classes)");
    return formats;
}

cv::Mat synth_png(const cv::Mat& hu, bool rgb) {
    const std::vector<Window> windows =
        rgb ? std::vector<Window>{window_brain(), window_subdural(), window_bone()} : std::vector<Window>{window_brain()};
    cv::Mat out = to_uint8(apply_windows(hu, windows));
    if (out.channels() == 3) cv::cvtColor(out, out, cv::COLOR_RGB2BGR);  // PNG R, G, B = windows 1, 2, 3
    return out;
}

namespace {

// The RSNA file stem of a slice: "ID_" and 9 hex digits of a hash of its SOPInstanceUID.
std::string rsna_image_id(const std::string& sop_uid) {
    std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
    for (unsigned char c : sop_uid) h = (h ^ c) * 1099511628211ULL;
    return fmt::format("ID_{:09x}", h & 0xFFFFFFFFFULL);
}

// Slice k's file name in a study folder (IM<instance>.dcm), or in the RSNA layout's flat folder.
using DicomName = std::function<std::string(const SynthStudy&, int)>;

void write_dicom_files(const SynthStudy& st, const fs::path& folder, const DicomName& file_name) {
    const Volume& v = st.ct;
    DicomWriteOptions o;
    o.patient_id = st.patient_id;
    o.patient_name = "Synthetic^" + st.study_id;
    o.study_uid = st.study_uid;
    o.series_uid = st.series_uid;
    o.frame_of_reference_uid = st.frame_uid;
    o.series_description = "hemoscan synthetic head CT";
    o.pixel_spacing = {v.geometry.spacing[1], v.geometry.spacing[0]};
    o.slice_thickness = v.geometry.spacing[2];
    o.window_center = 40;
    o.window_width = 80;
    o.rescale_intercept = -1024;
    o.rescale_slope = 1;
    for (int k = 0; k < v.depth(); ++k) {
        o.sop_uid = st.sop_uids[k];
        o.instance_number = st.instance_numbers[k];
        o.position = v.slice_meta[k].position;
        write_dicom_ct(folder / file_name(st, k), v.slices[k], o);
    }
}

}  // namespace

void write_study_dicom(const SynthStudy& st, const fs::path& folder) { write_dicom_files(st, folder, study_file_name); }

void write_study_nifti(const SynthStudy& st, const fs::path& image_file, const fs::path& label_file) {
    NiftiWriteOptions o;
    o.type = NiftiType::Int16;
    o.gzip_level = 1;  // noisy CT barely compresses better at higher levels, and level 6 is ~3x slower
    o.description = "hemoscan synthetic head CT (HU) " + st.study_id;
    write_nifti(image_file, st.ct, o);
    write_nifti_labels(label_file, st.labels, st.ct.geometry,
                       "labels 1 EDH 2 IPH 3 IVH 4 SAH 5 SDH 6 calcification");
}

namespace {

// What a slice shows: blood (labels 1-5, microbleeds) and/or calcification.
std::string slice_class(const cv::Mat& labels, int min_blood, int min_calc) {
    int blood = 0, calc = 0;
    for (int r = 0; r < labels.rows; ++r) {
        const std::uint8_t* l = labels.ptr<std::uint8_t>(r);
        for (int c = 0; c < labels.cols; ++c) {
            if (l[c] == kLabelCalcification) ++calc;
            else if (l[c] != 0) ++blood;
        }
    }
    // A sliver of a finding (some pixels, below the minimum) makes the slice ambiguous: not chosen.
    if ((blood > 0 && blood < min_blood) || (calc > 0 && calc < min_calc)) return "";
    if (blood > 0 && calc > 0) return "bleed+calcified";
    if (blood > 0) return "bleed";
    if (calc > 0) return "calcified";
    return "normal";
}

void check_classes(const std::vector<std::string>& classes) {
    if (classes.empty()) throw UsageError("`classes` is empty (bleed, calcified, bleed+calcified, normal)");
    for (const auto& c : classes) {
        if (c != "bleed" && c != "calcified" && c != "bleed+calcified" && c != "normal") {
            throw UsageError("unknown class '" + c + "' (bleed, calcified, bleed+calcified, normal)");
        }
    }
}

// Study i of the cohort. In the class-folder form it is drawn for class i mod |classes| and drawn
// again (another sub-seed) until one slice of the head's middle shows that class, which is then chosen
// at random among those that do.
CohortCase make_case(const SynthOptions& options, int i, bool classes) {
    CohortCase cc;
    cc.is_mr = options.modality == "mr";
    SynthOptions o = options;
    o.keep_internals = cc.is_mr;
    if (!classes) {
        cc.ct = generate_study(o, i);
        if (cc.is_mr) cc.mr = synth_mr_study(cc.ct, o);
        return cc;
    }
    cc.class_name = options.classes[static_cast<size_t>(i) % options.classes.size()];
    const bool bleed = cc.class_name == "bleed" || cc.class_name == "bleed+calcified";
    const bool calc = cc.class_name == "calcified" || cc.class_name == "bleed+calcified";
    o.p_bleed = bleed ? 1.0 : 0.0;
    o.force_subtypes = bleed ? -1 : 0;
    o.force_calcification = calc ? 1 : 0;
    for (int attempt = 0; attempt < 16; ++attempt) {
        o.seed = attempt == 0 ? options.seed : splitmix64(options.seed ^ (0x9e3779b97f4a7c15ULL * attempt));
        cc.ct = generate_study(o, i);
        if (cc.is_mr) cc.mr = synth_mr_study(cc.ct, o);
        const auto& labels = cc.labels();
        const double px2 = cc.ct.params.pixel_mm * cc.ct.params.pixel_mm;
        // Findings a reader would see: blood of at least 10 mm², a calcium focus of at least 7 mm² (about 3 mm).
        const int min_blood = std::max(1, static_cast<int>(10 / px2)), min_calc = std::max(1, static_cast<int>(7 / px2));
        // Slices through the head's middle: at least half the largest head section.
        std::vector<int> head(labels.size());
        for (size_t k = 0; k < labels.size(); ++k) head[k] = cv::countNonZero(cc.ct.ct.slices[k] > -500);
        const int most = *std::max_element(head.begin(), head.end());
        std::vector<int> candidates;
        for (size_t k = 0; k < labels.size(); ++k) {
            if (head[k] * 2 >= most && slice_class(labels[k], min_blood, min_calc) == cc.class_name) {
                candidates.push_back(static_cast<int>(k));
            }
        }
        if (candidates.empty()) continue;
        cc.class_slice = candidates[splitmix64(o.seed ^ static_cast<std::uint64_t>(i)) % candidates.size()];
        cc.ct.patient_id = fmt::format("SYN{}-{:04d}", options.seed, i);
        return cc;
    }
    throw Error(fmt::format("synth: no slice of study {} shows class '{}' after 16 draws (try more slices)", i,
                            cc.class_name));
}

// An MR sequence's magnitude scale for 8-bit PNGs: the 99.5th percentile of the head's voxels.
double png_white(const Volume& v) {
    std::vector<float> values;
    for (const cv::Mat& s : v.slices) {
        for (int r = 0; r < s.rows; r += 2) {
            const float* p = s.ptr<float>(r);
            for (int c = 0; c < s.cols; c += 2) {
                if (p[c] > 50) values.push_back(p[c]);
            }
        }
    }
    if (values.empty()) return 1000;
    const size_t q = static_cast<size_t>(0.995 * static_cast<double>(values.size() - 1));
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(q), values.end());
    return std::max(1.0f, values[q]);
}

// DICOM MR Image Storage, one series per sequence: dicom/<study>/<sequence>/IM0001.dcm ...
void write_mr_dicom(const CohortCase& cc, const SynthOptions& options, const fs::path& folder) {
    const SynthStudy& st = cc.ct;
    const bool t3 = cc.mr.field_t > 2;
    for (size_t s = 0; s < cc.mr.sequences.size(); ++s) {
        const std::string& name = cc.mr.sequences[s];
        const Volume& v = cc.mr.images[s];
        DicomWriteOptions o;
        o.modality = "MR";
        o.patient_id = st.patient_id;
        o.patient_name = "Synthetic^" + st.study_id;
        o.study_uid = st.study_uid;
        o.series_uid = synth_uid(options.seed, st.index, 4, static_cast<int>(s));
        o.frame_of_reference_uid = st.frame_uid;  // one scanning session: one frame for all sequences
        o.series_number = static_cast<int>(s) + 1;
        o.series_description = v.slice_meta.front().series_description;
        o.pixel_spacing = {v.geometry.spacing[1], v.geometry.spacing[0]};
        o.slice_thickness = v.geometry.spacing[2];
        o.field_strength = cc.mr.field_t;
        o.rescale_intercept = 0;
        o.rescale_slope = 1;
        o.window_center = 500;
        o.window_width = 1000;
        if (name == "t1") o.sequence_name = "*se2d1", o.repetition_time = 500, o.echo_time = 12;
        if (name == "t2") o.sequence_name = "*tse2d1_15", o.repetition_time = 4000, o.echo_time = 95;
        if (name == "flair") {
            o.sequence_name = "*tir2d1_16", o.scanning_sequence = "SE\\IR", o.repetition_time = 9000;
            o.echo_time = 90, o.inversion_time = 2500;
        }
        if (name == "swi_mag" || name == "swi_phase") {
            o.sequence_name = "*swi3d1r", o.scanning_sequence = "GR", o.acquisition_type = "3D";
            o.repetition_time = t3 ? 28 : 49, o.echo_time = t3 ? 20 : 40, o.flip_angle = 15;
        }
        cv::Mat stored;
        if (name == "swi_phase") {
            // Stored 0..4095 with slope 2 and intercept -4096: -4096..4094 stand for -pi..pi (as Siemens writes it).
            o.image_type = "ORIGINAL\\PRIMARY\\P\\ND";
            o.rescale_slope = 2;
            o.rescale_intercept = -4096;
            o.window_center = 0;
            o.window_width = 8192;
        }
        for (int k = 0; k < v.depth(); ++k) {
            o.sop_uid = synth_uid(options.seed, st.index, 5, static_cast<int>(s) * 10000 + k);
            o.instance_number = st.instance_numbers[k];
            o.position = v.slice_meta[k].position;
            cv::Mat values = v.slices[k];
            if (name == "swi_phase") {
                // A new Mat: `values = values * c` would write into the study's own pixels (shared buffer).
                values = cv::Mat(v.slices[k] * (4096.0 / 3.14159265358979323846));
                cv::min(cv::max(values, -4096.0), 4094.0, values);  // 12 bits: +pi is stored as 4094
            }
            write_dicom_ct(folder / name / study_file_name(st, k), values, o);
        }
    }
}

// The files of one study (any formats); fills the manifest paths of `row`.
void write_case_files(const CohortCase& cc, const SynthOptions& options, const fs::path& out, int formats,
                      StudyRow& row) {
    const SynthStudy& st = cc.ct;
    const int depth = st.ct.depth();
    if (!cc.is_mr) {
        if (formats & kSynthDicom) write_study_dicom(st, out / "dicom" / st.study_id);
        if (formats & kSynthNifti) {
            write_study_nifti(st, out / "nifti" / (st.study_id + ".nii.gz"), out / "nifti" / (st.study_id + "_labels.nii.gz"));
        }
        if (formats & kSynthNnunet) {
            write_study_nifti(st, out / "nnunet" / "imagesTr" / (st.study_id + "_0000.nii.gz"),
                              out / "nnunet" / "labelsTr" / (st.study_id + ".nii.gz"));
        }
        if (formats & kSynthClasses) {
            write_image_2d(out / "classes" / cc.class_name / (st.study_id + ".png"),
                           synth_png(st.ct.slices[static_cast<size_t>(cc.class_slice)], options.png_rgb));
        }
        if (formats & kSynthPng) {
            for (int k = 0; k < depth; ++k) {
                const fs::path rel = fs::path("png") / st.study_id / slice_name("slice", k, "png");
                write_image_2d(out / rel, synth_png(st.ct.slices[k], options.png_rgb));
                row.slice_paths.push_back(rel.generic_string());
            }
        }
    } else {
        if (formats & kSynthDicom) write_mr_dicom(cc, options, out / "dicom" / st.study_id);
        std::vector<double> white;
        for (const Volume& v : cc.mr.images) white.push_back(png_white(v));
        for (size_t s = 0; s < cc.mr.sequences.size(); ++s) {
            const std::string& name = cc.mr.sequences[s];
            const bool phase = name == "swi_phase";
            if (formats & kSynthNifti) {
                NiftiWriteOptions no;
                no.type = NiftiType::Float32;
                no.gzip_level = 1;
                no.description = "hemoscan synthetic MR " + name + " " + st.study_id;
                write_nifti(out / "nifti" / (st.study_id + "_" + name + ".nii.gz"), cc.mr.images[s], no);
            }
            if (formats & kSynthClasses) {
                write_image_2d(out / "classes" / cc.class_name / st.study_id / (name + ".png"),
                               synth_mr_png(cc.mr.images[s].slices[static_cast<size_t>(cc.class_slice)], phase, white[s]));
            }
            if (formats & kSynthPng) {
                for (int k = 0; k < depth; ++k) {
                    write_image_2d(out / "png" / st.study_id / fmt::format("slice_{:03d}", k + 1) / (name + ".png"),
                                   synth_mr_png(cc.mr.images[s].slices[k], phase, white[s]));
                }
            }
        }
        if (formats & kSynthNifti) {
            write_nifti_labels(out / "nifti" / (st.study_id + "_labels.nii.gz"), cc.mr.labels, st.ct.geometry,
                               "labels 1 EDH 2 IPH 3 IVH 4 SAH 5 SDH 6 calcification 7 microbleed");
        }
        if (formats & kSynthPng) {
            for (int k = 0; k < depth; ++k) {
                row.slice_paths.push_back((fs::path("png") / st.study_id / fmt::format("slice_{:03d}", k + 1)).generic_string());
            }
        }
    }
    if (formats & kSynthPng) {
        for (int k = 0; k < depth; ++k) {
            const fs::path mask = fs::path("png") / st.study_id / slice_name("mask", k, "png");
            write_image_2d(out / mask, cc.labels()[k]);
            row.mask_paths.push_back(mask.generic_string());
        }
    } else if ((formats & kSynthDicom) && !cc.is_mr) {
        for (int k = 0; k < depth; ++k) {
            row.slice_paths.push_back((fs::path("dicom") / st.study_id / study_file_name(st, k)).generic_string());
        }
    }
}

}  // namespace

CohortSummary write_cohort(const SynthOptions& options, const fs::path& out, int formats,
                           const std::function<void(size_t, size_t)>& progress) {
    if (formats <= 0 || formats > 63) throw UsageError("write_cohort: no output format");
    if (options.studies < 1) throw UsageError("`studies` must be at least 1");
    if (options.modality != "ct" && options.modality != "mr") {
        throw UsageError("unknown `modality` '" + options.modality + "' (ct, mr)");
    }
    const bool mr = options.modality == "mr";
    if (mr && (formats & (kSynthNnunet | kSynthRsna))) {
        throw UsageError("formats nnunet and rsna are CT layouts; MR writes dicom, nifti, png and classes");
    }
    for (const auto& name : mr ? options.sequences : std::vector<std::string>{}) parse_mr_sequences(name);
    if (formats & kSynthClasses) check_classes(options.classes);
    const auto start = std::chrono::steady_clock::now();
    fs::create_directories(out);
    const int n = options.studies;
    std::vector<StudyRow> rows(n);
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    std::mutex mutex;
    std::exception_ptr error;
    size_t done = 0;

    auto worker = [&] {
        for (;;) {
            const int i = next++;
            if (i >= n || failed) return;
            try {
                const CohortCase cc = make_case(options, i, (formats & kSynthClasses) != 0);
                const SynthStudy& st = cc.ct;
                StudyRow& row = rows[i];
                row.study_id = st.study_id;
                row.patient_id = st.patient_id;
                row.study_uid = st.study_uid;
                row.slices = st.ct.depth();
                row.present = st.present;
                row.calcification = st.calcification;
                row.volume_ml = st.volume_ml;
                row.params = st.params;
                row.class_name = cc.class_name;
                row.class_slice = cc.class_slice;
                row.blood_age = cc.mr.blood_age;
                row.microbleeds = cc.mr.microbleeds;
                row.field_t = cc.mr.field_t;
                for (int k = 0; k < st.ct.depth(); ++k) {
                    std::array<bool, kSynthSubtypes> l{};
                    for (int s = 0; s < kSynthSubtypes; ++s) l[s] = cv::countNonZero(cc.labels()[k] == (s + 1)) > 0;
                    row.slice_labels.push_back(l);
                }
                write_case_files(cc, options, out, formats, row);
                if (formats & kSynthRsna) {
                    write_dicom_files(st, out / "rsna" / "stage_2_train_images", [](const SynthStudy& s, int k) {
                        return rsna_image_id(s.sop_uids[k]) + ".dcm";
                    });
                    for (int k = 0; k < st.ct.depth(); ++k) row.rsna_ids.push_back(rsna_image_id(st.sop_uids[k]));
                }
                std::lock_guard<std::mutex> lock(mutex);
                ++done;
                if (progress) progress(done, static_cast<size_t>(n));
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex);
                if (!error) error = std::current_exception();
                failed = true;
                return;
            }
        }
    };
    const int threads = std::clamp(options.threads, 1, std::max(1, n));
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);

    // manifest.csv (DATA form (a)): one row per slice, labels from the masks.
    const auto& names = synth_subtype_names();
    CohortSummary summary;
    const bool per_slice_files = (formats & kSynthPng) || ((formats & kSynthDicom) && !mr);
    if (per_slice_files) {
        std::ostringstream m;
        m << "path,patient,study,slice,any";
        for (const auto& name : names) m << ',' << name;
        const bool masks = (formats & kSynthPng) != 0;
        if (masks) m << ",mask";
        m << '\n';
        for (const StudyRow& row : rows) {
            for (size_t k = 0; k < row.slice_labels.size(); ++k) {
                const auto& l = row.slice_labels[k];
                const bool any = std::any_of(l.begin(), l.end(), [](bool b) { return b; });
                m << row.slice_paths[k] << ',' << row.patient_id << ',' << row.study_id << ',' << k << ','
                  << (any ? 1 : 0);
                for (bool b : l) m << ',' << (b ? 1 : 0);
                if (masks) m << ',' << row.mask_paths[k];
                m << '\n';
            }
        }
        write_file_atomic(out / "manifest.csv", m.str());
    }

    // rsna/stage_2_train.csv: six rows per slice in the published order (subtypes, then any).
    if (formats & kSynthRsna) {
        std::ostringstream r;
        r << "ID,Label\n";
        for (const StudyRow& row : rows) {
            for (size_t k = 0; k < row.rsna_ids.size(); ++k) {
                const auto& l = row.slice_labels[k];
                for (int s = 0; s < kSynthSubtypes; ++s) {
                    r << row.rsna_ids[k] << '_' << names[static_cast<size_t>(s)] << ',' << (l[s] ? 1 : 0) << '\n';
                }
                r << row.rsna_ids[k] << "_any," << (std::any_of(l.begin(), l.end(), [](bool b) { return b; }) ? 1 : 0)
                  << '\n';
            }
        }
        write_file_atomic(out / "rsna" / "stage_2_train.csv", r.str());
    }

    // nnunet/dataset.json (nnU-Net v2): one CT channel, the label values of SynthLabel.
    if (formats & kSynthNnunet) {
        nlohmann::ordered_json labels;
        labels["background"] = static_cast<int>(kLabelBackground);
        for (int k = 0; k < kSynthSubtypes; ++k) labels[names[static_cast<size_t>(k)]] = k + 1;
        labels["calcification"] = static_cast<int>(kLabelCalcification);
        nlohmann::ordered_json j;
        j["name"] = "hemoscan synthetic head CT";
        j["description"] = "Synthetic head CT in HU with hemorrhage label maps (hemoscan synth, seed " +
                           std::to_string(options.seed) + "); calcification is a confounder, not a bleed";
        j["channel_names"] = {{"0", "CT"}};
        j["labels"] = labels;
        j["numTraining"] = n;
        j["file_ending"] = ".nii.gz";
        write_file_atomic(out / "nnunet" / "dataset.json", j.dump(2) + "\n");
    }

    // studies.csv: study-level labels, volumes and parameters.
    std::ostringstream s;
    s << "study,patient,slices,any";
    for (const auto& name : names) s << ',' << name;
    s << ",calcification";
    for (const auto& name : names) s << ',' << name << "_ml";
    s << ",midline_shift_mm,subdural_kind,intraventricular_kind,slice_mm,pixel_mm,noise_hu,instance_order,study_uid";
    if (formats & kSynthClasses) s << ",class,class_slice";
    if (mr) s << ",blood_age,microbleeds,field_t";
    s << '\n';
    for (const StudyRow& row : rows) {
        const bool any = std::any_of(row.present.begin(), row.present.end(), [](bool b) { return b; });
        s << row.study_id << ',' << row.patient_id << ',' << row.slices << ',' << (any ? 1 : 0);
        for (bool b : row.present) s << ',' << (b ? 1 : 0);
        s << ',' << (row.calcification ? 1 : 0);
        for (double ml : row.volume_ml) s << ',' << fmt::format("{:.3f}", ml);
        s << ',' << fmt::format("{:.1f}", row.params.midline_shift_mm) << ',' << row.params.subdural_kind << ','
          << row.params.intraventricular_kind << ',' << row.params.slice_mm << ',' << fmt::format("{:.6f}", row.params.pixel_mm) << ','
          << fmt::format("{:.1f}", row.params.noise_hu) << ',' << row.params.instance_order << ',' << row.study_uid;
        if (formats & kSynthClasses) s << ',' << row.class_name << ',' << row.class_slice;
        if (mr) s << ',' << row.blood_age << ',' << row.microbleeds << ',' << row.field_t;
        s << '\n';
        summary.slices += row.slices;
        summary.with_bleed += any ? 1 : 0;
        summary.with_calcification += row.calcification ? 1 : 0;
        for (int k = 0; k < kSynthSubtypes; ++k) summary.studies_per_subtype[k] += row.present[k] ? 1 : 0;
    }
    write_file_atomic(out / "studies.csv", s.str());
    summary.studies = n;
    summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    logger().info("synth: {} studies ({} with a bleed), {} slices in {:.1f} s -> {}", n, summary.with_bleed,
                  summary.slices, summary.seconds, out.string());
    return summary;
}

// ---------------------------------------------------------------------------------------------
// The example figure.

namespace {

cv::Scalar label_colour(int label) {
    switch (label) {
        case kLabelEpidural: return {60, 60, 255};           // red
        case kLabelIntraparenchymal: return {0, 230, 255};   // yellow
        case kLabelIntraventricular: return {255, 200, 0};   // cyan-blue
        case kLabelSubarachnoid: return {255, 80, 255};      // magenta
        case kLabelSubdural: return {80, 255, 80};           // green
        default: return {0, 150, 255};                       // orange: calcification
    }
}

void put_label(cv::Mat& img, const std::string& text, cv::Point at) {
    cv::putText(img, text, at, cv::FONT_HERSHEY_SIMPLEX, 0.5, cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
    cv::putText(img, text, at, cv::FONT_HERSHEY_SIMPLEX, 0.5, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
}

// The slice of a study with the largest area of `label` (-1 = a slice through the ventricles).
int best_slice(const SynthStudy& st, int label) {
    int best = -1, best_count = 0;
    for (int k = 0; k < st.ct.depth(); ++k) {
        int count;
        if (label < 0) {
            count = cv::countNonZero(st.tissue.at(k) == static_cast<int>(Tissue::Csf)) +
                    cv::countNonZero(st.tissue.at(k) == static_cast<int>(Tissue::WhiteMatter)) / 4;
        } else {
            count = cv::countNonZero(st.labels[k] == label);
        }
        if (count > best_count) best = k, best_count = count;
    }
    return best;
}

cv::Mat tile_for(const SynthStudy& st, int k, int highlight, const std::string& title) {
    cv::Mat img = synth_png(st.ct.slices[k], false);
    cv::cvtColor(img, img, cv::COLOR_GRAY2BGR);
    for (int label = 1; label <= kLabelCalcification; ++label) {
        if (highlight >= 0 && label != highlight) continue;
        const cv::Mat sel = st.labels[k] == label;
        if (cv::countNonZero(sel) == 0) continue;
        std::vector<std::vector<cv::Point>> contours;
        cv::findContours(sel, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
        if (label == kLabelCalcification) {
            for (const auto& c : contours) {
                const cv::Rect r = cv::boundingRect(c);
                cv::circle(img, (r.tl() + r.br()) / 2, std::max(r.width, r.height) / 2 + 5, label_colour(label), 1,
                           cv::LINE_AA);
            }
        } else {
            cv::drawContours(img, contours, -1, label_colour(label), 1, cv::LINE_8);
        }
    }
    put_label(img, title, {6, 18});
    return img;
}

}  // namespace

cv::Mat synth_example_grid(std::uint64_t seed, int tile) {
    struct Panel {
        int mask;               // force_subtypes
        int calc;               // force_calcification
        int label;              // the label shown (-1: a normal slice through the ventricles)
        std::string kind;       // subdural or intraventricular kind wanted ("" any)
        std::string title;
    };
    const std::vector<Panel> panels{
        {0, 0, -1, "", "normal"},
        {0, 1, kLabelCalcification, "", "calcification (confounder)"},
        {1 << (kLabelEpidural - 1), 0, kLabelEpidural, "", "epidural"},
        {1 << (kLabelSubdural - 1), 0, kLabelSubdural, "acute", "subdural (acute)"},
        {1 << (kLabelSubarachnoid - 1), 0, kLabelSubarachnoid, "", "subarachnoid"},
        {1 << (kLabelIntraparenchymal - 1), 0, kLabelIntraparenchymal, "", "intraparenchymal"},
        {1 << (kLabelIntraventricular - 1), 0, kLabelIntraventricular, "layering", "intraventricular"},
        {1 << (kLabelSubdural - 1), 0, kLabelSubdural, "chronic", "subdural (chronic)"},
    };
    cv::Mat grid(2 * tile, 4 * tile, CV_8UC3, cv::Scalar(0, 0, 0));
    for (size_t p = 0; p < panels.size(); ++p) {
        const Panel& panel = panels[p];
        SynthOptions o;
        o.seed = seed;
        o.size = tile;
        o.slices = 32;
        o.force_subtypes = panel.mask;
        o.force_calcification = panel.calc;
        o.keep_internals = true;
        cv::Mat img;
        double best_area = 0;
        // A few candidate studies; keep the slice showing the most of the finding.
        for (int i = 0; i < 12; ++i) {
            const SynthStudy st = generate_study(o, static_cast<int>(p) * 100 + i);
            const std::string& kind =
                panel.label == kLabelIntraventricular ? st.params.intraventricular_kind : st.params.subdural_kind;
            if (!panel.kind.empty() && kind != panel.kind) continue;
            const int k = best_slice(st, panel.label);
            if (k < 0) continue;
            const double area = panel.label < 0 ? 1.0 : cv::countNonZero(st.labels[k] == panel.label);
            if (area > best_area) {
                best_area = area;
                img = tile_for(st, k, panel.label, panel.title);
            }
            if (panel.label < 0 || panel.label == kLabelCalcification || (i >= 5 && !img.empty())) break;
        }
        if (img.empty()) continue;
        img.copyTo(grid(cv::Rect(static_cast<int>(p % 4) * tile, static_cast<int>(p / 4) * tile, tile, tile)));
    }
    return grid;
}

cv::Mat synth_mr_example_grid(std::uint64_t seed, int tile) {
    SynthOptions o;
    o.seed = seed;
    o.size = tile;
    o.slices = 24;
    o.modality = "mr";
    o.classes = {"bleed", "calcified", "bleed+calcified"};
    const std::vector<std::string> rows{"bleed", "calcified", "bleed+calcified"};
    const int n = static_cast<int>(o.sequences.size());
    cv::Mat grid(3 * tile, n * tile, CV_8UC3, cv::Scalar(0, 0, 0));
    for (int r = 0; r < 3; ++r) {
        const CohortCase cc = make_case(o, r, true);
        const int k = cc.class_slice;
        for (int s = 0; s < n; ++s) {
            const bool phase = o.sequences[static_cast<size_t>(s)] == "swi_phase";
            cv::Mat g = synth_mr_png(cc.mr.images[static_cast<size_t>(s)].slices[static_cast<size_t>(k)], phase,
                                     png_white(cc.mr.images[static_cast<size_t>(s)]));
            cv::Mat bgr;
            cv::cvtColor(g, bgr, cv::COLOR_GRAY2BGR);
            if (s == n - 1) {
                // Truth outlines on the last image: blood red, calcification cyan, microbleeds yellow.
                const cv::Mat& labels = cc.mr.labels[static_cast<size_t>(k)];
                const std::pair<cv::Mat, cv::Scalar> outlines[] = {
                    {(labels > 0) & (labels < kLabelCalcification), cv::Scalar(0, 0, 255)},
                    {labels == kLabelCalcification, cv::Scalar(255, 255, 0)},
                    {labels == kLabelMicrobleed, cv::Scalar(0, 255, 255)}};
                for (const auto& [sel, colour] : outlines) {
                    std::vector<std::vector<cv::Point>> contours;
                    cv::findContours(sel.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
                    cv::drawContours(bgr, contours, -1, colour, 1);
                }
            }
            put_label(bgr, s == 0 ? rows[static_cast<size_t>(r)] + " / " + o.sequences[0] : o.sequences[static_cast<size_t>(s)],
                      {6, 18});
            bgr.copyTo(grid(cv::Rect(s * tile, r * tile, tile, tile)));
        }
    }
    return grid;
}

}  // namespace hemoscan
