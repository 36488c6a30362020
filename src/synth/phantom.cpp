#include "phantom.hpp"

#include <algorithm>
#include <limits>

#include "hemoscan/synth/synth.hpp"

namespace hemoscan::synth {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kDeg = kPi / 180.0;

inline double smoothstep(double e0, double e1, double x) {
    double t = (x - e0) / (e1 - e0);
    t = t < 0 ? 0 : (t > 1 ? 1 : t);
    return t * t * (3 - 2 * t);
}
inline double mix(double a, double b, double t) { return a + (b - a) * t; }
inline double clamp1(double v) { return v < -1 ? -1 : (v > 1 ? 1 : v); }
inline double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
// A blend weight strictly between the two classes: the voxel is a partial-volume voxel.
inline bool partial(double t) { return t > 0 && t < 1; }

// Draw order of the labels, lowest priority first: where bleeds overlap, the later one wins.
int priority(int label) {
    switch (label) {
        case kLabelSubarachnoid: return 0;
        case kLabelSubdural: return 1;
        case kLabelEpidural: return 2;
        case kLabelIntraparenchymal: return 3;
        case kLabelIntraventricular: return 4;
        default: return 5;
    }
}

}  // namespace

Mat3 rotation_x(double t) {
    Mat3 r;
    r.m[1][1] = std::cos(t), r.m[1][2] = -std::sin(t);
    r.m[2][1] = std::sin(t), r.m[2][2] = std::cos(t);
    return r;
}
Mat3 rotation_y(double t) {
    Mat3 r;
    r.m[0][0] = std::cos(t), r.m[0][2] = std::sin(t);
    r.m[2][0] = -std::sin(t), r.m[2][2] = std::cos(t);
    return r;
}
Mat3 rotation_z(double t) {
    Mat3 r;
    r.m[0][0] = std::cos(t), r.m[0][1] = -std::sin(t);
    r.m[1][0] = std::sin(t), r.m[1][1] = std::cos(t);
    return r;
}

Ellipsoid ellipsoid(Vec3 centre, Vec3 semi, const Mat3& rotation) {
    Ellipsoid e;
    e.c = centre;
    e.r = rotation.transposed();  // rotation: local -> head; r: head -> local
    e.inv = {1.0 / semi.x, 1.0 / semi.y, 1.0 / semi.z};
    e.bound = std::max(semi.x, std::max(semi.y, semi.z));
    return e;
}

Field random_field(Rng& rng, int waves, double wavelength) {
    Field f;
    f.wavenumber = 2 * kPi / wavelength;
    f.scale = std::sqrt(2.0 / waves);
    for (int i = 0; i < waves; ++i) {
        // Uniform direction on the sphere; wavelength jittered a little so the pattern is less regular.
        const double z = rng.uniform(-1, 1), phi = rng.uniform(0, 2 * kPi), s = std::sqrt(1 - z * z);
        const double k = f.wavenumber * rng.uniform(0.85, 1.15);
        f.waves.push_back({{k * s * std::cos(phi), k * s * std::sin(phi), k * z}, rng.uniform(0, 2 * kPi)});
    }
    return f;
}

CubeField make_cube_field(Rng& rng, const Field& field, double radius, int n, int layers, double layer_mm) {
    CubeField cube;
    cube.n = n;
    cube.layers = layers;
    cube.layer_mm = layer_mm;
    // Deeper layers sample the 3D field slightly closer to the centre (radial compression 0.4) and
    // drifted around a random axis, so the sulci bend and change a little as they go in.
    const double z = rng.uniform(-1, 1), phi = rng.uniform(0, 2 * kPi), sz = std::sqrt(1 - z * z);
    const Vec3 axis{sz * std::cos(phi), sz * std::sin(phi), z};
    const double drift = rng.uniform(0.25, 0.5);
    for (int f = 0; f < 6; ++f) {
        cube.faces[f].resize(static_cast<size_t>(n) * n * layers);
        for (int l = 0; l < layers; ++l) {
            const double depth = l * layer_mm;
            for (int j = 0; j < n; ++j) {
                for (int i = 0; i < n; ++i) {
                    const double u = 2.0 * i / (n - 1) - 1, v = 2.0 * j / (n - 1) - 1;
                    const double sgn = f % 2 == 0 ? 1.0 : -1.0;
                    Vec3 d;
                    if (f / 2 == 0) d = {sgn, u, v};
                    if (f / 2 == 1) d = {u, sgn, v};
                    if (f / 2 == 2) d = {u, v, sgn};
                    const Vec3 dir = normalized(d);
                    const Vec3 p = (radius - 0.4 * depth) * dir + (drift * depth) * cross(axis, dir);
                    double sum = 0;
                    for (const Wave& w : field.waves) sum += std::cos(dot(w.k, p) + w.phase);
                    cube.faces[f][(static_cast<size_t>(l) * n + j) * n + i] = static_cast<float>(sum * field.scale);
                }
            }
        }
    }
    return cube;
}

double CubeField::sample(const Vec3& p, double depth) const {
    const double ax = std::abs(p.x), ay = std::abs(p.y), az = std::abs(p.z);
    int f;
    double u, v, m;
    if (ax >= ay && ax >= az) {
        f = p.x >= 0 ? 0 : 1, m = ax, u = p.y, v = p.z;
    } else if (ay >= az) {
        f = p.y >= 0 ? 2 : 3, m = ay, u = p.x, v = p.z;
    } else {
        f = p.z >= 0 ? 4 : 5, m = az, u = p.x, v = p.y;
    }
    if (m < 1e-9) return 0;
    const double gu = (u / m + 1) * 0.5 * (n - 1), gv = (v / m + 1) * 0.5 * (n - 1);
    const int i = std::min(n - 2, std::max(0, static_cast<int>(gu)));
    const int j = std::min(n - 2, std::max(0, static_cast<int>(gv)));
    const double fu = std::clamp(gu - i, 0.0, 1.0), fv = std::clamp(gv - j, 0.0, 1.0);
    const double gl = std::clamp(depth / layer_mm, 0.0, layers - 1.0);
    const int l = std::min(layers - 2, static_cast<int>(gl));
    const double fl = layers > 1 ? gl - l : 0;
    double out = 0;
    for (int dl = 0; dl < std::min(2, layers); ++dl) {
        const float* row0 = faces[f].data() + (static_cast<size_t>(l + dl) * n + j) * n + i;
        const float* row1 = row0 + n;
        const double val = (row0[0] * (1 - fu) + row0[1] * fu) * (1 - fv) + (row1[0] * (1 - fu) + row1[1] * fu) * fv;
        out += val * (dl == 0 ? 1 - fl : fl);
    }
    return out;
}

double HeadModel::inner_radius(const Vec3& u) const {
    // Along direction u the vault surface is at rho with (rho*ux/a')^2 + ... = 1 (a' depends on y).
    // Solve by two fixed-point steps on a' (egg shape), enough for placing bleeds.
    double rho = a;
    for (int i = 0; i < 3; ++i) {
        const double aa = a * (1 + egg * rho * u.y / b);
        const double cz = u.z > 0 ? c_up : c_dn;
        rho = 1.0 / std::sqrt((u.x / aa) * (u.x / aa) + (u.y / b) * (u.y / b) + (u.z / cz) * (u.z / cz));
    }
    return rho;
}

