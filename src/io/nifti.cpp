#include "hemoscan/io/nifti.hpp"
#include "hemoscan/io/load.hpp"

#include <nifti1_io.h>
#include <spdlog/fmt/fmt.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>

#include "hemoscan/error.hpp"
#include "hemoscan/io/limits.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

namespace {

using Vec3 = std::array<double, 3>;

// niftilib reports problems on stderr when its debug level is > 0 (the default is 1); the library
// never prints, and every failure is turned into an exception here instead.
void quiet_niftilib() {
    static std::once_flag once;
    std::call_once(once, [] { nifti_set_debug_level(0); });
}

struct NimDeleter {
    void operator()(nifti_image* nim) const { nifti_image_free(nim); }
};
using NimPtr = std::unique_ptr<nifti_image, NimDeleter>;

// ".nii.gz" or ".nii" (lower case), or "" for any other name.
std::string nifti_suffix(const fs::path& path) {
    const std::string name = to_lower(path.filename().string());
    if (ends_with(name, ".nii.gz")) return ".nii.gz";
    if (ends_with(name, ".nii")) return ".nii";
    return "";
}

Vec3 column(const Geometry& g, int c) { return {g.direction[3 * c], g.direction[3 * c + 1], g.direction[3 * c + 2]}; }

double dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

void check_direction(const fs::path& path, const Geometry& g) {
    for (int a = 0; a < 3; ++a) {
        if (!(g.spacing[a] > 0) || !std::isfinite(g.spacing[a])) {
            throw UsageError(fmt::format("cannot write {}: spacing[{}] = {} is not positive", path.string(), a,
                                         g.spacing[a]));
        }
        for (int b = a; b < 3; ++b) {
            const double d = dot(column(g, a), column(g, b));
            if (std::abs(d - (a == b ? 1.0 : 0.0)) > 1e-4) {
                throw UsageError("cannot write " + path.string() + ": the geometry's direction is not orthonormal");
            }
        }
    }
}

// A temporary sibling that keeps the .nii/.nii.gz suffix (niftilib picks the format by name).
fs::path temp_nifti_path(const fs::path& path, const std::string& suffix) {
    static std::atomic<unsigned> counter{0};
    const std::string name = path.filename().string();
    const std::string base = name.substr(0, name.size() - suffix.size());
    return path.parent_path() /
           ("." + base + ".tmp" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + suffix);
}

template <typename T>
void fill_rounded(void* data, const std::vector<cv::Mat>& slices, double lo, double hi) {
    T* out = static_cast<T*>(data);
    for (const cv::Mat& slice : slices) {
        cv::Mat f;
        slice.convertTo(f, CV_64F);
        for (int r = 0; r < f.rows; ++r) {
            const double* row = f.ptr<double>(r);
            for (int c = 0; c < f.cols; ++c) {
                const double v = std::isfinite(row[c]) ? std::clamp(std::round(row[c]), lo, hi) : 0.0;
                *out++ = static_cast<T>(v);
            }
        }
    }
}

void write_volume(const fs::path& path, const std::vector<cv::Mat>& slices, const Geometry& geometry,
                  const NiftiWriteOptions& options) {
    quiet_niftilib();
    const std::string suffix = nifti_suffix(path);
    if (suffix.empty()) throw UsageError("cannot write " + path.string() + ": the name must end in .nii or .nii.gz");
    if (slices.empty() || slices.front().empty()) throw UsageError("cannot write " + path.string() + ": empty volume");
    const int rows = slices.front().rows, cols = slices.front().cols;
    for (const cv::Mat& s : slices) {
        if (s.rows != rows || s.cols != cols || s.channels() != 1) {
            throw UsageError("cannot write " + path.string() + ": slices must be one-channel and the same size");
        }
    }
    check_direction(path, geometry);

    int datatype = NIFTI_TYPE_INT16;
    if (options.type == NiftiType::UInt8) datatype = NIFTI_TYPE_UINT8;
    if (options.type == NiftiType::Float32) datatype = NIFTI_TYPE_FLOAT32;
    const int dims[8] = {3, cols, rows, static_cast<int>(slices.size()), 1, 1, 1, 1};
    NimPtr nim(nifti_make_new_nim(dims, datatype, 1));
    if (!nim) throw Error("cannot write " + path.string() + ": niftilib could not allocate the image");

    switch (options.type) {
        case NiftiType::Int16:
            fill_rounded<std::int16_t>(nim->data, slices, -32768.0, 32767.0);
            break;
        case NiftiType::UInt8:
            fill_rounded<std::uint8_t>(nim->data, slices, 0.0, 255.0);
            break;
        case NiftiType::Float32: {
            float* out = static_cast<float*>(nim->data);
            for (const cv::Mat& s : slices) {
                cv::Mat f;
                s.convertTo(f, CV_32F);
                for (int r = 0; r < rows; ++r) out = std::copy(f.ptr<float>(r), f.ptr<float>(r) + cols, out);
            }
            break;
        }
    }

    // Spacing and both transforms. The affine is built in double, then stored as float (NIfTI-1).
    nim->dx = nim->pixdim[1] = static_cast<float>(geometry.spacing[0]);
    nim->dy = nim->pixdim[2] = static_cast<float>(geometry.spacing[1]);
    nim->dz = nim->pixdim[3] = static_cast<float>(geometry.spacing[2]);
    nim->xyz_units = NIFTI_UNITS_MM;
    const auto a = nifti_affine(geometry);
    mat44 m;
    for (int r = 0; r < 4; ++r) {
        for (int c = 0; c < 4; ++c) m.m[r][c] = static_cast<float>(a[4 * r + c]);
    }
    nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->sto_xyz = m;
    nim->sto_ijk = nifti_mat44_inverse(m);
    float qdx, qdy, qdz;
    nifti_mat44_to_quatern(m, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d, &nim->qoffset_x, &nim->qoffset_y,
                           &nim->qoffset_z, &qdx, &qdy, &qdz, &nim->qfac);
    // Offsets exactly as given (the quaternion routine copies them, but keep it explicit).
    nim->qoffset_x = m.m[0][3];
    nim->qoffset_y = m.m[1][3];
    nim->qoffset_z = m.m[2][3];
    nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->qto_xyz = nifti_quatern_to_mat44(nim->quatern_b, nim->quatern_c, nim->quatern_d, nim->qoffset_x,
                                          nim->qoffset_y, nim->qoffset_z, nim->dx, nim->dy, nim->dz, nim->qfac);
    nim->qto_ijk = nifti_mat44_inverse(nim->qto_xyz);
    nim->scl_slope = 1.0f;
    nim->scl_inter = 0.0f;
    std::strncpy(nim->descrip, options.description.c_str(), sizeof(nim->descrip) - 1);
    nim->descrip[sizeof(nim->descrip) - 1] = '\0';

    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    const fs::path tmp = temp_nifti_path(path, suffix);
    if (nifti_set_filenames(nim.get(), tmp.c_str(), 0, 1) != 0) {
        throw Error("cannot write " + path.string() + ": niftilib refused the file name");
    }
    nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;  // one file: header + data
    const int level = std::clamp(options.gzip_level, 1, 9);
    const std::string mode = "wb" + std::to_string(level);
    nifti_image_write_hdr_img(nim.get(), 1, mode.c_str());  // closes the file; errors show as a missing file
    std::error_code ec;
    const auto size = fs::file_size(tmp, ec);
    if (ec || size == 0) {
        fs::remove(tmp, ec);
        throw Error("cannot write " + path.string() + ": niftilib failed to write the file");
    }
    fs::rename(tmp, path, ec);
    if (ec) {
        std::error_code ignore;
        fs::remove(tmp, ignore);
        throw Error("cannot write " + path.string() + ": " + ec.message());
    }
}

struct RawVolume {
    std::vector<cv::Mat> slices;  // CV_32F
    Geometry geometry;
    double min_value = 0;
};

template <typename T>
void copy_as_float(const void* data, size_t n, float* out) {
    const T* in = static_cast<const T*>(data);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]);
}

