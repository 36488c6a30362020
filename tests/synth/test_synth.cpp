// Synthetic studies: labels agree with the masks, tissue HU ranges, shapes and places of the bleeds,
// the mix of studies, options, seeds and UIDs.
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <regex>
#include <set>
#include <string>

#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/synth/synth.hpp"

using namespace hemoscan;

namespace {

SynthOptions small(int size = 64, int slices = 8) {
    SynthOptions o;
    o.seed = 11;
    o.size = size;
    o.slices = slices;
    return o;
}

cv::Mat class_mask(const SynthStudy& st, int k, Tissue t) { return st.tissue[k] == static_cast<int>(t); }

int mask_bit(int label) { return 1 << (label - 1); }

}  // namespace

TEST(Synth, LabelsAreExactlyWhereTheMasksAre) {
    // Every subtype alone, a mix, normal studies: per slice and per study, label <=> mask non-empty.
    for (int mask : {mask_bit(1), mask_bit(2), mask_bit(3), mask_bit(4), mask_bit(5), 0b10110, -1, 0}) {
        SynthOptions o = small(96, 12);
        o.force_subtypes = mask;
        for (int i = 0; i < 3; ++i) {
            const SynthStudy st = generate_study(o, i);
            ASSERT_EQ(static_cast<int>(st.labels.size()), st.ct.depth());
            const double voxel_ml = st.ct.geometry.spacing[0] * st.ct.geometry.spacing[1] *
                                    st.ct.geometry.spacing[2] / 1000.0;
            std::array<bool, kSynthSubtypes> any_slice{};
            std::array<double, kSynthSubtypes> ml{};
            for (int k = 0; k < st.ct.depth(); ++k) {
                ASSERT_EQ(st.labels[k].type(), CV_8UC1);
                double lo, hi;
                cv::minMaxLoc(st.labels[k], &lo, &hi);
                EXPECT_LE(hi, 6.0);
                for (int s = 0; s < kSynthSubtypes; ++s) {
                    const int count = cv::countNonZero(st.labels[k] == s + 1);
                    EXPECT_EQ(st.slice_has(k, s), count > 0);
                    any_slice[s] = any_slice[s] || count > 0;
                    ml[s] += count * voxel_ml;
                }
            }
            for (int s = 0; s < kSynthSubtypes; ++s) {
                EXPECT_EQ(st.present[s], any_slice[s]) << "mask " << mask << " study " << i << " subtype " << s;
                EXPECT_NEAR(st.volume_ml[s], ml[s], 1e-9);
                EXPECT_EQ(st.volume_ml[s] > 0, st.present[s]);
                // Forced subtypes are drawn (and land in the slab); no others appear.
                if (mask >= 0) {
                    EXPECT_EQ(st.present[s], (mask >> s & 1) == 1) << "mask " << mask << " study " << i;
                }
            }
            if (mask == 0) {
                EXPECT_FALSE(st.any());
            }
        }
    }
}

TEST(Synth, CalcificationIsLabelledButIsNotAHemorrhage) {
    SynthOptions o = small(128, 16);
    o.force_subtypes = 0;
    o.force_calcification = 1;
    o.keep_internals = true;
    int with_calc = 0;
    for (int i = 0; i < 4; ++i) {
        const SynthStudy st = generate_study(o, i);
        EXPECT_FALSE(st.any());
        int calc_voxels = 0;
        for (int k = 0; k < st.ct.depth(); ++k) {
            const cv::Mat& l = st.labels[k];
            calc_voxels += cv::countNonZero(l == kLabelCalcification);
            // Small foci of 100-400 HU (before blur and noise).
            for (int r = 0; r < l.rows; ++r) {
                for (int c = 0; c < l.cols; ++c) {
                    if (static_cast<Tissue>(st.tissue[k].at<uchar>(r, c)) != Tissue::Calcification) continue;
                    EXPECT_EQ(l.at<uchar>(r, c), kLabelCalcification);
                    EXPECT_GE(st.clean[k].at<float>(r, c), 100.f);
                    EXPECT_LE(st.clean[k].at<float>(r, c), 400.f);
                }
            }
        }
        EXPECT_EQ(st.calcification, calc_voxels > 0);
        with_calc += st.calcification ? 1 : 0;
    }
    EXPECT_GE(with_calc, 3);
    o.force_calcification = 0;
    for (int i = 0; i < 3; ++i) EXPECT_FALSE(generate_study(o, i).calcification);
}