double HeadModel::floor_z(double x, double y) const {
    const double k = vsize_base;
    // Anterior fossa in front of the sphenoid wings (curving back laterally): orbital roofs domed up,
    // the cribriform plate low in the midline.
    const double w_ant = sigmoid((-22 * k - 0.006 * x * x / k - y) / 3.0);
    const double w_post = sigmoid((y - petrous_y(x)) / 3.0);  // posterior fossa
    const double ax0 = (std::abs(x) - 28 * k) / (16 * k), ax1 = x / (8 * k);
    const double z_ant = fa + 3.5 * k * std::exp(-ax0 * ax0) - 2.5 * k * std::exp(-ax1 * ax1);
    const double z_mid = fm + (sella - fm) * std::exp(-(x * x) / (12 * k * 12 * k));  // middle fossae, sella
    double z = w_ant * z_ant + (1 - w_ant) * (w_post * fp + (1 - w_post) * z_mid);
    // Petrous ridges: bony crests along the line y = petrous_y(x), from the sella out to the sides.
    const double ax = std::abs(x);
    if (ax > 10 * k && ax < 62 * k) {
        const double d = (y - petrous_y(x)) / std::sqrt(1.25);  // distance to the line (slope 0.5)
        const double ridge = ridge_top - 0.18 * d * d - 0.12 * std::max(0.0, ax - 45 * k) * 2;
        z = std::max(z, ridge);
    }
    return z;
}

double HeadModel::floor_thickness(double x, double y) const {
    const double k = vsize_base;
    const double w_ant = sigmoid((-22 * k - 0.006 * x * x / k - y) / 3.0), w_post = sigmoid((y - petrous_y(x)) / 3.0);
    return w_ant * t_floor_ant + (1 - w_ant) * (w_post * t_floor_post + (1 - w_post) * t_floor_mid);
}

double HeadModel::tentorium_z(double x, double y) const {
    // A tent: highest at the incisura behind the midbrain, sloping down to the sides and the back.
    const double k = vsize_base;
    return tent_z0 + 9 * k * std::exp(-(x * x) / (22 * k * 22 * k)) - 0.28 * std::max(0.0, y - 10 * k);
}

// ---------------------------------------------------------------------------------------------
// Sampling

namespace {

Vec3 direction(double side, double azimuth_deg, double elevation_deg) {
    // azimuth 0 = straight lateral, < 0 anterior (-y), > 0 posterior; elevation above the horizontal.
    const double az = azimuth_deg * kDeg, el = elevation_deg * kDeg;
    return normalized({side * std::cos(el) * std::cos(az), std::cos(el) * std::sin(az), std::sin(el)});
}

struct Slab {
    double lo = 0, hi = 0;  // scanner z of the first and last slice centres
};

bool inside_slab(const HeadModel& h, const Slab& slab, const Vec3& p, double margin) {
    const double z = h.to_scanner(p).z;
    const double m = std::min(margin, (slab.hi - slab.lo) / 2);
    return z >= slab.lo + m && z <= slab.hi - m;
}

void set_frame(Bleed& b, const Vec3& u0) {
    b.u0 = u0;
    Vec3 t1 = cross({0, 0, 1}, u0);
    if (norm(t1) < 1e-6) t1 = {1, 0, 0};
    b.t1 = normalized(t1);
    b.t2 = cross(u0, b.t1);
}

// Approximate volume (mL) of a drawn bleed, for the mass effect (the reported volumes come from the masks).
double approx_volume_ml(const Bleed& b) {
    switch (b.label) {
        case kLabelEpidural: return kPi / 2 * b.l1 * b.l2 * b.h0 / 1000.0;
        case kLabelSubdural: return 0.55 * kPi * b.l1 * b.l2 * b.h0 / 1000.0;
        case kLabelIntraparenchymal: {
            const double r = b.radius + 0.5 * b.oedema_mm;
            return 4.0 / 3.0 * kPi * r * r * r / 1000.0;
        }
        default: return 0;
    }
}

bool sample_extra_axial(Rng& rng, HeadModel& h, const Slab& slab, Bleed& b, std::string* kind) {
    const double k = h.vsize_base;
    const bool epidural = b.label == kLabelEpidural;
    for (int attempt = 0; attempt < 40; ++attempt) {
        const double side = rng.sign();
        const Vec3 u0 = epidural ? direction(side, rng.uniform(-55, 45), rng.uniform(-8, 40))
                                 : direction(side, rng.uniform(-45, 35), rng.uniform(0, 40));
        const double r = h.inner_radius(u0);
        const Vec3 on_table = r * u0;
        if (on_table.z < h.floor_z(on_table.x, on_table.y) + 12) continue;
        if (!inside_slab(h, slab, (r - 6) * u0, 6)) continue;
        b.side = side;
        set_frame(b, u0);
        b.r_ref = r;
        if (epidural) {
            b.l1 = rng.uniform(22, 38) * k;
            b.l2 = rng.uniform(16, 28) * k;
            b.h0 = rng.uniform(9, 22);
            b.hu = rng.uniform(52, 78);
            b.crescent = false;
        } else {
            b.l1 = rng.uniform(48, 72) * k;
            b.l2 = rng.uniform(38, 58) * k;
            b.h0 = rng.uniform(5, 15);
            b.crescent = true;
            const int which = rng.pick({0.55, 0.15, 0.2, 0.1});
            static const char* names[] = {"acute", "subacute", "chronic", "mixed"};
            if (kind) *kind = names[which];
            if (which == 0) b.hu = rng.uniform(55, 80);
            if (which == 1) b.hu = rng.uniform(32, 45);
            if (which == 2) b.hu = rng.uniform(8, 24);
            if (which == 3) {
                // Acute on chronic: the fresh blood settles in the dependent (posterior) part.
                b.mixed = true;
                b.hu = rng.uniform(14, 26);
                b.hu2 = rng.uniform(50, 70);
                b.level = h.to_scanner((r - b.h0 / 2) * u0).y + rng.uniform(-10, 8);
            }
        }
        b.centre = on_table;
        b.bound = std::max(b.l1, b.l2) * 1.15 + b.h0 + 4;
        return true;
    }
    return false;
}

bool sample_intraparenchymal(Rng& rng, HeadModel& h, const Slab& slab, Bleed& b) {
    const double k = h.vsize_base;
    for (int attempt = 0; attempt < 40; ++attempt) {
        const int site = rng.pick({0.35, 0.15, 0.35, 0.10, 0.05});
        const double side = rng.sign();
        double max_ml = 80;
        Vec3 c;
        if (site == 0) c = {side * 23 * k, rng.uniform(-8, 6) * k, rng.uniform(-2, 8) * k};  // putamen
        if (site == 1) c = {side * 11 * k, 11 * k, 5 * k}, max_ml = 30;                       // thalamus
        if (site == 3) {
            c = {side * rng.uniform(12, 26) * k, rng.uniform(48, 62) * k, (h.fp + 22 * k)}, max_ml = 25;  // cerebellum
        }
        if (site == 4) c = {0, 6 * k, -30 * k}, max_ml = 8;  // pons
        const double ml = rng.log_uniform(1, max_ml);
        const double radius = std::cbrt(3 * ml * 1000 / (4 * kPi));
        if (site == 2) {  // lobar: under the cortex of a random lobe
            const Vec3 u = direction(side, rng.uniform(-70, 70), rng.uniform(0, 50));
            c = (h.inner_radius(u) - radius - rng.uniform(6, 14)) * u;
        }
        if (site == 3 && c.z + radius > h.tentorium_z(c.x, c.y) - 2) c.z = h.tentorium_z(c.x, c.y) - radius - 2;
        if (!inside_slab(h, slab, c, std::min(6.0, radius))) continue;
        b.centre = c;
        b.radius = radius;
        b.side = std::abs(c.x) > 5 * k ? (c.x > 0 ? 1 : -1) : 0;  // a hemisphere's bleed stops at the falx
        b.hu = rng.uniform(55, 84);
        b.oedema_mm = rng.uniform(1.5, 6.0);
        b.oedema_hu = rng.uniform(13, 21);
        for (int i = 0; i < 4; ++i) {
            const double z = rng.uniform(-1, 1), phi = rng.uniform(0, 2 * kPi), s = std::sqrt(1 - z * z);
            b.lobe_dir[i] = {s * std::cos(phi), s * std::sin(phi), z};
            b.lobe_freq[i] = rng.uniform(1.5, 3.5) * kPi;
            b.lobe_amp[i] = rng.uniform(0.05, 0.15);
            b.lobe_phase[i] = rng.uniform(0, 2 * kPi);
        }
        b.bound = radius * 1.65 + b.oedema_mm + 3;
        return true;
    }
    return false;
}

bool sample_intraventricular(Rng& rng, HeadModel& h, const Slab& slab, Bleed& b) {
    const double k = h.vsize_base;
    b.cast = rng.chance(0.25);
    b.side = rng.chance(0.5) ? 0 : rng.sign();
    const double s = b.side == 0 ? rng.sign() : b.side;
    b.hu = b.cast ? rng.uniform(50, 70) : rng.uniform(55, 80);
    b.centre = {0, 10 * k, 8 * k};
    b.bound = 75 * k * std::max(1.0, h.vsize);
    if (b.cast) {
        b.level = -kInf;
        return true;
    }
    // Supine patient: blood sinks to the back (scanner +y). The level crosses a part of the ventricles
    // that the slab covers: the atrium first, else the body, third ventricle, temporal or fourth.
    const Vec3 candidates[] = {{s * 17 * k, 30 * k, 14 * k}, {s * 10 * k, 3 * k, 22 * k}, {s * 10 * k, 10 * k, 22 * k},
                               {0, 4 * k, 3 * k}, {s * 29 * k, 6 * k, -12 * k}, {0, 24 * k, -34 * k}};
    for (const Vec3& c : candidates) {
        if (!inside_slab(h, slab, c, 2)) continue;
        b.level = h.to_scanner(c).y + rng.uniform(-5, 3) * h.vsize;
        return true;
    }
    b.cast = true;
    b.level = -kInf;
    return true;
}

bool sample_subarachnoid(Rng& rng, HeadModel& h, const Slab& slab, Bleed& b) {
    const double k = h.vsize_base;
    b.basal = rng.chance(0.5);
    b.widen = rng.uniform(0.5, 1.1);
    b.hu = rng.uniform(50, 75);
    if (b.basal) {
        b.centre = {0, -8 * k, -6 * k};
        b.bound = rng.uniform(42, 58) * k;
        if (inside_slab(h, slab, b.centre, 4) || inside_slab(h, slab, {0, -8 * k, 12 * k}, 4)) return true;
        b.basal = false;
    }
    for (int attempt = 0; attempt < 40; ++attempt) {
        const Vec3 u = direction(rng.sign(), rng.uniform(-70, 60), rng.uniform(0, 55));
        const Vec3 c = (h.inner_radius(u) - 4) * u;
        if (!inside_slab(h, slab, c, 4)) continue;
        b.centre = c;
        b.bound = rng.uniform(24, 42) * k;
        return true;
    }
    return false;
}

}  // namespace

