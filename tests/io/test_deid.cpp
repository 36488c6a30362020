// DICOM de-identification: the Basic Profile's actions, UID remapping, date shifting, consistency across
// the files of a study and across runs, pixels unchanged, errors.
#include <gtest/gtest.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcvrobow.h>

#include <ctime>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "hemoscan/error.hpp"
#include "hemoscan/io/deid.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

namespace fs = std::filesystem;

namespace {

using hemoscan::DeidOptions;
using hemoscan::Deidentifier;

const char* const kDeidAbsent = "<absent>";

// The attributes of one identified slice; the study-level ones are shared by the files of a study.
struct DeidStudy {
    std::string patient_id = "MRN-0042";
    std::string study_uid = hemoscan::new_dicom_uid();
    std::string series_uid = hemoscan::new_dicom_uid();
    std::string frame_uid = hemoscan::new_dicom_uid();
};

DeidOptions deid_options(const std::string& key = "a test key of some length, not a real secret") {
    DeidOptions o;
    o.key = key;
    return o;
}

cv::Mat deid_pixels(int seed) {
    cv::Mat hu(8, 10, CV_32F);
    for (int r = 0; r < hu.rows; ++r) {
        for (int c = 0; c < hu.cols; ++c) hu.at<float>(r, c) = static_cast<float>(-1000 + 37 * r + 11 * c + seed);
    }
    return hu;
}

void deid_put(DcmItem& item, const DcmTagKey& tag, const std::string& value) {
    ASSERT_TRUE(item.putAndInsertOFStringArray(tag, value.c_str()).good()) << DcmTag(tag).getTagName();
}

// Adds what a scanner and a hospital put into a CT file: names, ids, dates, free text, private tags,
// an overlay and a curve, a reference to `other_sop` and a nested sequence with a name and a date.
void deid_add_identifiers(DcmDataset& ds, const std::string& other_sop, const std::string& burned_in) {
    deid_put(ds, DCM_PatientBirthDate, "19500102");
    deid_put(ds, DCM_PatientSex, "M");
    deid_put(ds, DCM_PatientAge, "095Y");
    deid_put(ds, DCM_PatientAddress, "1 Main Street, Springfield");
    deid_put(ds, DCM_RETIRED_OtherPatientIDs, "OTHER-77");
    deid_put(ds, DCM_AccessionNumber, "ACC123456");
    deid_put(ds, DCM_InstitutionName, "General Hospital");
    deid_put(ds, DCM_InstitutionAddress, "2 Hospital Road");
    deid_put(ds, DCM_ReferringPhysicianName, "Referrer^Rita");
    deid_put(ds, DCM_PerformingPhysicianName, "Performer^Paul");
    deid_put(ds, DCM_OperatorsName, "Operator^Olga");
    deid_put(ds, DCM_StationName, "CTSTATION01");
    deid_put(ds, DCM_DeviceSerialNumber, "SN-99817");
    deid_put(ds, DCM_StudyID, "S4242");
    deid_put(ds, DCM_StudyDescription, "HEAD ROUTINE John Doe");
    deid_put(ds, DCM_ImageComments, "called John Doe back");
    deid_put(ds, DCM_StudyDate, "20230315");
    deid_put(ds, DCM_SeriesDate, "20230315");
    deid_put(ds, DCM_ContentDate, "20230316");
    deid_put(ds, DCM_StudyTime, "101500");
    deid_put(ds, DCM_AcquisitionDateTime, "20230301235959.123456+0100");
    deid_put(ds, DCM_BurnedInAnnotation, burned_in);
    // Private: a creator and its element.
    ASSERT_TRUE(ds.putAndInsertString(DcmTag(0x0009, 0x0010, EVR_LO), "ACME MEDICAL").good());
    ASSERT_TRUE(ds.putAndInsertString(DcmTag(0x0009, 0x1001, EVR_LO), "secret private text").good());
    // An overlay plane and a (retired) curve.
    const Uint16 bits[4] = {0xFFFF, 0, 0xFFFF, 0};
    ASSERT_TRUE(ds.putAndInsertUint16(DcmTagKey(0x6000, 0x0010), 8).good());
    ASSERT_TRUE(ds.putAndInsertString(DcmTag(0x6000, 0x0022, EVR_LO), "overlay by Dr Who").good());
    ASSERT_TRUE(ds.putAndInsertUint16Array(DcmTag(0x6000, 0x3000, EVR_OW), bits, 4).good());
    ASSERT_TRUE(ds.putAndInsertUint16Array(DcmTag(0x5000, 0x3000, EVR_OW), bits, 4).good());

    DcmItem* ref = nullptr;
    ASSERT_TRUE(ds.findOrCreateSequenceItem(DCM_ReferencedImageSequence, ref, -2).good());
    deid_put(*ref, DCM_ReferencedSOPClassUID, UID_CTImageStorage);
    deid_put(*ref, DCM_ReferencedSOPInstanceUID, other_sop);
    // Two levels down: a person name and a date time.
    DcmItem* related = nullptr;
    ASSERT_TRUE(ds.findOrCreateSequenceItem(DCM_RelatedSeriesSequence, related, -2).good());
    DcmItem* observer = nullptr;
    ASSERT_TRUE(related->findOrCreateSequenceItem(DCM_VerifyingObserverSequence, observer, -2).good());
    deid_put(*observer, DCM_VerifyingObserverName, "Deep^Nested^Name");
    deid_put(*observer, DCM_VerificationDateTime, "20230316120000");
}

// One CT slice of `study` with identifying attributes everywhere (see deid_add_identifiers).
void deid_write_slice(const fs::path& path, const DeidStudy& study, const std::string& sop,
                      const std::string& other_sop, int instance, const std::string& burned_in = "NO",
                      const std::string& transfer = "uncompressed") {
    hemoscan::DicomWriteOptions o;
    o.patient_id = study.patient_id;
    o.patient_name = "Doe^John";
    o.study_uid = study.study_uid;
    o.series_uid = study.series_uid;
    o.sop_uid = sop;
    o.series_description = "HEAD John Doe";
    o.instance_number = instance;
    o.position = {-2.5, -2, 5.0 * instance};
    o.transfer_syntax = transfer;
    const fs::path plain = path.parent_path() / ("plain_" + path.filename().string());
    hemoscan::write_dicom_ct(plain, deid_pixels(instance), o);

    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(plain.string().c_str()).good());
    fs::remove(plain);
    DcmDataset& ds = *file.getDataset();
    deid_put(ds, DCM_FrameOfReferenceUID, study.frame_uid);
    deid_add_identifiers(ds, other_sop, burned_in);
    deid_put(*file.getMetaInfo(), DCM_SourceApplicationEntityTitle, "SCANNER_AE");
    ASSERT_TRUE(file.saveFile(path.string().c_str(), ds.getOriginalXfer(), EET_ExplicitLength, EGL_recalcGL,
                              EPD_noChange, 0, 0, EWM_fileformat)
                    .good());
}

