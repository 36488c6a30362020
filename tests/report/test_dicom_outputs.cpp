// The DICOM objects of a study's results (report/dicom_outputs.hpp), read back independently of the writer:
// the SEG's frames decoded bit by bit from its Pixel Data against the label maps, its references to every
// source instance and Frame of Reference; the SR's values through DSRDocument and dsr2xml; the SCs' pixels,
// size and attributes; and every file through dciodvfy (dicom3tools) when it is installed. The analyses
// come from the small fixed models of tests/golden on a CT series written here.
#include <gtest/gtest.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmsr/dsrdoc.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <map>
#include <set>
#include <sstream>

#include "hemoscan/error.hpp"
#include "hemoscan/infer/outputs.hpp"
#include "hemoscan/infer/study.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/report/dicom_outputs.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

const fs::path kDicomOutModels = fs::path(HEMOSCAN_SOURCE_DIR) / "tests" / "golden";
const char* const kDicomOutStudy = "1.2.826.0.1.3680043.10.2.77";
const char* const kDicomOutFoR = "1.2.826.0.1.3680043.10.2.77.9";

std::string dcm_string(DcmItem& item, const DcmTagKey& key) {
    OFString v;
    item.findAndGetOFStringArray(key, v);
    return v.c_str();
}

// A head of 64 x 64 pixels with a dense blob on the middle slices.
cv::Mat dcm_head(int k) {
    cv::Mat hu(64, 64, CV_32F, cv::Scalar(-1000));
    cv::circle(hu, {32, 32}, 26, cv::Scalar(35), -1);
    if (k == 2 || k == 3) cv::circle(hu, {38, 26}, 7, cv::Scalar(70), -1);
    return hu;
}

// `n` CT slices, 5 mm apart, with the patient and study attributes a scanner writes (and write_dicom_ct does not,
// as a Frame of Reference: without `scanner`, the files as write_dicom_ct makes them).
void dcm_write_series(const fs::path& dir, int n, bool scanner = true) {
    for (int k = 0; k < n; ++k) {
        DicomWriteOptions o;
        o.study_uid = kDicomOutStudy;
        o.series_uid = "1.2.826.0.1.3680043.10.2.77.1";
        o.patient_id = "PAT-7";
        o.patient_name = "Doe^Jane";
        o.instance_number = k + 1;
        o.position = {-16, -16, 5.0 * k};
        const fs::path file = dir / ("IM" + std::to_string(k) + ".dcm");
        write_dicom_ct(file, dcm_head(k), o);
        if (!scanner) continue;
        DcmFileFormat ff;
        ASSERT_TRUE(ff.loadFile(file.string().c_str()).good());
        ff.loadAllDataIntoMemory();  // it is saved over itself
        DcmDataset& ds = *ff.getDataset();
        ds.putAndInsertString(DCM_FrameOfReferenceUID, kDicomOutFoR);
        ds.putAndInsertString(DCM_StudyDate, "20240102");
        ds.putAndInsertString(DCM_StudyTime, "101500");
        ds.putAndInsertString(DCM_AccessionNumber, "ACC42");
        ds.putAndInsertString(DCM_PatientSex, "O");
        ASSERT_TRUE(ff.saveFile(file.string().c_str(), EXS_LittleEndianExplicit).good());
    }
}

// The item of functional group `sequence` for frame `f`: its per-frame item, else the shared one.
DcmItem* dcm_frame_group(DcmDataset& ds, size_t f, const DcmTagKey& sequence) {
    DcmItem* frame = nullptr;
    DcmItem* group = nullptr;
    if (ds.findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, static_cast<int>(f)).good() &&
        frame->findAndGetSequenceItem(sequence, group).good()) {
        return group;
    }
    DcmItem* shared = nullptr;
    if (ds.findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared).good() &&
        shared->findAndGetSequenceItem(sequence, group).good()) {
        return group;
    }
    return nullptr;
}