HeadModel sample_head(Rng& rng, const ScanGeometry& scan, const StudyPlan& plan, std::string* subdural_kind) {
    HeadModel h;
    const double k = rng.uniform(0.92, 1.06);
    h.vsize_base = k;
    h.a = rng.uniform(61, 68) * k;
    h.b = rng.uniform(79, 88) * k;
    h.c_up = rng.uniform(66, 75) * k;
    h.c_dn = 95 * k;
    h.egg = rng.uniform(0.03, 0.08);
    h.face = rng.uniform(0.11, 0.16);
    h.bump = rng.uniform(0.4, 1.0);
    h.t_vault = rng.uniform(4.0, 5.3);  // 4-8 mm with the thickening at the base and the poles
    h.t_base = rng.uniform(1.0, 2.0);
    h.t_floor_ant = rng.uniform(2.5, 4);
    h.t_floor_mid = rng.uniform(4, 6);
    h.t_floor_post = rng.uniform(6, 9);
    h.scalp = rng.uniform(4, 7);
    h.fat = rng.uniform(0.2, 0.45);
    h.temporalis = rng.uniform(2, 5);
    h.fa = rng.uniform(-28, -22) * k;
    h.fm = rng.uniform(-50, -43) * k;
    h.fp = rng.uniform(-72, -64) * k;
    h.sella = -33 * k;
    h.ridge_top = rng.uniform(-33, -28) * k;
    h.tent_z0 = rng.uniform(-21, -16) * k;

    // Tissue values (HU): see docs/synthetic.md for the sources of the ranges.
    h.gm = rng.uniform(38.5, 42.5);
    h.wm = std::clamp(h.gm - rng.uniform(9, 13), 24.5, 29.0);
    h.texture_hu = rng.uniform(0.8, 1.5);  // keeps GM in 35-45, WM in 22-32, CSF in 0-15
    h.csf = rng.uniform(4, 10);
    h.dura = rng.uniform(50, 65);
    h.skin = rng.uniform(35, 45);
    h.fat_hu = rng.uniform(-100, -60);
    h.muscle = rng.uniform(42, 55);
    h.cortical = rng.uniform(1400, 1650);
    h.diploe = rng.uniform(450, 800);
    h.petrous = rng.uniform(1750, 1900);
    h.base_tissue = rng.uniform(30, 45);

    // Brain: ventricle size and sulcal width grow together with age (atrophy).
    h.vsize = rng.uniform(0.85, 1.45);
    const double atrophy = (h.vsize - 0.85) / 0.6;
    h.csf_surface = 0.5 + 1.3 * atrophy * rng.uniform(0.6, 1.0);
    h.sulc_hw = 0.4 + 0.7 * atrophy;
    h.sulc_depth = rng.uniform(13, 19);
    h.gm_ribbon = rng.uniform(2.4, 3.2);
    h.ihf_w = 0.7 + 1.1 * atrophy;
    h.falx_w = rng.uniform(0.4, 0.7);
    h.sulci = random_field(rng, 16, rng.uniform(19, 25) * k);
    h.sulci_map = make_cube_field(rng, h.sulci, 60 * k, 48, 6, 4.0);
    h.sulci_mm_per_unit = 1.0 / (h.sulci.wavenumber * 0.82);
    h.texture = random_field(rng, 8, rng.uniform(35, 60));
    h.cc_top = rng.uniform(30, 36) * k;

    // Pose: tilt (pitch about the left-right axis, roll, yaw) and position in the field of view.
    const double pitch = rng.uniform(-12, 12) * kDeg, roll = rng.uniform(-4, 4) * kDeg, yaw = rng.uniform(-6, 6) * kDeg;
    h.rot = rotation_z(yaw) * rotation_y(roll) * rotation_x(pitch);
    h.rot_t = h.rot.transposed();
    const double fov_c = scan.origin_x + (scan.size - 1) * scan.pixel / 2;
    const double fov_cy = scan.origin_y + (scan.size - 1) * scan.pixel / 2;
    h.t.x = fov_c + rng.uniform(-8, 8);
    h.t.y = fov_cy + rng.uniform(-8, 6);
    // Which part of the head the slab covers: all of it from the posterior fossa up when it is long
    // enough, else a part centred somewhere between the basal cisterns and the ventricle roofs.
    const double total = (scan.slices - 1) * scan.thickness;
    const double lo_head = -50 * k, hi_head = h.c_up + h.t_vault + h.scalp - 3;
    double bottom;
    if (total >= hi_head - lo_head) {
        // Longer than the head: start lower (skull base, posterior fossa), end a little above the vertex.
        bottom = std::max(-66 * k, hi_head + 6 - total) + rng.uniform(-3, 3);
    } else {
        bottom = std::clamp(rng.uniform(-8, 28) * k - total / 2, lo_head, hi_head - total);
    }
    h.t.z = scan.origin_z - bottom;

    // Ventricles (CSF), scaled around the ventricular system's centre by the ventricle size.
    const Vec3 vc{0, 8 * k, 14 * k};
    const double v = h.vsize;
    auto vent = [&](Vec3 pos, Vec3 semi, const Mat3& rot = Mat3{}) {
        const Vec3 p = vc + (0.55 + 0.45 * v) * (k * pos - vc);
        h.ventricles.push_back(ellipsoid(p, {semi.x * k * v, semi.y * k * std::sqrt(v), semi.z * k * v}, rot));
    };
    for (double s : {-1.0, 1.0}) {
        vent({s * 8.0, -20, 17}, {5.0, 13, 8}, rotation_z(s * 20 * kDeg));   // frontal horn
        vent({s * 10.0, 3, 22}, {5.5, 19, 5.5}, rotation_z(-s * 5 * kDeg));  // body
        vent({s * 17.0, 28, 15}, {7.5, 9, 8.5});                              // atrium
        vent({s * 17.0, 43, 12}, {3.8, 11, 4.5}, rotation_z(s * 15 * kDeg));  // occipital horn
        vent({s * 25.0, 17, 1}, {4.5, 9, 9});                                 // atrium -> temporal horn
        vent({s * 29.0, 3, -12}, {3.2, 14, 3.8}, rotation_x(15 * kDeg));      // temporal horn
    }
    h.ventricles.push_back(ellipsoid({0, 2 * k, 3 * k}, {(1.6 + 1.6 * (v - 0.85)) * k, 13 * k, 9 * k}));  // third
    h.ventricles.push_back(ellipsoid({0, 24 * k, -34 * k}, {6.5 * k, 3.8 * k, 7 * k}));                   // fourth

    // Deep grey matter: caudate heads (also carve the frontal horns), lentiform nuclei, thalami.
    for (double s : {-1.0, 1.0}) h.nuclei.push_back(ellipsoid({s * (15.5 + 2 * (v - 1)) * k, -15 * k, 13 * k},
                                                                {6 * k, 9 * k, 8 * k}));
    for (double s : {-1.0, 1.0}) h.nuclei.push_back(ellipsoid({s * 23 * k, -2 * k, 3 * k}, {6 * k, 14 * k, 9 * k}));
    for (double s : {-1.0, 1.0}) h.nuclei.push_back(ellipsoid({s * 10.5 * k, 11 * k, 5 * k}, {8 * k, 12 * k, 8 * k}));

    // Cisterns and fissures (CSF).
    const double cw = 1 + 0.6 * atrophy;
    h.cisterns.push_back(ellipsoid({0, -12 * k, -15 * k}, {12 * k * cw, 9 * k, 5 * k}));     // suprasellar
    h.cisterns.push_back(ellipsoid({0, 25 * k, -4 * k}, {9 * k, 5 * k * cw, 6 * k}));        // quadrigeminal
    h.cisterns.push_back(ellipsoid({0, -9 * k, -36 * k}, {10 * k, 3.5 * k * cw, 10 * k}));   // prepontine
    h.cisterns.push_back(ellipsoid({0, 55 * k, -56 * k}, {11 * k, 9 * k, 10 * k}));          // cisterna magna
    for (double s : {-1.0, 1.0}) {
        h.cisterns.push_back(ellipsoid({s * 55 * k, -1 * k, 1 * k}, {12 * k, (2.6 + 1.8 * atrophy) * k, 12 * k},
                                       rotation_z(s * 20 * kDeg)));                          // Sylvian fissure
        h.cisterns.push_back(ellipsoid({s * 35 * k, 0, 3 * k}, {(1.2 + 0.8 * atrophy) * k, 18 * k, 13 * k}));  // insula
        h.cisterns.push_back(ellipsoid({s * 22 * k, -14 * k, -13 * k}, {12 * k, 3 * k * cw, 4 * k},
                                       rotation_z(-s * 20 * kDeg)));                         // Sylvian stem
    }

    // Skull base: orbits (globe, retro-orbital fat) and sinuses.
    for (double s : {-1.0, 1.0}) {
        h.globes.push_back(ellipsoid({s * 31 * k, -66 * k, -40 * k}, {11.5 * k, 11.5 * k, 11.5 * k}));
        h.orbits_fat.push_back(ellipsoid({s * 27 * k, -48 * k, -40 * k}, {9 * k, 14 * k, 9 * k}));
    }
    h.sinuses.push_back(ellipsoid({0, -58 * k, -42 * k}, {10 * k, 16 * k, 12 * k}));  // ethmoid
    h.sinuses.push_back(ellipsoid({0, -26 * k, -48 * k}, {12 * k, 10 * k, 9 * k}));   // sphenoid
    h.sinuses.push_back(ellipsoid({0, -62 * k, -64 * k}, {5 * k, 22 * k, 14 * k}));   // nasal cavity
    for (double s : {-1.0, 1.0}) {
        h.sinuses.push_back(ellipsoid({s * 27 * k, -56 * k, -68 * k}, {13 * k, 15 * k, 14 * k}));  // maxillary
        // Petrous pyramids (dense bone under the ridges, mastoid air cells at their outer end).
        h.base_bone.push_back(ellipsoid({s * 34 * k, 0, -40 * k}, {26 * k, 9 * k, 9 * k}, rotation_z(s * 29 * kDeg)));
    }
    h.base_bone.push_back(ellipsoid({0, -6 * k, -54 * k}, {9 * k, 8 * k, 17 * k}, rotation_x(-35 * kDeg)));  // clivus

    // Slab (scanner z of the first and last slice centres).
    Slab slab{scan.origin_z, scan.origin_z + total};

    // Calcifications: pineal, choroid plexus glomus, globus pallidus, falx plaque.
    if (plan.calcification) {
        std::vector<Calcification> c;
        if (rng.chance(0.8)) c.push_back({{0, 17 * k, 4 * k}, rng.uniform(1.6, 3.0), rng.uniform(150, 390)});
        if (rng.chance(0.6)) {
            for (double s : {-1.0, 1.0}) {
                if (rng.chance(0.9)) c.push_back({{s * 18 * k, 29 * k, 14 * k}, rng.uniform(1.8, 3.4), rng.uniform(125, 350)});
            }
        }
        if (rng.chance(0.15)) {
            for (double s : {-1.0, 1.0}) c.push_back({{s * 19 * k, -1 * k, 2 * k}, rng.uniform(1.5, 2.5), rng.uniform(125, 250)});
        }
        if (rng.chance(0.15)) c.push_back({{0, rng.uniform(-40, 20) * k, rng.uniform(38, 55) * k}, rng.uniform(2, 3.5),
                                           rng.uniform(150, 380)});
        // At least one focus inside the slab.
        bool any = false;
        for (const auto& f : c) any = any || inside_slab(h, slab, f.c, 1);
        if (!any) {
            const Vec3 candidates[] = {{0, 17 * k, 4 * k}, {18 * k, 29 * k, 14 * k}, {-18 * k, 29 * k, 14 * k},
                                       {0, -10 * k, 45 * k}, {0, 30 * k, 40 * k}};
            for (const Vec3& p : candidates) {
                if (inside_slab(h, slab, p, 1)) {
                    c.push_back({p, rng.uniform(2.0, 3.2), rng.uniform(150, 380)});
                    break;
                }
            }
        }
        h.calcs = c;
    }

    // Bleeds.
    for (int label : plan.subtypes) {
        Bleed b;
        b.label = label;
        bool ok = false;
        if (label == kLabelEpidural || label == kLabelSubdural) {
            ok = sample_extra_axial(rng, h, slab, b, label == kLabelSubdural ? subdural_kind : nullptr);
        }
        if (label == kLabelIntraparenchymal) ok = sample_intraparenchymal(rng, h, slab, b);
        if (label == kLabelIntraventricular) ok = sample_intraventricular(rng, h, slab, b);
        if (label == kLabelSubarachnoid) ok = sample_subarachnoid(rng, h, slab, b);
        if (ok) h.bleeds.push_back(b);
    }
    std::stable_sort(h.bleeds.begin(), h.bleeds.end(),
                     [](const Bleed& x, const Bleed& y) { return priority(x.label) < priority(y.label); });

    // Mass effect: large bleeds push the midline (falx, ventricles, deep nuclei) to the other side.
    double mass = 0, biggest = 0;
    for (const Bleed& b : h.bleeds) {
        const double ml = approx_volume_ml(b);
        mass += ml;
        if (ml > biggest && std::abs(b.centre.x) > 3) {
            biggest = ml;
            h.shift_dir = b.centre.x > 0 ? -1 : 1;
            h.shift_z = std::clamp(b.centre.z, -10 * k, 35 * k);
            h.shift_y = 0.5 * b.centre.y;
        }
    }
    if (biggest > 0) h.shift = std::clamp(0.2 * (mass - 20), 0.0, 13.0);

    // Headrest: a cradle arc behind the head, fixed in the scanner.
    h.headrest = rng.chance(0.7);
    if (h.headrest) {
        h.hr_r = h.b + h.t_vault + h.scalp + rng.uniform(4, 12);
        h.hr_cx = h.t.x;
        h.hr_cy = h.t.y;
        h.hr_thick = rng.uniform(3, 6);
        h.hr_hu = rng.uniform(120, 260);
    }
    // Pathological calcifications (calcified granulomas such as neurocysticercosis, calcified tumour or
    // vascular foci): 1-3 foci of 1.5-4 mm in the parenchyma, denser than physiological ones. Drawn last
    // so that the draws above (and cohorts made without them) do not change.
    if (plan.calcification && plan.p_pathological > 0 && rng.chance(plan.p_pathological)) {
        const int n = rng.integer(1, 3);
        for (int i = 0, tries = 0; i < n && tries < 50; ++tries) {
            const Vec3 p{rng.uniform(-1, 1) * 0.7 * h.a, rng.uniform(-1, 1) * 0.7 * h.b, rng.uniform(-0.1, 0.7) * h.c_up};
            const double q = (p.x / h.a) * (p.x / h.a) + (p.y / h.b) * (p.y / h.b) + (p.z / h.c_up) * (p.z / h.c_up);
            if (q > 0.45) continue;  // well inside the vault
            h.calcs.push_back({p, rng.uniform(1.5, 4.0), rng.uniform(200, 700)});
            ++i;
        }
    }
    return h;
}

