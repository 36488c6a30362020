// Ordered data sets: the RSNA 2019 layout (CSV + DICOM, studies and slice order from the headers),
// manifests with a `slice` column, and what describe reports about studies.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "hemoscan/data/csv.hpp"
#include "hemoscan/data/dataset.hpp"
#include "hemoscan/data/describe.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/synth/synth.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/strings.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using test::TempDir;
namespace fs = std::filesystem;

namespace {

// A small cohort in the RSNA layout and as PNG + manifest (the reference for labels and order).
void write_cohort_both(const fs::path& out, int studies) {
    SynthOptions o;
    o.seed = 11;
    o.studies = studies;
    o.size = 48;
    o.slices = 6;
    o.p_bleed = 0.8;
    o.threads = 2;
    write_cohort(o, out, kSynthRsna | kSynthPng);
}

}  // namespace

// Every slice of the RSNA layout gets the labels and the place in its study that the manifest of the
// same cohort gives it, although the file names say nothing about either (some studies have their
// instance numbers shuffled).
TEST(Rsna, StudiesOrderAndLabelsFromTheHeaders) {
    TempDir d;
    write_cohort_both(d.path(), 4);
    // The CSV's row order says nothing either: reversed here.
    const fs::path csv = d / "rsna" / "stage_2_train.csv";
    std::vector<std::string> lines = split(read_file(csv), '\n');
    while (!lines.empty() && lines.back().empty()) lines.pop_back();
    std::reverse(lines.begin() + 1, lines.end());
    std::string reversed;
    for (const auto& l : lines) reversed += l + "\n";
    test::write_text(csv, reversed);
    const Dataset rsna = open_dataset(d / "rsna");
    EXPECT_EQ(rsna.form, DatasetForm::Rsna);
    ASSERT_TRUE(rsna.ordered);
    EXPECT_EQ(rsna.label_names, (std::vector<std::string>{"any", "epidural", "intraparenchymal", "intraventricular",
                                                          "subarachnoid", "subdural"}));
    ASSERT_EQ(rsna.size(), 24u);
    const auto studies = rsna.studies();
    ASSERT_EQ(studies.size(), 4u);

    const Dataset manifest = open_dataset(d.path());
    ASSERT_TRUE(manifest.ordered);
    EXPECT_EQ(manifest.label_names, rsna.label_names);
    // study uid -> study id, from studies.csv.
    const CsvTable table = read_csv(d / "studies.csv");
    std::map<std::string, std::string> study_of_uid;
    for (const auto& row : table.rows) study_of_uid[row[table.column("study_uid")]] = row[table.column("study")];
    std::map<std::pair<std::string, int>, std::vector<float>> truth;
    for (const auto& item : manifest.items) truth[{item.study, item.slice}] = item.labels;
    int positives = 0;
    for (const auto& study : studies) {
        ASSERT_EQ(study.size(), 6u);
        for (size_t k = 0; k < study.size(); ++k) {
            const DatasetItem& item = rsna.items[study[k]];
            EXPECT_EQ(item.slice, static_cast<int>(k));
            EXPECT_EQ(item.path.extension(), ".dcm");
            EXPECT_EQ(item.patient.rfind("SYN", 0), 0u) << item.patient;  // PatientID, not the file name
            const auto it = truth.find({study_of_uid.at(item.study), static_cast<int>(k)});
            ASSERT_NE(it, truth.end()) << item.study << " slice " << k;
            EXPECT_EQ(item.labels, it->second) << item.id;
            positives += item.labels[0] > 0.5f;
        }
    }
    EXPECT_GT(positives, 0);

    DatasetOptions two;
    two.labels = {"subdural", "any"};
    const Dataset some = open_dataset(d / "rsna", two);
    EXPECT_EQ(some.label_names, (std::vector<std::string>{"subdural", "any"}));
    two.labels = {"bleed"};
    test::expect_input_error([&] { open_dataset(d / "rsna", two); }, {"unknown label 'bleed'", "subdural"});

    // describe: studies, slices per study, prevalence per slice and per study.
    const DatasetSummary s = describe_dataset(rsna);
    EXPECT_EQ(s.studies, 4u);
    EXPECT_EQ(s.slices_per_study.median, 6.0);
    size_t any_studies = 0;
    for (const auto& study : studies) {
        bool pos = false;
        for (size_t i : study) pos = pos || rsna.items[i].labels[0] > 0.5f;
        any_studies += pos ? 1 : 0;
    }
    EXPECT_EQ(s.labels[0].positive_studies, any_studies);
    EXPECT_NEAR(s.to_json()["labels"]["any"]["study_prevalence"].get<double>(), any_studies / 4.0, 1e-12);
}