TEST(Synth, TissueRangesBeforeNoise) {
    // Every voxel of a pure class (blended edge voxels are PartialVolume) holds a value of its range.
    SynthOptions o = small(128, 14);
    o.keep_internals = true;
    o.force_subtypes = 0;
    double skull_sum = 0;
    size_t skull_n = 0, gm_n = 0, wm_n = 0, csf_n = 0, pv_n = 0, all_n = 0;
    for (int i = 0; i < 2; ++i) {
        const SynthStudy st = generate_study(o, i);
        ASSERT_EQ(static_cast<int>(st.clean.size()), st.ct.depth());
        for (int k = 0; k < st.ct.depth(); ++k) {
            const cv::Mat& hu = st.clean[k];
            for (int r = 0; r < hu.rows; ++r) {
                for (int c = 0; c < hu.cols; ++c) {
                    const auto t = static_cast<Tissue>(st.tissue[k].at<uchar>(r, c));
                    const float v = hu.at<float>(r, c);
                    const std::string where = "slice " + std::to_string(k) + " at " + std::to_string(r) + "," +
                                              std::to_string(c) + ": " + std::to_string(v);
                    ++all_n;
                    switch (t) {
                        case Tissue::GreyMatter:
                            ASSERT_TRUE(v >= 35 && v <= 45) << "grey matter " << where;
                            ++gm_n;
                            break;
                        case Tissue::WhiteMatter:
                            ASSERT_TRUE(v >= 22 && v <= 32) << "white matter " << where;
                            ++wm_n;
                            break;
                        case Tissue::Csf:
                            ASSERT_TRUE(v >= 0 && v <= 15) << "CSF " << where;
                            ++csf_n;
                            break;
                        case Tissue::Air:
                            ASSERT_EQ(v, -1000.f) << "air " << where;
                            break;
                        case Tissue::Fat:
                            ASSERT_TRUE(v >= -100 && v <= -50) << "fat " << where;
                            break;
                        case Tissue::Bone:
                            skull_sum += v;
                            ++skull_n;
                            break;
                        case Tissue::PartialVolume:
                            ++pv_n;
                            break;
                        default:
                            break;
                    }
                }
            }
        }
    }
    EXPECT_GT(gm_n, 1000u);
    EXPECT_GT(wm_n, 10000u);
    EXPECT_GT(csf_n, 500u);
    EXPECT_LT(pv_n, all_n / 5);  // edges only
    ASSERT_GT(skull_n, 1000u);
    const double skull_mean = skull_sum / static_cast<double>(skull_n);
    EXPECT_GE(skull_mean, 700);
    EXPECT_LE(skull_mean, 1800);
}

