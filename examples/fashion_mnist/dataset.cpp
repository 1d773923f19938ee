#include "dataset.hpp"

#include "idx_reader.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace demo {
namespace {

labelled_images read_split(const std::filesystem::path& folder, const std::string& prefix) {
    const auto image_file = folder / (prefix + "-images-idx3-ubyte.gz");
    const auto label_file = folder / (prefix + "-labels-idx1-ubyte.gz");
    const idx_images images = read_idx_images(image_file);
    const std::vector<std::uint8_t> labels = read_idx_labels(label_file);
    if (static_cast<std::int64_t>(labels.size()) != images.count)
        throw std::runtime_error(label_file.string() + " has " + std::to_string(labels.size()) + " labels but " +
                                 image_file.string() + " has " + std::to_string(images.count) +
                                 " images (reinstall the package dataset-fashion-mnist)");
    labelled_images out;
    out.x = Eigen::Map<const Eigen::Matrix<std::uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
                images.pixels.data(), images.count, image_pixels)
                .cast<float>();
    out.labels.assign(labels.begin(), labels.end());
    return out;
}

}  // namespace

fashion_mnist load_fashion_mnist(const std::filesystem::path& folder) {
    fashion_mnist data{read_split(folder, "train"), read_split(folder, "t10k")};
    // Statistics in double: 47 million values summed in float would lose the low digits.
    double sum = 0, sum_squares = 0;
    for (const float v : data.train.x.reshaped()) {
        sum += v;
        sum_squares += double{v} * v;
    }
    const double n = static_cast<double>(data.train.x.size());
    const double mean = sum / n;
    const double sd = std::sqrt(sum_squares / n - mean * mean);
    for (matrix* x : {&data.train.x, &data.test.x})
        x->array() = (x->array() - static_cast<float>(mean)) / static_cast<float>(sd);
    return data;
}

}  // namespace demo