// dciodvfy (dicom3tools) on a file, when installed: no line may be an error (warnings are allowed).
void dcm_expect_dciodvfy_clean(const fs::path& file) {
    if (test::run_command("command -v dciodvfy").exit_code != 0) return;
    const auto r = test::run_command("dciodvfy " + test::q(file));
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
        EXPECT_NE(line.rfind("Error", 0), 0u) << file.filename() << ": " << line << "\n" << r.output;
    }
}

// Every source instance is referenced (Common Instance Reference module).
void dcm_check_seg_references(DcmDataset& ds, const StudyInput& in) {
    DcmItem* series = nullptr;
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_ReferencedSeriesSequence, series).good());
    EXPECT_EQ(dcm_string(*series, DCM_SeriesInstanceUID), in.slices[0].meta.series_uid);
    std::set<std::string> referenced;
    for (int i = 0;; ++i) {
        DcmItem* inst = nullptr;
        if (series->findAndGetSequenceItem(DCM_ReferencedInstanceSequence, inst, i).bad()) break;
        referenced.insert(dcm_string(*inst, DCM_ReferencedSOPInstanceUID));
    }
    EXPECT_EQ(referenced.size(), in.slices.size());
    for (const auto& s : in.slices) EXPECT_EQ(referenced.count(s.meta.sop_uid), 1u);
}

