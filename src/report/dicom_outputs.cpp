// write_dicom_outputs: reads the source series' headers again, then hands one context to the SEG, SR
// and SC writers (dicom_seg.cpp, dicom_sr.cpp, dicom_sc.cpp). Also the helpers they share.
#include "report/dicom_detail.hpp"  // first: DCMTK's configuration header leads; includes dicom_outputs.hpp

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcvrda.h>
#include <dcmtk/dcmdata/dcvrtm.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <system_error>

#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "io/dcmtk_setup.hpp"

namespace hemoscan {

namespace dicom_detail {

namespace {

std::string dataset_string(DcmItem& item, const DcmTagKey& key) {
    OFString value;
    if (item.findAndGetOFStringArray(key, value).bad()) return "";
    return value.c_str();
}

// The attributes copy_patient_study takes over: type 2 ones are written empty when the source lacks them.
struct CopiedTag {
    DcmTagKey key;
    bool type2;
};
const CopiedTag kPatientStudyTags[] = {
    {DCM_SpecificCharacterSet, false},
    // Patient module
    {DCM_PatientName, true},
    {DCM_PatientID, true},
    {DCM_IssuerOfPatientID, false},
    {DCM_PatientBirthDate, true},
    {DCM_PatientBirthTime, false},
    {DCM_PatientSex, true},
    {DCM_OtherPatientIDsSequence, false},
    {DCM_EthnicGroup, false},
    {DCM_PatientComments, false},
    {DCM_PatientIdentityRemoved, false},
    {DCM_DeidentificationMethod, false},
    // General Study module
    {DCM_StudyInstanceUID, false},  // type 1: checked by read_source_study
    {DCM_StudyDate, true},
    {DCM_StudyTime, true},
    {DCM_ReferringPhysicianName, true},
    {DCM_StudyID, true},
    {DCM_AccessionNumber, true},
    {DCM_StudyDescription, false},
    // Patient Study module
    {DCM_PatientAge, false},
    {DCM_PatientSize, false},
    {DCM_PatientWeight, false},
};

}  // namespace

double slice_thickness(const StudyInput& input) {
    const double stored = input.slices.front().meta.slice_thickness;
    if (stored > 0) return stored;
    const double step = input.volume.geometry.spacing[2];
    return input.is_volume() && input.slices.size() > 1 && step > 0 ? step : 1.0;
}

bool is_bleed_label(const std::string& label) {
    static const char* const kNotBleed[] = {"normal", "none", "negative", "calcified", "calcification"};
    const std::string l = to_lower(trim(label));
    return std::none_of(std::begin(kNotBleed), std::end(kNotBleed), [&](const char* n) { return l == n; });
}

bool hemorrhage_present(const OutputContext& ctx) {
    if (ctx.classifier != nullptr) {
        const auto& labels = ctx.classifier->labels();
        const auto any = std::find(labels.begin(), labels.end(), "any");
        if (any != labels.end()) {
            if (ctx.result.study.decisions[static_cast<size_t>(any - labels.begin())] != 0) return true;
        } else {
            for (size_t l = 0; l < labels.size(); ++l) {
                if (ctx.result.study.decisions[l] != 0 && is_bleed_label(labels[l])) return true;
            }
        }
    }
    return has_segmentation(ctx) && ctx.result.segmentation.result.bleed_volume_ml > 0;
}

std::string dicom_date_now() {
    OFString value;
    DcmDate::getCurrentDate(value);
    return value.c_str();
}

std::string dicom_time_now() {
    OFString value;
    DcmTime::getCurrentTime(value, OFFalse /*seconds*/, OFFalse /*fraction*/);
    return value.c_str();
}

void copy_patient_study(DcmItem& from, DcmItem& to) {
    for (const CopiedTag& tag : kPatientStudyTags) {
        DcmElement* element = nullptr;
        if (from.findAndGetElement(tag.key, element).good() && element != nullptr) {
            to.insert(static_cast<DcmElement*>(element->clone()), OFTrue /*replace*/);
        } else if (tag.type2) {
            to.insertEmptyElement(tag.key, OFTrue);
        }
    }
}

void check_dcmtk(const OFCondition& status, const fs::path& path, const std::string& what) {
    if (status.bad()) throw Error("cannot write " + path.string() + ": " + what + ": " + status.text());
}

void save_dicom_atomic(DcmFileFormat& file, const fs::path& path) {
    write_atomic_with(path, [&](const fs::path& tmp) {
        check_dcmtk(file.saveFile(tmp.string().c_str(), EXS_LittleEndianExplicit), path, "saving");
    });
}

SourceStudy read_source_study(const StudyInput& input) {
    detail::ensure_dcmtk_decoders();  // also silences DCMTK's own console logging
    SourceStudy s;
    for (size_t i = 0; i < input.slices.size(); ++i) {
        const ImageMeta& meta = input.slices[i].meta;
        auto file = std::make_shared<DcmFileFormat>();
        const OFCondition status = file->loadFileUntilTag(meta.path.c_str(), EXS_Unknown, EGL_noChange,
                                                          DCM_MaxReadLength, ERM_autoDetect, DCM_PixelData);
        if (status.bad()) throw InputError(meta.path + ": cannot read the DICOM file again: " + status.text());
        DcmDataset& ds = *file->getDataset();
        SourceSlice slice{meta.path, dataset_string(ds, DCM_SOPClassUID), dataset_string(ds, DCM_SOPInstanceUID),
                          dataset_string(ds, DCM_SeriesInstanceUID)};
        if (slice.sop_instance_uid != meta.sop_uid) {
            throw InputError(meta.path + ": not the file that was analysed (its SOP Instance UID changed)");
        }
        if (slice.sop_class_uid.empty() || slice.series_uid.empty()) {
            throw InputError(meta.path + ": no SOP Class UID or Series Instance UID");
        }
        if (i == 0) {
            s.study_uid = dataset_string(ds, DCM_StudyInstanceUID);
            s.frame_of_reference_uid = dataset_string(ds, DCM_FrameOfReferenceUID);
            if (s.study_uid.empty()) throw InputError(meta.path + ": no Study Instance UID");
            s.header = file;
        } else if (dataset_string(ds, DCM_StudyInstanceUID) != s.study_uid) {
            throw InputError(meta.path + ": another study than " + input.slices.front().meta.path);
        }
        s.slices.push_back(std::move(slice));
    }
    return s;
}

}  // namespace dicom_detail

bool has_dicom_source(const StudyInput& input) {
    if ((input.kind != "dicom" && input.kind != "series") || input.slices.empty()) return false;
    return std::all_of(input.slices.begin(), input.slices.end(), [](const DicomSlice& s) {
        std::error_code ec;
        return !s.meta.path.empty() && !s.meta.sop_uid.empty() && !s.meta.series_uid.empty() &&
               !s.meta.study_uid.empty() && fs::is_regular_file(s.meta.path, ec);
    });
}

std::vector<size_t> dicom_key_slices(const StudyResult& result, size_t max) {
    std::vector<size_t> keys;
    const size_t n = result.items.size();
    auto add = [&](size_t k) {
        if (k < n && keys.size() < max && std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    };
    if (!result.slices.empty()) add(result.top_slice);
    if (result.segmented) {
        const std::vector<double>& ml = result.segmentation.slice_bleed_ml;
        std::vector<size_t> order(ml.size());
        std::iota(order.begin(), order.end(), size_t{0});
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ml[a] > ml[b]; });
        for (size_t k : order) {
            if (ml[k] <= 0) break;
            add(k);
        }
    }
    if (keys.empty()) add(n / 2);
    return keys;
}

