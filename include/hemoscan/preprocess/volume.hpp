#pragma once
// Preprocessing of a whole series: the slices are independent, so they are preprocessed in parallel.
#include <vector>

#include "hemoscan/image.hpp"
#include "hemoscan/preprocess/preprocess.hpp"

namespace hemoscan {

// preprocess() of every slice of `volume` (with its slice_meta), in slice order, on `threads` threads
// (0 = one per core). The result does not depend on the thread count. The first failing slice (by
// index) rethrows its error.
std::vector<Sample> preprocess_volume(const Volume& volume, const PreprocessOptions& options, int threads = 0);

// The slices that make slice k's context among n ordered slices: k - context .. k + context in that
// order, the end slices repeated beyond either end. The one rule of every 2.5D input (segmentation,
// classification, the loader).
std::vector<size_t> context_indices(size_t n, size_t k, int context);

// Slice context (2.5D): sample k's image becomes the channels of samples k - context .. k + context
// (the end samples repeated), in that order; its other fields stay. The samples are the ordered,
// preprocessed slices of one study, all of one size and type (InputError otherwise). context 0: a copy.
std::vector<Sample> stack_slice_context(const std::vector<Sample>& slices, int context);

// The same for slices that need not form a volume (the images of a study, a DICOM series' slices).
std::vector<Sample> preprocess_slices(const std::vector<DicomSlice>& slices, const PreprocessOptions& options,
                                      int threads = 0);

}  // namespace hemoscan
