#pragma once
// Private to src/report: what the writers of a study's DICOM objects (dicom_outputs.cpp, dicom_seg.cpp,
// dicom_sr.cpp, dicom_sc.cpp) share. DCMTK types stay behind this header; the public one is free of them.
#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcfilefo.h>

#include <array>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hemoscan/report/dicom_outputs.hpp"
#include "hemoscan/util/fs.hpp"

#include "io/dcmtk_setup.hpp"

namespace hemoscan::dicom_detail {

// One source slice as its file says (input.slices order).
struct SourceSlice {
    std::string path, sop_class_uid, sop_instance_uid, series_uid;
};

// The source series, read again from its files: the SOP Class of every slice (the input keeps only
// the instance UIDs) and the first file's header, which holds the patient and study modules.
struct SourceStudy {
    std::vector<SourceSlice> slices;
    std::string study_uid;
    std::string frame_of_reference_uid;    // empty when the files have none
    std::shared_ptr<DcmFileFormat> header;  // the first file, read up to its pixel data
};

// InputError naming the file that cannot be read or no longer is the slice that was analysed.
SourceStudy read_source_study(const StudyInput& input);

// Everything one writer needs.
struct OutputContext {
    std::filesystem::path dir;
    const StudyInput& input;
    const StudyResult& result;
    const Predictor* classifier;
    const SegPredictor* segmenter;
    const DicomOutputOptions& options;
    const SourceStudy& source;
    std::vector<size_t> key_slices;
};

// Coded entries (designator, value, meaning) as the writers and docs/dicom-outputs.md use them.
struct Code {
    const char* designator;
    const char* value;
    const char* meaning;
};
inline constexpr Code kCodeHemorrhage{"SCT", "50960005", "Hemorrhage"};
inline constexpr Code kCodeMorphologicallyAltered{"SCT", "49755003", "Morphologically Altered Structure"};
inline constexpr Code kCodePresent{"SCT", "52101004", "Present"};
inline constexpr Code kCodeAbsent{"SCT", "2667000", "Absent"};
inline constexpr Code kCodeSourceImage{"DCM", "121322", "Source image for image processing operation"};
// Private codes (coding scheme designators starting with "99" are local by the standard).
inline constexpr const char* kPrivateScheme = "99HEMOSCAN";

// A Decimal String value (at most 16 characters): io's, which the slices were written with.
using hemoscan::detail::ds_value;
template <size_t N>
std::string ds_values(const std::array<double, N>& values) {
    std::string out;
    for (size_t i = 0; i < N; ++i) out += (i ? "\\" : "") + ds_value(values[i]);
    return out;
}

// The slice thickness of the source (SliceThickness, else the spacing between slices, else 1 mm).
double slice_thickness(const StudyInput& input);

// Whether a classifier label names a hemorrhage ("any", a subtype, "bleed+calcified"), as opposed to
// "normal" or "calcified": the labels whose positive decision makes the study's finding "present".
bool is_bleed_label(const std::string& label);

// Whether the result holds a segmentation by the segmenter given (the SEG, the volumes, the overlays).
inline bool has_segmentation(const OutputContext& ctx) { return ctx.segmenter != nullptr && ctx.result.segmented; }

// Whether the study's finding is "hemorrhage present": a bleed label decided positive, or bleed voxels.
bool hemorrhage_present(const OutputContext& ctx);

// The current date (YYYYMMDD) and time (HHMMSS).
std::string dicom_date_now();
std::string dicom_time_now();

// Copies the Patient, General Study and Patient Study attributes (and the character set they are written
// in) from a source data set; type 2 attributes the source lacks are written empty.
void copy_patient_study(DcmItem& from, DcmItem& to);

// Saves `file` as Explicit VR Little Endian to a temporary name beside `path`, then renames it.
void save_dicom_atomic(DcmFileFormat& file, const std::filesystem::path& path);

// Throws Error("cannot write <path>: <what>: <status>") when `status` is bad.
void check_dcmtk(const OFCondition& status, const std::filesystem::path& path, const std::string& what);

std::optional<DicomOutputFile> write_dicom_seg(const OutputContext& ctx);
DicomOutputFile write_dicom_sr(const OutputContext& ctx);
std::vector<DicomOutputFile> write_dicom_sc(const OutputContext& ctx);

}  // namespace hemoscan::dicom_detail
