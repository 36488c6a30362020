// NIfTI-1: round trips of data and geometry (axial and tilted), the LPS <-> RAS flip in the stored
// affine, label maps, hand-written files (qform only, no transform, scaled data) and errors.
#include <gtest/gtest.h>

#include <nifti/nifti1.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "hemoscan/error.hpp"
#include "hemoscan/io/nifti.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;
using test::kPi;

namespace {


// Voxel (i, j, k) = 1000*k + 10*j + i - 500: every voxel distinct, so any reordering shows.
Volume make_volume(int rows, int cols, int depth, const Geometry& g) {
    Volume v;
    v.geometry = g;
    for (int k = 0; k < depth; ++k) {
        cv::Mat s(rows, cols, CV_32F);
        for (int j = 0; j < rows; ++j) {
            for (int i = 0; i < cols; ++i) s.at<float>(j, i) = static_cast<float>(1000 * k + 10 * j + i - 500);
        }
        v.slices.push_back(s);
    }
    return v;
}

// Rotation about a unit axis by an angle (Rodrigues), as Geometry direction (columns = row dir,
// column dir, normal; stored d[3*c + r]).
Geometry tilted_geometry() {
    const double ax[3] = {0.3, -0.5, 0.8};
    const double n = std::sqrt(ax[0] * ax[0] + ax[1] * ax[1] + ax[2] * ax[2]);
    const double u[3] = {ax[0] / n, ax[1] / n, ax[2] / n};
    const double t = 23.0 * kPi / 180.0, c = std::cos(t), s = std::sin(t);
    double r[3][3];
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) r[i][j] = (i == j ? c : 0.0) + (1 - c) * u[i] * u[j];
    }
    r[0][1] -= s * u[2], r[0][2] += s * u[1];
    r[1][0] += s * u[2], r[1][2] -= s * u[0];
    r[2][0] -= s * u[1], r[2][1] += s * u[0];
    Geometry g;
    for (int col = 0; col < 3; ++col) {
        for (int row = 0; row < 3; ++row) g.direction[3 * col + row] = r[row][col];
    }
    g.spacing = {0.48828125, 0.6, 3.3};
    g.origin = {-121.7, 88.25, -40.1};
    return g;
}

void expect_same_slices(const std::vector<cv::Mat>& a, const std::vector<cv::Mat>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) {
        ASSERT_EQ(a[k].size(), b[k].size());
        cv::Mat fa, fb;
        a[k].convertTo(fa, CV_64F);
        b[k].convertTo(fb, CV_64F);
        EXPECT_EQ(cv::norm(fa, fb, cv::NORM_INF), 0.0) << "slice " << k;
    }
}

// The 348-byte header of an uncompressed .nii file.
nifti_1_header read_header(const fs::path& path) {
    const std::string bytes = read_file(path);
    nifti_1_header h;
    EXPECT_GE(bytes.size(), sizeof(h));
    std::memcpy(&h, bytes.data(), sizeof(h));
    return h;
}

// A hand-made single-file NIfTI-1 (.nii) with int16 data: independent of niftilib's writer.
void write_handmade(const fs::path& path, nifti_1_header h, const std::vector<short>& data) {
    h.sizeof_hdr = 348;
    h.datatype = DT_INT16;
    h.bitpix = 16;
    h.vox_offset = 352;
    std::memcpy(h.magic, "n+1\0", 4);
    std::string bytes(reinterpret_cast<const char*>(&h), sizeof(h));
    bytes.append(4, '\0');  // no extensions
    bytes.append(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(short));
    test::write_text(path, bytes);
}

}  // namespace

TEST(Nifti, AxialRoundTripIsExactForDataAndGeometry) {
    test::TempDir tmp;
    Geometry g;
    g.spacing = {0.48828125, 0.48828125, 5.0};  // 250/512 mm: exact in float and in decimal
    g.origin = {-124.75, -110.5, -37.25};
    g.direction = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const Volume v = make_volume(6, 7, 4, g);
    const fs::path file = tmp / "ct.nii.gz";
    write_nifti(file, v);

    const Volume r = read_nifti(file);
    expect_same_slices(v.slices, r.slices);
    for (int a = 0; a < 3; ++a) {
        EXPECT_EQ(r.geometry.spacing[a], g.spacing[a]);
        EXPECT_EQ(r.geometry.origin[a], g.origin[a]);
    }
    for (int i = 0; i < 9; ++i) EXPECT_EQ(r.geometry.direction[i], g.direction[i]) << i;
    ASSERT_EQ(r.slice_meta.size(), 4u);
    EXPECT_DOUBLE_EQ(r.slice_meta[2].position[2], -37.25 + 2 * 5.0);
    EXPECT_EQ(r.slice_meta[0].rows, 6);
    EXPECT_EQ(r.slice_meta[0].cols, 7);
    EXPECT_FALSE(r.slice_meta[0].is_hu);  // no air (-1000) in this volume

    // gzip magic: .nii.gz is really compressed.
    const std::string bytes = read_file(file);
    ASSERT_GE(bytes.size(), 2u);
    EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0x1f);
    EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0x8b);
}