TEST(Synth, BleedDensitiesAndPlaces) {
    // Clean HU of the blood voxels (not the blended edges) and where each bleed lies.
    struct Expect {
        int label;
        double lo, hi;
    };
    for (const Expect e : {Expect{kLabelEpidural, 50, 80}, Expect{kLabelIntraparenchymal, 50, 90},
                           Expect{kLabelIntraventricular, 50, 80}, Expect{kLabelSubarachnoid, 45, 80}}) {
        SynthOptions o = small(128, 16);
        o.keep_internals = true;
        o.force_subtypes = mask_bit(e.label);
        for (int i = 0; i < 2; ++i) {
            const SynthStudy st = generate_study(o, i);
            int inner = 0, touching_bone = 0, slices_with = 0;
            for (int k = 0; k < st.ct.depth(); ++k) {
                const cv::Mat sel = st.labels[k] == e.label;
                if (cv::countNonZero(sel) == 0) continue;
                ++slices_with;
                for (int r = 0; r < sel.rows; ++r) {
                    for (int c = 0; c < sel.cols; ++c) {
                        if (!sel.at<uchar>(r, c)) continue;
                        if (static_cast<Tissue>(st.tissue[k].at<uchar>(r, c)) != Tissue::Blood) continue;
                        const float v = st.clean[k].at<float>(r, c);
                        EXPECT_GE(v, e.lo) << "label " << e.label;
                        EXPECT_LE(v, e.hi) << "label " << e.label;
                        ++inner;
                    }
                }
                // Which bleeds lie against the inner table.
                cv::Mat grown;
                cv::dilate(sel, grown, cv::getStructuringElement(cv::MORPH_RECT, {5, 5}));
                if (cv::countNonZero(grown & class_mask(st, k, Tissue::Bone)) > 0) ++touching_bone;
            }
            EXPECT_GT(slices_with, 0) << "label " << e.label;
            EXPECT_GT(inner, 0) << "label " << e.label;
            if (e.label == kLabelEpidural) {
                EXPECT_EQ(touching_bone, slices_with);
            }
            if (e.label == kLabelIntraventricular) {
                EXPECT_EQ(touching_bone, 0);  // inside the ventricles, far from the skull
            }
        }
    }
}

TEST(Synth, IntraventricularBloodLayersInTheDependentPart) {
    // Supine patient: blood settles posteriorly (+y, larger row index) within the ventricles.
    SynthOptions o = small(128, 16);
    o.keep_internals = true;
    o.force_subtypes = mask_bit(kLabelIntraventricular);
    int checked = 0;
    for (int i = 0; i < 8 && checked < 3; ++i) {
        const SynthStudy st = generate_study(o, i);
        for (int k = 0; k < st.ct.depth(); ++k) {
            const cv::Mat blood = st.labels[k] == kLabelIntraventricular;
            const cv::Mat csf = class_mask(st, k, Tissue::Csf);
            if (cv::countNonZero(blood) < 8 || cv::countNonZero(csf) < 8) continue;
            const double blood_row = cv::moments(blood, true).m01 / cv::moments(blood, true).m00;
            // CSF of the same ventricles: the columns holding blood.
            cv::Mat cols_with_blood;
            cv::reduce(blood, cols_with_blood, 0, cv::REDUCE_MAX);
            cv::Mat same_cols = csf & cv::repeat(cols_with_blood, csf.rows, 1);
            if (cv::countNonZero(same_cols) < 8) continue;
            const double csf_row = cv::moments(same_cols, true).m01 / cv::moments(same_cols, true).m00;
            EXPECT_GT(blood_row, csf_row - 2.0) << "study " << i << " slice " << k;
            ++checked;
            break;
        }
    }
    EXPECT_GE(checked, 1);
}

TEST(Synth, LargeBleedsShiftTheMidline) {
    SynthOptions o = small(64, 8);
    o.force_subtypes = mask_bit(kLabelSubdural) | mask_bit(kLabelIntraparenchymal);
    int big = 0;
    for (int i = 0; i < 10; ++i) {
        const SynthStudy st = generate_study(o, i);
        const double ml = st.volume_ml[kLabelSubdural - 1] + st.volume_ml[kLabelIntraparenchymal - 1];
        if (st.params.midline_shift_mm > 0) {
            EXPECT_GT(ml, 0.0);
        }
        big += st.params.midline_shift_mm > 2 ? 1 : 0;
    }
    EXPECT_GE(big, 3);
    o.force_subtypes = 0;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(generate_study(o, i).params.midline_shift_mm, 0.0);
}

