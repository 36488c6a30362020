#pragma once
// Option checks both trainers share. Private to src/train.
#include "hemoscan/train/trainer.hpp"

namespace hemoscan::train_detail {

// epochs, batch, lr, weight_decay, size, optimizer, median, ema_epochs (UsageError naming the field).
void validate_common_options(const TrainOptions& o);

}  // namespace hemoscan::train_detail