std::unique_ptr<DcmFileFormat> deid_load(const fs::path& path) {
    auto file = std::make_unique<DcmFileFormat>();
    EXPECT_TRUE(file->loadFile(path.string().c_str()).good()) << path;
    return file;
}

// The value of `tag` in `item` (all values, '\'-separated), or kDeidAbsent.
std::string deid_value(DcmItem& item, const DcmTagKey& tag) {
    DcmElement* element = nullptr;
    if (item.findAndGetElement(tag, element).bad() || element == nullptr) return kDeidAbsent;
    OFString value;
    element->getOFStringArray(value);
    return value.c_str();
}

DcmItem* deid_item(DcmItem& item, const DcmTagKey& sequence, unsigned long index = 0) {
    DcmItem* found = nullptr;
    if (item.findAndGetSequenceItem(sequence, found, static_cast<signed long>(index)).bad()) return nullptr;
    return found;
}

// `yyyymmdd` moved by `days`, computed with the C library's calendar (not the code under test).
std::string deid_expected_date(const std::string& yyyymmdd, int days) {
    std::tm t{};
    t.tm_year = std::stoi(yyyymmdd.substr(0, 4)) - 1900;
    t.tm_mon = std::stoi(yyyymmdd.substr(4, 2)) - 1;
    t.tm_mday = std::stoi(yyyymmdd.substr(6, 2)) + days;
    t.tm_hour = 12;
    const std::time_t seconds = timegm(&t);
    std::tm out{};
    gmtime_r(&seconds, &out);
    char buf[16];
    std::strftime(buf, sizeof buf, "%Y%m%d", &out);
    return buf;
}

