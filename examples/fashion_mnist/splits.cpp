#include "splits.hpp"

#include "dataset.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace demo {
namespace {

std::vector<std::vector<std::int64_t>> rows_by_class(std::span<const std::int64_t> labels,
                                                     std::span<const std::int64_t> candidates) {
    std::vector<std::vector<std::int64_t>> by_class(class_count);
    for (const std::int64_t r : candidates)
        by_class[static_cast<std::size_t>(labels[static_cast<std::size_t>(r)])].push_back(r);
    return by_class;
}

}  // namespace

data_split split_validation(std::span<const std::int64_t> labels, int per_class) {
    std::vector<std::int64_t> all(labels.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::int64_t>(i);
    auto by_class = rows_by_class(labels, all);
    random_source rng(validation_seed);
    data_split split;
    for (auto& rows : by_class) {
        if (rows.size() <= static_cast<std::size_t>(per_class))
            throw std::invalid_argument("split_validation: a class has only " + std::to_string(rows.size()) +
                                        " images, cannot hold out " + std::to_string(per_class));
        shuffle(rows, rng);
        split.validation.insert(split.validation.end(), rows.begin(), rows.begin() + per_class);
    }
    std::sort(split.validation.begin(), split.validation.end());
    std::vector<bool> held_out(labels.size(), false);
    for (const auto r : split.validation) held_out[static_cast<std::size_t>(r)] = true;
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (!held_out[i]) split.pool.push_back(static_cast<std::int64_t>(i));
    return split;
}

std::vector<std::int64_t> balanced_subset(std::span<const std::int64_t> labels,
                                          std::span<const std::int64_t> candidates, int size, random_source rng) {
    auto by_class = rows_by_class(labels, candidates);
    std::vector<std::int64_t> subset;
    for (int c = 0; c < class_count; ++c) {
        auto& rows = by_class[static_cast<std::size_t>(c)];
        shuffle(rows, rng);
        const auto take = static_cast<std::size_t>(size / class_count + (c < size % class_count ? 1 : 0));
        const auto end = rows.begin() + static_cast<std::ptrdiff_t>(std::min(take, rows.size()));
        subset.insert(subset.end(), rows.begin(), end);
    }
    std::sort(subset.begin(), subset.end());
    return subset;
}

std::vector<std::int64_t> without_class(std::span<const std::int64_t> labels, std::span<const std::int64_t> rows,
                                        std::int64_t omitted) {
    std::vector<std::int64_t> kept;
    for (const auto r : rows)
        if (labels[static_cast<std::size_t>(r)] != omitted) kept.push_back(r);
    return kept;
}

}  // namespace demo
