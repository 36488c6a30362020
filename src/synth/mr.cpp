// Synthetic brain MRI: the CT phantom's tissue map rendered per sequence (T1, T2, FLAIR, SWI magnitude
// and phase) with blood signal by age, microbleeds, calcifications of opposite phase, a smooth bias field
// and Rician noise. The table of values and its sources: docs/synthetic.md, "MRI".
#include <spdlog/fmt/fmt.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "hemoscan/error.hpp"
#include "hemoscan/io/sequences.hpp"
#include "hemoscan/synth/synth.hpp"
#include "hemoscan/util/strings.hpp"
#include "random.hpp"

namespace hemoscan {

using synth::Rng;

namespace {

constexpr double kPi = 3.14159265358979323846;
enum Seq { kT1 = 0, kT2 = 1, kFlair = 2, kSwi = 3, kMagnitudes = 4 };

// Magnitude per Tissue value (Air .. Headrest; PartialVolume is filled from its neighbours), relative
// units with white matter ~0.4-0.75. Calcification on T1 is drawn per study (reported as variable).
constexpr double kContrast[kMagnitudes][12] = {
    // air  fat   soft  bone  csf   grey  white dura  blood calc  oedema headrest
    {0.0, 1.00, 0.45, 0.06, 0.12, 0.55, 0.75, 0.35, 0.50, 0.60, 0.42, 0.0},  // T1 (spin echo)
    {0.0, 0.65, 0.35, 0.05, 1.00, 0.55, 0.40, 0.20, 0.50, 0.10, 0.85, 0.0},  // T2 (turbo spin echo)
    {0.0, 0.55, 0.40, 0.05, 0.06, 0.62, 0.48, 0.25, 0.50, 0.12, 0.90, 0.0},  // FLAIR (CSF nulled)
    {0.0, 0.55, 0.40, 0.05, 0.70, 0.50, 0.58, 0.30, 0.50, 0.08, 0.65, 0.0},  // SWI magnitude (T2*-weighted)
};
// Susceptibility relative to brain (paramagnetic > 0): what the phase shows after high-pass filtering.
constexpr double kChi[12] = {0, 0, 0, -0.25, -0.02, 0.04, 0, 0, 0, -1.0, 0, 0};

// Blood by age (Bradley 1993; Parizel et al. 2001): T1, T2, FLAIR, SWI magnitude of the core and of a
// 1.5 mm rim, and the susceptibility of core and rim (deoxy-/methaemoglobin, haemosiderin: paramagnetic).
struct BloodStage {
    const char* name;
    double core[kMagnitudes];
    double rim[kMagnitudes];
    double chi_core, chi_rim;
};
constexpr BloodStage kStages[] = {
    {"hyperacute", {0.52, 0.80, 0.75, 0.45}, {0.50, 0.45, 0.55, 0.15}, 0.3, 1.0},
    {"acute", {0.50, 0.15, 0.25, 0.10}, {0.50, 0.15, 0.25, 0.10}, 1.0, 1.0},
    {"early_subacute", {0.95, 0.18, 0.35, 0.12}, {0.95, 0.18, 0.35, 0.10}, 1.0, 1.0},
    {"late_subacute", {0.95, 0.90, 0.85, 0.45}, {0.90, 0.60, 0.70, 0.25}, 0.6, 0.8},
    {"chronic", {0.15, 0.95, 0.15, 0.65}, {0.25, 0.08, 0.10, 0.04}, 0.1, 1.2},
};
constexpr int kStageCount = 5;
// Blood mixed with CSF (subarachnoid, intraventricular) until it is chronic: bright on FLAIR, the
// classic sign; T2 and SWI less dark than a clot.
constexpr double kCsfBlood[kMagnitudes] = {0.45, 0.70, 0.85, 0.30};
constexpr double kCsfBloodChi = 0.5;
// Microbleeds: haemosiderin dots, dark on SWI (and blooming), faint on T2, invisible on T1/FLAIR.
constexpr double kMicrobleedT2 = 0.22, kMicrobleedSwi = 0.05, kMicrobleedChi = 1.2;

struct SeqInfo {
    const char* name;
    const char* description;
    int magnitude;  // index into kContrast, or -1 for phase
};
constexpr SeqInfo kSeqs[] = {{"t1", "T1 SE", kT1},       {"t2", "T2 TSE", kT2},        {"flair", "T2 FLAIR", kFlair},
                             {"swi_mag", "SWI magnitude", kSwi}, {"swi_phase", "SWI phase (filtered)", -1}};

const SeqInfo& seq_info(const std::string& name) {
    for (const SeqInfo& s : kSeqs) {
        if (name == s.name) return s;
    }
    throw UsageError("unknown MR sequence '" + name + "' (t1, t2, flair, swi_mag, swi_phase; swi = both SWI images)");
}

void gauss(cv::Mat& m, double sigma) {
    if (sigma < 0.2) return;
    const int k = 2 * static_cast<int>(std::ceil(3 * sigma)) + 1;
    cv::GaussianBlur(m, m, cv::Size(k, k), sigma, sigma, cv::BORDER_REPLICATE);
}

// Partial-volume voxels take the mean of their non-partial neighbours (normalised convolution).
void fill_partial(cv::Mat& value, const cv::Mat& valid) {
    cv::Mat w;
    valid.convertTo(w, CV_32F, 1.0 / 255.0);
    cv::Mat vw = value.mul(w);
    cv::Mat vb = vw.clone(), wb = w.clone();
    gauss(vb, 1.2);
    gauss(wb, 1.2);
    for (int r = 0; r < value.rows; ++r) {
        float* v = value.ptr<float>(r);
        const float* a = vb.ptr<float>(r);
        const float* b = wb.ptr<float>(r);
        const std::uint8_t* ok = valid.ptr<std::uint8_t>(r);
        for (int c = 0; c < value.cols; ++c) {
            if (!ok[c]) v[c] = b[c] > 1e-3f ? a[c] / b[c] : 0.f;
        }
    }
}

// A smooth field of unit-ish amplitude: three plane waves of 150-400 mm wavelength (the bias field).
struct Bias {
    double k[3][3], phase[3], amplitude;
    double at(double x, double y, double z) const {
        double s = 0;
        for (int i = 0; i < 3; ++i) s += std::cos(k[i][0] * x + k[i][1] * y + k[i][2] * z + phase[i]);
        return std::exp(amplitude * s / std::sqrt(1.5));
    }
};

Bias draw_bias(Rng& rng) {
    Bias b{};
    for (int i = 0; i < 3; ++i) {
        const double wl = rng.uniform(150, 400), az = rng.uniform(0, 2 * kPi), el = rng.uniform(-0.6, 0.6);
        const double kk = 2 * kPi / wl;
        b.k[i][0] = kk * std::cos(el) * std::cos(az);
        b.k[i][1] = kk * std::cos(el) * std::sin(az);
        b.k[i][2] = kk * std::sin(el);
        b.phase[i] = rng.uniform(0, 2 * kPi);
    }
    b.amplitude = rng.uniform(0.05, 0.2);
    return b;
}

// Microbleeds: 2-5 mm discs in grey or white matter away from the other findings (label 7).
int add_microbleeds(Rng& rng, const SynthStudy& ct, std::vector<cv::Mat>& labels) {
    const int count = rng.chance(0.35) ? rng.integer(2, 8) : 0;
    const double pixel = ct.params.pixel_mm;
    int placed = 0;
    for (int i = 0; i < count; ++i) {
        const double r_mm = rng.uniform(1.0, 2.5);
        const int r_px = std::max(1, static_cast<int>(std::lround(r_mm / pixel)));
        for (int attempt = 0; attempt < 60; ++attempt) {
            const int k = rng.integer(0, ct.ct.depth() - 1);
            const int row = rng.integer(r_px, ct.ct.rows() - 1 - r_px), col = rng.integer(r_px, ct.ct.cols() - 1 - r_px);
            const auto t = static_cast<Tissue>(ct.tissue[k].at<std::uint8_t>(row, col));
            if (t != Tissue::GreyMatter && t != Tissue::WhiteMatter) continue;
            const cv::Rect box(col - 2 * r_px, row - 2 * r_px, 4 * r_px + 1, 4 * r_px + 1);
            const cv::Rect inside = box & cv::Rect(0, 0, ct.ct.cols(), ct.ct.rows());
            if (cv::countNonZero(labels[k](inside)) > 0) continue;
            cv::Mat disc = cv::Mat::zeros(labels[k].size(), CV_8U);
            cv::circle(disc, {col, row}, r_px, cv::Scalar(255), cv::FILLED, cv::LINE_8);
            labels[k].setTo(kLabelMicrobleed, (disc != 0) & (labels[k] == 0));
            ++placed;
            break;
        }
    }
    return placed;
}

// The blood stage of a bleed label: a subdural follows the CT's kind, the others the study's age.
int stage_for(int label, int study_stage, const std::string& subdural_kind) {
    if (label == kLabelSubdural && !subdural_kind.empty()) {
        if (subdural_kind == "acute") return 1;
        if (subdural_kind == "chronic") return 4;
        return 3;  // subacute, mixed
    }
    return study_stage;
}

struct SliceMaps {
    cv::Mat magnitude[kMagnitudes];  // base signal per sequence, before bias and noise
    cv::Mat chi;                     // susceptibility of every voxel
    cv::Mat lesion_chi;              // of blood, calcium and microbleeds only (SWI blooming)
};

// Base maps of slice k from its tissue and label maps.
SliceMaps base_maps(const SynthStudy& ct, int k, const cv::Mat& labels, int study_stage, double calc_t1) {
    const cv::Mat& tissue = ct.tissue[static_cast<size_t>(k)];
    const int rows = tissue.rows, cols = tissue.cols;
    SliceMaps m;
    for (auto& mag : m.magnitude) mag = cv::Mat::zeros(rows, cols, CV_32F);
    m.chi = cv::Mat::zeros(rows, cols, CV_32F);
    m.lesion_chi = cv::Mat::zeros(rows, cols, CV_32F);
    // Distance of each blood voxel to the clot's edge: its rim (1.5 mm) carries haemosiderin/deoxy-Hb.
    cv::Mat blood = tissue == static_cast<int>(Tissue::Blood), dist;
    cv::distanceTransform(blood, dist, cv::DIST_L2, 3);
    const float rim_px = static_cast<float>(1.5 / ct.params.pixel_mm);
    const cv::Mat valid = tissue != static_cast<int>(Tissue::PartialVolume);
    for (int r = 0; r < rows; ++r) {
        const std::uint8_t* t = tissue.ptr<std::uint8_t>(r);
        const std::uint8_t* l = labels.ptr<std::uint8_t>(r);
        const float* d = dist.ptr<float>(r);
        for (int c = 0; c < cols; ++c) {
            const int ti = std::min<int>(t[c], 11);
            if (t[c] == static_cast<int>(Tissue::PartialVolume)) continue;
            double v[kMagnitudes], chi = kChi[ti], lesion = 0;
            for (int s = 0; s < kMagnitudes; ++s) v[s] = kContrast[s][ti];
            if (t[c] == static_cast<int>(Tissue::Calcification)) {
                v[kT1] = calc_t1;
                lesion = chi;
            } else if (t[c] == static_cast<int>(Tissue::Blood)) {
                const int label = l[c];
                const int stage = stage_for(label, study_stage, ct.params.subdural_kind);
                const bool csf_mix = (label == kLabelSubarachnoid || label == kLabelIntraventricular) && stage != 4;
                const BloodStage& b = kStages[stage];
                const bool rim = d[c] <= rim_px;
                for (int s = 0; s < kMagnitudes; ++s) v[s] = csf_mix ? kCsfBlood[s] : (rim ? b.rim[s] : b.core[s]);
                chi = lesion = csf_mix ? kCsfBloodChi : (rim ? b.chi_rim : b.chi_core);
            }
            if (l[c] == kLabelMicrobleed) {
                v[kT2] = kMicrobleedT2;
                v[kSwi] = kMicrobleedSwi;
                chi = lesion = kMicrobleedChi;
            }
            for (int s = 0; s < kMagnitudes; ++s) m.magnitude[s].at<float>(r, c) = static_cast<float>(v[s]);
            m.chi.at<float>(r, c) = static_cast<float>(chi);
            m.lesion_chi.at<float>(r, c) = static_cast<float>(lesion);
        }
    }
    for (auto& mag : m.magnitude) fill_partial(mag, valid);
    fill_partial(m.chi, valid);
    return m;
}

// |signal + complex Gaussian noise| (Rician), and the phase noise that goes with it.
void rician(Rng& rng, cv::Mat& magnitude, double sigma, cv::Mat* phase_noise) {
    if (phase_noise) *phase_noise = cv::Mat(magnitude.size(), CV_32F);
    for (int r = 0; r < magnitude.rows; ++r) {
        float* v = magnitude.ptr<float>(r);
        float* pn = phase_noise ? phase_noise->ptr<float>(r) : nullptr;
        for (int c = 0; c < magnitude.cols; ++c) {
            const double re = v[c] + sigma * rng.normal(), im = sigma * rng.normal();
            v[c] = static_cast<float>(std::sqrt(re * re + im * im));
            if (pn) pn[c] = static_cast<float>(std::atan2(im, re));
        }
    }
}

}  // namespace

const std::vector<std::string>& mr_sequence_names() { return known_sequence_names(); }

std::vector<std::string> parse_mr_sequences(const std::string& spec) {
    std::vector<std::string> out;
    auto add = [&out](const std::string& s) {
        if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
    };
    for (const std::string& raw : split(spec, ',')) {
        const std::string s = to_lower(trim(raw));
        if (s.empty()) continue;
        if (s == "swi") {
            add("swi_mag");
            add("swi_phase");
            continue;
        }
        seq_info(s);  // throws for unknown names
        add(s);
    }
    if (out.empty()) throw UsageError("`sequences` names no MR sequence (t1, t2, flair, swi)");
    return out;
}

cv::Mat synth_mr_png(const cv::Mat& values, bool phase, double white) {
    cv::Mat out;
    if (phase) {
        values.convertTo(out, CV_8U, 255.0 / (2 * kPi), 127.5);
    } else {
        values.convertTo(out, CV_8U, 255.0 / std::max(white, 1e-6));
    }
    return out;
}

SynthMrStudy synth_mr_study(const SynthStudy& ct, const SynthOptions& o) {
    if (ct.tissue.size() != static_cast<size_t>(ct.ct.depth())) {
        throw UsageError("synth_mr_study: the CT study must be generated with keep_internals");
    }
    Rng rng(synth_study_seed(o.seed ^ 0x4d52494d52494d52ULL, ct.index));
    SynthMrStudy mr;
    for (const auto& s : o.sequences) seq_info(s);
    mr.sequences = o.sequences;
    mr.field_t = rng.chance(0.5) ? 3.0 : 1.5;
    // SNR: white matter over the noise sigma, 25-60 at 3 T, lower at 1.5 T.
    mr.noise = rng.uniform(1.0 / 60, 1.0 / 25) * (mr.field_t < 2 ? 1.4 : 1.0);
    const int study_stage = rng.pick({0.15, 0.35, 0.2, 0.2, 0.1});
    const double calc_t1 = rng.uniform(0.35, 0.85);
    const Bias bias = draw_bias(rng);
    const double phase_scale = 1.6 * (o.phase_left_handed ? 1.0 : -1.0);  // right-handed: paramagnetic negative
    mr.labels.reserve(ct.labels.size());
    for (const cv::Mat& l : ct.labels) mr.labels.push_back(l.clone());
    if (ct.any()) mr.microbleeds = add_microbleeds(rng, ct, mr.labels);
    bool blood = false;
    for (const cv::Mat& t : ct.tissue) blood = blood || cv::countNonZero(t == static_cast<int>(Tissue::Blood)) > 0;
    if (blood || mr.microbleeds > 0) mr.blood_age = kStages[study_stage].name;

    const Volume& v = ct.ct;
    const double pixel = ct.params.pixel_mm;
    mr.images.resize(mr.sequences.size());
    for (size_t s = 0; s < mr.sequences.size(); ++s) {
        mr.images[s].geometry = v.geometry;
        mr.images[s].slice_meta = v.slice_meta;
        for (auto& m : mr.images[s].slice_meta) {
            m.modality = "MR";
            m.is_hu = false;
            m.rescale_intercept = 0;
            m.sequences = {mr.sequences[s]};
            m.series_description = seq_info(mr.sequences[s]).description;
        }
    }
    for (int k = 0; k < v.depth(); ++k) {
        Rng srng(synth::splitmix64(rng.next()));
        SliceMaps maps = base_maps(ct, k, mr.labels[static_cast<size_t>(k)], study_stage, calc_t1);
        cv::Mat bias_map(v.rows(), v.cols(), CV_32F);
        const double z = v.slice_meta[static_cast<size_t>(k)].position[2];
        for (int r = 0; r < v.rows(); ++r) {
            for (int c = 0; c < v.cols(); ++c) {
                bias_map.at<float>(r, c) = static_cast<float>(bias.at(c * pixel, r * pixel, z));
            }
        }
        // Blooming: the field of a focus darkens SWI magnitude beyond its edge.
        cv::Mat bloom = cv::abs(maps.lesion_chi);
        gauss(bloom, 1.0 / pixel);
        // Filtered phase: the susceptibility map, slightly spread, minus its ~8 mm low-pass (the high-pass
        // filter that removes background fields).
        cv::Mat near = maps.chi.clone(), far = maps.chi.clone();
        gauss(near, 0.6 / pixel);
        gauss(far, 8.0 / pixel);
        const cv::Mat phase_clean = (near - far) * phase_scale;
        cv::Mat swi_noise;
        for (size_t s = 0; s < mr.sequences.size(); ++s) {
            const SeqInfo& info = seq_info(mr.sequences[s]);
            const int which = info.magnitude >= 0 ? info.magnitude : kSwi;
            cv::Mat m = maps.magnitude[which].clone();
            if (which == kSwi) {
                cv::Mat e;
                cv::exp(-1.2 * bloom, e);
                m = m.mul(e);
            }
            gauss(m, 0.5);  // the MR point spread
            m = m.mul(bias_map);
            cv::Mat phase_noise;
            rician(srng, m, mr.noise * 0.75, info.magnitude < 0 ? &phase_noise : nullptr);
            cv::Mat out;
            if (info.magnitude >= 0) {
                out = m * 1000.0;
            } else {
                // Phase noise grows as the signal falls (pure noise in air), then wraps into -pi..pi.
                out = phase_clean + phase_noise;
                for (int r = 0; r < out.rows; ++r) {
                    float* p = out.ptr<float>(r);
                    for (int c = 0; c < out.cols; ++c) {
                        p[c] = static_cast<float>(std::remainder(static_cast<double>(p[c]), 2 * kPi));
                    }
                }
            }
            mr.images[s].slices.push_back(out);
        }
    }
    return mr;
}

}  // namespace hemoscan
