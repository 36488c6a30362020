#pragma once
// Small labelled image sets for training tests: a trivially separable task whose truth is known.
#include <filesystem>
#include <string>

namespace hemoscan::test {

// Writes DIR/labels.csv (`id, hemorrhage`) and DIR/<id>.png: `n_per_class` positives with a bright
// blob at a random position on a noisy grey disc ("head"), and as many negatives without it.
void write_blob_dataset(const std::filesystem::path& dir, int n_per_class, int size = 48, unsigned seed = 1);

// The same images as a class-folder data set (softmax): DIR/hemorrhage/<id>.png and DIR/normal/<id>.png.
void write_blob_class_folders(const std::filesystem::path& dir, int n_per_class, int size = 48, unsigned seed = 1);

}  // namespace hemoscan::test