RawVolume read_raw(const fs::path& path) {
    quiet_niftilib();
    const std::string name = path.string();
    if (!fs::is_regular_file(path)) throw InputError(name + ": no such file");
    // is_nifti_file checks the header quietly; niftilib's reader prints some errors unconditionally.
    if (is_nifti_file(path.c_str()) < 0) throw InputError(name + ": not a NIfTI file (bad header)");
    // The header first: its dimensions are checked against the limits (and, uncompressed, against the
    // file's size) before niftilib allocates what they claim.
    NimPtr nim(nifti_image_read(path.c_str(), 0));
    if (!nim) throw InputError(name + ": not a readable NIfTI file");
    if (nim->nifti_type != NIFTI_FTYPE_NIFTI1_1 && nim->nifti_type != NIFTI_FTYPE_NIFTI1_2 &&
        nim->nifti_type != NIFTI_FTYPE_ANALYZE) {
        throw InputError(name + ": not a NIfTI-1 file");
    }
    const int nx = nim->nx, ny = nim->ny, nz = nim->ndim >= 3 ? nim->nz : 1;
    if (nim->ndim < 2 || nim->ndim > 7 || nx < 1 || ny < 1 || nz < 1) {
        throw InputError(fmt::format("{}: unsupported dimensions (ndim {}, {} x {} x {})", name, nim->ndim, nx, ny, nz));
    }
    const size_t extra = static_cast<size_t>(std::max(nim->nt, 1)) * std::max(nim->nu, 1) * std::max(nim->nv, 1) *
                         std::max(nim->nw, 1);
    if (nim->ndim > 3 && extra > 1) {
        throw InputError(fmt::format("{}: {} volumes in one file (4D or more); one 3D volume expected", name, extra));
    }
    check_slice_pixels(name, ny, nx, "each slice");
    const ReadLimits limits = read_limits();
    if (nz > limits.max_slices || static_cast<std::int64_t>(nx) * ny * nz > limits.max_voxels) {
        throw InputError(fmt::format("{}: {} x {} x {} voxels, over the limit of {} slices or {} voxels", name, nx, ny,
                                     nz, limits.max_slices, limits.max_voxels));
    }
    if (nifti_suffix(path) == ".nii") {
        const auto need = static_cast<std::uintmax_t>(nim->iname_offset) +
                          static_cast<std::uintmax_t>(nim->nvox) * static_cast<std::uintmax_t>(nim->nbyper);
        const std::uintmax_t have = fs::file_size(path);
        if (have < need) {
            throw InputError(fmt::format("{}: truncated ({} bytes; the header's {} x {} x {} voxels need {})", name,
                                         have, nx, ny, nz, need));
        }
    }
    if (nifti_image_load(nim.get()) < 0 || nim->data == nullptr) {
        throw InputError(name + ": not a readable NIfTI file (pixel data truncated or corrupt)");
    }

    const size_t plane = static_cast<size_t>(nx) * ny;
    const size_t n = plane * nz;
    std::vector<float> values(n);
    switch (nim->datatype) {
        case NIFTI_TYPE_UINT8: copy_as_float<std::uint8_t>(nim->data, n, values.data()); break;
        case NIFTI_TYPE_INT8: copy_as_float<std::int8_t>(nim->data, n, values.data()); break;
        case NIFTI_TYPE_INT16: copy_as_float<std::int16_t>(nim->data, n, values.data()); break;
        case NIFTI_TYPE_UINT16: copy_as_float<std::uint16_t>(nim->data, n, values.data()); break;
        case NIFTI_TYPE_INT32: copy_as_float<std::int32_t>(nim->data, n, values.data()); break;
        case NIFTI_TYPE_UINT32: copy_as_float<std::uint32_t>(nim->data, n, values.data()); break;
        case NIFTI_TYPE_INT64: copy_as_float<std::int64_t>(nim->data, n, values.data()); break;
        case NIFTI_TYPE_UINT64: copy_as_float<std::uint64_t>(nim->data, n, values.data()); break;
        case NIFTI_TYPE_FLOAT32: copy_as_float<float>(nim->data, n, values.data()); break;
        case NIFTI_TYPE_FLOAT64: copy_as_float<double>(nim->data, n, values.data()); break;
        default:
            throw InputError(fmt::format("{}: unsupported NIfTI data type {} (complex, RGB or 128-bit)", name,
                                         nim->datatype));
    }
    const double slope = nim->scl_slope, inter = nim->scl_inter;
    if (slope != 0 && std::isfinite(slope) && std::isfinite(inter) && !(slope == 1 && inter == 0)) {
        for (float& v : values) v = static_cast<float>(v * slope + inter);
    }

    RawVolume out;
    Geometry& g = out.geometry;
    auto positive = [](float v) { return std::isfinite(v) && v > 0 ? static_cast<double>(v) : 1.0; };
    g.spacing = {positive(nim->dx), positive(nim->dy), nz > 1 || nim->ndim >= 3 ? positive(nim->dz) : 1.0};
    // RAS columns of the voxel -> world map, without the spacing. Default (no transform, NIfTI
    // "method 1"): i, j, k along R, A, S.
    double ras[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    Vec3 origin_ras{0, 0, 0};
    if (nim->sform_code > 0) {
        // The sform first: it keeps every matrix element to float precision, whereas the qform loses
        // precision for rotations near 180 degrees (which LPS data always are in RAS).
        for (int j = 0; j < 3; ++j) {
            double norm = 0;
            for (int i = 0; i < 3; ++i) norm += static_cast<double>(nim->sto_xyz.m[i][j]) * nim->sto_xyz.m[i][j];
            norm = std::sqrt(norm);
            if (!(norm > 0) || !std::isfinite(norm)) throw InputError(name + ": the sform has a zero column");
            // pixdim is exact; the column norm only differs from it by float rounding unless the file
            // scales in the sform alone.
            if (std::abs(norm - g.spacing[j]) > 1e-4 * g.spacing[j]) g.spacing[j] = norm;
            for (int i = 0; i < 3; ++i) ras[i][j] = nim->sto_xyz.m[i][j] / norm;
        }
        origin_ras = {nim->sto_xyz.m[0][3], nim->sto_xyz.m[1][3], nim->sto_xyz.m[2][3]};
    } else if (nim->qform_code > 0) {
        // The rotation from the quaternion, in double (niftilib's own qto_xyz is float).
        double b = nim->quatern_b, c = nim->quatern_c, d = nim->quatern_d;
        const double a2 = 1.0 - (b * b + c * c + d * d);
        double a = 0;
        if (a2 < 1e-7) {  // niftilib's rule: a 180-degree rotation, renormalise (b, c, d)
            const double s = 1.0 / std::sqrt(b * b + c * c + d * d);
            b *= s, c *= s, d *= s;
        } else {
            a = std::sqrt(a2);
        }
        const double qfac = nim->qfac < 0 ? -1.0 : 1.0;
        const double r[3][3] = {{a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)},
                                {2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)},
                                {2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b}};
        for (int i = 0; i < 3; ++i) {
            for (int j = 0; j < 3; ++j) ras[i][j] = r[i][j] * (j == 2 ? qfac : 1.0);
        }
        origin_ras = {nim->qoffset_x, nim->qoffset_y, nim->qoffset_z};
    }
    // RAS -> LPS: negate the first two components of every direction and of the origin.
    for (int j = 0; j < 3; ++j) {
        g.direction[3 * j + 0] = -ras[0][j];
        g.direction[3 * j + 1] = -ras[1][j];
        g.direction[3 * j + 2] = ras[2][j];
    }
    g.origin = {-origin_ras[0], -origin_ras[1], origin_ras[2]};

    out.slices.reserve(nz);
    double lo = std::numeric_limits<double>::infinity();
    for (int k = 0; k < nz; ++k) {
        cv::Mat s(ny, nx, CV_32F);
        std::memcpy(s.data, values.data() + k * plane, plane * sizeof(float));
        double smin;
        cv::minMaxLoc(s, &smin, nullptr);
        lo = std::min(lo, smin);
        out.slices.push_back(s);
    }
    out.min_value = lo;
    return out;
}

}  // namespace