// ---------------------------------------------------------------------------------------------
// Rendering

namespace {

struct Out {
    double hu;
    Tissue tissue;
    std::uint8_t label;
    bool pv = false;  // blended across a class boundary
};

// What one slice needs: the structures whose bounding sphere reaches it.
struct SliceContext {
    const HeadModel* h = nullptr;
    double pixel = 0.5, thick = 5;
    std::vector<const Ellipsoid*> ventricles, cisterns, nuclei, globes, orbit_fat, sinuses, base_bone;
    const Ellipsoid* caudate[2] = {nullptr, nullptr};
    std::vector<const Bleed*> bleeds;
    std::vector<const Calcification*> calcs;
    double w_internal = 0.8;  // soft edge of internal boundaries (mm)
    double w_bleed = 0.8;

    static bool near(const Vec3& p, const Vec3& c, double r) {
        const Vec3 d = p - c;
        return dot(d, d) < r * r;
    }

    double air(const Vec3& s, Tissue& t) const {
        if (h->headrest && s.y > h->hr_cy + 0.4 * h->hr_r) {
            const double d = std::hypot(s.x - h->hr_cx, s.y - h->hr_cy) - h->hr_r;
            const double half = h->hr_thick / 2;
            if (std::abs(d) < half + 1) {
                const double w = 1 - smoothstep(half - 0.5, half + 0.5, std::abs(d));
                if (w > 0.5) t = Tissue::Headrest;
                return mix(-1000, h->hr_hu, w);
            }
        }
        t = Tissue::Air;
        return -1000;
    }