TEST(Nifti, TiltedGeometryRoundTrips) {
    test::TempDir tmp;
    const Geometry g = tilted_geometry();
    Volume v = make_volume(5, 9, 3, g);
    v.slices[1].at<float>(2, 3) = 0.125f;  // a fraction: Float32 keeps it
    const fs::path file = tmp / "tilted.nii";
    NiftiWriteOptions o;
    o.type = NiftiType::Float32;
    write_nifti(file, v, o);
    const Volume r = read_nifti(file);
    expect_same_slices(v.slices, r.slices);
    for (int a = 0; a < 3; ++a) {
        EXPECT_EQ(r.geometry.spacing[a], static_cast<double>(static_cast<float>(g.spacing[a])));
        EXPECT_NEAR(r.geometry.origin[a], g.origin[a], 1e-5);
    }
    for (int i = 0; i < 9; ++i) EXPECT_NEAR(r.geometry.direction[i], g.direction[i], 1e-6) << i;
    // Slice positions follow the tilted normal.
    for (int i = 0; i < 3; ++i) {
        EXPECT_NEAR(r.slice_meta[2].position[i], g.origin[i] + 2 * g.spacing[2] * g.direction[6 + i], 1e-4);
    }
}

TEST(Nifti, StoredAffineIsRasWithTheFirstTwoAxesFlipped) {
    test::TempDir tmp;
    Geometry g = tilted_geometry();
    const Volume v = make_volume(4, 4, 2, g);
    const fs::path file = tmp / "affine.nii";
    write_nifti(file, v);
    const nifti_1_header h = read_header(file);
    EXPECT_EQ(h.sform_code, 1);
    EXPECT_EQ(h.qform_code, 1);
    EXPECT_EQ(h.xyzt_units & 7, 2);  // mm
    EXPECT_EQ(h.dim[1], 4);
    EXPECT_EQ(h.dim[3], 2);
    // World position of voxel (i, j, k) in LPS, then RAS = (-x, -y, z).
    const float* rows[3] = {h.srow_x, h.srow_y, h.srow_z};
    const int ijk[3] = {3, 1, 1};
    for (int r = 0; r < 3; ++r) {
        double lps = g.origin[r];
        for (int c = 0; c < 3; ++c) lps += ijk[c] * g.spacing[c] * g.direction[3 * c + r];
        const double ras = (r < 2 ? -1 : 1) * lps;
        double stored = rows[r][3];
        for (int c = 0; c < 3; ++c) stored += ijk[c] * static_cast<double>(rows[r][c]);
        EXPECT_NEAR(stored, ras, 1e-4) << "row " << r;
    }
    // The qform describes the same transform: offsets equal the sform's translation.
    EXPECT_FLOAT_EQ(h.qoffset_x, h.srow_x[3]);
    EXPECT_FLOAT_EQ(h.qoffset_y, h.srow_y[3]);
    EXPECT_FLOAT_EQ(h.qoffset_z, h.srow_z[3]);
    EXPECT_FLOAT_EQ(h.qoffset_x, static_cast<float>(-g.origin[0]));

    const auto a = nifti_affine(g);
    EXPECT_DOUBLE_EQ(a[3], -g.origin[0]);
    EXPECT_DOUBLE_EQ(a[7], -g.origin[1]);
    EXPECT_DOUBLE_EQ(a[11], g.origin[2]);
    EXPECT_DOUBLE_EQ(a[0], -g.direction[0] * g.spacing[0]);
    EXPECT_DOUBLE_EQ(a[9], g.direction[5] * g.spacing[1]);
    EXPECT_DOUBLE_EQ(a[15], 1.0);
}

TEST(Nifti, Int16RoundsAndClamps) {
    test::TempDir tmp;
    Volume v = make_volume(2, 3, 1, Geometry{});
    v.slices[0].at<float>(0, 0) = 12.6f;
    v.slices[0].at<float>(0, 1) = -40000.f;
    v.slices[0].at<float>(0, 2) = 1e6f;
    write_nifti(tmp / "c.nii.gz", v);
    const Volume r = read_nifti(tmp / "c.nii.gz");
    EXPECT_EQ(r.slices[0].at<float>(0, 0), 13.f);
    EXPECT_EQ(r.slices[0].at<float>(0, 1), -32768.f);
    EXPECT_EQ(r.slices[0].at<float>(0, 2), 32767.f);
    EXPECT_TRUE(r.slice_meta[0].is_hu);  // values below -900: read as CT in HU
}