bool deid_is_remapped_uid(const std::string& uid) {
    if (uid.rfind("2.25.", 0) != 0 || uid.size() > 64 || uid.size() < 6) return false;
    const std::string number = uid.substr(5);
    return number.find_first_not_of("0123456789") == std::string::npos && (number == "0" || number[0] != '0');
}

}  // namespace

TEST(Deid, BasicProfileActionsOnOneFile) {
    hemoscan::test::TempDir dir;
    const DeidStudy study;
    const std::string sop = hemoscan::new_dicom_uid(), other = hemoscan::new_dicom_uid();
    deid_write_slice(dir / "in.dcm", study, sop, other, 1);
    {
        // The fixture holds what the checks below expect gone.
        auto in = deid_load(dir / "in.dcm");
        EXPECT_EQ(deid_value(*in->getMetaInfo(), DCM_SourceApplicationEntityTitle), "SCANNER_AE");
        EXPECT_EQ(deid_value(*in->getDataset(), DcmTagKey(0x0009, 0x1001)), "secret private text");
        EXPECT_EQ(deid_value(*in->getDataset(), DcmTagKey(0x6000, 0x0010)), "8");
        EXPECT_EQ(deid_value(*in->getDataset(), DCM_PatientName), "Doe^John");
    }
    const Deidentifier deid(deid_options());
    const hemoscan::DeidReport report = deid.deidentify_file(dir / "in.dcm", dir / "out" / "out.dcm");
    auto file = deid_load(dir / "out" / "out.dcm");
    DcmDataset& ds = *file->getDataset();

    // D: the pseudonym, as id and name; age over 89 capped.
    const std::string pseudonym = deid.pseudonym(study.patient_id);
    EXPECT_EQ(pseudonym.rfind("ANON", 0), 0u);
    EXPECT_EQ(pseudonym.size(), 14u);
    EXPECT_EQ(deid_value(ds, DCM_PatientID), pseudonym);
    EXPECT_EQ(deid_value(ds, DCM_PatientName), pseudonym);
    EXPECT_EQ(deid_value(ds, DCM_PatientAge), "090Y");
    // Z: present, empty.
    for (const DcmTagKey& tag : {DCM_PatientBirthDate, DCM_PatientSex, DCM_AccessionNumber, DCM_StudyID,
                                 DCM_ReferringPhysicianName}) {
        EXPECT_EQ(deid_value(ds, tag), "") << DcmTag(tag).getTagName();
    }
    // X, private groups, overlays, curves: gone.
    for (const DcmTagKey& tag : {DCM_PatientAddress, DCM_RETIRED_OtherPatientIDs, DCM_InstitutionName,
                                 DCM_InstitutionAddress, DCM_PerformingPhysicianName, DCM_OperatorsName,
                                 DCM_StationName, DCM_DeviceSerialNumber, DCM_StudyDescription, DCM_SeriesDescription,
                                 DCM_ImageComments, DcmTagKey(0x0009, 0x0010), DcmTagKey(0x0009, 0x1001),
                                 DcmTagKey(0x6000, 0x0010), DcmTagKey(0x6000, 0x0022), DcmTagKey(0x6000, 0x3000),
                                 DcmTagKey(0x5000, 0x3000)}) {
        EXPECT_EQ(deid_value(ds, tag), kDeidAbsent) << tag.toString();
    }
    // U: every instance UID remapped, the same way everywhere; class UIDs kept.
    EXPECT_EQ(deid_value(ds, DCM_StudyInstanceUID), deid.map_uid(study.study_uid));
    EXPECT_EQ(deid_value(ds, DCM_SeriesInstanceUID), deid.map_uid(study.series_uid));
    EXPECT_EQ(deid_value(ds, DCM_FrameOfReferenceUID), deid.map_uid(study.frame_uid));
    EXPECT_EQ(deid_value(ds, DCM_SOPInstanceUID), deid.map_uid(sop));
    EXPECT_TRUE(deid_is_remapped_uid(deid_value(ds, DCM_SOPInstanceUID)));
    EXPECT_EQ(deid_value(*file->getMetaInfo(), DCM_MediaStorageSOPInstanceUID), deid.map_uid(sop));
    EXPECT_EQ(deid_value(*file->getMetaInfo(), DCM_SourceApplicationEntityTitle), kDeidAbsent);
    EXPECT_EQ(deid_value(ds, DCM_SOPClassUID), UID_CTImageStorage);
    DcmItem* ref = deid_item(ds, DCM_ReferencedImageSequence);
    ASSERT_NE(ref, nullptr);
    EXPECT_EQ(deid_value(*ref, DCM_ReferencedSOPInstanceUID), deid.map_uid(other));
    EXPECT_EQ(deid_value(*ref, DCM_ReferencedSOPClassUID), UID_CTImageStorage);
    // Dates shifted by the patient's offset, times kept; nested: name emptied, date time shifted.
    const int offset = deid.date_offset_days(study.patient_id);
    EXPECT_GE(offset, -365);
    EXPECT_LE(offset, -1);
    EXPECT_EQ(deid_value(ds, DCM_StudyDate), deid_expected_date("20230315", offset));
    EXPECT_EQ(deid_value(ds, DCM_ContentDate), deid_expected_date("20230316", offset));
    EXPECT_EQ(deid_value(ds, DCM_StudyTime), "101500");
    // The time kept, the offset from UTC dropped.
    EXPECT_EQ(deid_value(ds, DCM_AcquisitionDateTime), deid_expected_date("20230301", offset) + "235959.123456");
    DcmItem* related = deid_item(ds, DCM_RelatedSeriesSequence);
    ASSERT_NE(related, nullptr);
    DcmItem* observer = deid_item(*related, DCM_VerifyingObserverSequence);
    ASSERT_NE(observer, nullptr);
    EXPECT_EQ(deid_value(*observer, DCM_VerifyingObserverName), "");
    EXPECT_EQ(deid_value(*observer, DCM_VerificationDateTime), deid_expected_date("20230316", offset) + "120000");
    // The record of the de-identification.
    EXPECT_EQ(deid_value(ds, DCM_PatientIdentityRemoved), "YES");
    EXPECT_NE(deid_value(ds, DCM_DeidentificationMethod).find("Basic Application Level Confidentiality"),
              std::string::npos);
    EXPECT_EQ(deid_value(ds, DCM_LongitudinalTemporalInformationModified), "MODIFIED");
    std::set<std::string> codes;
    for (unsigned long i = 0; DcmItem* code = deid_item(ds, DCM_DeidentificationMethodCodeSequence, i); ++i) {
        EXPECT_EQ(deid_value(*code, DCM_CodingSchemeDesignator), "DCM");
        codes.insert(deid_value(*code, DCM_CodeValue));
    }
    EXPECT_EQ(codes, (std::set<std::string>{"113100", "113107"}));
    // The counts, and no identifying text anywhere in the bytes.
    EXPECT_GE(report.removed, 17);
    EXPECT_GE(report.emptied, 6);
    EXPECT_EQ(report.replaced, 3);
    EXPECT_GE(report.uids_remapped, 6);
    EXPECT_GE(report.dates_shifted, 5);
    const std::string bytes = hemoscan::read_file(dir / "out" / "out.dcm");
    for (const std::string& leak : {std::string("Doe"), std::string("MRN-0042"), std::string("General Hospital"),
                                    std::string("secret private"), std::string("19500102"), std::string("SCANNER_AE"),
                                    std::string("Deep^Nested"), std::string("20230315"), study.study_uid, sop}) {
        EXPECT_EQ(bytes.find(leak), std::string::npos) << leak;
    }
}