// SEG: segments = the bleed classes with voxels; frame (segment, slice) = that class's voxels, bit for bit.
void dcm_check_seg(const fs::path& file, const StudyInput& in, const StudyResult& r, const SegPredictor& seg) {
    DcmFileFormat ff;
    ASSERT_TRUE(ff.loadFile(file.string().c_str()).good());
    DcmDataset& ds = *ff.getDataset();
    EXPECT_EQ(dcm_string(ds, DCM_SOPClassUID), UID_SegmentationStorage);
    EXPECT_EQ(dcm_string(ds, DCM_StudyInstanceUID), kDicomOutStudy);
    EXPECT_EQ(dcm_string(ds, DCM_FrameOfReferenceUID), kDicomOutFoR);
    EXPECT_EQ(dcm_string(ds, DCM_PatientID), "PAT-7");
    EXPECT_EQ(dcm_string(ds, DCM_PatientName), "Doe^Jane");
    EXPECT_EQ(dcm_string(ds, DCM_AccessionNumber), "ACC42");
    EXPECT_NE(dcm_string(ds, DCM_SeriesInstanceUID), in.slices[0].meta.series_uid);
    EXPECT_EQ(dcm_string(ds, DCM_SeriesNumber), "9100");
    EXPECT_EQ(dcm_string(ds, DCM_SegmentationType), "BINARY");

    const auto& labels = r.segmentation.result.labels.slices;
    std::vector<int> expected_classes;
    for (int c : seg.bleed_classes()) {
        for (const cv::Mat& m : labels) {
            if (cv::countNonZero(m == c) > 0) {
                expected_classes.push_back(c);
                break;
            }
        }
    }
    std::map<Uint16, int> class_of;  // segment number -> label value
    for (size_t s = 0;; ++s) {
        DcmItem* item = nullptr;
        if (ds.findAndGetSequenceItem(DCM_SegmentSequence, item, static_cast<int>(s)).bad()) break;
        Uint16 number = 0;
        item->findAndGetUint16(DCM_SegmentNumber, number);
        const std::string label = dcm_string(*item, DCM_SegmentLabel);
        const auto& names = seg.class_names();
        const auto it = std::find(names.begin(), names.end(), label);
        ASSERT_NE(it, names.end()) << label;
        class_of[number] = static_cast<int>(it - names.begin());
        DcmItem* type = nullptr;
        ASSERT_TRUE(item->findAndGetSequenceItem(DCM_SegmentedPropertyTypeCodeSequence, type).good());
        EXPECT_EQ(dcm_string(*type, DCM_CodeValue), "50960005");
        EXPECT_EQ(dcm_string(*item, DCM_SegmentAlgorithmType), "AUTOMATIC");
    }
    std::vector<int> got_classes;
    for (const auto& [number, c] : class_of) got_classes.push_back(c);
    EXPECT_EQ(got_classes, expected_classes);

    Uint16 rows = 0, cols = 0;
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, cols);
    ASSERT_EQ(rows, 64);
    ASSERT_EQ(cols, 64);
    const size_t frames = std::stoul(dcm_string(ds, DCM_NumberOfFrames));
    ASSERT_EQ(frames, class_of.size() * in.slices.size());
    const Uint8* bits = nullptr;
    ASSERT_TRUE(ds.findAndGetUint8Array(DCM_PixelData, bits).good());
    std::map<std::string, size_t> slice_of_sop;
    for (size_t k = 0; k < in.slices.size(); ++k) slice_of_sop[in.slices[k].meta.sop_uid] = k;
    std::set<std::pair<Uint16, size_t>> seen;
    for (size_t f = 0; f < frames; ++f) {
        DcmItem* ident = dcm_frame_group(ds, f, DCM_SegmentIdentificationSequence);
        DcmItem* derivation = dcm_frame_group(ds, f, DCM_DerivationImageSequence);
        DcmItem* position = dcm_frame_group(ds, f, DCM_PlanePositionSequence);
        ASSERT_TRUE(ident && derivation && position) << f;
        Uint16 number = 0;
        ident->findAndGetUint16(DCM_ReferencedSegmentNumber, number);
        DcmItem* source = nullptr;
        ASSERT_TRUE(derivation->findAndGetSequenceItem(DCM_SourceImageSequence, source).good());
        const auto slice = slice_of_sop.find(dcm_string(*source, DCM_ReferencedSOPInstanceUID));
        ASSERT_NE(slice, slice_of_sop.end()) << f;
        const size_t k = slice->second;
        EXPECT_EQ(dcm_string(*source, DCM_ReferencedSOPClassUID), UID_CTImageStorage);
        Float64 z = -1;
        position->findAndGetFloat64(DCM_ImagePositionPatient, z, 2);
        EXPECT_NEAR(z, 5.0 * static_cast<double>(k), 1e-6);
        seen.insert({number, k});
        // Binary frames: one bit per pixel, least significant first, frames back to back.
        const cv::Mat expected = labels[k] == class_of.at(number);
        size_t wrong = 0;
        for (size_t i = 0; i < size_t{64} * 64; ++i) {
            const size_t bit = f * 64 * 64 + i;
            wrong += ((bits[bit / 8] >> (bit % 8)) & 1) != (expected.data[i] != 0) ? 1 : 0;
        }
        EXPECT_EQ(wrong, 0u) << "frame " << f << " (segment " << number << ", slice " << k << ")";
    }
    EXPECT_EQ(seen.size(), frames);  // every (segment, slice) once

    dcm_check_seg_references(ds, in);

    // DCMTK's own reader accepts it.
    DcmSegmentation* loaded = nullptr;
    EXPECT_TRUE(DcmSegmentation::loadFile(file.string().c_str(), loaded).good());
    ASSERT_NE(loaded, nullptr);
    EXPECT_EQ(loaded->getNumberOfSegments(), class_of.size());
    EXPECT_EQ(loaded->getNumberOfFrames(), frames);
    delete loaded;
}

struct DcmSrContent {
    std::map<std::string, std::vector<double>> nums;   // concept meaning -> values in document order
    std::map<std::string, std::vector<std::string>> codes;  // concept meaning -> value meanings
    std::vector<std::string> images;                  // referenced SOP instances
    std::string text;                                 // every TEXT value
};

