// Synthetic brain MRI: tissue contrasts per sequence, blood and calcium of opposite phase, Rician
// background, MR Image Storage read back (and refused under a CT policy), the class-folder form.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <map>
#include <sstream>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/synth/synth.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
namespace fs = std::filesystem;

namespace {

SynthOptions mr_options(int subtypes, int calc) {
    SynthOptions o;
    o.seed = 21;
    o.size = 96;
    o.slices = 16;
    o.force_subtypes = subtypes;
    o.force_calcification = calc;
    o.keep_internals = true;
    o.modality = "mr";
    return o;
}

// Mean of sequence `s` over the voxels of tissue `t` (all slices); NaN when there are none.
double tissue_mean(const SynthStudy& ct, const SynthMrStudy& mr, size_t s, Tissue t) {
    double sum = 0;
    long n = 0;
    for (size_t k = 0; k < ct.tissue.size(); ++k) {
        const cv::Mat sel = ct.tissue[k] == static_cast<int>(t);
        n += cv::countNonZero(sel);
        cv::Mat weight;
        sel.convertTo(weight, CV_32F, 1.0 / 255.0);
        sum += cv::sum(mr.images[s].slices[k].mul(weight))[0];
    }
    return n > 0 ? sum / static_cast<double>(n) : std::nan("");
}

size_t index_of(const SynthMrStudy& mr, const std::string& name) {
    return static_cast<size_t>(std::find(mr.sequences.begin(), mr.sequences.end(), name) - mr.sequences.begin());
}

std::map<std::string, std::string> csv_column(const fs::path& file, const std::string& column) {
    std::istringstream in(read_file(file));
    std::string line;
    std::getline(in, line);
    const auto header = split(line, ',');
    const size_t c = static_cast<size_t>(std::find(header.begin(), header.end(), column) - header.begin());
    std::map<std::string, std::string> out;
    while (std::getline(in, line)) {
        const auto row = split(line, ',');
        if (c < row.size()) out[row[0]] = row[c];
    }
    return out;
}

}  // namespace

TEST(SynthMr, SequencesShowTheirTissueContrasts) {
    const SynthOptions o = mr_options(0, 1);
    const SynthStudy ct = generate_study(o, 0);
    const SynthMrStudy mr = synth_mr_study(ct, o);
    ASSERT_EQ(mr.sequences, (std::vector<std::string>{"t1", "t2", "flair", "swi_mag", "swi_phase"}));
    ASSERT_EQ(mr.images.size(), 5u);
    const size_t t1 = index_of(mr, "t1"), t2 = index_of(mr, "t2"), flair = index_of(mr, "flair");
    const size_t mag = index_of(mr, "swi_mag"), phase = index_of(mr, "swi_phase");
    // T1: white matter brighter than grey, CSF dark; T2: CSF brightest; FLAIR: CSF nulled.
    EXPECT_GT(tissue_mean(ct, mr, t1, Tissue::WhiteMatter), tissue_mean(ct, mr, t1, Tissue::GreyMatter));
    EXPECT_LT(tissue_mean(ct, mr, t1, Tissue::Csf), 0.5 * tissue_mean(ct, mr, t1, Tissue::GreyMatter));
    EXPECT_GT(tissue_mean(ct, mr, t2, Tissue::Csf), 1.5 * tissue_mean(ct, mr, t2, Tissue::WhiteMatter));
    EXPECT_LT(tissue_mean(ct, mr, flair, Tissue::Csf), 0.3 * tissue_mean(ct, mr, flair, Tissue::GreyMatter));
    // Calcium: dark on SWI magnitude, positive phase (diamagnetic, right-handed convention).
    EXPECT_LT(tissue_mean(ct, mr, mag, Tissue::Calcification), 0.5 * tissue_mean(ct, mr, mag, Tissue::WhiteMatter));
    EXPECT_GT(tissue_mean(ct, mr, phase, Tissue::Calcification), 0.3);
    EXPECT_NEAR(tissue_mean(ct, mr, phase, Tissue::WhiteMatter), 0.0, 0.15);
    // Rician noise: the background is positive on average (a magnitude of noise), never negative.
    double lo, hi;
    cv::minMaxLoc(mr.images[t1].slices[0], &lo, &hi);
    EXPECT_GE(lo, 0.0);
    EXPECT_GT(tissue_mean(ct, mr, t1, Tissue::Air), 0.0);
    // Phase lies in -pi..pi; the labels are the CT's (no bleed here: no microbleeds either).
    cv::minMaxLoc(mr.images[phase].slices[3], &lo, &hi);
    EXPECT_GE(lo, -test::kPi - 1e-4);
    EXPECT_LE(hi, test::kPi + 1e-4);
    EXPECT_EQ(mr.microbleeds, 0);
    EXPECT_TRUE(mr.blood_age.empty());
    for (size_t k = 0; k < ct.labels.size(); ++k) EXPECT_EQ(cv::countNonZero(mr.labels[k] != ct.labels[k]), 0);
}

