// Shared test helpers: row-major matrix types and seeded random logits.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include <Eigen/Core>

namespace distill_test {

template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Logits with a spread like a trained classifier's: normal, scale `scale`.
template <class T>
matrix<T> random_logits(std::ptrdiff_t rows, std::ptrdiff_t cols, std::uint32_t seed, double scale = 3.0) {
    std::mt19937 gen(seed);
    std::normal_distribution<double> dist(0.0, scale);
    matrix<T> m(rows, cols);
    for (std::ptrdiff_t i = 0; i < rows; ++i)
        for (std::ptrdiff_t j = 0; j < cols; ++j) m(i, j) = static_cast<T>(dist(gen));
    return m;
}

inline std::vector<std::int64_t> random_labels(std::ptrdiff_t rows, std::ptrdiff_t cols, std::uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<std::int64_t> dist(0, cols - 1);
    std::vector<std::int64_t> y(static_cast<std::size_t>(rows));
    for (auto& v : y) v = dist(gen);
    return y;
}

}  // namespace distill_test
