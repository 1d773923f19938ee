// Fashion-MNIST as the trainer wants it: standardised pixels, one image per row.
#pragma once

#include "matrix.hpp"

#include <cstdint>
#include <filesystem>
#include <vector>

namespace demo {

inline constexpr int image_pixels = 28 * 28;
inline constexpr int class_count = 10;

struct labelled_images {
    matrix x;                          // N x 784, standardised
    std::vector<std::int64_t> labels;  // N classes in 0..9
};

struct fashion_mnist {
    labelled_images train;  // 60,000
    labelled_images test;   // 10,000
};

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from `folder` and standardises every pixel
// with the training set's mean and standard deviation (one scalar each: the test set must never
// inform the preprocessing, and per-pixel statistics would blow up the always-black border pixels).
fashion_mnist load_fashion_mnist(const std::filesystem::path& folder);

}  // namespace demo