TEST(SynthMr, BloodAndCalciumHaveOppositePhaseAndTheConventionFlipsIt) {
    SynthOptions o = mr_options(1 << (kLabelIntraparenchymal - 1), 1);
    for (const bool left : {false, true}) {
        o.phase_left_handed = left;
        const SynthStudy ct = generate_study(o, 1);
        const SynthMrStudy mr = synth_mr_study(ct, o);
        ASSERT_FALSE(mr.blood_age.empty());
        const size_t phase = index_of(mr, "swi_phase");
        const double blood = tissue_mean(ct, mr, phase, Tissue::Blood);
        const double calc = tissue_mean(ct, mr, phase, Tissue::Calcification);
        ASSERT_FALSE(std::isnan(blood));
        ASSERT_FALSE(std::isnan(calc));
        EXPECT_LT(blood * calc, 0.0) << "blood " << blood << " calcium " << calc;
        EXPECT_EQ(calc > 0, !left) << "right-handed: calcium positive, blood negative";
    }
}

TEST(SynthMr, ParsesSequencesAndRefusesCtOnlyLayouts) {
    EXPECT_EQ(parse_mr_sequences("t2, SWI"), (std::vector<std::string>{"t2", "swi_mag", "swi_phase"}));
    test::expect_usage_error([] { parse_mr_sequences("t2,dwi"); }, {"dwi", "t1, t2, flair"});
    test::TempDir d;
    SynthOptions o = mr_options(-1, -1);
    o.keep_internals = false;
    o.studies = 1;
    test::expect_usage_error([&] { write_cohort(o, d / "x", kSynthRsna); }, {"rsna"});
    o.classes = {"bleed", "tumour"};
    test::expect_usage_error([&] { write_cohort(o, d / "y", kSynthClasses); }, {"tumour"});
}

