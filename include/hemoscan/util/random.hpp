#pragma once
// The one seed mixer of the project. Every random stream (splits, shuffles, augmentation, the
// phantom) derives its seed through it, so streams for (seed, epoch, item) never collide and do not
// depend on the standard library.
#include <cstdint>

namespace hemoscan {

// SplitMix64 (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
inline std::uint64_t splitmix64(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

}  // namespace hemoscan