DcmSrContent dcm_read_sr(const fs::path& file) {
    DcmSrContent out;
    DcmFileFormat ff;
    EXPECT_TRUE(ff.loadFile(file.string().c_str()).good());
    DSRDocument doc;
    EXPECT_TRUE(doc.read(*ff.getDataset()).good());
    EXPECT_TRUE(doc.isValid());
    EXPECT_EQ(doc.getDocumentType(), DSRTypes::DT_ComprehensiveSR);
    DSRDocumentTree& tree = doc.getTree();
    EXPECT_TRUE(tree.isValidDocumentTree());
    if (tree.gotoRoot() == 0) return out;
    do {
        DSRContentItem& item = tree.getCurrentContentItem();
        const std::string concept = item.getConceptName().getCodeMeaning().c_str();
        switch (item.getValueType()) {
            case DSRTypes::VT_Num:
                out.nums[concept].push_back(std::stod(item.getNumericValue().getNumericValue().c_str()));
                break;
            case DSRTypes::VT_Code: out.codes[concept].push_back(item.getCodeValue().getCodeMeaning().c_str()); break;
            case DSRTypes::VT_Image: out.images.push_back(item.getImageReference().getSOPInstanceUID().c_str()); break;
            case DSRTypes::VT_Text: out.text += std::string(item.getStringValue().c_str()) + "\n"; break;
            default: break;
        }
    } while (tree.iterate() > 0);
    return out;
}

// SC: the key slice's picture (as `expected_bgr`, when given), RGB, derived, referencing its source.
void dcm_check_sc(const fs::path& file, const StudyInput& in, size_t slice, const cv::Mat& expected_bgr) {
    DcmFileFormat ff;
    ASSERT_TRUE(ff.loadFile(file.string().c_str()).good());
    DcmDataset& ds = *ff.getDataset();
    EXPECT_EQ(dcm_string(ds, DCM_SOPClassUID), UID_SecondaryCaptureImageStorage);
    EXPECT_EQ(dcm_string(ds, DCM_StudyInstanceUID), kDicomOutStudy);
    EXPECT_EQ(dcm_string(ds, DCM_PatientID), "PAT-7");
    EXPECT_EQ(dcm_string(ds, DCM_PhotometricInterpretation), "RGB");
    EXPECT_EQ(dcm_string(ds, DCM_ImageType), "DERIVED\\SECONDARY");
    EXPECT_EQ(dcm_string(ds, DCM_ConversionType), "WSD");
    EXPECT_EQ(dcm_string(ds, DCM_BurnedInAnnotation), "YES");
    EXPECT_EQ(dcm_string(ds, DCM_SeriesNumber), "9102");
    EXPECT_NE(dcm_string(ds, DCM_DerivationDescription).find("not for primary diagnosis"), std::string::npos);
    DcmItem* source = nullptr;
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_SourceImageSequence, source).good());
    EXPECT_EQ(dcm_string(*source, DCM_ReferencedSOPInstanceUID), in.slices[slice].meta.sop_uid);
    Uint16 rows = 0, cols = 0, samples = 0;
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, cols);
    ds.findAndGetUint16(DCM_SamplesPerPixel, samples);
    EXPECT_EQ(samples, 3);
    const Uint8* pixels = nullptr;
    unsigned long count = 0;
    ASSERT_TRUE(ds.findAndGetUint8Array(DCM_PixelData, pixels, &count).good());
    ASSERT_GE(count, size_t{rows} * cols * 3);
    if (expected_bgr.empty()) return;
    ASSERT_EQ(rows, expected_bgr.rows);
    ASSERT_EQ(cols, expected_bgr.cols);
    cv::Mat rgb;
    cv::cvtColor(expected_bgr, rgb, cv::COLOR_BGR2RGB);
    const cv::Mat got(rows, cols, CV_8UC3, const_cast<Uint8*>(pixels));
    EXPECT_EQ(cv::norm(got, rgb, cv::NORM_INF), 0.0);
}

}  // namespace

