#include "hemoscan/io/dicom.hpp"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>
#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <atomic>
#include <cstring>
#include <exception>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "dcmtk_setup.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/limits.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/parallel.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

namespace fs = std::filesystem;

namespace detail {

void ensure_dcmtk_decoders() {
    static std::once_flag once;
    std::call_once(once, [] {
        OFLog::configure(OFLogger::OFF_LOG_LEVEL);
        DcmRLEDecoderRegistration::registerCodecs();
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
    });
}

}  // namespace detail

namespace {

using Vec3 = std::array<double, 3>;

// A DICOM file that is readable but holds no image (DICOMDIR, structured report, presentation
// state): an error when named explicitly, skipped when found while searching a folder.
class NotAnImage : public InputError {
public:
    using InputError::InputError;
};

std::string get_string(DcmItem& item, const DcmTagKey& key) {
    OFString value;
    if (item.findAndGetOFString(key, value).bad()) return "";
    return trim(value.c_str());
}

std::vector<double> get_doubles(DcmItem& item, const DcmTagKey& key) {
    std::vector<double> out;
    DcmElement* element = nullptr;
    if (item.findAndGetElement(key, element).bad() || element == nullptr) return out;
    const unsigned long vm = element->getVM();
    for (unsigned long i = 0; i < vm; ++i) {
        Float64 v = 0;
        if (element->getFloat64(v, i).bad() || !std::isfinite(v)) return {};  // malformed: treat as absent
        out.push_back(v);
    }
    return out;
}

std::optional<long> get_int(DcmItem& item, const DcmTagKey& key) {
    Sint32 v = 0;
    if (item.findAndGetSint32(key, v).good()) return v;
    Uint16 u = 0;
    if (item.findAndGetUint16(key, u).good()) return u;
    return std::nullopt;
}

// Raw 16 bits of a US-or-SS element (PixelPaddingValue, PixelPaddingRangeLimit), whatever VR the
// file or DCMTK's dictionary gave it; the pixel representation decides the sign later.
std::optional<uint16_t> get_us_or_ss_bits(DcmItem& item, const DcmTagKey& key) {
    DcmElement* element = nullptr;
    if (item.findAndGetElement(key, element).bad() || element == nullptr || element->getVM() < 1) {
        return std::nullopt;
    }
    if (element->getVR() == EVR_SS) {
        Sint16 s = 0;
        if (element->getSint16(s).good()) return static_cast<uint16_t>(s);
        return std::nullopt;
    }
    Uint16 u = 0;
    if (element->getUint16(u).good()) return u;
    return std::nullopt;
}

void check_modality(const std::string& name, const std::string& modality, ModalityPolicy policy) {
    if (policy == ModalityPolicy::Any) return;
    const std::string shown = modality.empty() ? std::string("no Modality") : "modality " + modality;
    if (policy == ModalityPolicy::CtOnly) {
        if (modality == "CT") return;
        std::string msg = name + ": " + shown + " where CT is expected";
        if (modality == "MR") msg += " (a CT model does not read MRI; train one with `modality` mr)";
        throw InputError(msg);
    }
    if (policy == ModalityPolicy::MrOnly) {
        if (modality == "MR") return;
        std::string msg = name + ": " + shown + " where MR is expected";
        if (modality == "CT") msg += " (an MR model does not read CT; use a model trained on CT)";
        throw InputError(msg);
    }
    if (modality == "CT" || modality == "MR") return;
    throw InputError(name + ": " + shown + " where CT or MR is expected");
}

Vec3 normalized(const Vec3& v) {
    const double n = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    if (n < 1e-9) return {0, 0, 0};
    return {v[0] / n, v[1] / n, v[2] / n};
}

Vec3 cross(const Vec3& a, const Vec3& b) {
    return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

double dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

// The tags that identify a slice and place it in its series (no pixel data needed).
void fill_identity_and_geometry(DcmItem& ds, ImageMeta& meta) {
    meta.patient_id = get_string(ds, DCM_PatientID);  // PatientName is deliberately never read
    meta.study_uid = get_string(ds, DCM_StudyInstanceUID);
    meta.series_uid = get_string(ds, DCM_SeriesInstanceUID);
    meta.sop_uid = get_string(ds, DCM_SOPInstanceUID);
    meta.series_description = get_string(ds, DCM_SeriesDescription);
    if (auto number = get_int(ds, DCM_SeriesNumber)) meta.series_number = static_cast<int>(*number);
    meta.instance_number = static_cast<int>(get_int(ds, DCM_InstanceNumber).value_or(0));
    if (auto pos = get_doubles(ds, DCM_ImagePositionPatient); pos.size() == 3) {
        meta.has_position = true;
        std::copy(pos.begin(), pos.end(), meta.position.begin());
    }
    if (auto ori = get_doubles(ds, DCM_ImageOrientationPatient); ori.size() == 6) {
        std::copy(ori.begin(), ori.end(), meta.orientation.begin());
    }
    if (auto ps = get_doubles(ds, DCM_PixelSpacing); ps.size() == 2 && ps[0] > 0 && ps[1] > 0) {
        meta.has_pixel_spacing = true;
        meta.pixel_spacing = {ps[0], ps[1]};
    }
    if (auto th = get_doubles(ds, DCM_SliceThickness); !th.empty() && th.front() > 0) {
        meta.slice_thickness = th.front();
    }
    meta.window_center = get_doubles(ds, DCM_WindowCenter);
    meta.window_width = get_doubles(ds, DCM_WindowWidth);
}

// How messages name one file: errors as the caller gave it (the CLI user must find a bad file), log
// lines relative to the folder given or by base name (no absolute path the library built).
struct FileNames {
    std::string error, log;
};

DicomSlice read_slice(const fs::path& path, ModalityPolicy policy, const FileNames& names) {
    const std::string& name = names.error;  // errors; log lines use names.log
    std::error_code ec;
    if (!fs::exists(path, ec)) throw InputError(name + ": file not found");
    if (fs::is_directory(path, ec)) throw InputError(name + ": is a folder (use a series input for folders)");
    if (fs::file_size(path, ec) == 0) throw InputError(name + ": empty file (not a DICOM image)");

    detail::ensure_dcmtk_decoders();
    DcmFileFormat file;
    OFCondition status = file.loadFile(path.string().c_str());
    if (status.bad()) {
        throw InputError(name + ": not a readable DICOM file (" + status.text() + "; truncated or corrupt?)");
    }
    DcmDataset& ds = *file.getDataset();

    ImageMeta meta;
    meta.path = path.string();
    meta.transfer_syntax = get_string(*file.getMetaInfo(), DCM_TransferSyntaxUID);
    if (meta.transfer_syntax.empty()) meta.transfer_syntax = DcmXfer(ds.getOriginalXfer()).getXferID();

    DcmElement* pixel_element = nullptr;
    if (ds.findAndGetElement(DCM_PixelData, pixel_element).bad() || pixel_element == nullptr) {
        const std::string sop_class = get_string(ds, DCM_SOPClassUID);
        throw NotAnImage(name + ": no pixel data (not a DICOM image" +
                         (sop_class.empty() ? std::string() : "; SOP class " + sop_class) + ")");
    }

    meta.modality = get_string(ds, DCM_Modality);
    std::transform(meta.modality.begin(), meta.modality.end(), meta.modality.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    check_modality(name, meta.modality, policy);

    if (auto frames = get_int(ds, DCM_NumberOfFrames); frames && *frames > 1) {
        throw InputError(fmt::format("{}: multi-frame DICOM ({} frames) is not supported (single-frame slices only)",
                                     name, *frames));
    }
    meta.photometric = get_string(ds, DCM_PhotometricInterpretation);
    if (meta.photometric.empty()) meta.photometric = "MONOCHROME2";  // required tag; assume the common case
    const long samples = get_int(ds, DCM_SamplesPerPixel).value_or(1);
    if (samples != 1 || (meta.photometric != "MONOCHROME1" && meta.photometric != "MONOCHROME2")) {
        throw InputError(fmt::format("{}: colour DICOM ({}, {} samples per pixel) is not supported (grey-scale only)",
                                     name, meta.photometric, samples));
    }

    const long rows = get_int(ds, DCM_Rows).value_or(0);
    const long cols = get_int(ds, DCM_Columns).value_or(0);
    if (rows <= 0 || cols <= 0) throw InputError(name + ": missing or zero Rows/Columns");
    check_slice_pixels(name, rows, cols, "the image (Rows x Columns)");
    const long bits_allocated = get_int(ds, DCM_BitsAllocated).value_or(0);
    if (bits_allocated != 8 && bits_allocated != 16) {
        throw InputError(fmt::format("{}: BitsAllocated {} is not supported (8 or 16)", name, bits_allocated));
    }
    const long bits_stored = get_int(ds, DCM_BitsStored).value_or(bits_allocated);
    const long high_bit = get_int(ds, DCM_HighBit).value_or(bits_stored - 1);
    if (bits_stored < 1 || bits_stored > bits_allocated || high_bit >= bits_allocated || high_bit + 1 < bits_stored) {
        throw InputError(fmt::format("{}: inconsistent BitsAllocated/BitsStored/HighBit ({}/{}/{})", name,
                                     bits_allocated, bits_stored, high_bit));
    }
    const bool is_signed = get_int(ds, DCM_PixelRepresentation).value_or(0) == 1;

    const DcmXfer original_xfer(ds.getOriginalXfer());
    if (original_xfer.isEncapsulated()) {
        status = ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
        if (status.bad() || !ds.canWriteXfer(EXS_LittleEndianExplicit)) {
            throw InputError(fmt::format("{}: cannot decode the {} pixel data ({})", name,
                                         original_xfer.getXferName(), status.bad() ? status.text() : "no decoder"));
        }
    }

    // Stored values: the BitsStored bits ending at HighBit, sign-extended when signed.
    const size_t count = static_cast<size_t>(rows) * static_cast<size_t>(cols);
    const unsigned shift = static_cast<unsigned>(high_bit + 1 - bits_stored);
    const uint32_t mask = (bits_stored >= 32) ? 0xFFFFFFFFu : ((1u << bits_stored) - 1u);
    const uint32_t sign_bit = 1u << (bits_stored - 1);
    const int64_t wrap = int64_t{1} << bits_stored;
    auto decode = [&](uint32_t raw) -> int32_t {
        const uint32_t v = (raw >> shift) & mask;
        if (is_signed && (v & sign_bit)) return static_cast<int32_t>(static_cast<int64_t>(v) - wrap);
        return static_cast<int32_t>(v);
    };
    const size_t have_bytes = pixel_element->getLength();
    const size_t need_bytes = count * static_cast<size_t>(bits_allocated / 8);
    if (have_bytes < need_bytes) {  // before allocating for the values the attributes promise
        throw InputError(fmt::format("{}: pixel data is truncated ({} of {} bytes)", name, have_bytes, need_bytes));
    }
    std::vector<int32_t> stored(count);
    if (bits_allocated == 16) {
        Uint16* p = nullptr;
        if (pixel_element->getUint16Array(p).bad() || p == nullptr || have_bytes < need_bytes) {
            throw InputError(fmt::format("{}: pixel data is truncated or unreadable ({} of {} bytes)", name,
                                         have_bytes, need_bytes));
        }
        for (size_t i = 0; i < count; ++i) stored[i] = decode(p[i]);
    } else {
        Uint8* p = nullptr;
        if (pixel_element->getUint8Array(p).bad() || p == nullptr || have_bytes < need_bytes) {
            throw InputError(fmt::format("{}: pixel data is truncated or unreadable ({} of {} bytes)", name,
                                         have_bytes, need_bytes));
        }
        for (size_t i = 0; i < count; ++i) stored[i] = decode(p[i]);
    }

    // Padding is given as a stored value (same representation as the pixels).
    std::optional<int32_t> pad_lo, pad_hi;
    if (auto bits = get_us_or_ss_bits(ds, DCM_PixelPaddingValue)) {
        const int32_t v = is_signed ? static_cast<int16_t>(*bits) : static_cast<int32_t>(*bits);
        pad_lo = pad_hi = v;
        if (auto limit_bits = get_us_or_ss_bits(ds, DCM_PixelPaddingRangeLimit)) {
            const int32_t l = is_signed ? static_cast<int16_t>(*limit_bits) : static_cast<int32_t>(*limit_bits);
            pad_lo = std::min(v, l);
            pad_hi = std::max(v, l);
        }
    }

    const std::vector<double> slope_values = get_doubles(ds, DCM_RescaleSlope);
    const std::vector<double> intercept_values = get_doubles(ds, DCM_RescaleIntercept);
    double slope = slope_values.empty() ? 1.0 : slope_values.front();
    const double intercept = intercept_values.empty() ? 0.0 : intercept_values.front();
    if (slope == 0.0) {
        logger().warn("{}: RescaleSlope is 0, using 1", names.log);
        slope = 1.0;
    }
    // Real scanners scale 16-bit values by factors near 1 (MR vendors by up to a few thousand); values
    // beyond these bounds overflow float intensities and are a broken or crafted file.
    if (!std::isfinite(slope) || !std::isfinite(intercept) || std::abs(slope) > 1e6 || std::abs(intercept) > 1e7) {
        throw InputError(fmt::format("{}: implausible RescaleSlope {} / RescaleIntercept {} (|slope| <= 1e6, "
                                     "|intercept| <= 1e7 expected)",
                                     name, slope, intercept));
    }
    meta.rescale_slope = slope;
    meta.rescale_intercept = intercept;
    meta.is_hu = meta.modality == "CT";

    // MONOCHROME1 (low values shown white) is inverted for non-physical data, across the range the
    // stored bits can hold so that the result does not depend on the image content. HU are kept.
    const bool invert = meta.photometric == "MONOCHROME1" && !meta.is_hu;
    const double range_lo = is_signed ? -static_cast<double>(wrap / 2) : 0.0;
    const double range_hi = is_signed ? static_cast<double>(wrap / 2 - 1) : static_cast<double>(wrap - 1);
    const double rescaled_lo = std::min(range_lo * slope + intercept, range_hi * slope + intercept);
    const double rescaled_hi = std::max(range_lo * slope + intercept, range_hi * slope + intercept);

    cv::Mat pixels(static_cast<int>(rows), static_cast<int>(cols), CV_32FC1);
    float* out = pixels.ptr<float>();
    std::vector<size_t> padded;
    double min_value = std::numeric_limits<double>::infinity();
    if (!pad_lo) {
        // No padding (the common case): the same arithmetic as below without its branches and the
        // minimum (only needed for padding), so the compiler vectorises it.
        if (invert) {
            const double sum = rescaled_lo + rescaled_hi;
            for (size_t i = 0; i < count; ++i) out[i] = static_cast<float>(sum - (stored[i] * slope + intercept));
        } else {
            for (size_t i = 0; i < count; ++i) out[i] = static_cast<float>(stored[i] * slope + intercept);
        }
    }
    for (size_t i = 0; pad_lo && i < count; ++i) {
        const int32_t s = stored[i];
        if (pad_lo && s >= *pad_lo && s <= *pad_hi) {
            padded.push_back(i);
            continue;
        }
        double v = s * slope + intercept;
        if (invert) v = rescaled_lo + rescaled_hi - v;
        min_value = std::min(min_value, v);
        out[i] = static_cast<float>(v);
    }
    if (!padded.empty()) {
        double pad_value = -1024.0;
        if (!meta.is_hu) pad_value = std::isfinite(min_value) ? min_value : (invert ? rescaled_hi : rescaled_lo);
        for (size_t i : padded) out[i] = static_cast<float>(pad_value);
    }

    meta.rows = static_cast<int>(rows);
    meta.cols = static_cast<int>(cols);
    fill_identity_and_geometry(ds, meta);

    logger().debug("{}: {} {}x{} {} bits ({} stored{}), {}, slope {} intercept {}, {} padded pixels", names.log,
                   meta.modality, cols, rows, bits_allocated, bits_stored, is_signed ? ", signed" : "",
                   original_xfer.getXferName(), slope, intercept, padded.size());
    return DicomSlice{pixels, meta};
}

struct Candidate {
    fs::path path;
    int folder = -1;  // index of the input folder it was found in, -1 for a file named directly
    FileNames names;
};

std::string format_mm(double v) { return fmt::format("{:.6g}", v); }

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const size_t n = values.size();
    return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// " (SeriesNumber 5)", or nothing when the files have none.
std::string series_number_note(const ImageMeta& meta) {
    return meta.series_number ? fmt::format(" (SeriesNumber {})", *meta.series_number) : std::string();
}

void check_same_size(const std::vector<DicomSlice>& slices, const std::vector<FileNames>& names) {
    const cv::Mat& first = slices.front().pixels;
    for (size_t i = 0; i < slices.size(); ++i) {
        const cv::Mat& p = slices[i].pixels;
        if (p.rows != first.rows || p.cols != first.cols) {
            throw InputError(fmt::format("{}: slice size {}x{} differs from {}x{} of {} in the same series{}",
                                         names[i].error, p.cols, p.rows, first.cols, first.rows, names.front().error,
                                         series_number_note(slices.front().meta)));
        }
    }
}

// Orders and checks the slices of one series. The warnings name slices by their relative file name and
// InstanceNumber; read_dicom_series prefixes them with the series' label once the series are counted
// and ordered, and logs them.
Volume build_volume(std::vector<DicomSlice> slices, const std::vector<FileNames>& names) {
    Volume volume;
    auto warn = [&](std::string message) { volume.warnings.push_back(std::move(message)); };
    auto ref = [&](size_t i) {
        return fmt::format("{} (InstanceNumber {})", names[i].log, slices[i].meta.instance_number);
    };

    check_same_size(slices, names);
    const ImageMeta& first = slices.front().meta;
    Vec3 row_dir = normalized({first.orientation[0], first.orientation[1], first.orientation[2]});
    Vec3 col_dir = normalized({first.orientation[3], first.orientation[4], first.orientation[5]});
    Vec3 normal = normalized(cross(row_dir, col_dir));
    if (normal == Vec3{0, 0, 0}) {
        warn(fmt::format("invalid ImageOrientationPatient in {}, assuming axial", ref(0)));
        row_dir = {1, 0, 0};
        col_dir = {0, 1, 0};
        normal = {0, 0, 1};
    }
    for (size_t i = 0; i < slices.size(); ++i) {
        double diff = 0;
        const auto& o = slices[i].meta.orientation;
        for (int k = 0; k < 6; ++k) diff = std::max(diff, std::abs(o[k] - first.orientation[k]));
        if (diff > 1e-3) {
            warn(fmt::format("{} has a different orientation than {}; ordered along the first normal", ref(i), ref(0)));
            break;
        }
    }

    const size_t unpositioned = static_cast<size_t>(
        std::count_if(slices.begin(), slices.end(), [](const DicomSlice& s) { return !s.meta.has_position; }));
    const bool all_positioned = unpositioned == 0;
    std::vector<double> key(slices.size());
    if (all_positioned) {
        for (size_t i = 0; i < slices.size(); ++i) key[i] = dot(slices[i].meta.position, normal);
    } else {
        if (slices.size() > 1) {
            const size_t example = static_cast<size_t>(
                std::find_if(slices.begin(), slices.end(), [](const DicomSlice& s) { return !s.meta.has_position; }) -
                slices.begin());
            warn(fmt::format("ImagePositionPatient missing in {} of {} slices (e.g. {}): slices ordered by "
                             "InstanceNumber",
                             unpositioned, slices.size(), ref(example)));
        }
        for (size_t i = 0; i < slices.size(); ++i) key[i] = slices[i].meta.instance_number;
    }
    std::vector<size_t> order(slices.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        if (key[a] != key[b]) return key[a] < key[b];
        if (slices[a].meta.instance_number != slices[b].meta.instance_number) {
            return slices[a].meta.instance_number < slices[b].meta.instance_number;
        }
        return slices[a].meta.path < slices[b].meta.path;
    });

    // Duplicates: the same position twice (the same slice exported twice); keep the first.
    constexpr double same_position_mm = 1e-3;
    std::vector<size_t> kept;
    for (size_t idx : order) {
        if (!kept.empty() && std::abs(key[idx] - key[kept.back()]) < same_position_mm) {
            warn(fmt::format("duplicate slice at position {} mm: kept {}, dropped {}", format_mm(key[idx]),
                             ref(kept.back()), ref(idx)));
            continue;
        }
        kept.push_back(idx);
    }

    double step = first.slice_thickness > 0 ? first.slice_thickness : 1.0;
    if (kept.size() > 1) {
        std::vector<double> steps;
        for (size_t i = 1; i < kept.size(); ++i) steps.push_back(key[kept[i]] - key[kept[i - 1]]);
        if (all_positioned) {
            step = median(steps);
            for (size_t i = 0; i < steps.size(); ++i) {
                if (steps[i] > 1.5 * step) {
                    const long missing = std::max(1L, std::lround(steps[i] / step) - 1);
                    warn(fmt::format("gap of {} mm between {} at {} mm and {} at {} mm (median step {} mm): "
                                     "about {} slice(s) missing",
                                     format_mm(steps[i]), ref(kept[i]), format_mm(key[kept[i]]), ref(kept[i + 1]),
                                     format_mm(key[kept[i + 1]]), format_mm(step), missing));
                }
            }
        }
    }

    const ImageMeta& base = slices[kept.front()].meta;
    volume.geometry.spacing = {base.pixel_spacing[1], base.pixel_spacing[0], step};
    volume.geometry.origin = base.position;
    volume.geometry.direction = {row_dir[0], row_dir[1], row_dir[2], col_dir[0], col_dir[1],
                                 col_dir[2], normal[0],  normal[1],  normal[2]};
    for (size_t idx : kept) {
        volume.slices.push_back(slices[idx].pixels);
        volume.slice_meta.push_back(std::move(slices[idx].meta));
    }
    return volume;
}

// `file`, found under `folder`, relative to it with '/' separators ("sub/img3.dcm").
std::string relative_name(const fs::path& file, fs::path folder) {
    while (!folder.has_filename() && folder.has_relative_path()) folder = folder.parent_path();  // "dir/" -> "dir"
    const fs::path rel = file.lexically_relative(folder);
    if (rel.empty() || *rel.begin() == "..") return file.filename().string();
    return rel.generic_string();
}

// The files read_dicom_series reads: the files named, and the DICOM files found under the folders.
struct CandidateList {
    std::vector<Candidate> files;
    std::vector<std::string> folders;               // each folder input as errors name it
    std::vector<std::vector<size_t>> folder_files;  // files found in each folder (even if named before)
};

CandidateList find_candidates(const std::vector<fs::path>& inputs, const std::vector<std::string>& names) {
    CandidateList out;
    std::map<fs::path, size_t> seen;  // the same file named twice (or found twice) is read once
    auto add = [&](const fs::path& p, int folder, FileNames shown) {
        std::error_code ec;
        fs::path canonical = fs::weakly_canonical(p, ec);
        if (ec) canonical = p;
        auto [it, inserted] = seen.emplace(canonical, out.files.size());
        if (inserted) out.files.push_back({p, folder, std::move(shown)});
        if (folder >= 0) out.folder_files[static_cast<size_t>(folder)].push_back(it->second);
    };
    for (size_t i = 0; i < inputs.size(); ++i) {
        const fs::path& input = inputs[i];
        const std::string given = names.empty() ? input.string() : names[i];
        std::error_code ec;
        if (!fs::exists(input, ec)) throw InputError(given + ": no such file or folder");
        if (!fs::is_directory(input, ec)) {
            add(input, -1, {given, names.empty() ? input.filename().string() : names[i]});
            continue;
        }
        const int folder = static_cast<int>(out.folders.size());
        out.folders.push_back(given);
        out.folder_files.emplace_back();
        std::vector<fs::path> files;
        for (auto it = fs::recursive_directory_iterator(input, fs::directory_options::skip_permission_denied, ec);
             !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
            if (it->is_regular_file(ec)) files.push_back(it->path());
        }
        if (ec) throw InputError(given + ": cannot list folder (" + ec.message() + ")");
        std::sort(files.begin(), files.end());
        size_t found = 0;
        for (const fs::path& f : files) {
            const std::string rel = relative_name(f, input);
            if (is_dicom_file(f)) {
                add(f, folder, {names.empty() ? f.string() : (fs::path(given) / rel).string(), rel});
                ++found;
            } else {
                logger().debug("{}: not DICOM, skipped", rel);
            }
        }
        if (found == 0) throw InputError(given + ": no DICOM files found in this folder");
    }
    return out;
}

// Reads every candidate in parallel (an image or, for a non-image found in a folder, nothing); results
// land at their index, so the outcome does not depend on timing.
std::vector<std::optional<DicomSlice>> read_candidates(const CandidateList& list, ModalityPolicy policy,
                                                       const ReadLimits& limits) {
    const size_t n = list.files.size();
    std::vector<std::optional<DicomSlice>> read(n);
    const int workers = static_cast<int>(std::min<unsigned>(std::max(1u, std::thread::hardware_concurrency()), 4u));
    // Every slice is held until the volumes are built: the voxels read so far are bounded.
    std::atomic<std::int64_t> voxels{0};
    parallel_for_index(n, workers, [&](size_t i) {
        const Candidate& c = list.files[i];
        try {
            read[i] = read_slice(c.path, policy, c.names);
            const std::int64_t total = voxels += static_cast<std::int64_t>(read[i]->pixels.total());
            if (total > limits.max_voxels) {
                throw InputError(c.names.error + ": the DICOM input holds more than " +
                                 std::to_string(limits.max_voxels) + " voxels (the limit per input)");
            }
        } catch (const NotAnImage&) {
            if (c.folder < 0) throw;  // named on the command line: an error
            logger().debug("{}: not a DICOM image (skipped)", c.names.log);
        }
    });
    for (size_t f = 0; f < list.folders.size(); ++f) {
        const auto& members = list.folder_files[f];
        if (std::none_of(members.begin(), members.end(), [&](size_t i) { return read[i].has_value(); })) {
            throw InputError(list.folders[f] + ": no DICOM images found in this folder");
        }
    }
    return read;
}

}  // namespace

bool is_dicom_file(const std::filesystem::path& path) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return false;
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    char head[132] = {};
    in.read(head, sizeof(head));
    const std::streamsize got = in.gcount();
    if (got == static_cast<std::streamsize>(sizeof(head)) && std::memcmp(head + 128, "DICM", 4) == 0) return true;
    if (got < 8) return false;
    // Old files without preamble start directly with a little-endian tag of group 0002 or 0008;
    // only those are worth a full parse.
    const unsigned group = static_cast<unsigned char>(head[0]) | (static_cast<unsigned char>(head[1]) << 8);
    if (group != 0x0002 && group != 0x0008) return false;
    detail::ensure_dcmtk_decoders();
    DcmFileFormat file;
    const OFCondition status =
        file.loadFile(path.string().c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
    return status.good() && file.getDataset()->card() > 0;
}

DicomSlice read_dicom_file(const std::filesystem::path& path, ModalityPolicy policy) {
    return read_slice(path, policy, {path.string(), path.string()});
}

ImageMeta read_dicom_meta(const std::filesystem::path& path) {
    const std::string name = path.string();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) throw InputError(name + ": file not found");
    detail::ensure_dcmtk_decoders();
    DcmFileFormat file;
    // Reading stops at the pixel data: the header of a 512 x 512 slice is about 1 % of the file.
    const OFCondition status = file.loadFileUntilTag(name.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength,
                                                     ERM_autoDetect, DCM_PixelData);
    if (status.bad()) throw InputError(name + ": not a readable DICOM file (" + std::string(status.text()) + ")");
    DcmDataset& ds = *file.getDataset();
    ImageMeta meta;
    meta.path = name;
    meta.modality = get_string(ds, DCM_Modality);
    std::transform(meta.modality.begin(), meta.modality.end(), meta.modality.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    meta.rows = static_cast<int>(get_int(ds, DCM_Rows).value_or(0));
    meta.cols = static_cast<int>(get_int(ds, DCM_Columns).value_or(0));
    fill_identity_and_geometry(ds, meta);
    return meta;
}

std::vector<Volume> read_dicom_series(const std::vector<std::filesystem::path>& inputs, ModalityPolicy policy,
                                      const std::vector<std::string>& names) {
    if (inputs.empty()) throw UsageError("no DICOM file or folder given");
    if (!names.empty() && names.size() != inputs.size()) {
        throw UsageError("read_dicom_series: " + std::to_string(names.size()) + " names for " +
                         std::to_string(inputs.size()) + " inputs");
    }
    const CandidateList list = find_candidates(inputs, names);
    const ReadLimits limits = read_limits();
    std::vector<std::optional<DicomSlice>> read = read_candidates(list, policy, limits);

    std::map<std::string, std::vector<size_t>> by_series;  // SeriesInstanceUID -> candidates
    for (size_t i = 0; i < read.size(); ++i) {
        if (read[i]) by_series[read[i]->meta.series_uid].push_back(i);
    }
    std::vector<Volume> volumes;
    for (const auto& [uid, members] : by_series) {
        if (static_cast<std::int64_t>(members.size()) > limits.max_slices) {
            throw InputError(list.files[members.front()].names.error + ": its series has " +
                             std::to_string(members.size()) + " slices, over the limit of " +
                             std::to_string(limits.max_slices));
        }
        std::vector<DicomSlice> slices;
        std::vector<FileNames> slice_names;
        for (size_t i : members) {
            slices.push_back(std::move(*read[i]));
            slice_names.push_back(list.files[i].names);
        }
        volumes.push_back(build_volume(std::move(slices), slice_names));
    }
    std::stable_sort(volumes.begin(), volumes.end(),
                     [](const Volume& a, const Volume& b) { return a.depth() > b.depth(); });
    // Only now are the series' labels known (their number and order).
    for (size_t k = 0; k < volumes.size(); ++k) {
        const std::string label = series_label(k, volumes.size(), volumes[k]);
        for (std::string& w : volumes[k].warnings) {
            w = label + ": " + w;
            logger().warn("{}", w);
        }
    }
    return volumes;
}

std::string series_label(size_t index, size_t count, const Volume& volume, bool with_depth) {
    const bool numbered = !volume.slice_meta.empty() && volume.slice_meta.front().series_number;
    std::string details =
        numbered ? fmt::format("SeriesNumber {}", *volume.slice_meta.front().series_number) : "no SeriesNumber";
    if (with_depth) details += fmt::format(", {} slice{}", volume.depth(), volume.depth() == 1 ? "" : "s");
    return fmt::format("series {} of {} ({})", index + 1, count, details);
}

}  // namespace hemoscan
