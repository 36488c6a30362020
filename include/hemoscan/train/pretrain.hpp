#pragma once
// Reconstruction pre-training of the "unet-ae" classifier (seed 000): the U-Net autoencoder learns
// to reproduce its input before the classification head is trained. Free of LibTorch.
#include <functional>

namespace hemoscan {

class ClassifierImpl;
class DataLoader;
class GradientSync;

// Trains the encoder, bottleneck and decoder of `model` (which must be a unet-ae, else UsageError
// "--pretrain-epochs needs --model unet-ae") for `epochs` passes over `loader` with Adam (`lr`) on
// the mean squared error between reconstruct(x) and x rescaled to [0, 1] per image (min-max over
// its channels and pixels: identity for "unit"-normalised images, and a reachable target for the
// sigmoid output under "zscore"; a flat image gives zeros). The classification head is untouched.
// Epoch e uses loader.start_epoch(kPretrainEpochBase + e), so its shuffles differ from training's.
// on_epoch(e, mean loss over the epoch's images) after each epoch (may be empty). epochs < 0 or
// lr <= 0 -> UsageError; epochs == 0 does nothing. Leaves the model in training mode. `sync`: distributed
// training (the loader deals this rank's shard), gradients averaged over the ranks in backward.
inline constexpr unsigned long long kPretrainEpochBase = 1000000;
void pretrain_reconstruction(ClassifierImpl& model, DataLoader& loader, int epochs, double lr,
                             const std::function<void(int epoch, double loss)>& on_epoch, GradientSync* sync = nullptr);

}  // namespace hemoscan