TEST(Nifti, SameVolumeGivesSameBytes) {
    test::TempDir tmp;
    const Volume v = make_volume(8, 8, 3, tilted_geometry());
    write_nifti(tmp / "a.nii.gz", v);
    write_nifti(tmp / "b.nii.gz", v);
    EXPECT_EQ(read_file(tmp / "a.nii.gz"), read_file(tmp / "b.nii.gz"));
}

TEST(Nifti, LabelMapsRoundTripAsUint8) {
    test::TempDir tmp;
    Geometry g = tilted_geometry();
    std::vector<cv::Mat> labels;
    for (int k = 0; k < 3; ++k) {
        cv::Mat m(5, 6, CV_8U);
        for (int j = 0; j < 5; ++j) {
            for (int i = 0; i < 6; ++i) m.at<uchar>(j, i) = static_cast<uchar>((i + j + k) % 7);
        }
        labels.push_back(m);
    }
    write_nifti_labels(tmp / "seg.nii.gz", labels, g, "labels");
    const LabelVolume r = read_nifti_labels(tmp / "seg.nii.gz");
    ASSERT_EQ(r.depth(), 3);
    for (int k = 0; k < 3; ++k) {
        EXPECT_EQ(r.slices[k].type(), CV_8UC1);
        EXPECT_EQ(cv::norm(r.slices[k], labels[k], cv::NORM_INF), 0.0);
    }
    for (int i = 0; i < 9; ++i) EXPECT_NEAR(r.geometry.direction[i], g.direction[i], 1e-6);

    // Uncompressed header: uint8, descrip kept.
    write_nifti_labels(tmp / "seg.nii", labels, g, "labels 0-6");
    const nifti_1_header h = read_header(tmp / "seg.nii");
    EXPECT_EQ(h.datatype, DT_UINT8);
    EXPECT_STREQ(h.descrip, "labels 0-6");
}

TEST(Nifti, LabelReaderRejectsNonLabelValues) {
    test::TempDir tmp;
    Volume v = make_volume(3, 3, 1, Geometry{});
    v.slices[0].setTo(1);
    v.slices[0].at<float>(1, 2) = 2.5f;
    NiftiWriteOptions o;
    o.type = NiftiType::Float32;
    write_nifti(tmp / "f.nii.gz", v, o);
    try {
        read_nifti_labels(tmp / "f.nii.gz");
        FAIL() << "expected InputError";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("f.nii.gz"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("i=2, j=1, k=0"), std::string::npos) << e.what();
    }
    v.slices[0].at<float>(1, 2) = 300.f;
    write_nifti(tmp / "g.nii.gz", v);
    EXPECT_THROW(read_nifti_labels(tmp / "g.nii.gz"), InputError);
}

TEST(Nifti, HandMadeQformOnlyFileIsReadInLps) {
    // qform only (sform_code 0): a rotation of 90 degrees about z in RAS, qfac -1, scaled data.
    test::TempDir tmp;
    nifti_1_header h{};
    h.dim[0] = 3, h.dim[1] = 2, h.dim[2] = 3, h.dim[3] = 2;
    h.pixdim[0] = -1;  // qfac
    h.pixdim[1] = 0.5f, h.pixdim[2] = 0.75f, h.pixdim[3] = 4.f;
    h.qform_code = 1;
    h.sform_code = 0;
    // 90 degrees about z: a = cos 45, d = sin 45.
    h.quatern_b = 0, h.quatern_c = 0, h.quatern_d = static_cast<float>(std::sqrt(0.5));
    h.qoffset_x = 10, h.qoffset_y = 20, h.qoffset_z = 30;
    h.scl_slope = 2, h.scl_inter = -1024;
    h.xyzt_units = 2;
    std::vector<short> data(12);
    for (int n = 0; n < 12; ++n) data[n] = static_cast<short>(n);
    write_handmade(tmp / "q.nii", h, data);

    const Volume v = read_nifti(tmp / "q.nii");
    ASSERT_EQ(v.depth(), 2);
    EXPECT_EQ(v.rows(), 3);
    EXPECT_EQ(v.cols(), 2);
    EXPECT_EQ(v.slices[1].at<float>(2, 1), 2.f * 11 - 1024);  // n = i + 2*j + 6*k = 11
    EXPECT_EQ(v.slices[0].at<float>(1, 0), 2.f * 2 - 1024);
    // RAS: i -> +A (0,1,0), j -> -R (-1,0,0), k -> -S (qfac -1). LPS flips x and y.
    const std::array<double, 9> expected{0, -1, 0, 1, 0, 0, 0, 0, -1};
    for (int i = 0; i < 9; ++i) EXPECT_NEAR(v.geometry.direction[i], expected[i], 1e-7) << i;
    EXPECT_DOUBLE_EQ(v.geometry.origin[0], -10);
    EXPECT_DOUBLE_EQ(v.geometry.origin[1], -20);
    EXPECT_DOUBLE_EQ(v.geometry.origin[2], 30);
    EXPECT_DOUBLE_EQ(v.geometry.spacing[1], 0.75);
}

