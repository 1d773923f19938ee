// Shared test helpers: row-major matrix types, seeded random logits, one-row literals and a
// std::thread executor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <random>
#include <thread>
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

// A 1 x C matrix from literal values (closed-form checks), e.g. row<float>({0, -inf, 1}).
template <class T>
matrix<T> row(std::initializer_list<double> values) {
    matrix<T> m(1, static_cast<Eigen::Index>(values.size()));
    Eigen::Index j = 0;
    for (double v : values) m(0, j++) = static_cast<T>(v);
    return m;
}

// Whether two matrices hold the same shape and the same bits (results that must be bitwise equal).
template <class T>
bool same_bits(const matrix<T>& a, const matrix<T>& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), sizeof(T) * static_cast<std::size_t>(a.size())) == 0;
}

// A parallel_for(begin, end, fn) that splits [begin, end) over `threads` std::threads.
struct thread_executor {
    int threads;
    template <class Fn>
    void operator()(std::ptrdiff_t begin, std::ptrdiff_t end, Fn&& fn) const {
        std::vector<std::thread> pool;
        const std::ptrdiff_t n = end - begin;
        for (int k = 0; k < threads; ++k) {
            const std::ptrdiff_t b = begin + n * k / threads, e = begin + n * (k + 1) / threads;
            if (b < e) pool.emplace_back([&fn, b, e] { fn(b, e); });
        }
        for (auto& th : pool) th.join();
    }
};

}  // namespace distill_test
