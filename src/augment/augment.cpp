// Seeded augmentation: one draw per sample, the same geometry for image and mask.
#include "hemoscan/augment/augment.hpp"

#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <vector>

#include "hemoscan/error.hpp"
#include "hemoscan/util/channels.hpp"
#include "hemoscan/util/random.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Uniform in [0, 1) from the top 53 bits: the same numbers on every standard library, unlike
// std::uniform_real_distribution whose algorithm is implementation-defined.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

double uniform(std::mt19937_64& rng, double lo, double hi) { return lo + (hi - lo) * uniform01(rng); }

void check_options(const AugmentOptions& o) {
    auto require = [](bool ok, const std::string& what) {
        if (!ok) throw UsageError("augmentation: " + what);
    };
    require(o.p_hflip >= 0 && o.p_hflip <= 1, "hflip probability must be in [0, 1]");
    require(o.p_vflip >= 0 && o.p_vflip <= 1, "vflip probability must be in [0, 1]");
    require(o.rotate_deg >= 0 && o.rotate_deg <= 180, "rotation must be in [0, 180] degrees");
    require(o.shear_deg >= 0 && o.shear_deg < 60, "shear must be in [0, 60) degrees");
    require(o.zoom >= 0 && o.zoom < 1, "zoom must be in [0, 1)");
    require(o.translate >= 0 && o.translate <= 1, "translation must be in [0, 1] (fraction of the size)");
    require(o.intensity_scale >= 0 && o.intensity_scale < 1, "intensity scale must be in [0, 1)");
    require(o.contrast >= 0 && o.contrast < 1, "contrast must be in [0, 1)");
    require(o.gamma >= 0 && std::isfinite(o.gamma), "gamma must be >= 0");
    require(o.noise_std >= 0 && std::isfinite(o.noise_std), "noise sigma must be >= 0");
}

// 3x3 homogeneous matrices, row-major.
using Mat3 = cv::Matx33d;

Mat3 translation(double x, double y) { return Mat3(1, 0, x, 0, 1, y, 0, 0, 1); }

// The warp without the flips: rotation, shear and zoom about the centre, then the shift.
Mat3 spatial_matrix(const AugmentDraw& d, cv::Size size) {
    const double cx = (size.width - 1) / 2.0, cy = (size.height - 1) / 2.0;
    const double a = d.angle_deg * kPi / 180.0;
    // Same sense as cv::getRotationMatrix2D: a positive angle turns counter-clockwise on screen.
    const Mat3 rotate(std::cos(a), std::sin(a), 0, -std::sin(a), std::cos(a), 0, 0, 0, 1);
    const Mat3 shear(1, std::tan(d.shear_deg * kPi / 180.0), 0, 0, 1, 0, 0, 0, 1);
    const Mat3 zoom(d.scale, 0, 0, 0, d.scale, 0, 0, 0, 1);
    return translation(cx + d.tx, cy + d.ty) * rotate * shear * zoom * translation(-cx, -cy);
}

Mat3 flip_matrix(const AugmentDraw& d, cv::Size size) {
    // x -> (w - 1) - x maps pixel centres onto pixel centres, exactly what cv::flip does.
    return Mat3(d.hflip ? -1 : 1, 0, d.hflip ? size.width - 1 : 0, 0, d.vflip ? -1 : 1, d.vflip ? size.height - 1 : 0,
                0, 0, 1);
}

bool is_identity(const AugmentDraw& d) {
    return d.angle_deg == 0 && d.shear_deg == 0 && d.scale == 1 && d.tx == 0 && d.ty == 0;
}

cv::Mat affine_2x3(const Mat3& m) { return cv::Mat(cv::Matx23d(m(0, 0), m(0, 1), m(0, 2), m(1, 0), m(1, 1), m(1, 2))); }

void flip_in_place(cv::Mat& m, const AugmentDraw& d) {
    if (m.empty() || (!d.hflip && !d.vflip)) return;
    const int code = d.hflip && d.vflip ? -1 : (d.hflip ? 1 : 0);
    cv::Mat out;
    cv::flip(m, out, code);
    m = out;
}

}  // namespace

