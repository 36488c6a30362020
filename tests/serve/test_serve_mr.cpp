// The server with an MR model: the page's model info names the sequences; an upload of one image per
// sequence or of the DICOM series of a multi-sequence study is analysed with the sequences as channels
// and says so; CT is refused with the reason.
#include <gtest/gtest.h>

#include "hemoscan/util/fs.hpp"
#include "serve_fixture.hpp"
#include "serve_process.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using test::body;
using test::Part;
using test::post;
using test::q;
using test::run_hemoscan;
using test::ServeProcess;
using test::TempDir;
namespace fs = std::filesystem;

TEST(ServeMr, SequencesAreReadByNameAndCtIsRefused) {
    TempDir d;
    auto r = run_hemoscan("synth --modality mr --format classes,dicom --studies 9 --size 48 --slices 6 --sequences t2,swi"
                          " --seed 5 --threads 1 --out " + q(d / "mr"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_hemoscan("train --data " + q(d / "mr" / "classes") + " --out " + q(d / "run") +
                     " --modality mr --model cnn --size 48 --batch 8 --epochs 1 --threads 1 --workers 1 --augment off");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_hemoscan("synth --format dicom --studies 1 --size 48 --slices 4 --threads 1 --out " + q(d / "ct"));
    ASSERT_EQ(r.exit_code, 0) << r.output;

    ServeProcess s(d / "run" / "model.pt", d / "data");
    ASSERT_TRUE(s.up()) << s.log();
    auto c = s.client();
    auto info = c.Get("/api/model");
    ASSERT_TRUE(info);
    const auto model = body(info);
    EXPECT_EQ(model["input"]["modality"], "MR");
    EXPECT_EQ(model["input"]["sequences"], nlohmann::json({"t2", "swi_mag", "swi_phase"}));

    // One image per sequence, in any order, named by sequence.
    const fs::path one = d / "mr" / "classes" / "bleed" / "study_0000";
    std::vector<Part> images;
    for (const char* name : {"swi_phase.png", "t2.png", "swi_mag.png"}) {
        images.push_back({name, read_file(one / name), "image/png"});
    }
    auto res = post(c, images);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    auto j = body(res);
    EXPECT_EQ(j["kind"], "sequences");
    EXPECT_EQ(j["modality"], "MR");
    EXPECT_EQ(j["sequences"], nlohmann::json({"t2", "swi_mag", "swi_phase"}));
    EXPECT_EQ(j["n_slices"], 1);

    // The DICOM files of a study: three series told apart by their SeriesDescription.
    std::vector<Part> dicoms;
    for (const auto& e : fs::recursive_directory_iterator(d / "mr" / "dicom" / "study_0001")) {
        if (e.is_regular_file()) dicoms.push_back({"IM" + std::to_string(dicoms.size()) + ".dcm", read_file(e.path()), "application/dicom"});
    }
    ASSERT_EQ(dicoms.size(), 18u);
    res = post(c, dicoms);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    j = body(res);
    EXPECT_EQ(j["n_slices"], 6);
    EXPECT_EQ(j["sequences"], nlohmann::json({"t2", "swi_mag", "swi_phase"}));
    // The page shows a slice (the first sequence) of the stored volume.
    auto slice = c.Get(j["image_url"].get<std::string>());
    ASSERT_TRUE(slice);
    EXPECT_EQ(slice->status, 200);

    // CT to an MR model: refused, with the reason.
    std::vector<Part> ct;
    for (const auto& e : fs::directory_iterator(d / "ct" / "dicom" / "study_0000")) {
        ct.push_back({e.path().filename().string(), read_file(e.path()), "application/dicom"});
    }
    res = post(c, ct);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << res->body;
    EXPECT_NE(res->body.find("where MR is expected"), std::string::npos) << res->body;
}