TEST(DicomOutputs, SegSrAndScOfBothModelsReadBackExactly) {
    test::TempDir d;
    dcm_write_series(d / "ct", 6);
    Predictor cls(kDicomOutModels / "cls.pt", 1);
    SegPredictor seg(kDicomOutModels / "seg.pt", 1);
    const StudyInput in = read_study_inputs(d / "ct", cls.modality()).front();
    ASSERT_TRUE(has_dicom_source(in));
    const StudyResult r = analyze_study(in, &cls, &seg);
    ASSERT_TRUE(r.segmented);
    ASSERT_GT(r.segmentation.result.bleed_volume_ml, 0.0) << "the fixed segmenter finds bleed on this series";

    DicomOutputOptions o;
    o.model_name = "cls.pt";
    o.seg_model_name = "seg.pt";
    const auto files = write_dicom_outputs(d / "out", in, r, &cls, &seg, o);
    const std::vector<size_t> keys = dicom_key_slices(r, o.max_key_slices);
    ASSERT_EQ(files.size(), 2 + keys.size());
    EXPECT_EQ(files[0].kind, "SEG");
    EXPECT_EQ(files[0].path, d / "out" / "seg.dcm");
    EXPECT_EQ(files[1].kind, "SR");
    EXPECT_EQ(files[1].path, d / "out" / "sr.dcm");
    std::set<std::string> series;
    for (const auto& f : files) {
        EXPECT_TRUE(fs::is_regular_file(f.path)) << f.path;
        series.insert(f.series_uid);
        dcm_expect_dciodvfy_clean(f.path);
    }
    EXPECT_EQ(series.size(), 3u);  // one new series per kind
    for (const auto& e : fs::directory_iterator(d / "out")) EXPECT_EQ(e.path().extension(), ".dcm") << e.path();

    dcm_check_seg(files[0].path, in, r, seg);

    const DcmSrContent sr = dcm_read_sr(files[1].path);
    for (size_t l = 0; l < cls.labels().size(); ++l) {
        const auto& p = sr.nums.at("Probability of " + cls.labels()[l]);
        ASSERT_EQ(p.size(), 1u);
        EXPECT_NEAR(p[0], r.study.probabilities[l], 1e-9);
    }
    EXPECT_EQ(sr.codes.at("Model decision").size(), cls.labels().size());
    std::vector<double> volumes;
    for (int c : seg.bleed_classes()) volumes.push_back(r.segmentation.result.volume_ml[static_cast<size_t>(c)]);
    volumes.push_back(r.segmentation.result.bleed_volume_ml);
    const auto& got = sr.nums.at("Volume");
    ASSERT_EQ(got.size(), volumes.size());
    for (size_t i = 0; i < volumes.size(); ++i) EXPECT_NEAR(got[i], volumes[i], 1e-6 * (1 + volumes[i])) << i;
    EXPECT_EQ(sr.codes.at("Hemorrhage"), std::vector<std::string>{"Present"});
    ASSERT_EQ(sr.images.size(), keys.size());
    for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(sr.images[i], in.slices[keys[i]].meta.sop_uid);
    EXPECT_NE(sr.text.find("not for primary diagnosis"), std::string::npos);
    EXPECT_NE(sr.text.find("cls.pt"), std::string::npos);
    const auto xml = test::run_command("dsr2xml " + test::q(files[1].path));
    EXPECT_EQ(xml.exit_code, 0) << xml.output;
    EXPECT_NE(xml.output.find("Probability of"), std::string::npos);

    for (size_t i = 0; i < keys.size(); ++i) {
        const size_t k = keys[i];
        const cv::Mat expected =
            segmentation_overlay(in.slices[k].pixels, in.slices[k].meta, r.segmentation.result.labels.slices[k]);
        dcm_check_sc(files[2 + i].path, in, k, expected);
    }
}