AugmentDraw draw_augment(const AugmentOptions& options, cv::Size size, std::uint64_t seed) {
    AugmentDraw d;
    if (!options.enabled) return d;
    check_options(options);
    std::mt19937_64 rng(seed);
    // Every parameter is always drawn, in a fixed order, so that switching one option off does not
    // change the values of the others.
    d.hflip = uniform01(rng) < options.p_hflip;
    d.vflip = uniform01(rng) < options.p_vflip;
    d.angle_deg = uniform(rng, -options.rotate_deg, options.rotate_deg);
    d.shear_deg = uniform(rng, -options.shear_deg, options.shear_deg);
    d.scale = uniform(rng, 1 - options.zoom, 1 + options.zoom);
    d.tx = uniform(rng, -options.translate, options.translate) * size.width;
    d.ty = uniform(rng, -options.translate, options.translate) * size.height;
    d.intensity = uniform(rng, 1 - options.intensity_scale, 1 + options.intensity_scale);
    d.contrast = uniform(rng, 1 - options.contrast, 1 + options.contrast);
    const double log_gamma = std::log1p(options.gamma);
    d.gamma = std::exp(uniform(rng, -log_gamma, log_gamma));
    d.noise_std = uniform(rng, 0, options.noise_std);
    d.noise_seed = rng();
    return d;
}

cv::Mat augment_matrix(const AugmentDraw& draw, cv::Size size) {
    return affine_2x3(spatial_matrix(draw, size) * flip_matrix(draw, size));
}

void apply_augment(Sample& sample, const AugmentDraw& draw, const AugmentOptions& options) {
    if (sample.image.empty()) return;
    if (!sample.mask.empty() && sample.mask.size() != sample.image.size()) {
        throw InputError((sample.meta.path.empty() ? sample.id : sample.meta.path) +
                         ": mask size differs from the image size");
    }
    cv::Mat image;
    sample.image.convertTo(image, CV_32F);  // a copy: the caller's buffers are never shared
    cv::Mat mask = sample.mask.empty() ? cv::Mat() : sample.mask.clone();

    // Intensity first, on the source image, so that pixels warped in from outside keep fill_value.
    if (draw.intensity != 1) image *= draw.intensity;
    if (draw.contrast != 1) {
        std::vector<cv::Mat> channels;
        cv::split(image, channels);
        for (auto& c : channels) {
            const double mean = cv::mean(c)[0];
            c.convertTo(c, CV_32F, draw.contrast, mean * (1 - draw.contrast));
        }
        cv::merge(channels, image);
    }
    if (draw.gamma != 1) {
        // Gamma is meant for 0..1 data; values <= 0 (air, or below the mean of z-scored data) are
        // left alone so that the map stays monotone and continuous.
        const float g = static_cast<float>(draw.gamma);
        cv::Mat flat = image.reshape(1);  // forEach<float> visits only the first channel of a multi-channel Mat
        flat.forEach<float>([g](float& v, const int*) {
            if (v > 0) v = std::pow(v, g);
        });
    }

    flip_in_place(image, draw);
    flip_in_place(mask, draw);
    if (!is_identity(draw)) {
        const cv::Mat m = affine_2x3(spatial_matrix(draw, image.size()));
        image = per_channel(image, [&](const cv::Mat& c) {
            cv::Mat warped;
            cv::warpAffine(c, warped, m, c.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(options.fill_value));
            return warped;
        });
        if (!mask.empty()) {
            cv::Mat warped_mask;
            cv::warpAffine(mask, warped_mask, m, mask.size(), cv::INTER_NEAREST, cv::BORDER_CONSTANT, cv::Scalar(0));
            mask = warped_mask;
        }
    }

    if (draw.noise_std > 0) {
        std::mt19937_64 rng(draw.noise_seed);
        std::normal_distribution<float> normal(0.f, static_cast<float>(draw.noise_std));
        cv::Mat flat = image.reshape(1);
        for (int y = 0; y < flat.rows; ++y) {
            float* p = flat.ptr<float>(y);
            for (int x = 0; x < flat.cols; ++x) p[x] += normal(rng);
        }
    }
    sample.image = image;
    sample.mask = mask;
}

void augment(Sample& sample, const AugmentOptions& options, std::uint64_t seed) {
    if (!options.enabled || sample.image.empty()) return;
    apply_augment(sample, draw_augment(options, sample.image.size(), seed), options);
}

std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t epoch, std::uint64_t index) {
    // Each step is a bijection of the running hash xor the next input, so for one (seed, epoch)
    // distinct indices never collide.
    std::uint64_t h = splitmix64(seed);
    h = splitmix64(h ^ splitmix64(epoch ^ 0xD1B54A32D192ED03ull));
    return splitmix64(h ^ index);
}

bool parse_on_off(const std::string& value, const std::string& field) {
    const std::string v = to_lower(trim(value));
    if (v == "on" || v == "true" || v == "1") return true;
    if (v == "off" || v == "false" || v == "0") return false;
    throw UsageError("`" + field + "`: expected on or off, got '" + value + "'");
}

}  // namespace hemoscan
