// One synthetic study: plan, scanner geometry, phantom slices, artefacts, blur and noise, labels.
#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcuid.h>
#include <spdlog/fmt/fmt.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "hemoscan/error.hpp"
#include "hemoscan/synth/synth.hpp"
#include "phantom.hpp"

namespace hemoscan {

using synth::Rng;

namespace {

// A multiple of 1/64 mm: exact in binary (float and double) and short in decimal, so positions
// survive DICOM's decimal strings and NIfTI's floats unchanged.
double grid64(double v) { return std::round(v * 64.0) / 64.0; }

void validate(const SynthOptions& o) {
    if (o.size < 32 || o.size > 2048) throw UsageError(fmt::format("`size` {} is outside 32..2048", o.size));
    if (o.slices < 1 || o.slices > 512) throw UsageError(fmt::format("`slices` {} is outside 1..512", o.slices));
    if (!(o.p_bleed >= 0 && o.p_bleed <= 1)) throw UsageError(fmt::format("`p_bleed` {} is outside 0..1", o.p_bleed));
    if (o.force_subtypes > 31 || o.force_subtypes < -1) throw UsageError("force_subtypes must be -1 or a mask 0..31");
    if (o.studies < 0) throw UsageError("`studies` must be >= 0");
    if (o.p_pathological_calcification > 1) throw UsageError("`p_pathological_calcification` must be -1 (default) or 0..1");
}

synth::StudyPlan make_plan(Rng& rng, const SynthOptions& o) {
    synth::StudyPlan plan;
    bool bleed;
    if (o.force_subtypes >= 0) {
        for (int s = 0; s < kSynthSubtypes; ++s) {
            if (o.force_subtypes & (1 << s)) plan.subtypes.push_back(s + 1);
        }
        bleed = !plan.subtypes.empty();
        rng.uniform();  // keep the stream aligned with the random case
    } else {
        bleed = rng.chance(o.p_bleed);
        if (bleed) {
            // 1-3 subtypes; frequencies loosely follow the RSNA 2019 label counts.
            const int n = 1 + rng.pick({0.55, 0.3, 0.15});
            std::vector<double> w{0.08, 0.26, 0.18, 0.24, 0.24};  // EDH, IPH, IVH, SAH, SDH
            for (int i = 0; i < n; ++i) {
                const int s = rng.pick(w);
                plan.subtypes.push_back(s + 1);
                w[s] = 0;
            }
            std::sort(plan.subtypes.begin(), plan.subtypes.end());
        }
    }
    const double p_calc = bleed ? 0.3 : 0.5;
    plan.calcification = o.force_calcification >= 0 ? o.force_calcification == 1 : rng.chance(p_calc);
    plan.p_pathological = o.p_pathological_calcification >= 0 ? o.p_pathological_calcification
                          : o.modality == "mr"                 ? 0.35
                                                               : 0.0;
    return plan;
}

// Beam-hardening streaks: dark bands between dense bone (petrous pyramids, skull base: above 1700 HU,
// denser than the vault), over the soft tissue only. Strong where there is much dense bone in the
// slice; occasionally faint ones between points of the vault.
void add_streaks(Rng& rng, cv::Mat& hu, const cv::Mat& tissue, double pixel) {
    std::vector<cv::Point> dense, bone;
    const int step = std::max(1, hu.rows / 128);
    for (int r = 0; r < hu.rows; r += step) {
        const float* h = hu.ptr<float>(r);
        for (int c = 0; c < hu.cols; c += step) {
            if (h[c] > 1700) dense.emplace_back(c, r);
            if (h[c] > 1000) bone.emplace_back(c, r);
        }
    }
    const double dense_mm2 = static_cast<double>(dense.size()) * step * step * pixel * pixel;
    double amplitude;
    int count;
    if (dense_mm2 > 120 && rng.chance(0.85)) {
        amplitude = rng.uniform(25, 55) * std::min(1.4, dense_mm2 / 400);
        count = rng.integer(2, 6);
    } else if (bone.size() > 20 && rng.chance(0.08)) {
        dense = bone;
        amplitude = rng.uniform(6, 14);
        count = rng.integer(1, 2);
    } else {
        return;
    }
    cv::Mat streak = cv::Mat::zeros(hu.size(), CV_32F);
    const int thickness = std::max(1, static_cast<int>(std::lround(1.6 / pixel)));
    for (int i = 0; i < count; ++i) {
        const cv::Point a = dense[static_cast<size_t>(rng.uniform() * dense.size())];
        const cv::Point b = dense[static_cast<size_t>(rng.uniform() * dense.size())];
        if (cv::norm(a - b) * pixel < 30) continue;
        cv::line(streak, a, b, cv::Scalar(-amplitude * rng.uniform(0.6, 1.0)), thickness, cv::LINE_8);
    }
    const double sigma = std::max(0.6, 1.2 / pixel);
    const int ksize = 2 * static_cast<int>(std::ceil(3 * sigma)) + 1;
    cv::GaussianBlur(streak, streak, cv::Size(ksize, ksize), sigma, sigma, cv::BORDER_REPLICATE);
    for (int r = 0; r < hu.rows; ++r) {
        float* h = hu.ptr<float>(r);
        const float* s = streak.ptr<float>(r);
        const std::uint8_t* t = tissue.ptr<std::uint8_t>(r);
        for (int c = 0; c < hu.cols; ++c) {
            const auto cls = static_cast<Tissue>(t[c]);
            if (cls != Tissue::Bone && cls != Tissue::Air && cls != Tissue::Headrest && h[c] < 300) h[c] += s[c];
        }
    }
}

// Gaussian blur with an explicit kernel size (the same one is used to scale the noise).
void blur(cv::Mat& m, double sigma) {
    if (sigma < 0.2) return;
    const int ksize = 2 * static_cast<int>(std::ceil(3 * sigma)) + 1;
    cv::GaussianBlur(m, m, cv::Size(ksize, ksize), sigma, sigma, cv::BORDER_REPLICATE);
}

// Correlated Gaussian-like noise with standard deviation `sd` (after the correlation blur).
cv::Mat make_noise(Rng& rng, int n, double sd, double corr_sigma) {
    cv::Mat noise(n, n, CV_32F);
    // Sum of four 16-bit uniforms per 64-bit draw: mean 2, variance 1/3 (x 65536 units) -> near normal.
    constexpr double kScale = 1.7320508075688772 / 65536.0;  // sqrt(3) / 65536
    for (int r = 0; r < n; ++r) {
        float* row = noise.ptr<float>(r);
        for (int c = 0; c < n; ++c) {
            const std::uint64_t u = rng.next();
            const double sum = static_cast<double>((u & 0xffff) + ((u >> 16) & 0xffff) + ((u >> 32) & 0xffff) + (u >> 48));
            row[c] = static_cast<float>((sum - 2 * 65535.5) * kScale);
        }
    }
    double gain = 1;
    if (corr_sigma >= 0.2) {
        const int ksize = 2 * static_cast<int>(std::ceil(3 * corr_sigma)) + 1;
        const cv::Mat g = cv::getGaussianKernel(ksize, corr_sigma, CV_64F);
        gain = 0;
        for (int i = 0; i < ksize; ++i) gain += g.at<double>(i) * g.at<double>(i);  // sd factor of a 2D blur
        cv::GaussianBlur(noise, noise, cv::Size(ksize, ksize), corr_sigma, corr_sigma, cv::BORDER_REPLICATE);
    }
    noise *= sd / gain;
    return noise;
}

}  // namespace

const std::array<std::string, kSynthSubtypes>& synth_subtype_names() {
    static const std::array<std::string, kSynthSubtypes> names{"epidural", "intraparenchymal", "intraventricular",
                                                               "subarachnoid", "subdural"};
    return names;
}

bool SynthStudy::any() const {
    return std::any_of(present.begin(), present.end(), [](bool p) { return p; });
}

bool SynthStudy::slice_has(int k, int subtype) const {
    const cv::Mat& m = labels.at(static_cast<size_t>(k));
    return cv::countNonZero(m == (subtype + 1)) > 0;
}

std::uint64_t synth_study_seed(std::uint64_t seed, int index) {
    return synth::splitmix64(synth::splitmix64(seed) ^ (0x5851f42d4c957f2dULL * (static_cast<std::uint64_t>(index) + 1)));
}

std::string synth_uid(std::uint64_t seed, int study, int kind, int slice) {
    const std::uint64_t h = synth::splitmix64(seed ^ 0x48454d4f5343414eULL) % 900000000000000ULL + 100000000000000ULL;
    std::string uid = fmt::format("{}.9.{}.{}.{}", SITE_UID_ROOT, h, study + 1, kind);
    if (kind >= 3) uid += "." + std::to_string(slice + 1);
    return uid;
}

SynthStudy generate_study(const SynthOptions& o, int index) {
    validate(o);
    const std::uint64_t study_seed = synth_study_seed(o.seed, index);
    Rng rng(study_seed);
    const synth::StudyPlan plan = make_plan(rng, o);

    // Scanner: field of view 205-256 mm (pixels 0.40-0.50 mm at 512; larger at smaller sizes).
    synth::ScanGeometry scan;
    scan.size = o.size;
    scan.slices = o.slices;
    const double fov = rng.integer(205, 256);
    scan.pixel = std::round(fov / o.size * 4096.0) / 4096.0;
    scan.thickness = std::array<double, 4>{2.5, 3.0, 4.0, 5.0}[rng.pick({0.25, 0.15, 0.2, 0.4})];
    scan.origin_x = grid64(-(o.size - 1) * scan.pixel / 2 + rng.uniform(-4, 4));
    scan.origin_y = grid64(-(o.size - 1) * scan.pixel / 2 + rng.uniform(-4, 4));
    scan.origin_z = grid64(rng.uniform(-160, 40));
    const double noise_sd = rng.uniform(3, 10);
    const double blur_mm = rng.uniform(0.3, 0.55);
    const int order = rng.pick({0.4, 0.3, 0.3});

    SynthStudy st;
    st.index = index;
    st.study_id = fmt::format("study_{:04d}", index);
    st.patient_id = fmt::format("SYN{}-{:04d}", o.seed, index);
    st.params.pixel_mm = scan.pixel;
    st.params.slice_mm = scan.thickness;
    st.params.noise_hu = noise_sd;
    st.params.blur_mm = blur_mm;
    st.params.instance_order = order == 0 ? "ascending" : (order == 1 ? "descending" : "shuffled");

    const std::uint64_t slice_seed = rng.next();
    const std::uint64_t head_seed = rng.next();

    Volume& v = st.ct;
    v.geometry.spacing = {scan.pixel, scan.pixel, scan.thickness};
    v.geometry.origin = {scan.origin_x, scan.origin_y, scan.origin_z};
    v.geometry.direction = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const int n = o.size;
    const double fov_r2 = (n / 2.0) * (n / 2.0), centre = (n - 1) / 2.0;
    // Smallest mask area kept on a slice: a few pixels of a bleed's edge are not a finding.
    const int min_pixels = std::max(1, static_cast<int>(std::lround(3.0 / (scan.pixel * scan.pixel))));
    // A planned bleed can miss the slab or shrink below the smallest area: then draw the head again
    // (a few times at most; the study's labels always come from its masks).
    for (int attempt = 0; attempt < 4; ++attempt) {
        Rng hrng(synth::splitmix64(head_seed + static_cast<std::uint64_t>(attempt)));
        st.params.subdural_kind.clear();
        const synth::HeadModel head = synth::sample_head(hrng, scan, plan, &st.params.subdural_kind);
        st.params.midline_shift_mm = head.shift;
        st.params.intraventricular_kind.clear();
        for (const synth::Bleed& b : head.bleeds) {
            if (b.label == kLabelIntraventricular) st.params.intraventricular_kind = b.cast ? "cast" : "layering";
        }
        v.slices.clear();
        v.slice_meta.clear();
        st.labels.clear();
        st.clean.clear();
        st.tissue.clear();
        for (int k = 0; k < o.slices; ++k) {
            cv::Mat hu, tissue, labels;
            synth::render_slice(head, scan, k, hu, tissue, labels);
            if (o.keep_internals) {
                st.clean.push_back(hu.clone());
                st.tissue.push_back(tissue);
            }
            Rng srng(synth::splitmix64(slice_seed + static_cast<std::uint64_t>(k)));
            add_streaks(srng, hu, tissue, scan.pixel);
            blur(hu, blur_mm / scan.pixel);
            hu += make_noise(srng, n, noise_sd, 0.35 / scan.pixel);
            // Outside the reconstruction circle the scanner writes -1024; inside, whole HU, -1024..3071.
            for (int r = 0; r < n; ++r) {
                float* row = hu.ptr<float>(r);
                const double dy = r - centre;
                for (int c = 0; c < n; ++c) {
                    const double dx = c - centre;
                    row[c] = dx * dx + dy * dy > fov_r2 ? -1024.f : std::clamp(std::round(row[c]), -1024.f, 3071.f);
                }
            }
            // Drop specks: per label, a slice section smaller than ~3 mm^2 is removed from the mask.
            for (int label = 1; label <= kLabelCalcification; ++label) {
                const cv::Mat sel = labels == label;
                const int count = cv::countNonZero(sel);
                if (count > 0 && count < min_pixels) labels.setTo(0, sel);
            }
            v.slices.push_back(hu);
            st.labels.push_back(labels);
            ImageMeta m;
            m.modality = "CT";
            m.rows = m.cols = n;
            m.has_position = true;
            m.position = {scan.origin_x, scan.origin_y, scan.slice_z(k)};
            m.pixel_spacing = {scan.pixel, scan.pixel};
            m.has_pixel_spacing = true;
            m.slice_thickness = scan.thickness;
            m.is_hu = true;
            m.rescale_intercept = -1024;
            v.slice_meta.push_back(m);
        }
        bool complete = true;
        for (int label : plan.subtypes) {
            bool found = false;
            for (const cv::Mat& labels : st.labels) found = found || cv::countNonZero(labels == label) > 0;
            complete = complete && found;
        }
        if (complete) break;
    }

    // Study-level truth from the masks.
    const double voxel_ml = scan.pixel * scan.pixel * scan.thickness / 1000.0;
    for (const cv::Mat& labels : st.labels) {
        for (int s = 0; s < kSynthSubtypes; ++s) {
            const int count = cv::countNonZero(labels == (s + 1));
            st.volume_ml[s] += count * voxel_ml;
            if (count > 0) st.present[s] = true;
        }
        if (cv::countNonZero(labels == kLabelCalcification) > 0) st.calcification = true;
    }
    if (!st.present[kLabelSubdural - 1]) st.params.subdural_kind.clear();
    if (!st.present[kLabelIntraventricular - 1]) st.params.intraventricular_kind.clear();

    // Identifiers and instance numbers.
    st.study_uid = synth_uid(o.seed, index, 1);
    st.series_uid = synth_uid(o.seed, index, 2);
    st.frame_uid = synth_uid(o.seed, index, 6, 0);
    st.instance_numbers.resize(o.slices);
    for (int k = 0; k < o.slices; ++k) {
        st.sop_uids.push_back(synth_uid(o.seed, index, 3, k));
        st.instance_numbers[k] = order == 1 ? o.slices - k : k + 1;
    }
    if (order == 2) rng.shuffle(st.instance_numbers);
    for (int k = 0; k < o.slices; ++k) {
        v.slice_meta[k].study_uid = st.study_uid;
        v.slice_meta[k].series_uid = st.series_uid;
        v.slice_meta[k].sop_uid = st.sop_uids[k];
        v.slice_meta[k].patient_id = st.patient_id;
        v.slice_meta[k].instance_number = st.instance_numbers[k];
    }
    return st;
}

}  // namespace hemoscan
