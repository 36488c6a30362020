#pragma once
// Synthetic head CT studies whose truth is known: a 3D phantom per study in Hounsfield units
// (scalp, skull, grey and white matter, CSF spaces, falx/tentorium), hemorrhages of the five RSNA
// subtypes with voxel masks, calcifications and artefacts as confounders, and scanner effects
// (slice thickness, pixel size, blur, noise). Written as DICOM series, NIfTI volumes + label maps,
// and PNG slices with a dataset manifest. Deterministic per seed. See docs/synthetic.md.
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "hemoscan/image.hpp"

namespace hemoscan {

// Values of the label maps (SynthStudy::labels, the NIfTI label volumes, the mask PNGs).
enum SynthLabel : std::uint8_t {
    kLabelBackground = 0,
    kLabelEpidural = 1,
    kLabelIntraparenchymal = 2,
    kLabelIntraventricular = 3,
    kLabelSubarachnoid = 4,
    kLabelSubdural = 5,
    kLabelCalcification = 6,  // a confounder, not a hemorrhage
    kLabelMicrobleed = 7,     // MR only: haemosiderin foci of 2-5 mm that CT does not show
};
constexpr int kSynthSubtypes = 5;  // label values 1..5, in the manifest's column order

// "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural" (index = label - 1).
const std::array<std::string, kSynthSubtypes>& synth_subtype_names();

// Tissue classes of the phantom's internal class map (SynthStudy::tissue).
enum class Tissue : std::uint8_t {
    Air = 0,
    Fat = 1,
    SoftTissue = 2,  // scalp, muscle, orbits, skull-base soft tissue
    Bone = 3,
    Csf = 4,
    GreyMatter = 5,
    WhiteMatter = 6,
    Dura = 7,        // falx and tentorium
    Blood = 8,
    Calcification = 9,
    Oedema = 10,
    Headrest = 11,
    PartialVolume = 12,  // a voxel blended from two classes at an edge (its value lies between them)
};

struct SynthOptions {
    std::uint64_t seed = 0;
    int studies = 10;
    int size = 512;        // rows = columns; the field of view stays the same (pixels 0.4-0.5 mm at 512)
    int slices = 32;
    double p_bleed = 0.5;  // fraction of studies with at least one hemorrhage
    int threads = 2;       // worker threads for write_cohort (the output does not depend on it)
    bool png_rgb = false;  // PNG slices: brain window (false) or brain/subdural/bone as R, G, B (true)
    // Overrides (examples, tests): a bit mask of subtypes (bit s-1 for label s) forced on every study,
    // -1 = drawn at random, 0 = every study normal.
    int force_subtypes = -1;
    int force_calcification = -1;  // -1 random, 0 never, 1 always
    // Studies with calcification also get 1-3 pathological foci (granulomas, 200-700 HU) with this
    // chance; -1 = 0.35 for MR, 0 for CT (the CT cohorts of earlier releases stay the same).
    double p_pathological_calcification = -1;
    bool keep_internals = false;   // keep SynthStudy::tissue and ::clean (tests, figures)
    // MR: "ct" (default) or "mr": the same phantom rendered per MR sequence (synth_mr_study).
    std::string modality = "ct";
    std::vector<std::string> sequences{"t1", "t2", "flair", "swi_mag", "swi_phase"};  // parse_mr_sequences
    bool phase_left_handed = false;  // default: paramagnetic (blood) negative phase, diamagnetic (calcium) positive
    // The class-folder form (kSynthClasses): class names from bleed, calcified, bleed+calcified, normal.
    std::vector<std::string> classes{"bleed", "calcified", "bleed+calcified"};
};

// Scanner and anatomy parameters drawn for one study (reported in studies.csv).
struct SynthParams {
    double pixel_mm = 0;        // pixel spacing at the requested size
    double slice_mm = 0;        // slice thickness = spacing between slices
    double noise_hu = 0;        // noise standard deviation in uniform tissue
    double midline_shift_mm = 0;
    double blur_mm = 0;         // Gaussian blur sigma of the image (mm)
    std::string subdural_kind;  // acute, subacute, chronic, mixed ("" without subdural)
    std::string intraventricular_kind;  // layering (dependent fluid level) or cast ("" without)
    // DICOM InstanceNumbers: "ascending" (inferior -> superior), "descending" or "shuffled".
    std::string instance_order;
};

struct SynthStudy {
    int index = 0;
    std::string study_id;    // study_0007
    std::string patient_id;  // SYN<seed>-0007
    std::string study_uid, series_uid;
    std::string frame_uid;               // FrameOfReferenceUID of the study's series
    std::vector<std::string> sop_uids;   // per slice, in position order
    std::vector<int> instance_numbers;   // per slice, in position order (shuffled in some studies)
    Volume ct;                           // HU (whole numbers, -1024..3071), inferior -> superior, LPS
    std::vector<cv::Mat> labels;         // CV_8UC1 label map per slice (SynthLabel values)
    std::array<bool, kSynthSubtypes> present{};       // study level: subtype s present (mask non-empty)
    bool calcification = false;                       // any calcification voxel
    std::array<double, kSynthSubtypes> volume_ml{};   // bleed volume per subtype (voxels x voxel volume)
    SynthParams params;
    std::vector<cv::Mat> tissue;  // CV_8UC1 Tissue per slice (keep_internals only)
    std::vector<cv::Mat> clean;   // CV_32F HU before artefacts, blur and noise (keep_internals only)