TEST(Deid, FilesOfOneStudyStayLinkedAndShareTheDateOffset) {
    hemoscan::test::TempDir dir;
    const DeidStudy study;
    const std::string sop1 = hemoscan::new_dicom_uid(), sop2 = hemoscan::new_dicom_uid();
    deid_write_slice(dir / "a.dcm", study, sop1, sop2, 1);
    deid_write_slice(dir / "b.dcm", study, sop2, sop1, 2);
    const Deidentifier deid(deid_options());
    deid.deidentify_file(dir / "a.dcm", dir / "a_out.dcm");
    deid.deidentify_file(dir / "b.dcm", dir / "b_out.dcm");
    auto a = deid_load(dir / "a_out.dcm");
    auto b = deid_load(dir / "b_out.dcm");
    DcmDataset& da = *a->getDataset();
    DcmDataset& db = *b->getDataset();
    for (const DcmTagKey& tag : {DCM_StudyInstanceUID, DCM_SeriesInstanceUID, DCM_FrameOfReferenceUID, DCM_PatientID,
                                 DCM_StudyDate, DCM_ContentDate}) {
        EXPECT_EQ(deid_value(da, tag), deid_value(db, tag)) << DcmTag(tag).getTagName();
    }
    EXPECT_NE(deid_value(da, DCM_SOPInstanceUID), deid_value(db, DCM_SOPInstanceUID));
    // Each file's reference names the other file's new SOP instance.
    EXPECT_EQ(deid_value(*deid_item(da, DCM_ReferencedImageSequence), DCM_ReferencedSOPInstanceUID),
              deid_value(db, DCM_SOPInstanceUID));
    EXPECT_EQ(deid_value(*deid_item(db, DCM_ReferencedImageSequence), DCM_ReferencedSOPInstanceUID),
              deid_value(da, DCM_SOPInstanceUID));
}

