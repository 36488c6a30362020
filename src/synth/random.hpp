#pragma once
// A small, portable random generator for the phantom (private to src/synth). std::*_distribution
// differ between standard libraries; these draws are the same everywhere for a seed.
#include <cmath>
#include <cstdint>
#include <vector>

#include "hemoscan/util/random.hpp"

namespace hemoscan::synth {

using hemoscan::splitmix64;

// xoshiro256** seeded through splitmix64.
class Rng {
public:
    explicit Rng(std::uint64_t seed) {
        for (auto& s : s_) s = seed = splitmix64(seed);
    }
    std::uint64_t next() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    // Uniform in [0, 1).
    double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Integer in [lo, hi].
    int integer(int lo, int hi) { return lo + static_cast<int>(uniform() * (hi - lo + 1)); }
    bool chance(double p) { return uniform() < p; }
    double sign() { return chance(0.5) ? 1.0 : -1.0; }
    // Standard normal (Box-Muller; one value per call, deterministic).
    double normal() {
        const double u1 = 1.0 - uniform(), u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
    // exp(uniform(log lo, log hi)).
    double log_uniform(double lo, double hi) { return std::exp(uniform(std::log(lo), std::log(hi))); }
    // Index drawn with the given weights.
    int pick(const std::vector<double>& weights) {
        double total = 0;
        for (double w : weights) total += w;
        double u = uniform() * total;
        for (size_t i = 0; i < weights.size(); ++i) {
            if ((u -= weights[i]) < 0) return static_cast<int>(i);
        }
        return static_cast<int>(weights.size()) - 1;
    }
    // Fisher-Yates.
    template <typename T>
    void shuffle(std::vector<T>& v) {
        for (size_t i = v.size(); i > 1; --i) {
            const size_t j = static_cast<size_t>(uniform() * static_cast<double>(i));
            std::swap(v[i - 1], v[j]);
        }
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4];
};

}  // namespace hemoscan::synth