    bool any() const;
    // Subtype s (0-based) present on slice k: the label map holds label s+1 there.
    bool slice_has(int k, int subtype) const;
};

// The per-study seed: a hash of (seed, index), so a study does not depend on the others or on threads.
std::uint64_t synth_study_seed(std::uint64_t seed, int index);

// A DICOM UID derived from the seed: DCMTK's site root (SITE_UID_ROOT) + ".9." + a 15-digit hash of
// the seed + "." study number (index + 1) + "." kind (1 study, 2 series, 3 instance; MR: 4 series,
// 5 instance; 6 frame of reference) + "." slice number (kinds 3 and up; for MR series the sequence's
// place; 1 for the frame of reference). Valid syntax (no leading zeros), at most 64 characters.
std::string synth_uid(std::uint64_t seed, int study, int kind, int slice = 0);

// Generates study `index` of the cohort described by `options`. Throws UsageError for bad options
// (size < 32 or > 2048, slices < 1 or > 512, p_bleed outside 0..1, force_subtypes > 31).
SynthStudy generate_study(const SynthOptions& options, int index);

// ---- MRI (docs/synthetic.md, "MRI") ----

// The sequences synth_mr_study renders: t1, t2, flair, swi_mag, swi_phase.
const std::vector<std::string>& mr_sequence_names();
// "t1,t2,flair,swi" -> names; "swi" stands for swi_mag and swi_phase. UsageError for anything else.
std::vector<std::string> parse_mr_sequences(const std::string& spec);

// One study as MRI: the CT study's anatomy, bleeds and calcifications rendered per sequence with
// tissue contrasts, blood signal by age, microbleeds, a smooth bias field and Rician noise.
struct SynthMrStudy {
    std::vector<std::string> sequences;
    std::vector<Volume> images;   // per sequence: magnitude in arbitrary units (white matter ~ 600-800), phase in radians
    std::vector<cv::Mat> labels;  // the CT labels plus microbleeds (kLabelMicrobleed)
    std::string blood_age;        // hyperacute, acute, early_subacute, late_subacute, chronic ("" without blood)
    int microbleeds = 0;
    double field_t = 3;           // 1.5 or 3 T
    double noise = 0;             // Rician sigma relative to white matter on T1
};
// `ct` must come from generate_study with keep_internals. Deterministic per (options.seed, ct.index).
SynthMrStudy synth_mr_study(const SynthStudy& ct, const SynthOptions& options);
// A magnitude slice as 8-bit (0 .. `white` -> 0..255), or a phase slice (-pi..pi -> 0..255, 0 at 128).
cv::Mat synth_mr_png(const cv::Mat& values, bool phase, double white);

// Output formats, any combination.
// rsna: the RSNA 2019 layout, OUT/rsna/stage_2_train.csv (ID,Label; six rows per slice, labels from
// the masks) and OUT/rsna/stage_2_train_images/ID_<image>.dcm (one file per slice, names unrelated to
// the order: studies and slice order only in the DICOM headers).
// classes: one case per study in OUT/classes/<class>/ (options.classes): the slice that shows the class
// best, as <study>.png (CT, brain window) or <study>/<sequence>.png (MR); the study is drawn again
// (another sub-seed) until such a slice exists. Written alone or beside the other formats.
enum SynthFormat : int {
    kSynthDicom = 1,
    kSynthNifti = 2,
    kSynthPng = 4,
    kSynthNnunet = 8,
    kSynthRsna = 16,
    kSynthClasses = 32
};
// "dicom,nifti,png,nnunet,rsna,classes" (any subset, comma-separated) -> bit mask. UsageError otherwise.
int parse_synth_formats(const std::string& spec);

struct CohortSummary {
    int studies = 0;
    int slices = 0;
    int with_bleed = 0;
    std::array<int, kSynthSubtypes> studies_per_subtype{};
    int with_calcification = 0;
    double seconds = 0;
};

// Writes a cohort into `out` (studies generated in `options.threads` threads, each study from its own
// seed, so the bytes do not depend on the thread count):
//   dicom/<study>/IM0001.dcm ...      CT Image Storage series (InstanceNumber = file number)
//   nifti/<study>.nii.gz, nifti/<study>_labels.nii.gz
//   png/<study>/slice_001.png ...     and png/<study>/mask_001.png (label values 0..6)
//   nnunet/dataset.json, nnunet/imagesTr/<study>_0000.nii.gz (HU), nnunet/labelsTr/<study>.nii.gz
//                  an nnU-Net v2 raw dataset (labels as above; calcification is label 6)
//   manifest.csv   one row per slice: path, patient, any, 5 subtypes, mask (png; with dicom only:
//                  the DICOM files, no mask column). Not written for nifti alone.
//   studies.csv    one row per study: labels, calcification, volumes in mL, scanner parameters.
// `progress(done, total)` is called after each study (from worker threads, serialised).
CohortSummary write_cohort(const SynthOptions& options, const std::filesystem::path& out, int formats,
                           const std::function<void(size_t done, size_t total)>& progress = {});

// Writers for one study (used by write_cohort).
void write_study_dicom(const SynthStudy& study, const std::filesystem::path& folder);
void write_study_nifti(const SynthStudy& study, const std::filesystem::path& image_file,
                       const std::filesystem::path& label_file);

// Brain-window rendering of a slice (CV_8UC1), or the three windows as BGR (CV_8UC3) when rgb.
cv::Mat synth_png(const cv::Mat& hu, bool rgb);

// A figure (docs/img/synth_grid.png): a normal slice, a calcification, the five subtypes (acute
// subdural) and a chronic subdural; brain window, mask outlines in colour, names in each tile (BGR,
// CV_8UC3, 4 x 2 tiles of tile x tile). Deterministic for a seed.
cv::Mat synth_example_grid(std::uint64_t seed, int tile = 256);
// The MR figure (docs/img/synth_mr_grid.png): a bleed, a calcification and both, one row each, the
// sequences as columns; truth outlines on the last column (blood red, calcium cyan, microbleeds yellow).
cv::Mat synth_mr_example_grid(std::uint64_t seed, int tile = 256);

}  // namespace hemoscan
