// A small, fast, seedable generator. Dropout draws one number per hidden unit per sample (tens of
// millions per teacher epoch), so std::mt19937 plus a distribution object is measurably slower, and
// its normal distribution differs between standard libraries; this one gives the same run everywhere.
#pragma once

#include <cmath>
#include <cstdint>
#include <iterator>
#include <numbers>

namespace demo {

class random_source {
public:
    explicit random_source(std::uint64_t seed) : state_(seed) {}

    // splitmix64 (Steele, Lea, Flood 2014): passes BigCrush, one multiply-xorshift chain per draw.
    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }

    // Uniform in [0, 1) with 24 bits: exactly representable as float.
    float uniform() { return static_cast<float>(next() >> 40) * 0x1.0p-24f; }

    // Uniform integer in [0, n), for shuffling (bias below 2^-32 for the n we use).
    std::uint64_t below(std::uint64_t n) { return (next() >> 32) * n >> 32; }

    // Standard normal by Box-Muller, for weight initialisation only (not a hot path).
    float normal() {
        const double u1 = (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]: log is finite
        const double u2 = static_cast<double>(next() >> 11) * 0x1.0p-53;
        return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
    }

    // Derives an independent stream, so "seed 1's dropout" does not depend on how many numbers
    // "seed 1's shuffling" drew before it.
    random_source split() { return random_source(next()); }

private:
    std::uint64_t state_;
};

// Fisher-Yates with our generator (std::shuffle's result differs between standard libraries).
template <class Range>
void shuffle(Range& values, random_source& rng) {
    for (auto i = static_cast<std::uint64_t>(std::size(values)); i > 1; --i)
        std::swap(values[i - 1], values[rng.below(i)]);
}

}  // namespace demo
