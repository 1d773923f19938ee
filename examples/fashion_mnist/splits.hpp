// Which training images each model may see. The validation split is held out of the 60,000 training
// images once, before anything trains: the teacher and every student train on the rest (the pool),
// every hyperparameter is chosen on the validation split, and the test set only reports.
#pragma once

#include "random.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace demo {

// The split's generator seed: a constant, so every run and every reader holds out the same images.
inline constexpr std::uint64_t validation_seed = 20150309;  // the date of Hinton, Vinyals & Dean on arXiv

struct data_split {
    std::vector<std::int64_t> validation;  // rows of the training file, ascending
    std::vector<std::int64_t> pool;        // every other row, ascending: what models train on
};

// `per_class` images of each class, drawn without replacement by `validation_seed` (class-balanced,
// so that the validation accuracy weighs the classes as the balanced test set does).
data_split split_validation(std::span<const std::int64_t> labels, int per_class);

// A class-balanced random subset of `candidates` (size / 10 per class, the remainder to the first
// classes): with 1,000 images, plain sampling would give some classes 20% fewer examples than
// others from one seed to the next and blur the comparison. Returned ascending.
std::vector<std::int64_t> balanced_subset(std::span<const std::int64_t> labels,
                                          std::span<const std::int64_t> candidates, int size, random_source rng);

// `rows` without the images of class `omitted` (Hinton's transfer set without a class).
std::vector<std::int64_t> without_class(std::span<const std::int64_t> labels, std::span<const std::int64_t> rows,
                                        std::int64_t omitted);

}  // namespace demo