TEST(Nifti, HandMadeFileWithoutTransformUsesRasAxes) {
    test::TempDir tmp;
    nifti_1_header h{};
    h.dim[0] = 3, h.dim[1] = 2, h.dim[2] = 2, h.dim[3] = 1;
    h.pixdim[1] = 1.5f, h.pixdim[2] = 1.5f, h.pixdim[3] = 2.f;
    write_handmade(tmp / "m1.nii", h, std::vector<short>(4, 7));
    const Volume v = read_nifti(tmp / "m1.nii");
    const std::array<double, 9> expected{-1, 0, 0, 0, -1, 0, 0, 0, 1};
    for (int i = 0; i < 9; ++i) EXPECT_EQ(v.geometry.direction[i], expected[i]) << i;
    EXPECT_EQ(v.slices[0].at<float>(1, 1), 7.f);
    EXPECT_EQ(v.geometry.spacing[2], 2.0);
}

// Issue 28: a header whose dimensions claim more than the limits, or more data than an uncompressed
// file holds, is refused from the header, before niftilib allocates the volume.
TEST(Nifti, HugeOrTruncatedClaimsRefusedFromTheHeader) {
    test::TempDir tmp;
    nifti_1_header h{};
    h.dim[0] = 3, h.dim[1] = 16384, h.dim[2] = 16384, h.dim[3] = 1;
    h.pixdim[1] = h.pixdim[2] = h.pixdim[3] = 1;
    write_handmade(tmp / "wide.nii", h, std::vector<short>(4, 1));
    test::expect_input_error([&] { read_nifti(tmp / "wide.nii"); },
                             {"wide.nii", "16384 x 16384 pixels", "limit of 16777216 pixels per slice"});
    h.dim[1] = 512, h.dim[2] = 512, h.dim[3] = 30000;
    write_handmade(tmp / "deep.nii", h, std::vector<short>(4, 1));
    test::expect_input_error([&] { read_nifti(tmp / "deep.nii"); }, {"deep.nii", "512 x 512 x 30000", "limit of 2000"});
    h.dim[1] = 64, h.dim[2] = 64, h.dim[3] = 8;  // 64 KB of shorts promised, 8 bytes present
    write_handmade(tmp / "short.nii", h, std::vector<short>(4, 1));
    test::expect_input_error([&] { read_nifti(tmp / "short.nii"); }, {"short.nii", "truncated", "64 x 64 x 8"});
    h.dim[1] = 2, h.dim[2] = 2, h.dim[3] = 1;
    write_handmade(tmp / "fine.nii", h, std::vector<short>(4, 1));
    EXPECT_EQ(read_nifti(tmp / "fine.nii").rows(), 2);
}

TEST(Nifti, ErrorsNameTheFile) {
    test::TempDir tmp;
    try {
        read_nifti(tmp / "missing.nii.gz");
        FAIL() << "expected InputError";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("missing.nii.gz"), std::string::npos);
    }
    test::write_text(tmp / "junk.nii", std::string(400, 'x'));
    EXPECT_THROW(read_nifti(tmp / "junk.nii"), InputError);

    // 4D with two volumes.
    nifti_1_header h{};
    h.dim[0] = 4, h.dim[1] = 2, h.dim[2] = 2, h.dim[3] = 1, h.dim[4] = 2;
    h.pixdim[1] = h.pixdim[2] = h.pixdim[3] = h.pixdim[4] = 1;
    write_handmade(tmp / "4d.nii", h, std::vector<short>(8, 1));
    try {
        read_nifti(tmp / "4d.nii");
        FAIL() << "expected InputError";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("4d.nii"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("2 volumes"), std::string::npos) << e.what();
    }

    const Volume v = make_volume(2, 2, 1, Geometry{});
    EXPECT_THROW(write_nifti(tmp / "x.png", v), UsageError);
    EXPECT_THROW(write_nifti(tmp / "e.nii", Volume{}), UsageError);
    Volume skew = v;
    skew.geometry.direction = {1, 0, 0, 0.5, 1, 0, 0, 0, 1};
    EXPECT_THROW(write_nifti(tmp / "s.nii", skew), UsageError);
    // No temporary files left behind.
    for (const auto& e : fs::directory_iterator(tmp.path())) {
        EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
    }
}