TEST(SynthMr, DicomIsMrImageStorageAndCtReadersRefuseIt) {
    test::TempDir d;
    SynthOptions o = mr_options(-1, -1);
    o.keep_internals = false;
    o.studies = 2;
    o.size = 48;
    o.slices = 6;
    o.p_bleed = 1;
    o.sequences = {"t2", "swi_phase"};
    write_cohort(o, d / "a", kSynthDicom | kSynthNifti | kSynthPng);
    const fs::path t2 = d / "a" / "dicom" / "study_0000" / "t2";
    const fs::path phase = d / "a" / "dicom" / "study_0000" / "swi_phase";
    ASSERT_TRUE(fs::is_directory(t2));
    const fs::path first = *fs::directory_iterator(t2);
    test::expect_input_error([&] { read_dicom_file(first, ModalityPolicy::CtOnly); }, {"modality MR", "CT"});
    const DicomSlice s = read_dicom_file(first, ModalityPolicy::MrOnly);
    EXPECT_EQ(s.meta.modality, "MR");
    EXPECT_FALSE(s.meta.is_hu);
    EXPECT_EQ(s.meta.series_description, "T2 TSE");
    // The reader's view of what was written, and an independent one (dcmdump).
    const auto dump = test::run_command("dcmdump +P 0008,0016 +P 0018,0081 +P 0018,0080 +P 0018,0087 +P 0028,1054 " +
                                        test::q(first));
    EXPECT_NE(dump.output.find("=MRImageStorage"), std::string::npos) << dump.output;
    EXPECT_NE(dump.output.find("[95]"), std::string::npos) << "EchoTime: " << dump.output;
    EXPECT_NE(dump.output.find("[4000]"), std::string::npos) << "RepetitionTime: " << dump.output;
    EXPECT_EQ(dump.output.find("0028,1054"), std::string::npos) << "no RescaleType for MR: " << dump.output;
    const auto volumes = read_dicom_series({phase}, ModalityPolicy::MrOnly);
    ASSERT_EQ(volumes.size(), 1u);
    ASSERT_EQ(volumes.front().depth(), 6);
    double lo, hi;
    cv::minMaxLoc(volumes.front().slices[2], &lo, &hi);
    EXPECT_GE(lo, -4096.0);
    EXPECT_LE(hi, 4094.0);
    EXPECT_LT(lo, -1000.0) << "noise in the air spans the phase range";
    // NIfTI per sequence, one label map; PNG slice folders in the manifest; same seed, same bytes.
    EXPECT_TRUE(fs::exists(d / "a" / "nifti" / "study_0001_swi_phase.nii.gz"));
    // Written after the DICOM files: still radians (the DICOM writer must not scale the study's pixels).
    const Volume nifti_phase = read_nifti(d / "a" / "nifti" / "study_0001_swi_phase.nii.gz");
    cv::minMaxLoc(nifti_phase.slices[2], &lo, &hi);
    EXPECT_GE(lo, -test::kPi - 1e-4);
    EXPECT_LE(hi, test::kPi + 1e-4);
    EXPECT_EQ(read_nifti_labels(d / "a" / "nifti" / "study_0001_labels.nii.gz").depth(), 6);
    const std::string manifest = read_file(d / "a" / "manifest.csv");
    EXPECT_NE(manifest.find("png/study_0000/slice_001,"), std::string::npos) << manifest.substr(0, 300);
    EXPECT_TRUE(fs::exists(d / "a" / "png" / "study_0000" / "slice_001" / "swi_phase.png"));
    write_cohort(o, d / "b", kSynthDicom);
    EXPECT_EQ(read_file(first), read_file(d / "b" / "dicom" / "study_0000" / "t2" / first.filename()));
}

TEST(SynthMr, ClassFoldersHoldTheSliceThatShowsTheClass) {
    test::TempDir d;
    SynthOptions o = mr_options(-1, -1);
    o.keep_internals = false;
    o.studies = 8;
    o.size = 64;
    o.slices = 16;
    o.sequences = {"swi_mag", "swi_phase"};
    o.classes = {"bleed", "calcified", "bleed+calcified", "normal"};
    write_cohort(o, d / "c", kSynthClasses | kSynthNifti);
    const auto cls = csv_column(d / "c" / "studies.csv", "class");
    const auto slice = csv_column(d / "c" / "studies.csv", "class_slice");
    ASSERT_EQ(cls.size(), 8u);
    for (const auto& [study, name] : cls) {
        SCOPED_TRACE(study + " " + name);
        const fs::path folder = d / "c" / "classes" / name / study;
        ASSERT_TRUE(fs::exists(folder / "swi_mag.png"));
        ASSERT_TRUE(fs::exists(folder / "swi_phase.png"));
        EXPECT_EQ(cv::imread((folder / "swi_phase.png").string(), cv::IMREAD_UNCHANGED).type(), CV_8UC1);
        const LabelVolume labels = read_nifti_labels(d / "c" / "nifti" / (study + "_labels.nii.gz"));
        const cv::Mat& l = labels.slices.at(static_cast<size_t>(std::stoi(slice.at(study))));
        const bool calc = cv::countNonZero(l == kLabelCalcification) > 0;
        const bool blood = cv::countNonZero((l > 0) & (l != kLabelCalcification)) > 0;
        EXPECT_EQ(blood, name == "bleed" || name == "bleed+calcified");
        EXPECT_EQ(calc, name == "calcified" || name == "bleed+calcified");
    }
    // Studies go to the classes in turn.
    EXPECT_EQ(cls.at("study_0000"), "bleed");
    EXPECT_EQ(cls.at("study_0003"), "normal");
}
