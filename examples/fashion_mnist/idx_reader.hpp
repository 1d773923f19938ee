// Reads the IDX files Fashion-MNIST ships in (gzip-compressed), as installed by Debian's
// dataset-fashion-mnist package. Format: http://yann.lecun.com/exdb/mnist/ (big-endian header,
// magic 0x00000803 for images, 0x00000801 for labels, then one unsigned byte per value).
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace demo {

struct idx_images {
    std::int64_t count = 0;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    std::vector<std::uint8_t> pixels;  // count * rows * cols, image after image, row-major
};

// Both throw std::runtime_error naming the file and the package that provides it when the file is
// missing, truncated, not IDX, or fails gzip's CRC check: a half-downloaded data set must never
// train silently on garbage.
idx_images read_idx_images(const std::filesystem::path& file);
std::vector<std::uint8_t> read_idx_labels(const std::filesystem::path& file);

}  // namespace demo
