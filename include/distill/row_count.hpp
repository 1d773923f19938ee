// distill/row_count.hpp - how many rows a loss call will count, known before the call: the local
// share of the normaliser that data-parallel training and gradient accumulation divide by.
//
// reduction::mean divides by the rows that take part in one call. When one batch is spread over
// several calls (micro-batches on one process, shards of the batch on several, or both), each call
// must divide by the rows of the whole batch instead, or the tokens of a call with few real rows
// weigh more. So: count the rows of every call first (this function), add the counts up (an
// all-reduce across ranks, a sum over micro-batches), and run every call with
// reduction::divide_by and that total as its normalizer. The calls' losses and gradients then add
// up to those of the whole batch under reduction::mean (docs/distributed.md shows the program).
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>

#include "logits.hpp"
#include "status.hpp"

namespace distill {

// The rows of a call with these labels that take part: label not ignore_index, and mask entry not 0
// where a mask is given (one entry per label). Exactly the rows loss_value::rows_counted reports.
// Fails when the mask and the labels differ in length, or the labels are not contiguous.
template <class Labels>
    requires requires(const Labels& l) { std::data(l); std::size(l); }
status try_counted_rows(const Labels& labels, std::span<const std::uint8_t> mask, std::int64_t ignore_index,
                        std::int64_t& out) noexcept {
    std::span<const detail::label_value_t<Labels>> y;
    out = 0;
    if (status s = detail::label_span(labels, y); !s) return s;
    if (!mask.empty() && mask.size() != y.size())
        return status::error(errc::invalid_argument, "counted_rows: the mask has %zu entries but there are %zu labels",
                             mask.size(), y.size());
    for (std::size_t i = 0; i < y.size(); ++i)
        if (static_cast<std::int64_t>(y[i]) != ignore_index && (mask.empty() || mask[i] != 0)) ++out;
    return {};
}

// The same for a loss without labels (divergence_loss, kl_divergence): the rows the mask keeps.
inline std::int64_t counted_rows(std::ptrdiff_t rows, std::span<const std::uint8_t> mask = {}) noexcept {
    if (mask.empty()) return rows;
    std::int64_t n = 0;
    for (std::uint8_t m : mask) n += m != 0;
    return n;
}

#if defined(__cpp_exceptions)
// Throws std::invalid_argument when the mask and the labels differ in length.
template <class Labels>
    requires requires(const Labels& l) { std::data(l); std::size(l); }
std::int64_t counted_rows(const Labels& labels, std::span<const std::uint8_t> mask = {},
                          std::int64_t ignore_index = -100) {
    std::int64_t n = 0;
    detail::throw_if_error(try_counted_rows(labels, mask, ignore_index, n));
    return n;
}
#endif

}  // namespace distill