TEST(Deid, SameKeySameOutputOtherKeyOtherUids) {
    hemoscan::test::TempDir dir;
    const DeidStudy study;
    deid_write_slice(dir / "in.dcm", study, hemoscan::new_dicom_uid(), hemoscan::new_dicom_uid(), 1);
    Deidentifier(deid_options("key one, long enough......")).deidentify_file(dir / "in.dcm", dir / "1.dcm");
    Deidentifier(deid_options("key one, long enough......")).deidentify_file(dir / "in.dcm", dir / "1again.dcm");
    Deidentifier(deid_options("key two, long enough......")).deidentify_file(dir / "in.dcm", dir / "2.dcm");
    EXPECT_EQ(hemoscan::read_file(dir / "1.dcm"), hemoscan::read_file(dir / "1again.dcm"));  // byte for byte
    auto one = deid_load(dir / "1.dcm");
    auto two = deid_load(dir / "2.dcm");
    for (const DcmTagKey& tag : {DCM_StudyInstanceUID, DCM_SeriesInstanceUID, DCM_SOPInstanceUID, DCM_PatientID}) {
        EXPECT_NE(deid_value(*one->getDataset(), tag), deid_value(*two->getDataset(), tag)) << DcmTag(tag).getTagName();
    }
}

TEST(Deid, MapUidIsAValidDeterministicUid) {
    const Deidentifier deid(deid_options());
    std::set<std::string> seen;
    for (int i = 0; i < 300; ++i) {
        const std::string source = "1.2.826.0.1.3680043.8.498." + std::to_string(i);
        const std::string uid = deid.map_uid(source);
        EXPECT_TRUE(deid_is_remapped_uid(uid)) << uid;
        EXPECT_EQ(uid, deid.map_uid(source));
        EXPECT_EQ(uid, deid.map_uid(source + " "));  // padding is not part of a UID
        seen.insert(uid);
    }
    EXPECT_EQ(seen.size(), 300u);
    EXPECT_NE(deid.map_uid("1.2.3"), Deidentifier(deid_options("another key entirely")).map_uid("1.2.3"));
}

TEST(Deid, DateOffsetsArePerPatientAndInRange) {
    const Deidentifier deid(deid_options());
    std::set<int> offsets;
    for (int i = 0; i < 50; ++i) {
        const std::string id = "PAT" + std::to_string(i);
        const int offset = deid.date_offset_days(id);
        EXPECT_GE(offset, -365);
        EXPECT_LE(offset, -1);
        EXPECT_EQ(offset, deid.date_offset_days(id));
        offsets.insert(offset);
    }
    EXPECT_GT(offsets.size(), 10u);
    DeidOptions one_day = deid_options();
    one_day.max_date_shift_days = 1;
    EXPECT_EQ(Deidentifier(one_day).date_offset_days("anyone"), -1);
    EXPECT_NE(deid.pseudonym("PAT1"), deid.pseudonym("PAT2"));
}

