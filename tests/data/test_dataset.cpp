#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "hemoscan/data/dataset.hpp"
#include "hemoscan/error.hpp"
#include "support/test_util.hpp"

namespace hemoscan {
namespace {

using test::TempDir;
using test::write_text;
namespace fs = std::filesystem;

void write_png(const fs::path& path, int value = 100, int size = 8) {
    fs::create_directories(path.parent_path());
    ASSERT_TRUE(cv::imwrite(path.string(), cv::Mat(size, size, CV_8UC1, cv::Scalar(value))));
}

// The message of the InputError `fn` throws ("" and a test failure when it throws none).
template <typename Fn>
std::string input_error(Fn fn) {
    try {
        fn();
    } catch (const InputError& e) {
        return e.what();
    }
    ADD_FAILURE() << "no InputError thrown";
    return "";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ---- (a) manifest.csv ----

struct ManifestFixture {
    TempDir dir;
    ManifestFixture() {
        for (const char* name : {"a.png", "b.png", "c.png", "d.png"}) write_png(dir / "img" / name);
    }
    void manifest(const std::string& text) { write_text(dir / "manifest.csv", text); }
    fs::path file() const { return dir / "manifest.csv"; }
};

TEST(DatasetManifest, LabelsPatientsAndIgnoredColumns) {
    ManifestFixture f;
    f.manifest(
        "path,patient,hemorrhage,age,edh,note\n"
        "img/a.png,P1,1,54,0,x\n"
        "img/b.png,P1,0,54,0,\n"
        "img/c.png,P2,1,61,1,y\n"
        "img/d.png,,0,70,0,z\n");
    const Dataset ds = open_dataset(f.dir.path());
    EXPECT_EQ(ds.form, DatasetForm::Manifest);
    EXPECT_FALSE(ds.multiclass);
    EXPECT_EQ(ds.root, f.dir.path());
    // age (not 0/1) and note are ignored; label order follows the header.
    ASSERT_EQ(ds.label_names, (std::vector<std::string>{"hemorrhage", "edh"}));
    ASSERT_EQ(ds.size(), 4u);
    EXPECT_EQ(ds.items[0].path, f.dir / "img/a.png");
    EXPECT_EQ(ds.items[0].id, "img/a.png");
    EXPECT_EQ(ds.items[0].patient, "P1");
    EXPECT_EQ(ds.items[1].patient, "P1");
    EXPECT_EQ(ds.items[2].patient, "P2");
    EXPECT_EQ(ds.items[3].patient, "img/d.png");  // empty group cell: the item is its own patient
    EXPECT_EQ(ds.items[2].labels, (std::vector<float>{1, 1}));
    EXPECT_EQ(ds.items[1].labels, (std::vector<float>{0, 0}));
    EXPECT_EQ(ds.items[0].line, 2);
    EXPECT_EQ(ds.items[3].line, 5);
    EXPECT_EQ(ds.items[0].class_index, -1);
    EXPECT_TRUE(ds.items[0].mask.empty());
    EXPECT_EQ(ds.label_counts(), (std::vector<size_t>{2, 1}));
    EXPECT_EQ(ds.patient_count(), 3u);
}

TEST(DatasetManifest, StudyColumnGroupsAndMaskColumn) {
    ManifestFixture f;
    write_png(f.dir / "masks/a.png", 1);
    f.manifest("path,study,mask,any\nimg/a.png,S1,masks/a.png,1\nimg/b.png,S1,,0\nimg/c.png,S2,,1\n");
    const Dataset ds = open_dataset(f.dir.path());
    EXPECT_EQ(ds.label_names, (std::vector<std::string>{"any"}));
    EXPECT_EQ(ds.patient_count(), 2u);
    EXPECT_EQ(ds.items[0].mask, f.dir / "masks/a.png");
    EXPECT_TRUE(ds.items[1].mask.empty());

    f.manifest("path,study,mask,any\nimg/a.png,S1,masks/zz.png,1\n");
    const std::string msg = input_error([&] { open_dataset(f.dir.path()); });
    EXPECT_TRUE(has(msg, f.file().string() + ":2:")) << msg;
    EXPECT_TRUE(has(msg, "zz.png")) << msg;
}

TEST(DatasetManifest, LabelSelection) {
    ManifestFixture f;
    f.manifest("path,hemorrhage,edh,sdh\nimg/a.png,1,0,1\nimg/b.png,0,1,0\n");
    DatasetOptions opt;
    opt.labels = {"sdh", " hemorrhage"};  // order as given; names trimmed
    const Dataset ds = open_dataset(f.dir.path(), opt);
    ASSERT_EQ(ds.label_names, (std::vector<std::string>{"sdh", "hemorrhage"}));
    EXPECT_EQ(ds.items[0].labels, (std::vector<float>{1, 1}));
    EXPECT_EQ(ds.items[1].labels, (std::vector<float>{0, 0}));

    opt.labels = {"ivh"};
    const std::string msg = input_error([&] { open_dataset(f.dir.path(), opt); });
    EXPECT_TRUE(has(msg, f.file().string())) << msg;
    EXPECT_TRUE(has(msg, "'ivh'")) << msg;
    EXPECT_TRUE(has(msg, "hemorrhage, edh, sdh")) << msg;  // lists what is available

    opt.labels = {"path"};  // not a label column
    EXPECT_THROW(open_dataset(f.dir.path(), opt), InputError);
}

TEST(DatasetManifest, SelectedLabelWithValue2NamesFileAndLine) {
    ManifestFixture f;
    f.manifest("path,hemorrhage,edh\nimg/a.png,1,0\nimg/b.png,2,1\n");
    // Without --labels the column is simply not a label column...
    EXPECT_EQ(open_dataset(f.dir.path()).label_names, (std::vector<std::string>{"edh"}));
    // ...with --labels it must be 0/1.
    DatasetOptions opt;
    opt.labels = {"hemorrhage"};
    const std::string msg = input_error([&] { open_dataset(f.dir.path(), opt); });
    EXPECT_TRUE(has(msg, f.file().string() + ":3:")) << msg;
    EXPECT_TRUE(has(msg, "hemorrhage")) << msg;
    EXPECT_TRUE(has(msg, "'2'")) << msg;
}

TEST(DatasetManifest, Errors) {
    ManifestFixture f;
    f.manifest("file,hemorrhage\nimg/a.png,1\n");
    std::string msg = input_error([&] { open_dataset(f.dir.path()); });
    EXPECT_TRUE(has(msg, f.file().string())) << msg;
    EXPECT_TRUE(has(msg, "'path'")) << msg;

    f.manifest("path,hemorrhage\nimg/a.png,1\nimg/missing.png,0\n");
    msg = input_error([&] { open_dataset(f.dir.path()); });
    EXPECT_TRUE(has(msg, f.file().string() + ":3:")) << msg;
    EXPECT_TRUE(has(msg, "img/missing.png")) << msg;

    f.manifest("path,hemorrhage\nimg/a.png,1\nimg/b.png,0\nimg/a.png,0\n");
    msg = input_error([&] { open_dataset(f.dir.path()); });
    EXPECT_TRUE(has(msg, f.file().string() + ":4:")) << msg;
    EXPECT_TRUE(has(msg, "duplicate")) << msg;
    EXPECT_TRUE(has(msg, "line 2")) << msg;

    f.manifest("path,age\nimg/a.png,54\n");  // no 0/1 column at all
    msg = input_error([&] { open_dataset(f.dir.path()); });
    EXPECT_TRUE(has(msg, f.file().string())) << msg;

    f.manifest("");
    msg = input_error([&] { open_dataset(f.dir.path()); });
    EXPECT_TRUE(has(msg, f.file().string() + ": empty")) << msg;

    f.manifest("path,hemorrhage\n");
    msg = input_error([&] { open_dataset(f.dir.path()); });
    EXPECT_TRUE(has(msg, f.file().string())) << msg;
    EXPECT_TRUE(has(msg, "no data rows")) << msg;
}

// Found by fuzzing (tests/fuzz, fuzz_csv): a path of the CSV that the file system refuses (here a name
// over 255 bytes: ENAMETOOLONG) escaped as a std::filesystem_error instead of an InputError with the line.
TEST(DatasetManifest, PathTheFileSystemRefusesIsAMissingFile) {
    ManifestFixture f;
    const std::string long_name(300, 'a');
    f.manifest("path,hemorrhage\nimg/a.png,1\n" + long_name + ".png,0\n");
    std::string msg = input_error([&] { open_dataset(f.dir.path()); });
    EXPECT_TRUE(has(msg, f.file().string() + ":3:")) << msg;
    EXPECT_TRUE(has(msg, "not found")) << msg;

    f.manifest("path,hemorrhage,mask\nimg/a.png,1,img/b.png\nimg/c.png,0," + long_name + "\n");
    msg = input_error([&] { open_dataset(f.dir.path()); });
    EXPECT_TRUE(has(msg, f.file().string() + ":3:")) << msg;
    EXPECT_TRUE(has(msg, "mask")) << msg;

    // labels.csv: an id with a folder part is looked up on disk too.
    fs::remove(f.file());
    write_text(f.dir / "labels.csv", "id,hemorrhage\nimg/a,1\nimg/" + long_name + ",0\n");
    msg = input_error([&] { open_dataset(f.dir.path()); });
    EXPECT_TRUE(has(msg, (f.dir / "labels.csv").string() + ":3:")) << msg;
    EXPECT_TRUE(has(msg, "no image")) << msg;
}

// ---- (b) labels.csv ----

TEST(DatasetLabelsCsv, IdsKeepLeadingZerosAndFindExtensions) {
    TempDir dir;
    write_png(dir / "000.png");
    write_png(dir / "001.png");
    ASSERT_TRUE(cv::imwrite((dir / "002.jpg").string(), cv::Mat(8, 8, CV_8UC1, cv::Scalar(9))));
    write_png(dir / "003.PNG");
    write_text(dir / "004.dcm", "not decoded while opening");
    write_text(dir / "005", "no extension");
    write_png(dir / "1.png");  // must not be taken for id "001"
    write_text(dir / "labels.csv", "id, hemorrhage\r\n000,1\r\n001,0\r\n002,1\r\n003,0\r\n004,1\r\n005,0\r\n");
    const Dataset ds = open_dataset(dir.path());
    EXPECT_EQ(ds.form, DatasetForm::LabelsCsv);
    ASSERT_EQ(ds.label_names, (std::vector<std::string>{"hemorrhage"}));
    ASSERT_EQ(ds.size(), 6u);
    EXPECT_EQ(ds.items[0].id, "000");
    EXPECT_EQ(ds.items[0].patient, "000");
    EXPECT_EQ(ds.items[0].path, dir / "000.png");
    EXPECT_EQ(ds.items[1].path, dir / "001.png");
    EXPECT_EQ(ds.items[2].path, dir / "002.jpg");
    EXPECT_EQ(ds.items[3].path, dir / "003.PNG");
    EXPECT_EQ(ds.items[4].path, dir / "004.dcm");
    EXPECT_EQ(ds.items[5].path, dir / "005");
    EXPECT_EQ(ds.items[4].line, 6);
    EXPECT_EQ(ds.label_counts(), (std::vector<size_t>{3}));
    EXPECT_EQ(ds.patient_count(), 6u);
}

TEST(DatasetLabelsCsv, SeveralLabelsSelectionAndPatientColumn) {
    TempDir dir;
    for (const char* id : {"a", "b", "c"}) write_png(dir / (std::string(id) + ".png"));
    write_text(dir / "labels.csv", "image,patient,edh,sdh\na,p1,1,0\nb,p1,0,0\nc,p2,0,1\n");
    Dataset ds = open_dataset(dir.path());
    EXPECT_EQ(ds.label_names, (std::vector<std::string>{"edh", "sdh"}));
    EXPECT_EQ(ds.patient_count(), 2u);
    EXPECT_EQ(ds.items[2].labels, (std::vector<float>{0, 1}));

    DatasetOptions opt;
    opt.labels = {"SDH"};  // case-insensitive; the header's spelling is kept
    ds = open_dataset(dir.path(), opt);
    EXPECT_EQ(ds.label_names, (std::vector<std::string>{"sdh"}));
    EXPECT_EQ(ds.items[2].labels, (std::vector<float>{1}));

    opt.labels = {"ich"};
    const std::string msg = input_error([&] { open_dataset(dir.path(), opt); });
    EXPECT_TRUE(has(msg, (dir / "labels.csv").string())) << msg;
    EXPECT_TRUE(has(msg, "'ich'")) << msg;
    EXPECT_TRUE(has(msg, "edh, sdh")) << msg;
}

TEST(DatasetLabelsCsv, Errors) {
    TempDir dir;
    write_png(dir / "000.png");
    write_png(dir / "001.png");
    const fs::path file = dir / "labels.csv";

    write_text(file, "id, hemorrhage\n000,1\n001,0\n002,1\n");
    std::string msg = input_error([&] { open_dataset(dir.path()); });
    EXPECT_TRUE(has(msg, file.string() + ":4:")) << msg;
    EXPECT_TRUE(has(msg, "'002'")) << msg;

    write_text(file, "id, hemorrhage\n000,1\n001,2\n");
    msg = input_error([&] { open_dataset(dir.path()); });
    EXPECT_TRUE(has(msg, file.string() + ":3:")) << msg;
    EXPECT_TRUE(has(msg, "hemorrhage")) << msg;

    write_text(file, "id, hemorrhage\n000,1\n001,0\n000,0\n");
    msg = input_error([&] { open_dataset(dir.path()); });
    EXPECT_TRUE(has(msg, file.string() + ":4:")) << msg;
    EXPECT_TRUE(has(msg, "duplicate id '000'")) << msg;

    write_text(file, "id\n000\n");
    msg = input_error([&] { open_dataset(dir.path()); });
    EXPECT_TRUE(has(msg, file.string())) << msg;

    write_text(file, "id, hemorrhage\n000,1,1\n");
    msg = input_error([&] { open_dataset(dir.path()); });
    EXPECT_TRUE(has(msg, file.string() + ":2:")) << msg;
}

// ---- (c) class folders ----

TEST(DatasetClassFolders, SortedClassesOneHotAndPatients) {
    TempDir dir;
    write_png(dir / "normal/n1.png");
    write_png(dir / "normal/n2.png");
    write_png(dir / "normal/n3.png");
    write_text(dir / "normal/readme.txt", "not an image");
    write_png(dir / "hemorrhage/h1.png");
    write_png(dir / "hemorrhage/p7/s1.png");  // per-patient subfolder
    write_png(dir / "hemorrhage/p7/s2.png");
    write_png(dir / ".hidden/x.png");
    fs::create_directories(dir / "empty");
    write_text(dir / "notes.txt", "ignored");
    const Dataset ds = open_dataset(dir.path());
    EXPECT_EQ(ds.form, DatasetForm::ClassFolders);
    EXPECT_TRUE(ds.multiclass);
    ASSERT_EQ(ds.label_names, (std::vector<std::string>{"hemorrhage", "normal"}));
    ASSERT_EQ(ds.size(), 6u);
    EXPECT_EQ(ds.label_counts(), (std::vector<size_t>{3, 3}));
    EXPECT_EQ(ds.patient_count(), 5u);  // h1, p7 (two slices), n1, n2, n3
    EXPECT_EQ(ds.items[0].path, dir / "hemorrhage/h1.png");
    EXPECT_EQ(ds.items[0].id, "h1");
    EXPECT_EQ(ds.items[0].class_index, 0);
    EXPECT_EQ(ds.items[0].labels, (std::vector<float>{1, 0}));
    EXPECT_EQ(ds.items[1].id, "p7/s1");
    EXPECT_EQ(ds.items[1].patient, "p7");
    EXPECT_EQ(ds.items[2].patient, "p7");
    EXPECT_EQ(ds.items[3].id, "n1");
    EXPECT_EQ(ds.items[3].class_index, 1);
    EXPECT_EQ(ds.items[3].labels, (std::vector<float>{0, 1}));
    EXPECT_EQ(ds.items[3].line, 0);

    DatasetOptions opt;
    opt.labels = {"normal"};
    const Dataset only = open_dataset(dir.path(), opt);
    EXPECT_EQ(only.label_names, (std::vector<std::string>{"normal"}));
    EXPECT_EQ(only.size(), 3u);

    opt.labels = {"tumor"};
    const std::string msg = input_error([&] { open_dataset(dir.path(), opt); });
    EXPECT_TRUE(has(msg, "'tumor'")) << msg;
    EXPECT_TRUE(has(msg, "hemorrhage, normal")) << msg;
}

TEST(DatasetClassFolders, DuplicateStemAcrossClassesIsAnError) {
    TempDir dir;
    write_png(dir / "normal/001.png");
    write_png(dir / "hemorrhage/001.png");
    const std::string msg = input_error([&] { open_dataset(dir.path()); });
    EXPECT_TRUE(has(msg, "duplicate id '001'")) << msg;
}

// ---- the folder itself ----

TEST(DatasetFolder, MissingEmptyAndUnrecognised) {
    TempDir dir;
    std::string msg = input_error([&] { open_dataset(dir / "nope"); });
    EXPECT_TRUE(has(msg, (dir / "nope").string())) << msg;

    msg = input_error([&] { open_dataset(dir.path()); });
    EXPECT_TRUE(has(msg, dir.path().string())) << msg;
    EXPECT_TRUE(has(msg, "empty")) << msg;

    write_text(dir / "readme.txt", "x");
    fs::create_directories(dir / "sub");
    msg = input_error([&] { open_dataset(dir.path()); });
    EXPECT_TRUE(has(msg, dir.path().string())) << msg;

    msg = input_error([&] { open_dataset(dir / "readme.txt"); });
    EXPECT_TRUE(has(msg, "not a folder")) << msg;
}

TEST(DatasetFolder, FingerprintIsStableAndSeesLabels) {
    TempDir dir;
    write_png(dir / "a.png");
    write_png(dir / "b.png");
    write_text(dir / "labels.csv", "id,x\na,1\nb,0\n");
    const std::string f1 = open_dataset(dir.path()).fingerprint();
    EXPECT_EQ(f1.size(), 16u);
    EXPECT_EQ(open_dataset(dir.path()).fingerprint(), f1);
    EXPECT_EQ(open_dataset(dir.path() / "").fingerprint(), f1);  // same folder spelt differently
    write_text(dir / "labels.csv", "id,x\na,0\nb,0\n");
    EXPECT_NE(open_dataset(dir.path()).fingerprint(), f1);
}

// The real data set shipped next to the project (form b), when present.
TEST(DatasetFolder, RealHeadCtLabels) {
    const fs::path root = fs::path(HEMOSCAN_SHARED_DIR) / "data/head_ct";
    if (!fs::exists(root / "labels.csv")) GTEST_SKIP() << "no " << root;
    const Dataset ds = open_dataset(root);
    EXPECT_EQ(ds.form, DatasetForm::LabelsCsv);
    EXPECT_EQ(ds.label_names, (std::vector<std::string>{"hemorrhage"}));
    EXPECT_EQ(ds.size(), 200u);
    EXPECT_EQ(ds.items[0].id, "000");
    EXPECT_EQ(ds.items[0].path, root / "000.png");
    EXPECT_EQ(ds.label_counts(), (std::vector<size_t>{100}));
}

}  // namespace
}  // namespace hemoscan
