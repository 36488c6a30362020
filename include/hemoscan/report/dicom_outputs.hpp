#pragma once
// A study's results as DICOM objects that every PACS viewer shows, written with DCMTK and referencing
// the source series (Study/Series/SOP Instance UIDs, Frame of Reference, positions):
//   - a Segmentation (SEG, dcmseg): one segment per bleed class the segmenter found, binary frames in
//     the source geometry (one per source slice and segment), coded segment categories;
//   - a Comprehensive Structured Report (SR, dcmsr): the study finding, the probability and decision
//     per label, the volume per class in mL, model name and version, the key slices;
//   - Secondary Captures (SC) of the key slices with the heatmap / mask overlay, marked as derived and
//     not for primary diagnosis.
// Each kind is a new series of the source study (its own Series Instance UID). What each object holds
// and the codes used: docs/dicom-outputs.md. The CLI (`predict`/`segment --dicom-out`), the server's
// results and the DICOM node all call write_dicom_outputs. Free of LibTorch.
#include <filesystem>
#include <string>
#include <vector>

#include "hemoscan/infer/study.hpp"

namespace hemoscan {

struct DicomOutputOptions {
    std::string model_name;        // the classifier's architecture / file ("cnn", "RUN/model.pt")
    std::string seg_model_name;    // the segmenter's, when there is one
    std::string manufacturer = "hemoscan";
    int series_number = 9100;      // SEG: this, SR: +1, SC: +2 (high numbers sort after the scanner's series)
    size_t max_key_slices = 3;     // secondary captures: the top slice and the slices with most bleed
    bool seg = true, sr = true, sc = true;  // which objects to write (those that apply)
};

struct DicomOutputFile {
    std::filesystem::path path;
    std::string kind;              // SEG | SR | SC
    std::string sop_class_uid, sop_instance_uid, series_uid;
};

// Whether a study can be answered in DICOM: it was read from DICOM files (kind "dicom" or "series"),
// every slice carries its file, Study/Series/SOP Instance UIDs, and the files are still there (a zip's
// entries were read from a scratch copy that is gone). Images and NIfTI cannot: there is nothing to
// reference.
bool has_dicom_source(const StudyInput& input);

// The slices that the secondary captures show, at most `max` and distinct, in this order: the
// classifier's top slice, then the slices with the most bleed (most first); the middle slice when
// neither gives one (a segmenter that found nothing).
std::vector<size_t> dicom_key_slices(const StudyResult& result, size_t max);

// Writes into `dir` (created):
//   seg.dcm   with a segmenter (and options.seg) when it found at least one voxel of a bleed class: a SEG
//             holds at least one segment (DCMTK refuses an empty one), and "looked, found nothing" is
//             said by the SR (bleed volume 0 mL);
//   sr.dcm    (options.sr) always;
//   sc_<k>.dcm (options.sc) per key slice k (1-based, dicom_key_slices order).
// Each file is written to a temporary name and renamed; files of those kinds that an earlier run left in
// `dir` and this one did not write (a seg.dcm, more sc_<k>.dcm) are removed. The source files
// (input.slices[i].meta.path) are read again for their SOP Class, the patient/study modules and the Frame
// of Reference.
// `classifier` / `segmenter` name the labels and classes (either may be null, as in analyze_study;
// the result must come from them). UsageError when the input has no DICOM source or the result does
// not fit it; InputError naming a source file that cannot be read. Returns the files written (SEG, SR,
// then the SCs).
std::vector<DicomOutputFile> write_dicom_outputs(const std::filesystem::path& dir, const StudyInput& input,
                                                 const StudyResult& result, const Predictor* classifier,
                                                 const SegPredictor* segmenter, const DicomOutputOptions& options);

}  // namespace hemoscan