std::array<double, 16> nifti_affine(const Geometry& geometry) {
    std::array<double, 16> a{};
    for (int r = 0; r < 3; ++r) {
        const double flip = r < 2 ? -1.0 : 1.0;
        for (int c = 0; c < 3; ++c) a[4 * r + c] = flip * geometry.direction[3 * c + r] * geometry.spacing[c];
        a[4 * r + 3] = flip * geometry.origin[r];
    }
    a[15] = 1.0;
    return a;
}

void write_nifti(const fs::path& path, const Volume& volume, const NiftiWriteOptions& options) {
    write_volume(path, volume.slices, volume.geometry, options);
}

void write_nifti_labels(const fs::path& path, const std::vector<cv::Mat>& labels, const Geometry& geometry,
                        const std::string& description) {
    NiftiWriteOptions options;
    options.type = NiftiType::UInt8;
    options.description = description;
    write_volume(path, labels, geometry, options);
}

bool is_nifti_path(const fs::path& path) {
    const std::string name = to_lower(path.filename().string());
    return ends_with(name, ".nii") || ends_with(name, ".nii.gz");
}

Volume read_nifti(const fs::path& path) {
    RawVolume raw = read_raw(path);
    Volume v;
    v.geometry = raw.geometry;
    v.slices = std::move(raw.slices);
    const Geometry& g = v.geometry;
    const bool hu = looks_like_hu(raw.min_value);
    for (int k = 0; k < v.depth(); ++k) {
        ImageMeta m;
        m.path = path.string();
        m.rows = v.slices[k].rows;
        m.cols = v.slices[k].cols;
        m.has_position = true;
        for (int i = 0; i < 3; ++i) m.position[i] = g.origin[i] + k * g.spacing[2] * g.direction[6 + i];
        m.orientation = {g.direction[0], g.direction[1], g.direction[2], g.direction[3], g.direction[4], g.direction[5]};
        m.pixel_spacing = {g.spacing[1], g.spacing[0]};
        m.has_pixel_spacing = true;
        m.slice_thickness = g.spacing[2];
        m.is_hu = hu;
        m.instance_number = k + 1;
        v.slice_meta.push_back(std::move(m));
    }
    return v;
}

LabelVolume read_nifti_labels(const fs::path& path) {
    RawVolume raw = read_raw(path);
    LabelVolume out;
    out.geometry = raw.geometry;
    for (size_t k = 0; k < raw.slices.size(); ++k) {
        const cv::Mat& s = raw.slices[k];
        cv::Mat labels(s.rows, s.cols, CV_8U);
        for (int r = 0; r < s.rows; ++r) {
            const float* in = s.ptr<float>(r);
            uchar* o = labels.ptr<uchar>(r);
            for (int c = 0; c < s.cols; ++c) {
                const float v = in[c];
                if (!(v >= 0 && v <= 255) || v != std::floor(v)) {
                    throw InputError(fmt::format("{}: voxel (i={}, j={}, k={}) = {} is not a label 0..255",
                                                 path.string(), c, r, k, v));
                }
                o[c] = static_cast<uchar>(v);
            }
        }
        out.slices.push_back(labels);
    }
    return out;
}

}  // namespace hemoscan
