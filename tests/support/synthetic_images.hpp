#pragma once
// Small labelled image sets for training tests: a trivially separable task whose truth is known.
#include <filesystem>
#include <string>

#include <opencv2/core.hpp>

namespace hemoscan::test {

// Writes DIR/labels.csv (`id, hemorrhage`) and DIR/<id>.png: `n_per_class` positives with a bright
// blob (grey value `blob`; the disc is 90, the noise sigma 8) at a random position on a noisy grey disc
// ("head"), and as many negatives without it.
void write_blob_dataset(const std::filesystem::path& dir, int n_per_class, int size = 48, unsigned seed = 1,
                        int blob = 230);

// The same images as a class-folder data set (softmax): DIR/hemorrhage/<id>.png and DIR/normal/<id>.png.
void write_blob_class_folders(const std::filesystem::path& dir, int n_per_class, int size = 48, unsigned seed = 1);

// Class folders of the MRI task's form (issue 29): DIR/bleed/, DIR/calcified/, DIR/bleed+calcified/ and,
// with `with_normal`, DIR/normal/ (first), `n_per_class` images each, numbered across folders (000.png ...). A "bleed" is a large mid-grey-bright blob
// (grey 170), a "calcification" a small very bright dot (255, radius size/16) away from it; noise and positions from
// `seed`, so each class is learnable from a few images.
void write_bleed_calcified_folders(const std::filesystem::path& dir, int n_per_class, bool with_normal,
                                   int size = 48, unsigned seed = 1);

// A 128 x 128 brain-window head (CV_32FC(channels), the same plane in every channel): air 0, skull
// ring 1.0 (radius 52-57 around (64, 64)), brain 0.45 with noise (sd 0.02, from `seed`), two dark
// ventricles (0.12) centred at (54, 64) and (74, 64), 4 x 10 px semi-axes.
cv::Mat brain_window_head(int channels = 1, unsigned seed = 1);

}  // namespace hemoscan::test