TEST(DicomOutputs, ClassifierAloneWritesSrAndHeatmapCaptures) {
    test::TempDir d;
    dcm_write_series(d / "ct", 4);
    Predictor cls(kDicomOutModels / "cls.pt", 1);
    const StudyInput in = read_study_inputs(d / "ct", cls.modality()).front();
    AnalysisOptions ao;
    ao.heatmaps = HeatmapLabel::PerSlice;
    const StudyResult r = analyze_study(in, &cls, nullptr, ao);
    const auto files = write_dicom_outputs(d / "out", in, r, &cls, nullptr, {});
    ASSERT_EQ(files.size(), 2u);  // SR + the top slice
    EXPECT_EQ(files[0].kind, "SR");
    EXPECT_EQ(files[1].kind, "SC");
    EXPECT_FALSE(fs::exists(d / "out" / "seg.dcm"));
    for (const auto& f : files) dcm_expect_dciodvfy_clean(f.path);

    const DcmSrContent sr = dcm_read_sr(files[0].path);
    EXPECT_EQ(sr.nums.count("Volume"), 0u);
    EXPECT_EQ(sr.nums.size(), cls.labels().size());
    ASSERT_EQ(sr.images.size(), 1u);
    EXPECT_EQ(sr.images[0], in.slices[r.top_slice].meta.sop_uid);
    // The heatmap at the model's input size, enlarged to the slice's (64 px) when smaller.
    cv::Mat expected = heatmap_overlay(r.samples[r.top_slice], r.heatmaps[r.top_slice]);
    if (expected.cols < 64) cv::resize(expected, expected, cv::Size(), 64.0 / expected.cols, 64.0 / expected.cols);
    dcm_check_sc(files[1].path, in, r.top_slice, expected);
}

TEST(DicomOutputs, NothingFoundWritesNoSegAndSaysAbsent) {
    test::TempDir d;
    dcm_write_series(d / "ct", 5);
    SegPredictor seg(kDicomOutModels / "seg.pt", 1);
    const StudyInput in = read_study_inputs(d / "ct", ModalityPolicy::CtOnly).front();
    StudyResult r = analyze_study(in, nullptr, &seg);
    // As a segmenter that found nothing would have it.
    for (cv::Mat& m : r.segmentation.result.labels.slices) m.setTo(0);
    std::fill(r.segmentation.result.volume_ml.begin(), r.segmentation.result.volume_ml.end(), 0.0);
    r.segmentation.result.bleed_volume_ml = 0;
    std::fill(r.segmentation.slice_bleed_ml.begin(), r.segmentation.slice_bleed_ml.end(), 0.0);

    // An earlier run's SEG and captures in the folder are not left beside the new SR.
    test::write_text(d / "out" / "seg.dcm", "old");
    test::write_text(d / "out" / "sc_7.dcm", "old");
    test::write_text(d / "out" / "notes.txt", "the user's");
    const auto files = write_dicom_outputs(d / "out", in, r, nullptr, &seg, {});
    ASSERT_EQ(files.size(), 2u);
    EXPECT_EQ(files[0].kind, "SR");
    EXPECT_FALSE(fs::exists(d / "out" / "seg.dcm"));
    EXPECT_FALSE(fs::exists(d / "out" / "sc_7.dcm"));
    EXPECT_TRUE(fs::exists(d / "out" / "notes.txt"));
    for (const auto& f : files) dcm_expect_dciodvfy_clean(f.path);
    const DcmSrContent sr = dcm_read_sr(files[0].path);
    EXPECT_EQ(sr.codes.at("Hemorrhage"), std::vector<std::string>{"Absent"});
    for (double v : sr.nums.at("Volume")) EXPECT_EQ(v, 0.0);
    ASSERT_EQ(sr.images.size(), 1u);
    EXPECT_EQ(sr.images[0], in.slices[2].meta.sop_uid);  // the middle slice
    const cv::Mat brain = segmentation_overlay(in.slices[2].pixels, in.slices[2].meta, cv::Mat::zeros(64, 64, CV_8UC1));
    dcm_check_sc(files[1].path, in, 2, brain);
}