TEST(Rsna, BrokenLayoutsNameTheLine) {
    TempDir d;
    write_cohort_both(d.path(), 1);
    const fs::path csv = d / "rsna" / "stage_2_train.csv";
    const std::string good = read_file(csv);
    const std::string first = good.substr(9, good.find('_', 12) - 9);  // "ID_<image>" of line 2

    std::string orphan;  // an image with all six rows and no DICOM file
    for (const char* t : {"epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"}) {
        orphan += std::string("ID_123456789_") + t + ",0\n";
    }
    test::write_text(csv, good + orphan);
    test::expect_input_error([&] { open_dataset(d / "rsna"); }, {"stage_2_train.csv:38", "ID_123456789", "not found"});
    test::write_text(csv, good + first + "_hematoma,1\n");
    test::expect_input_error([&] { open_dataset(d / "rsna"); }, {"stage_2_train.csv:38", "six subtypes"});
    test::write_text(csv, good + first + "_any,1\n");
    test::expect_input_error([&] { open_dataset(d / "rsna"); }, {"stage_2_train.csv:38", "given twice"});
    test::write_text(csv, good + "ID_123456789_any,2\n");
    test::expect_input_error([&] { open_dataset(d / "rsna"); }, {"stage_2_train.csv:38", "not 0/1"});
    test::write_text(csv, good + "ID_123456789_any,0\n");  // five labels missing
    test::expect_input_error([&] { open_dataset(d / "rsna"); }, {"stage_2_train.csv:38", "ID_123456789", "no 'epidural'"});
    test::write_text(csv, good);
    test::write_text(d / "rsna" / "other.csv", "ID,Label\n");
    test::expect_input_error([&] { open_dataset(d / "rsna"); }, {"2 CSV files", "ID,Label"});
}

TEST(OrderedManifest, SliceColumnOrdersStudies) {
    TempDir d;
    for (const char* f : {"a1.png", "a2.png", "a3.png", "b1.png", "b2.png"}) test::write_text(d / f, "x");
    test::write_text(d / "manifest.csv",
                     "path,patient,study,slice,any\n"
                     "a2.png,p1,s1,20,1\n"
                     "b2.png,p1,s2,-1,0\n"
                     "a1.png,p1,s1,10,0\n"
                     "a3.png,p1,s1,35,0\n"
                     "b1.png,p1,s2,-5,1\n");
    const Dataset ds = open_dataset(d.path());
    ASSERT_TRUE(ds.ordered);
    EXPECT_EQ(ds.label_names, (std::vector<std::string>{"any"}));  // `slice` is never a label
    EXPECT_EQ(ds.patient_count(), 1u);
    const auto studies = ds.studies();
    ASSERT_EQ(studies.size(), 2u);
    std::vector<std::string> order;
    for (size_t i : studies[0]) order.push_back(ds.items[i].id);
    EXPECT_EQ(order, (std::vector<std::string>{"a1.png", "a2.png", "a3.png"}));
    EXPECT_EQ(ds.items[studies[1][0]].id, "b1.png");
    EXPECT_EQ(ds.items[studies[1][0]].slice, 0);

    test::write_text(d / "manifest.csv", "path,patient,slice,any\na1.png,p1,1,0\na2.png,p1,x,1\n");
    test::expect_input_error([&] { open_dataset(d.path()); }, {"manifest.csv:3", "\"slice\" is not an integer"});
    test::write_text(d / "manifest.csv", "path,patient,slice,any\na1.png,p1,4,0\na2.png,p2,4,1\na3.png,p1,4,1\n");
    test::expect_input_error([&] { open_dataset(d.path()); }, {"manifest.csv:4", "manifest.csv:2", "slice 4"});
    // Without a `slice` column a manifest is not ordered.
    test::write_text(d / "manifest.csv", "path,patient,any\na1.png,p1,0\na2.png,p1,1\n");
    EXPECT_FALSE(open_dataset(d.path()).ordered);
    EXPECT_TRUE(open_dataset(d.path()).studies().empty());
}
