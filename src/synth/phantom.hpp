#pragma once
// The analytic head phantom (private to src/synth). Everything anatomical lives in head coordinates
// (mm, LPS axes of the head: +x patient left, +y posterior, +z superior, origin at the centre of the
// cranial vault at the level of the lateral ventricles); the pose maps them to scanner coordinates.
// Shapes are ellipsoids, superellipsoid-like surfaces and zero sets of smooth random fields (sums of
// plane waves), evaluated per voxel with cheap arithmetic; the waves are advanced along each row by
// a rotation recurrence instead of calling sin/cos per voxel.
#include <opencv2/core.hpp>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "random.hpp"

namespace hemoscan::synth {

struct Vec3 {
    double x = 0, y = 0, z = 0;
};
inline Vec3 operator+(const Vec3& a, const Vec3& b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
inline Vec3 operator-(const Vec3& a, const Vec3& b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline Vec3 operator*(double s, const Vec3& a) { return {s * a.x, s * a.y, s * a.z}; }
inline double dot(const Vec3& a, const Vec3& b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline double norm(const Vec3& a) { return std::sqrt(dot(a, a)); }
inline Vec3 normalized(const Vec3& a) { return (1.0 / norm(a)) * a; }
inline Vec3 cross(const Vec3& a, const Vec3& b) {
    return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}

// Row-major 3x3.
struct Mat3 {
    double m[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    Vec3 operator*(const Vec3& v) const {
        return {m[0][0] * v.x + m[0][1] * v.y + m[0][2] * v.z, m[1][0] * v.x + m[1][1] * v.y + m[1][2] * v.z,
                m[2][0] * v.x + m[2][1] * v.y + m[2][2] * v.z};
    }
    Mat3 transposed() const {
        Mat3 t;
        for (int i = 0; i < 3; ++i) {
            for (int j = 0; j < 3; ++j) t.m[i][j] = m[j][i];
        }
        return t;
    }
    Mat3 operator*(const Mat3& o) const {
        Mat3 r;
        for (int i = 0; i < 3; ++i) {
            for (int j = 0; j < 3; ++j) {
                r.m[i][j] = m[i][0] * o.m[0][j] + m[i][1] * o.m[1][j] + m[i][2] * o.m[2][j];
            }
        }
        return r;
    }
};
Mat3 rotation_x(double radians);
Mat3 rotation_y(double radians);
Mat3 rotation_z(double radians);

// An ellipsoid with a signed "radial" distance: along the ray from its centre, negative inside (mm).
struct Ellipsoid {
    Vec3 c;
    Mat3 r;          // head -> local axes
    Vec3 inv;        // 1 / semi-axes
    double bound = 0;  // largest semi-axis (bounding sphere radius)
    double dist(const Vec3& p) const {
        const Vec3 l = r * (p - c);
        const double qx = l.x * inv.x, qy = l.y * inv.y, qz = l.z * inv.z;
        const double q = std::sqrt(qx * qx + qy * qy + qz * qz);
        const double rho = std::sqrt(l.x * l.x + l.y * l.y + l.z * l.z);
        if (q < 1e-9) return -1.0 / std::max(inv.x, std::max(inv.y, inv.z));
        return rho * (1.0 - 1.0 / q);
    }
};
Ellipsoid ellipsoid(Vec3 centre, Vec3 semi_axes, const Mat3& rotation = Mat3{});

// A smooth random field: sqrt(2/n) * sum cos(k_i . p + phase_i), unit variance.
struct Wave {
    Vec3 k;
    double phase = 0;
};
struct Field {
    std::vector<Wave> waves;
    double scale = 1;  // sqrt(2/n)
    double wavenumber = 0;
};
Field random_field(Rng& rng, int waves, double wavelength_mm);

// A field that depends mostly on direction, sampled on a cube map (6 faces of n x n) with a few layers
// in depth (trilinear): its zero set is made of near-radial surfaces that bend a little with depth,
// like sulci running from the brain surface towards the centre.
struct CubeField {
    int n = 0, layers = 1;
    double layer_mm = 4;
    std::array<std::vector<float>, 6> faces;  // [layer][j][i]
    double sample(const Vec3& p, double depth) const;
};
CubeField make_cube_field(Rng& rng, const Field& field, double radius, int n, int layers, double layer_mm);

// Per study: which bleeds to draw (label values), and the confounders.
struct StudyPlan {
    std::vector<int> subtypes;  // label values 1..5, no repeats
    bool calcification = false;
    double p_pathological = 0;  // with calcification: chance of 1-3 pathological foci too
};

struct Bleed {
    int label = 0;
    Vec3 centre;          // bounding sphere (head coordinates)
    double bound = 0;
    double hu = 60;
    double hu2 = 60;      // second value: dependent part (mixed subdural), rim of a cast
    double level = 0;     // scanner y of a fluid level (subdural mixed, intraventricular)
    // Extra-axial collections (epidural, subdural): a thickness profile over the inner table.
    Vec3 u0, t1, t2;
    double r_ref = 0, l1 = 1, l2 = 1, h0 = 0, side = 0;
    bool crescent = false;
    bool mixed = false;
    // Intraparenchymal: an irregular blob with an oedema rim.
    double radius = 0, oedema_mm = 0, oedema_hu = 20;
    std::array<Vec3, 4> lobe_dir{};
    std::array<double, 4> lobe_freq{}, lobe_amp{}, lobe_phase{};
    // Intraventricular: side (-1, +1, 0 = both), cast (whole ventricles).
    bool cast = false;
    // Subarachnoid: region sphere (centre/bound), basal cisterns or convexity sulci, widening.
    bool basal = false;
    double widen = 0.8;
};

struct Calcification {
    Vec3 c;
    double r = 2;
    double hu = 200;
};

struct HeadModel {
    // Pose: scanner = rot * head + t.
    Mat3 rot, rot_t;
    Vec3 t;
    // Vault (inner table) and layers.
    double a = 66, b = 85, c_up = 70, c_dn = 95, egg = 0.05, bump = 1.0;
    double t_vault = 5, t_base = 2, scalp = 5, fat = 0.35, temporalis = 6;
    double t_floor_ant = 3, t_floor_mid = 5, t_floor_post = 7;  // floor bone: thin orbital roofs, thick occiput
    // Cranial floor.
    double fa = -25, fm = -46, fp = -68, sella = -33, ridge_top = -31;
    double tent_z0 = -20;
    // Tissue values (HU).
    double gm = 40, wm = 27, csf = 7, dura = 58, skin = 40, fat_hu = -90, muscle = 48;
    double cortical = 1650, diploe = 650, petrous = 1850, base_tissue = 38;
    double texture_hu = 1.4;
    // Brain surface.
    double csf_surface = 1, sulc_hw = 0.7, sulc_depth = 16, gm_ribbon = 2.8, ihf_w = 1.2, falx_w = 0.6;
    Field sulci, texture;
    CubeField sulci_map;  // the sulci field on a sphere (direction only)
    double sulci_mm_per_unit = 4;  // |F| -> distance (mm) near a zero crossing
    // Inner structures.
    std::vector<Ellipsoid> ventricles, cisterns, nuclei, orbits_fat, globes, sinuses, base_bone;
    double face = 0.12;  // forward bulge of the face below the anterior cranial fossa (fraction of b)
    double vsize = 1;
    double cc_top = 33;  // lower edge of the falx at y = 0
    // Midline shift.
    double shift = 0, shift_dir = 0, shift_z = 0, shift_y = 0;
    std::vector<Bleed> bleeds;
    std::vector<Calcification> calcs;
    // Headrest (scanner coordinates): a cylinder arc behind the head.
    bool headrest = false;
    double hr_cx = 0, hr_cy = 0, hr_r = 110, hr_thick = 4, hr_hu = 180;

    Vec3 to_head(const Vec3& s) const { return rot_t * (s - t); }
    Vec3 to_scanner(const Vec3& h) const { return rot * h + t; }
    // Radius of the inner table along a head direction u (unit).
    double inner_radius(const Vec3& u) const;
    // Height of the cranial floor under (x, y) (head coordinates).
    double floor_z(double x, double y) const;
    double floor_thickness(double x, double y) const;
    double tentorium_z(double x, double y) const;
    double petrous_y(double x) const { return -17 * vsize_base + 0.5 * std::abs(x); }
    double vsize_base = 1;  // head scale
};

// The scan: image grid and slice positions in scanner (LPS) coordinates.
struct ScanGeometry {
    int size = 512;
    int slices = 32;
    double pixel = 0.48828125;  // mm
    double thickness = 5;       // mm, = spacing between slices
    double origin_x = 0, origin_y = 0, origin_z = 0;  // centre of the first voxel of the first slice
    double slice_z(int k) const { return origin_z + k * thickness; }
};

// Draws the head, its pose in the scanner, the confounders and the bleeds of `plan` so that they fall
// inside the scanned slab. Returns the midline shift applied (mm).
HeadModel sample_head(Rng& rng, const ScanGeometry& scan, const StudyPlan& plan, std::string* subdural_kind);

// Renders slice k: HU (CV_32F, before blur/noise), tissue class (CV_8U) and label map (CV_8U).
void render_slice(const HeadModel& head, const ScanGeometry& scan, int k, cv::Mat& hu, cv::Mat& tissue,
                  cv::Mat& labels);

}  // namespace hemoscan::synth