namespace {

// The result must be the analysis of this input by these models: the writers index by slice and label.
void check_result_fits(const StudyInput& input, const StudyResult& result, const Predictor* classifier,
                       const SegPredictor* segmenter) {
    const std::string name = input.name;
    if (classifier == nullptr && segmenter == nullptr) {
        throw UsageError("write_dicom_outputs: " + name + ": neither a classifier nor a segmenter");
    }
    if (result.items.size() != input.slices.size()) {
        throw UsageError("write_dicom_outputs: " + name + ": the result is not of this input");
    }
    if (classifier != nullptr && (result.study.probabilities.size() != classifier->labels().size() ||
                                  result.study.decisions.size() != classifier->labels().size() ||
                                  result.slices.size() != input.slices.size())) {
        throw UsageError("write_dicom_outputs: " + name + ": the result is not the classifier's");
    }
    if (segmenter != nullptr) {
        const auto& labels = result.segmentation.result.labels.slices;
        bool fits = result.segmented && labels.size() == input.slices.size();
        for (size_t k = 0; fits && k < labels.size(); ++k) {
            fits = labels[k].type() == CV_8UC1 && labels[k].size() == input.slices[k].pixels.size();
        }
        if (!fits) throw UsageError("write_dicom_outputs: " + name + ": the result is not the segmenter's");
    }
}

// A rerun into the same folder must not leave a SEG or captures of the earlier run beside the new SR: the
// files of the kinds asked for that this run did not write go.
void remove_stale_outputs(const fs::path& dir, const std::vector<DicomOutputFile>& written, bool seg, bool sr,
                          bool sc) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        const bool ours = (seg && name == "seg.dcm") || (sr && name == "sr.dcm") ||
                          (sc && name.size() > 7 && name.rfind("sc_", 0) == 0 && ends_with(name, ".dcm") &&
                           std::all_of(name.begin() + 3, name.end() - 4, [](char c) { return c >= '0' && c <= '9'; }));
        const bool kept = std::any_of(written.begin(), written.end(), [&](const DicomOutputFile& f) {
            return f.path.filename() == e.path().filename();
        });
        if (ours && !kept && e.is_regular_file(ec)) fs::remove(e.path(), ec);
    }
}

}  // namespace

std::vector<DicomOutputFile> write_dicom_outputs(const fs::path& dir, const StudyInput& input,
                                                 const StudyResult& result, const Predictor* classifier,
                                                 const SegPredictor* segmenter, const DicomOutputOptions& options) {
    if (!has_dicom_source(input)) {
        throw UsageError(input.name + ": not read from DICOM files that are still there; no DICOM outputs");
    }
    check_result_fits(input, result, classifier, segmenter);
    const dicom_detail::SourceStudy source = dicom_detail::read_source_study(input);
    const dicom_detail::OutputContext ctx{dir,     input,  result, classifier, segmenter,
                                          options, source, dicom_key_slices(result, options.max_key_slices)};
    fs::create_directories(dir);
    std::vector<DicomOutputFile> written;
    if (options.seg && segmenter != nullptr) {
        if (auto seg = dicom_detail::write_dicom_seg(ctx)) {
            written.push_back(*seg);
        } else {
            logger().info("{}: no bleed voxels, so no DICOM SEG (the SR says 0 mL)", input.name);
        }
    }
    if (options.sr) written.push_back(dicom_detail::write_dicom_sr(ctx));
    if (options.sc) {
        for (DicomOutputFile& f : dicom_detail::write_dicom_sc(ctx)) written.push_back(std::move(f));
    }
    remove_stale_outputs(dir, written, options.seg && segmenter != nullptr, options.sr, options.sc);
    for (const DicomOutputFile& f : written) logger().debug("wrote DICOM {} {}", f.kind, f.path.string());
    return written;
}

}  // namespace hemoscan