TEST(Deid, PixelsAndGeometryReadTheSameIncludingCompressed) {
    hemoscan::test::TempDir dir;
    const DeidStudy study;
    const Deidentifier deid(deid_options());
    for (const std::string transfer : {"uncompressed", "rle", "jpeg-ls"}) {
        SCOPED_TRACE(transfer);
        const fs::path in = dir / (transfer + ".dcm"), out = dir / (transfer + "_out.dcm");
        deid_write_slice(in, study, hemoscan::new_dicom_uid(), hemoscan::new_dicom_uid(), 3, "NO", transfer);
        deid.deidentify_file(in, out);
        const hemoscan::DicomSlice before = hemoscan::read_dicom_file(in);
        const hemoscan::DicomSlice after = hemoscan::read_dicom_file(out);
        hemoscan::test::expect_mat_exact(after.pixels, before.pixels);
        EXPECT_EQ(after.meta.position, before.meta.position);
        EXPECT_EQ(after.meta.pixel_spacing, before.meta.pixel_spacing);
        auto in_file = deid_load(in);
        auto out_file = deid_load(out);
        EXPECT_EQ(out_file->getDataset()->getOriginalXfer(), in_file->getDataset()->getOriginalXfer());
    }
}

TEST(Deid, UnshiftableDatesAndUnknownAttributesGoRatherThanStay) {
    hemoscan::test::TempDir dir;
    const DeidStudy study;
    deid_write_slice(dir / "in.dcm", study, hemoscan::new_dicom_uid(), hemoscan::new_dicom_uid(), 1);
    {
        DcmFileFormat file;
        ASSERT_TRUE(file.loadFile((dir / "in.dcm").string().c_str()).good());
        DcmDataset& ds = *file.getDataset();
        deid_put(ds, DCM_StudyDate, "20230230");        // no such day
        deid_put(ds, DCM_SeriesDate, "2023.03.15");     // ACR-NEMA form: shifted, written the DICOM way
        deid_put(ds, DCM_ContentDate, "20240229");      // a leap day
        deid_put(ds, DCM_AcquisitionDateTime, "2023");  // a year only: cannot move by days
        deid_put(ds, DCM_PatientAge, "045Y");
        const Uint8 raw[4] = {'J', 'o', 'h', 'n'};
        auto unknown = std::make_unique<DcmOtherByteOtherWord>(DcmTag(0x0018, 0xFFF0, EVR_UN));
        ASSERT_TRUE(unknown->putUint8Array(raw, 4).good());
        ASSERT_TRUE(ds.insert(unknown.release()).good());
        ASSERT_TRUE(file.saveFile((dir / "in.dcm").string().c_str(), EXS_LittleEndianExplicit).good());
    }
    EXPECT_NE(deid_value(*deid_load(dir / "in.dcm")->getDataset(), DcmTagKey(0x0018, 0xFFF0)), kDeidAbsent);
    const Deidentifier deid(deid_options());
    deid.deidentify_file(dir / "in.dcm", dir / "out.dcm");
    auto file = deid_load(dir / "out.dcm");
    DcmDataset& ds = *file->getDataset();
    const int offset = deid.date_offset_days(study.patient_id);
    EXPECT_EQ(deid_value(ds, DCM_StudyDate), "");
    EXPECT_EQ(deid_value(ds, DCM_SeriesDate), deid_expected_date("20230315", offset));
    EXPECT_EQ(deid_value(ds, DCM_ContentDate), deid_expected_date("20240229", offset));
    EXPECT_EQ(deid_value(ds, DCM_AcquisitionDateTime), "");
    EXPECT_EQ(deid_value(ds, DCM_PatientAge), "045Y");
    EXPECT_EQ(deid_value(ds, DcmTagKey(0x0018, 0xFFF0)), kDeidAbsent);

    // Never in place: the original would be lost.
    hemoscan::test::expect_input_error(
        [&] { hemoscan::deidentify_path(dir / "in.dcm", dir / "in.dcm", deid_options()); }, {"is the input file"});
    hemoscan::test::expect_input_error([&] { hemoscan::deidentify_path(dir / "in.dcm", dir.path(), deid_options()); },
                                       {"is the input file"});
}