    // Skull base below the cranial floor: soft tissue, orbits, sinuses. Blended voxels: PartialVolume.
    double base(const Vec3& p, Tissue& t) const {
        double hu = h->base_tissue;
        t = Tissue::SoftTissue;
        bool pv = false;
        auto blend = [&](double value, double w, Tissue inside) {
            // w: weight of `value` (1 inside the structure).
            hu = mix(hu, value, w);
            if (w >= 1) t = inside, pv = false;
            else if (w > 0) pv = true;
        };
        for (const Ellipsoid* e : orbit_fat) {
            if (near(p, e->c, e->bound + 2)) blend(h->fat_hu, 1 - smoothstep(-0.8, 0.8, e->dist(p)), Tissue::Fat);
        }
        for (const Ellipsoid* e : globes) {
            if (near(p, e->c, e->bound + 2)) blend(12.0, 1 - smoothstep(-0.6, 0.6, e->dist(p)), Tissue::SoftTissue);
        }
        for (const Ellipsoid* e : base_bone) {
            if (!near(p, e->c, e->bound + 2)) continue;
            // Dense bone; air cells (mastoid) in its outer part.
            const double cells = std::sin(p.x * 1.1) * std::sin(p.y * 1.1) * std::sin(p.z * 1.1);
            const bool mastoid = std::abs(p.x) > 40 * h->vsize_base && cells > 0.15;
            blend(mastoid ? -600 : h->petrous * 0.97, 1 - smoothstep(-0.6, 0.6, e->dist(p)),
                  mastoid ? Tissue::PartialVolume : Tissue::Bone);
        }
        for (const Ellipsoid* e : sinuses) {
            if (!near(p, e->c, e->bound + 3)) continue;
            const double d = e->dist(p);
            if (d < 1.5) {
                // Air cells with thin bony walls.
                blend(-1000, 1 - smoothstep(-0.4, 0.4, d), Tissue::Air);
                blend(900, 0.8 * (1 - smoothstep(0.4, 1.2, std::abs(d - 0.6))), Tissue::Bone);
            }
        }
        if (pv) t = Tissue::PartialVolume;
        return hu;
    }

