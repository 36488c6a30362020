#pragma once
// Shared by the --init tests: training that cannot move the weights (one epoch, learning rate 1e-12,
// no decay, constant schedule), so that what a run saves is where it started.
#include "hemoscan/train/trainer.hpp"

namespace hemoscan::test {

inline TrainOptions frozen(TrainOptions o) {
    o.epochs = 1;
    o.lr = 1e-12;
    o.weight_decay = 0;
    o.schedule = "constant";
    o.warmup_epochs = 0;
    return o;
}

}  // namespace hemoscan::test