TEST(Synth, DefaultMixIsAboutHalfNormal) {
    SynthOptions o = small(48, 6);
    int bleeding = 0, calcified_normal = 0, normal = 0;
    std::set<int> counts;
    for (int i = 0; i < 60; ++i) {
        const SynthStudy st = generate_study(o, i);
        const int n = static_cast<int>(std::count(st.present.begin(), st.present.end(), true));
        EXPECT_LE(n, 3);
        counts.insert(n);
        bleeding += n > 0;
        if (n == 0) {
            ++normal;
            calcified_normal += st.calcification;
        }
    }
    EXPECT_GE(bleeding, 18);
    EXPECT_LE(bleeding, 42);
    EXPECT_GE(calcified_normal, 1);
    EXPECT_TRUE(counts.count(1) && counts.count(2));
    o.p_bleed = 0;
    for (int i = 0; i < 5; ++i) EXPECT_FALSE(generate_study(o, i).any());
}

TEST(Synth, ScannerParametersAndGeometry) {
    for (int size : {512, 128}) {
        SynthOptions o = small(size, 4);
        for (int i = 0; i < 4; ++i) {
            const SynthStudy st = generate_study(o, i);
            const Geometry& g = st.ct.geometry;
            // Same field of view whatever the size: 205-256 mm.
            EXPECT_GE(g.spacing[0] * size, 204.9);
            EXPECT_LE(g.spacing[0] * size, 256.1);
            EXPECT_EQ(g.spacing[0], g.spacing[1]);
            EXPECT_GE(g.spacing[2], 2.5);
            EXPECT_LE(g.spacing[2], 5.0);
            EXPECT_GE(st.params.noise_hu, 3.0);
            EXPECT_LE(st.params.noise_hu, 10.0);
            EXPECT_EQ(st.ct.rows(), size);
            EXPECT_EQ(st.ct.cols(), size);
            for (int k = 0; k < st.ct.depth(); ++k) {
                EXPECT_DOUBLE_EQ(st.ct.slice_meta[k].position[2], g.origin[2] + k * g.spacing[2]);
                double lo, hi;
                cv::minMaxLoc(st.ct.slices[k], &lo, &hi);
                EXPECT_GE(lo, -1024.0);
                EXPECT_LE(hi, 3071.0);
                cv::Mat frac;
                cv::Mat rounded;
                st.ct.slices[k].convertTo(rounded, CV_32S);
                rounded.convertTo(rounded, CV_32F);
                EXPECT_EQ(cv::norm(rounded, st.ct.slices[k], cv::NORM_INF), 0.0);  // whole HU
            }
        }
    }
}

TEST(Synth, NoiseHasTheDrawnStandardDeviation) {
    // In air far from the head (and inside the reconstruction circle) the image is -1000 + noise.
    SynthOptions o = small(256, 2);
    o.keep_internals = true;
    for (int i = 0; i < 3; ++i) {
        const SynthStudy st = generate_study(o, i);
        cv::Mat air = st.tissue[1] == static_cast<int>(Tissue::Air), far;
        cv::erode(air, far, cv::getStructuringElement(cv::MORPH_ELLIPSE, {9, 9}));
        cv::Mat circle = cv::Mat::zeros(256, 256, CV_8U);
        cv::circle(circle, {128, 128}, 120, cv::Scalar(255), cv::FILLED);
        far &= circle;
        ASSERT_GT(cv::countNonZero(far), 2000);
        cv::Scalar mean, sd;
        cv::meanStdDev(st.ct.slices[1], mean, sd, far);
        EXPECT_NEAR(mean[0], -1000, 0.5);
        EXPECT_NEAR(sd[0], st.params.noise_hu, 0.1 * st.params.noise_hu) << "study " << i;
    }
}

TEST(Synth, SameSeedSameStudyOtherSeedOther) {
    SynthOptions o = small(64, 6);
    const SynthStudy a = generate_study(o, 3), b = generate_study(o, 3);
    for (int k = 0; k < 6; ++k) {
        EXPECT_EQ(cv::norm(a.ct.slices[k], b.ct.slices[k], cv::NORM_INF), 0.0);
        EXPECT_EQ(cv::norm(a.labels[k], b.labels[k], cv::NORM_INF), 0.0);
    }
    EXPECT_EQ(a.study_uid, b.study_uid);
    o.seed = 12;
    const SynthStudy c = generate_study(o, 3);
    EXPECT_NE(a.study_uid, c.study_uid);
    double diff = 0;
    for (int k = 0; k < 6; ++k) diff += cv::norm(a.ct.slices[k], c.ct.slices[k], cv::NORM_L1);
    EXPECT_GT(diff, 0.0);
    EXPECT_NE(synth_study_seed(1, 0), synth_study_seed(1, 1));
    EXPECT_NE(synth_study_seed(1, 0), synth_study_seed(2, 0));
}