    // depth: below the cavity wall (vault or floor); vault_depth: below the vault's inner table only.
    Out interior(const Vec3& p, const Vec3& s, double X, double depth, double vault_depth) const {
        const HeadModel& m = *h;
        const double k = m.vsize_base;
        const double x = p.x, y = p.y, z = p.z;
        // Midline shift: structures are looked up at a displaced point (the skull does not move).
        double xd = x;
        if (m.shift > 0) {
            const double dz = (z - m.shift_z) / 30.0, dy = (y - m.shift_y) / 45.0;
            const double fall = std::max(0.0, 1 - (x / m.a) * (x / m.a));
            xd = x - m.shift_dir * m.shift * std::exp(-0.5 * (dz * dz + dy * dy)) * fall;
        }
        const Vec3 q{xd, y, z};
        const double tex = m.texture_hu * clamp1(0.5 * X);

        // Region: brainstem, cerebellum (posterior fossa under the tentorium) or cerebrum.
        const double zt = m.tentorium_z(x, y);
        const bool posterior = y > m.petrous_y(x);
        bool brainstem = false;
        double d_midbrain = kInf;
        if (z < -2 * k && z > m.fp) {
            const bool pons = z < -22 * k;
            const double ybs = (pons ? 4 : 8) * k, rx = (pons ? 16 : 12.5) * k, ry = (pons ? 14 : 11) * k;
            const double ex = xd / rx, ey = (y - ybs) / ry;
            const double d = (std::sqrt(ex * ex + ey * ey) - 1) * std::min(rx, ry);
            brainstem = d < 0;
            if (!pons) d_midbrain = d;
        }
        const bool cerebellum = !brainstem && posterior && z < zt;
        // The sulcal field (direction only) where it matters: near the surface, and the cerebellum.
        const double F =
            (cerebellum || depth < m.sulc_depth + m.gm_ribbon + 1) ? m.sulci_map.sample(q, depth) : 3.0;

        double hu_par, g = 1;
        double d_csf = depth - m.csf_surface;  // the subarachnoid space under the inner table
        double d_conv = d_csf;
        bool pv = false;
        if (brainstem) {
            hu_par = m.wm + 1.5;
            g = 0;
        } else if (cerebellum) {
            // Folia: thin fissures roughly parallel to the surface.
            const double d_cb = std::min(depth, zt - z);
            // Folia: fine fissures, mostly near the surface (faint at CT resolution).
            const double folia = std::sin(d_cb * 1.6 + 2.2 * F);
            d_csf = std::min(d_csf, (0.985 - folia) * 4.0 + 0.08 * d_cb);
            d_csf = std::min(d_csf, zt - z - m.csf_surface);
            // A faint white-matter core (arbor vitae mixed with folia at CT resolution: partial volume).
            g = 1 - 0.6 * smoothstep(10 * k, 18 * k, d_cb);
            hu_par = m.wm + g * (m.gm - m.wm) - 1;
            pv = partial(g);
        } else {
            // Cortex: a grey ribbon under the surface and along the sulci (zero set of the field F).
            const double dist_f = std::abs(F) * m.sulci_mm_per_unit;
            double hw = 0;
            const double sulc_depth = m.sulc_depth * (0.75 + 0.25 * clamp1(X));  // deeper and shallower sulci
            if (depth < sulc_depth) {
                hw = m.sulc_hw * std::sqrt(1 - depth / sulc_depth);
                d_conv = std::min(d_conv, dist_f - hw);
                d_csf = d_conv;
            }
            const double g_cortex = 1 - smoothstep(m.gm_ribbon - 0.6, m.gm_ribbon + 0.6, depth);
            double g_sulc = 0;
            if (depth < sulc_depth + m.gm_ribbon) {
                g_sulc = 1 - smoothstep(hw + m.gm_ribbon - 0.6, hw + m.gm_ribbon + 0.6, dist_f);
            }
            double g_nuc = 0;
            for (const Ellipsoid* e : nuclei) {
                if (!near(q, e->c, e->bound + 1)) continue;
                g_nuc = std::max(g_nuc, 1 - smoothstep(-0.8, 0.8, e->dist(q)));
            }
            g = std::max(g_cortex, std::max(g_sulc, g_nuc));
            hu_par = m.wm + g * (m.gm - m.wm);
            pv = partial(g);
        }
        hu_par += tex;

        // Ventricles (with the caudate heads carving the frontal horns) and cisterns.
        double d_vent = kInf;
        for (const Ellipsoid* e : ventricles) {
            if (!near(q, e->c, e->bound + 1)) continue;
            d_vent = std::min(d_vent, e->dist(q));
        }
        if (d_vent < 1) {
            for (const Ellipsoid* e : caudate) {
                if (e && near(q, e->c, e->bound + 1)) d_vent = std::max(d_vent, -e->dist(q));
            }
        }
        double d_cist = kInf;
        for (const Ellipsoid* e : cisterns) {
            if (!near(q, e->c, e->bound + 1)) continue;
            d_cist = std::min(d_cist, e->dist(q));
        }
        if (d_midbrain < 6 && z > -24 * k) {
            // Ambient cisterns around the midbrain: wide behind it, thin at the sides, none in front.
            const double back = smoothstep(-6 * k, 6 * k, y - 8 * k);
            const double w = (0.3 + 1.7 * back) * (1.0 + 0.8 * (m.vsize - 0.85));
            if (w > 0.35) d_cist = std::min(d_cist, std::abs(d_midbrain - w / 2) - w / 2);
        }
        // Interhemispheric fissure and falx, above the corpus callosum (lower towards the poles).
        const double z_edge = m.cc_top - 45 * k * (y / m.b) * (y / m.b);
        const bool above_edge = z > z_edge;
        if (above_edge) d_cist = std::min(d_cist, std::abs(xd) - m.ihf_w);
        d_csf = std::min(d_csf, std::min(d_vent, d_cist));

        const double t_csf = smoothstep(-w_internal, w_internal, d_csf);
        double hu = mix(m.csf + 0.5 * tex, hu_par, t_csf);
        pv = (pv && t_csf > 0) || partial(t_csf);
        Tissue tissue = d_csf < 0 ? Tissue::Csf : (g >= 0.5 ? Tissue::GreyMatter : Tissue::WhiteMatter);

        // Dura: falx and tentorium (denser than brain).
        if (above_edge && std::abs(xd) < m.falx_w + 0.6) {
            const double t = smoothstep(m.falx_w - 0.3, m.falx_w + 0.3, std::abs(xd));
            hu = mix(m.dura, hu, t);
            pv = pv || partial(t);
            if (std::abs(xd) < m.falx_w) tissue = Tissue::Dura;
        }
        if (posterior && !(std::abs(xd) < 13 * k && y < 28 * k) && std::abs(z - zt) < 1.4) {
            // The tentorium is cut obliquely by axial slices: faint.
            const double t = smoothstep(0.2, 0.8, std::abs(z - zt));
            hu = mix(mix(hu, m.dura, 0.35), hu, t);
            if (t < 1) tissue = Tissue::Dura, pv = true;  // a thin membrane cut obliquely: always partial
        }

        // Bleeds, lowest priority first.
        std::uint8_t label = 0;
        for (const Bleed* b : bleeds) {
            if (!near(q, b->centre, b->bound)) continue;
            double d = kInf, hb = b->hu;
            switch (b->label) {
                case kLabelEpidural:
                case kLabelSubdural: {
                    // Attached to the skull: use the undisplaced point.
                    const double rho = norm(p);
                    if (rho < 1) break;
                    const Vec3 u = (1.0 / rho) * p;
                    if (dot(u, b->u0) < 0.2) break;
                    const double s1 = b->r_ref * dot(u, b->t1) / b->l1, s2 = b->r_ref * dot(u, b->t2) / b->l2;
                    const double qq = s1 * s1 + s2 * s2;
                    if (qq >= 1) break;
                    double thick = b->crescent ? b->h0 * std::pow(1 - qq * qq, 0.8) : b->h0 * (1 - qq);
                    thick *= smoothstep(1 * k, 14 * k, b->side * x);  // stays on its side of the falx
                    // Along the vault only: over the cranial floor the collection thins out.
                    d = std::max(-vault_depth, vault_depth - thick);
                    if (z < -10 * k) d = std::max(d, m.floor_z(x, y) + 4 - z);
                    if (b->mixed) hb = mix(b->hu, b->hu2, smoothstep(b->level - 1.5, b->level + 1.5, s.y));
                    break;
                }
                case kLabelIntraparenchymal: {
                    const Vec3 r = q - b->centre;
                    const double rn = norm(r);
                    double radius = b->radius;
                    if (rn > 1e-6) {
                        const Vec3 u = (1.0 / rn) * r;
                        double f = 1;
                        for (int i = 0; i < 4; ++i) {
                            f += b->lobe_amp[i] * std::sin(b->lobe_freq[i] * dot(u, b->lobe_dir[i]) + b->lobe_phase[i]);
                        }
                        radius *= f;
                    }
                    const double dd = rn - radius;
                    // Oedema rim: hypodense, in the parenchyma only.
                    if (dd < b->oedema_mm + 1.5 && d_csf > 0 && tissue != Tissue::Dura) {
                        const double t = smoothstep(b->oedema_mm - 1.5, b->oedema_mm + 1.5, dd);
                        hu = mix(b->oedema_hu + tex, hu, t);
                        pv = pv || partial(t);
                        if (dd < b->oedema_mm) tissue = Tissue::Oedema;
                    }
                    if (d_vent > 0 && depth > 0.5) d = std::max(dd, -d_vent);
                    if (b->side != 0) d = std::max(d, 1.0 - b->side * xd);
                    hb = b->hu + 4 * clamp1(X);
                    break;
                }
                case kLabelIntraventricular: {
                    if (b->side != 0 && xd * b->side < -2) break;
                    d = b->cast ? d_vent : std::max(d_vent, b->level - s.y);
                    break;
                }
                case kLabelSubarachnoid: {
                    if (d_vent < 0.5) break;
                    const double r = norm(q - b->centre);
                    const double reach = b->basal ? std::min(d_cist, r < 0.6 * b->bound ? d_conv : kInf) : d_conv;
                    d = std::max(reach - b->widen, (r - b->bound) * 0.3);
                    break;
                }
                default: break;
            }
            if (d == kInf) continue;
            const double t = smoothstep(-w_bleed, w_bleed, d);
            hu = mix(hb, hu, t);
            if (t <= 0) pv = false;  // the bleed covers whatever was blended below
            pv = pv || partial(t);
            if (d < 0) {
                label = static_cast<std::uint8_t>(b->label);
                tissue = Tissue::Blood;
            }
        }
        // Calcifications last: small dense foci.
        for (const Calcification* c : calcs) {
            const double r = norm(q - c->c);
            if (r > c->r + 1.5) continue;
            const double hc = c->hu * (1 - 0.15 * (r / c->r) * (r / c->r));  // peak 125-390, edge >= 106
            const double t = smoothstep(c->r - 0.3, c->r + 0.3, r);
            hu = mix(hc, hu, t);
            if (t <= 0) pv = false;
            pv = pv || partial(t);
            if (r < c->r) {
                label = kLabelCalcification;
                tissue = Tissue::Calcification;
            }
        }
        return {hu, tissue, label, pv};
    }