TEST(Deid, ErrorsNameTheFileAndWriteNothing) {
    hemoscan::test::TempDir dir;
    const Deidentifier deid(deid_options());
    hemoscan::test::write_text(dir / "notes.dcm", "this is not DICOM at all, only text\n");
    hemoscan::test::expect_input_error([&] { deid.deidentify_file(dir / "notes.dcm", dir / "out" / "x.dcm"); },
                                       {"notes.dcm", "not a DICOM file"});
    EXPECT_FALSE(fs::exists(dir / "out"));

    const DeidStudy study;
    deid_write_slice(dir / "burned.dcm", study, hemoscan::new_dicom_uid(), hemoscan::new_dicom_uid(), 1, "YES");
    fs::create_directories(dir / "out");
    hemoscan::test::expect_input_error([&] { deid.deidentify_file(dir / "burned.dcm", dir / "out" / "b.dcm"); },
                                       {"burned.dcm", "BurnedInAnnotation", "allow_burned_in"});
    EXPECT_TRUE(fs::is_empty(dir / "out"));  // not even a temporary file
    deid.deidentify_file(dir / "burned.dcm", dir / "out" / "b.dcm", true);
    EXPECT_TRUE(fs::exists(dir / "out" / "b.dcm"));

    hemoscan::test::expect_usage_error([] { Deidentifier{deid_options("")}; }, {"key"});
    DeidOptions bad_shift = deid_options();
    bad_shift.max_date_shift_days = 0;
    hemoscan::test::expect_usage_error([&] { Deidentifier{bad_shift}; }, {"max_date_shift_days"});
    DeidOptions bad_prefix = deid_options();
    bad_prefix.patient_id_prefix = "A^B";
    hemoscan::test::expect_usage_error([&] { Deidentifier{bad_prefix}; }, {"patient_id_prefix"});
}

TEST(Deid, FoldersKeepTheirTreeAndSkipNonDicom) {
    hemoscan::test::TempDir dir;
    const DeidStudy study;
    const std::string sop1 = hemoscan::new_dicom_uid(), sop2 = hemoscan::new_dicom_uid();
    deid_write_slice(dir / "in" / "a.dcm", study, sop1, sop2, 1);
    fs::create_directories(dir / "in" / "sub");
    deid_write_slice(dir / "in" / "sub" / "b.dcm", study, sop2, sop1, 2);
    hemoscan::test::write_text(dir / "in" / "README.txt", "scanned for John Doe\n");
    std::vector<std::pair<size_t, size_t>> calls;
    const auto reports = hemoscan::deidentify_path(dir / "in", dir / "out", deid_options(), false,
                                                   [&](size_t done, size_t total) { calls.emplace_back(done, total); });
    ASSERT_EQ(reports.size(), 2u);
    EXPECT_TRUE(fs::exists(dir / "out" / "a.dcm"));
    EXPECT_TRUE(fs::exists(dir / "out" / "sub" / "b.dcm"));
    EXPECT_FALSE(fs::exists(dir / "out" / "README.txt"));  // not DICOM: skipped, not copied
    EXPECT_EQ(calls, (std::vector<std::pair<size_t, size_t>>{{1, 2}, {2, 2}}));

    // A single file into an existing folder keeps its name.
    hemoscan::deidentify_path(dir / "in" / "a.dcm", dir / "out", deid_options());
    EXPECT_TRUE(fs::exists(dir / "out" / "a.dcm"));

    hemoscan::test::expect_input_error(
        [&] { hemoscan::deidentify_path(dir / "in", dir / "in" / "deid", deid_options()); }, {"inside"});
    hemoscan::test::expect_input_error([&] { hemoscan::deidentify_path(dir / "in", dir / "in", deid_options()); },
                                       {"inside"});
    EXPECT_FALSE(fs::exists(dir / "in" / "deid"));
    fs::create_directories(dir / "empty");
    hemoscan::test::write_text(dir / "empty" / "x.txt", "text");
    hemoscan::test::expect_input_error([&] { hemoscan::deidentify_path(dir / "empty", dir / "o2", deid_options()); },
                                       {"empty", "no DICOM files"});
    hemoscan::test::expect_input_error(
        [&] { hemoscan::deidentify_path(dir / "missing", dir / "o3", deid_options()); }, {"missing"});
}