TEST(Synth, UidsAreValidDeterministicAndUseTheDcmtkRoot) {
    const std::regex syntax("^(0|[1-9][0-9]*)(\\.(0|[1-9][0-9]*))*$");
    const std::string dcmtk = new_dicom_uid();
    // DCMTK's generated UIDs start with its site root; ours must share that root.
    const std::string root = "1.2.276.0.7230010.3";
    ASSERT_EQ(dcmtk.rfind(root, 0), 0u) << dcmtk;
    std::set<std::string> seen;
    for (std::uint64_t seed : {0ULL, 1ULL, 18446744073709551615ULL}) {
        for (int study : {0, 9, 99999}) {
            for (int kind : {1, 2, 3, 6}) {
                for (int slice : {0, 511}) {
                    const std::string uid = synth_uid(seed, study, kind, slice);
                    EXPECT_TRUE(std::regex_match(uid, syntax)) << uid;
                    EXPECT_LE(uid.size(), 64u) << uid;
                    EXPECT_EQ(uid.rfind(root + ".9.", 0), 0u) << uid;
                    EXPECT_EQ(uid, synth_uid(seed, study, kind, slice));
                    if (kind < 3 && slice != 0) continue;
                    if (kind == 6 && slice != 0) continue;
                    EXPECT_TRUE(seen.insert(uid).second) << "duplicate " << uid;
                }
            }
        }
    }
    const SynthStudy st = generate_study(small(48, 5), 2);
    std::set<std::string> sops(st.sop_uids.begin(), st.sop_uids.end());
    EXPECT_EQ(sops.size(), 5u);
    EXPECT_NE(st.study_uid, st.series_uid);
    EXPECT_NE(st.frame_uid, st.series_uid);
    EXPECT_FALSE(st.frame_uid.empty());
}

TEST(Synth, InstanceOrders) {
    SynthOptions o = small(32, 6);
    std::set<std::string> orders;
    for (int i = 0; i < 20; ++i) {
        const SynthStudy st = generate_study(o, i);
        std::vector<int> sorted = st.instance_numbers;
        std::sort(sorted.begin(), sorted.end());
        for (int k = 0; k < 6; ++k) EXPECT_EQ(sorted[k], k + 1);
        const auto& n = st.instance_numbers;
        if (st.params.instance_order == "ascending") {
            EXPECT_TRUE(std::is_sorted(n.begin(), n.end()));
        }
        if (st.params.instance_order == "descending") {
            EXPECT_TRUE(std::is_sorted(n.rbegin(), n.rend()));
        }
        orders.insert(st.params.instance_order);
    }
    EXPECT_EQ(orders.size(), 3u);
}

TEST(Synth, BadOptions) {
    SynthOptions o = small();
    o.size = 16;
    EXPECT_THROW(generate_study(o, 0), UsageError);
    o = small();
    o.slices = 0;
    EXPECT_THROW(generate_study(o, 0), UsageError);
    o = small();
    o.p_bleed = 1.5;
    EXPECT_THROW(generate_study(o, 0), UsageError);
    o = small();
    o.force_subtypes = 32;
    EXPECT_THROW(generate_study(o, 0), UsageError);
    EXPECT_EQ(parse_synth_formats("dicom"), kSynthDicom);
    EXPECT_EQ(parse_synth_formats(" PNG , nifti"), kSynthPng | kSynthNifti);
    EXPECT_EQ(parse_synth_formats("dicom,nifti,png"), 7);
    EXPECT_THROW(parse_synth_formats("dicom,jpeg"), UsageError);
    EXPECT_THROW(parse_synth_formats(""), UsageError);
}
