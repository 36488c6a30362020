#include "hemoscan/train/pretrain.hpp"

#include <torch/torch.h>

#include "hemoscan/data/batch_tensor.hpp"
#include "hemoscan/data/loader.hpp"
#include "hemoscan/dist/grad_sync.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/models/unet_ae.hpp"

namespace hemoscan {

namespace {

// Per image: (x - min) / (max - min) over C x H x W; zeros for a flat image.
torch::Tensor unit_range(const torch::Tensor& x) {
    const auto flat = x.flatten(1);
    const auto lo = std::get<0>(flat.min(1)).view({-1, 1, 1, 1});
    const auto hi = std::get<0>(flat.max(1)).view({-1, 1, 1, 1});
    const auto range = hi - lo;
    return torch::where(range > 0, (x - lo) / range.clamp_min(1e-12), torch::zeros_like(x));
}

}  // namespace

void pretrain_reconstruction(ClassifierImpl& model, DataLoader& loader, int epochs, double lr,
                             const std::function<void(int epoch, double loss)>& on_epoch, GradientSync* sync) {
    auto* ae = dynamic_cast<UNetAutoencoderImpl*>(&model);
    if (!ae) throw UsageError("`pretrain_epochs` needs `model` unet-ae");
    if (epochs < 0) throw UsageError("`pretrain_epochs` must be >= 0 (got " + std::to_string(epochs) + ")");
    if (!(lr > 0)) throw UsageError("pretrain_reconstruction: learning rate must be > 0");
    if (epochs == 0) return;

    const auto device = model.parameters().empty() ? torch::Device(torch::kCPU) : model.parameters()[0].device();
    torch::optim::Adam optimizer(ae->autoencoder_parameters(), torch::optim::AdamOptions(lr));
    model.train();
    for (int epoch = 0; epoch < epochs; ++epoch) {
        loader.start_epoch(kPretrainEpochBase + static_cast<std::uint64_t>(epoch));
        double sum = 0;
        int64_t images = 0;
        Batch batch;
        while (loader.next(batch)) {
            auto t = to_tensors(std::move(batch));
            const auto x = t.images.to(device);
            optimizer.zero_grad();
            const auto loss = torch::mse_loss(ae->reconstruct(x), unit_range(x));
            if (sync) {
                sync->backward(loss);
            } else {
                loss.backward();
            }
            optimizer.step();
            sum += loss.item<double>() * double(x.size(0));
            images += x.size(0);
        }
        const double mean = images > 0 ? sum / double(images) : 0.0;
        logger().debug("unet-ae pretraining epoch {}/{}: reconstruction MSE {:.5f}", epoch + 1, epochs, mean);
        if (on_epoch) on_epoch(epoch, mean);
    }
}

}  // namespace hemoscan