    Out eval(const Vec3& p, const Vec3& s, double X) const {
        const HeadModel& m = *h;
        const double x = p.x, y = p.y, z = p.z;
        const double k = m.vsize_base;
        const double aa = m.a * (1 + m.egg * y / m.b);
        const double cz = z > 0 ? m.c_up : m.c_dn;
        // The face: below the anterior cranial fossa the head reaches further forward (orbits).
        const double bb = y < 0 ? m.b * (1 + m.face * smoothstep(-18 * k, -38 * k, z)) : m.b;
        const double gx = x / aa, gy = y / bb, gz = z / cz;
        const double q = std::sqrt(gx * gx + gy * gy + gz * gz);
        const double rho = std::sqrt(x * x + y * y + z * z);
        double d_e = q > 1e-6 ? rho * (1 - 1 / q) : -m.a;
        d_e += m.bump * X;
        // Partial volume: a surface nearly parallel to the slice is smeared over the slice thickness.
        const double nx = gx / aa, ny = gy / bb, nz = gz / cz;
        const double nn = std::sqrt(nx * nx + ny * ny + nz * nz) + 1e-12;
        const double nsz = std::abs(m.rot.m[2][0] * nx + m.rot.m[2][1] * ny + m.rot.m[2][2] * nz) / nn;
        const double w = 0.35 * pixel + 0.45 * thick * nsz * nsz + 0.25;

        double T = m.t_vault + m.t_base * smoothstep(-5 * k, -40 * k, z) + 0.6 * (y / m.b) * (y / m.b);
        // No frontal bone in front of the orbits (the face is soft tissue there).
        if (y < 0 && z < -18 * k && rho > 1) T *= 1 - smoothstep(-20 * k, -32 * k, z) * smoothstep(0.6, 0.85, -y / rho);
        const double lat = rho > 1 ? std::abs(x) / rho : 0;
        const double tw = smoothstep(0.55, 0.85, lat) * smoothstep(45 * k, 15 * k, z) * smoothstep(-65 * k, -35 * k, z);
        const double S = m.scalp + m.temporalis * tw;
        if (d_e > T + S + w) {
            Tissue t;
            const double hu = air(s, t);
            return {hu, t, 0};
        }
        const double d_f = z < -12 * k ? m.floor_z(x, y) - z : -kInf;
        const double d_cav = std::max(d_e, d_f);

        // Scalp and air beyond the outer table.
        double hu_out = 0;
        Tissue t_out = Tissue::Air;
        bool pv_out = false;
        const double w_out = smoothstep(T - w, T + w, d_e);
        if (w_out > 0) {
            const double e = d_e - T;  // depth outside the bone
            const double from_skin = S - e;
            const double fat_band = m.fat * m.scalp;
            const double s1 = smoothstep(1.3, 2.1, from_skin), s2 = smoothstep(1.7 + fat_band - 0.4, 1.7 + fat_band + 0.4, from_skin);
            const double hu_scalp = mix(m.skin, mix(m.fat_hu, m.muscle, s2), s1);
            const double a_w = smoothstep(-w, w, -from_skin);
            Tissue ta = Tissue::Air;
            const double hu_air = a_w > 0 ? air(s, ta) : -1000;
            hu_out = mix(hu_scalp, hu_air, a_w);
            if (from_skin < 0) t_out = ta;
            else t_out = (from_skin > 1.7 && from_skin < 1.7 + fat_band) ? Tissue::Fat : Tissue::SoftTissue;
            pv_out = partial(a_w) || (a_w < 1 && (partial(s1) || partial(s2)));
        }
        if (w_out >= 1) return {hu_out, pv_out ? Tissue::PartialVolume : t_out, 0, pv_out};

        // Bone (vault or floor) and the skull-base tissue under the floor.
        const bool floor = d_f > d_e;
        const double t_floor = d_f > -kInf ? m.floor_thickness(x, y) : 0;
        const double t_eff = floor ? t_floor : T;
        const double db = std::clamp(d_cav, 0.0, t_eff);
        double ridge_w = 0;
        if (floor) ridge_w = smoothstep(m.fm, m.ridge_top, m.floor_z(x, y)) * (std::abs(x) > 10 * k ? 1 : 0);
        const double cortical = mix(m.cortical, m.petrous, ridge_w);
        const double table = std::max(std::exp(-(db / 1.5) * (db / 1.5)), std::exp(-((t_eff - db) / 1.5) * ((t_eff - db) / 1.5)));
        double hu_bone = mix(m.diploe, cortical, std::max(table, ridge_w));
        Tissue t_bone = Tissue::Bone;
        // The floor is near horizontal: smeared over most of the slice thickness.
        const double wf = 0.35 * pixel + 0.35 * thick + 0.25;
        const double w_base = floor ? smoothstep(t_floor - wf, t_floor + wf, d_f) * (1 - smoothstep(-w, w, d_e)) : 0;
        if (w_base > 0) {
            Tissue tb;
            hu_bone = mix(hu_bone, base(p, tb), w_base);
            if (w_base > 0.5) t_bone = tb;
        }

        // Intracranial.
        const double wc = floor ? wf : w;
        const double w_cav = 1 - smoothstep(-wc, wc, d_cav);
        Out in{hu_bone, t_bone, 0, partial(w_base)};
        if (w_cav > 0) {
            Out brain = interior(p, s, X, -d_cav, -d_e);
            in.hu = mix(hu_bone, brain.hu, w_cav);
            in.pv = partial(w_cav) || (w_cav >= 1 ? brain.pv : in.pv);
            if (d_cav < 0) in.tissue = brain.tissue, in.label = brain.label;
        }
        const bool outside = d_e > T;
        const bool pv = partial(w_out) || (outside ? pv_out : in.pv);
        Tissue tissue = outside ? t_out : in.tissue;
        if (pv) tissue = Tissue::PartialVolume;
        return {mix(in.hu, hu_out, w_out), tissue, outside ? std::uint8_t{0} : in.label, pv};
    }
};

// Sum of the field's waves along a row: p(i) = p0 + i*dp, for i in [i0, i1]. The cosines are advanced
// by rotation (cos(a + d) = cos a cos d - sin a sin d), exact enough over a few hundred steps.
void field_row(const Field& f, const Vec3& p0, const Vec3& dp, int i0, int i1, std::vector<double>& out) {
    std::fill(out.begin() + i0, out.begin() + i1 + 1, 0.0);
    for (const Wave& w : f.waves) {
        const double a0 = dot(w.k, p0) + w.phase + i0 * dot(w.k, dp);
        const double d = dot(w.k, dp);
        double c = std::cos(a0), s = std::sin(a0);
        const double cd = std::cos(d), sd = std::sin(d);
        for (int i = i0; i <= i1; ++i) {
            out[i] += c;
            const double c2 = c * cd - s * sd;
            s = s * cd + c * sd;
            c = c2;
        }
    }
    for (int i = i0; i <= i1; ++i) out[i] *= f.scale;
}

}  // namespace