// Files without a Frame of Reference (write_dicom_ct's): the SEG's positions get a new one; SR and SC are
// left out on request.
TEST(DicomOutputs, SourceWithoutFrameOfReferenceGetsOneInTheSeg) {
    test::TempDir d;
    dcm_write_series(d / "ct", 4, false);
    SegPredictor seg(kDicomOutModels / "seg.pt", 1);
    const StudyInput in = read_study_inputs(d / "ct", ModalityPolicy::CtOnly).front();
    const StudyResult r = analyze_study(in, nullptr, &seg);
    ASSERT_GT(r.segmentation.result.bleed_volume_ml, 0.0);
    DicomOutputOptions o;
    o.sr = o.sc = false;
    o.series_number = 500;
    const auto files = write_dicom_outputs(d / "out", in, r, nullptr, &seg, o);
    ASSERT_EQ(files.size(), 1u);
    EXPECT_EQ(files[0].kind, "SEG");
    DcmFileFormat ff;
    ASSERT_TRUE(ff.loadFile(files[0].path.string().c_str()).good());
    EXPECT_FALSE(dcm_string(*ff.getDataset(), DCM_FrameOfReferenceUID).empty());
    EXPECT_EQ(dcm_string(*ff.getDataset(), DCM_SeriesNumber), "500");
    EXPECT_EQ(dcm_string(*ff.getDataset(), DCM_SeriesInstanceUID), files[0].series_uid);
    EXPECT_EQ(dcm_string(*ff.getDataset(), DCM_SOPInstanceUID), files[0].sop_instance_uid);
    EXPECT_EQ(dcm_string(*ff.getDataset(), DCM_PatientName), "Doe^Jane");
    dcm_expect_dciodvfy_clean(files[0].path);
}

TEST(DicomOutputs, KeySlicesAreTheTopSliceThenTheMostBleed) {
    StudyResult r;
    r.items.resize(6);
    r.slices.resize(6);
    r.top_slice = 4;
    r.segmented = true;
    r.segmentation.slice_bleed_ml = {0.0, 2.0, 0.5, 3.0, 1.0, 0.0};
    EXPECT_EQ(dicom_key_slices(r, 3), (std::vector<size_t>{4, 3, 1}));
    EXPECT_EQ(dicom_key_slices(r, 10), (std::vector<size_t>{4, 3, 1, 2}));  // slices without bleed are not key
    EXPECT_EQ(dicom_key_slices(r, 0), std::vector<size_t>{});
    r.slices.clear();  // no classifier, nothing found: the middle slice
    r.segmentation.slice_bleed_ml.assign(6, 0.0);
    EXPECT_EQ(dicom_key_slices(r, 3), std::vector<size_t>{3});
}

TEST(DicomOutputs, RefusesWhatHasNoDicomSourceAndNamesAnUnreadableSource) {
    test::TempDir d;
    cv::imwrite((d / "a.png").string(), cv::Mat(32, 32, CV_8U, cv::Scalar(90)));
    Predictor cls(kDicomOutModels / "cls.pt", 1);
    const StudyInput png = read_study_inputs(d / "a.png", cls.modality()).front();
    EXPECT_FALSE(has_dicom_source(png));
    const StudyResult pr = analyze_study(png, &cls, nullptr);
    test::expect_usage_error([&] { write_dicom_outputs(d / "out", png, pr, &cls, nullptr, {}); },
                             {(d / "a.png").string(), "DICOM"});

    dcm_write_series(d / "ct", 3);
    const StudyInput in = read_study_inputs(d / "ct", cls.modality()).front();
    const StudyResult r = analyze_study(in, &cls, nullptr);
    // A source replaced since it was read is named; a source gone is no source.
    test::write_text(in.slices[1].meta.path, "not DICOM any more");
    test::expect_input_error([&] { write_dicom_outputs(d / "out", in, r, &cls, nullptr, {}); },
                             {in.slices[1].meta.path});
    fs::remove(in.slices[1].meta.path);
    EXPECT_FALSE(has_dicom_source(in));
    // A result of another input does not fit.
    const StudyResult other = analyze_study(png, &cls, nullptr);
    dcm_write_series(d / "ct2", 3);
    const StudyInput in2 = read_study_inputs(d / "ct2", cls.modality()).front();
    EXPECT_THROW(write_dicom_outputs(d / "out", in2, other, &cls, nullptr, {}), UsageError);
    EXPECT_FALSE(fs::exists(d / "out"));
}