void render_slice(const HeadModel& h, const ScanGeometry& scan, int k, cv::Mat& hu, cv::Mat& tissue,
                  cv::Mat& labels) {
    const int n = scan.size;
    hu.create(n, n, CV_32F);
    tissue.create(n, n, CV_8U);
    labels.create(n, n, CV_8U);
    labels.setTo(0);
    const double z = scan.slice_z(k);

    SliceContext ctx;
    ctx.h = &h;
    ctx.pixel = scan.pixel;
    ctx.thick = scan.thickness;
    ctx.w_internal = 0.45 + 0.1 * scan.thickness;
    ctx.w_bleed = 0.4 + 0.1 * scan.thickness;
    // Keep what reaches this slice (by the scanner z of its centre and its bounding radius).
    auto reaches = [&](const Vec3& c, double r) { return std::abs(h.to_scanner(c).z - z) <= r + 2; };
    auto keep = [&](const std::vector<Ellipsoid>& all, std::vector<const Ellipsoid*>& kept) {
        for (const Ellipsoid& e : all) {
            if (reaches(e.c, e.bound)) kept.push_back(&e);
        }
    };
    keep(h.ventricles, ctx.ventricles);
    keep(h.cisterns, ctx.cisterns);
    keep(h.nuclei, ctx.nuclei);
    keep(h.globes, ctx.globes);
    keep(h.orbits_fat, ctx.orbit_fat);
    keep(h.sinuses, ctx.sinuses);
    keep(h.base_bone, ctx.base_bone);
    for (int i = 0; i < 2; ++i) {
        if (reaches(h.nuclei[i].c, h.nuclei[i].bound)) ctx.caudate[i] = &h.nuclei[i];
    }
    for (const Bleed& b : h.bleeds) {
        if (reaches(b.centre, b.bound)) ctx.bleeds.push_back(&b);
    }
    for (const Calcification& c : h.calcs) {
        if (reaches(c.c, c.r + 1.5)) ctx.calcs.push_back(&c);
    }

    const double reach = std::max(h.a * (1 + h.egg), std::max(h.b, h.c_dn)) + h.t_vault + h.t_base + h.scalp +
                         h.temporalis + 6;
    const Vec3 ds{scan.pixel, 0, 0};
    const Vec3 dp = h.rot_t * ds;
    std::vector<double> X(n);
    for (int j = 0; j < n; ++j) {
        float* hrow = hu.ptr<float>(j);
        std::uint8_t* trow = tissue.ptr<std::uint8_t>(j);
        std::uint8_t* lrow = labels.ptr<std::uint8_t>(j);
        const Vec3 s0{scan.origin_x, scan.origin_y + j * scan.pixel, z};
        const Vec3 p0 = h.to_head(s0);
        // Columns where the row meets the head's bounding sphere: |p0 + i dp|^2 <= reach^2.
        const double A = dot(dp, dp), B = 2 * dot(p0, dp), C = dot(p0, p0) - reach * reach;
        const double disc = B * B - 4 * A * C;
        int i0 = n, i1 = -1;
        if (disc > 0) {
            i0 = std::max(0, static_cast<int>(std::floor((-B - std::sqrt(disc)) / (2 * A))));
            i1 = std::min(n - 1, static_cast<int>(std::ceil((-B + std::sqrt(disc)) / (2 * A))));
        }
        if (i0 <= i1) field_row(h.texture, p0, dp, i0, i1, X);
        for (int i = 0; i < n; ++i) {
            const Vec3 s{s0.x + i * scan.pixel, s0.y, z};
            Out o;
            if (i < i0 || i > i1) {
                Tissue t;
                o = {ctx.air(s, t), t, 0};
            } else {
                o = ctx.eval(p0 + static_cast<double>(i) * dp, s, X[i]);
            }
            hrow[i] = static_cast<float>(o.hu);
            trow[i] = static_cast<std::uint8_t>(o.tissue);
            lrow[i] = o.label;
        }
    }
}

}  // namespace hemoscan::synth
