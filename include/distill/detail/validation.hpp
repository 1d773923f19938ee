// distill/detail/validation.hpp - every check of a loss call, done once at the API boundary before
// any kernel runs. Nothing here throws: each check returns a status whose message names the
// argument, its value and what was expected.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>

#include "../logits.hpp"
#include "../reduction.hpp"
#include "../status.hpp"
#include "loss_call.hpp"

namespace distill::detail {

// Temperatures outside [1e-3, 1e3] are refused: beyond them float logits lose the softmax (1 / T
// overflows the float range of (s - max s) / T, or T^2 and 1 / T leave the range where a float
// gradient keeps its digits), and no distillation recipe uses them.
inline constexpr double min_temperature = 1e-3;
inline constexpr double max_temperature = 1e3;

inline status check_options(const loss_config& o) noexcept {
    const auto in_unit_interval = [](double v) { return v >= 0 && v <= 1; };
    if (o.soft_term && !(o.temperature >= min_temperature && o.temperature <= max_temperature))
        return status::error(errc::invalid_argument, "%s: temperature must be in [%g, %g], got %g", o.loss_name,
                             min_temperature, max_temperature, o.temperature);
    if (o.soft_term && o.hard_term && !in_unit_interval(o.alpha))
        return status::error(errc::invalid_argument, "%s: alpha must be in [0, 1], got %g", o.loss_name, o.alpha);
    if (o.soft_term) {
        if (!in_unit_interval(o.params.beta))
            return status::error(errc::invalid_argument, "%s: jensen_shannon beta must be in [0, 1], got %g",
                                 o.loss_name, o.params.beta);
        if (!in_unit_interval(o.params.skew))
            return status::error(errc::invalid_argument, "%s: %s skew must be in [0, 1], got %g", o.loss_name,
                                 divergence_name(o.divergence), o.params.skew);
        for (double w : {o.params.target_weight, o.params.non_target_weight})
            if (!(w >= 0) || !std::isfinite(w))
                return status::error(errc::invalid_argument,
                                     "%s: decoupled_kd weights must be finite and >= 0, got target_weight %g and "
                                     "non_target_weight %g",
                                     o.loss_name, o.params.target_weight, o.params.non_target_weight);
        if (o.divergence == divergence_kind::decoupled_kd && !o.hard_term)
            return status::error(errc::invalid_argument,
                                 "%s: decoupled_kd needs each row's label; use distillation_loss, which takes labels",
                                 o.loss_name);
    }
    if (o.hard_term && !(o.label_smoothing >= 0 && o.label_smoothing < 1))
        return status::error(errc::invalid_argument, "%s: label_smoothing must be in [0, 1), got %g", o.loss_name,
                             o.label_smoothing);
    if (o.reduce == reduction::divide_by && (!(o.normalizer > 0) || !std::isfinite(o.normalizer)))
        return status::error(errc::invalid_argument,
                             "%s: normalizer must be finite and > 0 for reduction::divide_by, got %g", o.loss_name,
                             o.normalizer);
    return {};
}

template <class T>
bool overlaps(const matrix_view<T>& a, const matrix_view<const T>& b) noexcept {
    if (!a.data || !b.data || a.rows == 0 || b.rows == 0) return false;
    const T* a_end = a.data + (a.rows - 1) * a.row_stride + a.cols;
    const T* b_end = b.data + (b.rows - 1) * b.row_stride + b.cols;
    return std::less<const T*>{}(a.data, b_end) && std::less<const T*>{}(b.data, a_end);
}

// Which terms a call computes: the divergence unless alpha is 0, the cross-entropy unless alpha is
// 1 (a term weighted by 0 is left out, not computed and multiplied by 0).
inline bool soft_active(const loss_config& o) noexcept { return o.soft_term && (!o.hard_term || o.alpha > 0); }
inline bool hard_active(const loss_config& o) noexcept { return o.hard_term && (!o.soft_term || o.alpha < 1); }

// Whether the call reads labels: for its hard term, or for a divergence defined around the target.
inline bool needs_labels(const loss_config& o) noexcept {
    return hard_active(o) || (soft_active(o) && o.divergence == divergence_kind::decoupled_kd);
}

// `whole_rows` false: the logits are a vocabulary shard (sharded.hpp), which may have 0 columns.
template <class T, class Label>
status check_shapes(const loss_config& o, const loss_call<T, Label>& c, bool whole_rows = true) noexcept {
    const auto N = c.student.rows, C = c.student.cols;
    if (C == 0 && whole_rows)
        return status::error(errc::invalid_argument,
                             "%s: student logits have 0 classes (shape %td x 0); at least 1 class is needed",
                             o.loss_name, N);
    if (c.has_teacher && (c.teacher.rows != N || c.teacher.cols != C))
        return status::error(errc::invalid_argument,
                             "%s: teacher %s are %td x %td but student logits are %td x %td; they must match",
                             o.loss_name, o.teacher == teacher_input::logits ? "logits" : "values", c.teacher.rows,
                             c.teacher.cols, N, C);
    const bool has_labels = !c.labels.empty();
    if (has_labels && static_cast<std::ptrdiff_t>(c.labels.size()) != N)
        return status::error(errc::invalid_argument, "%s: labels have %zu entries but the logits have %td rows",
                             o.loss_name, c.labels.size(), N);
    if (!has_labels && needs_labels(o) && N > 0) {
        if (soft_active(o) && o.divergence == divergence_kind::decoupled_kd)
            return status::error(errc::invalid_argument,
                                 "%s: decoupled_kd needs one label per row (the target class), got none", o.loss_name);
        if (!o.soft_term)
            return status::error(errc::invalid_argument, "%s: labels are required, one per row (%td rows), got none",
                                 o.loss_name, N);
        return status::error(errc::invalid_argument,
                             "%s: no labels given but alpha = %g; the hard-label term needs one label per row "
                             "(without labels, alpha must be 1: pure distillation)",
                             o.loss_name, o.alpha);
    }
    if (c.has_grad && (c.grad.rows != N || c.grad.cols != C))
        return status::error(errc::invalid_argument,
                             "%s: gradient buffer is %td x %td but student logits are %td x %td; they must match",
                             o.loss_name, c.grad.rows, c.grad.cols, N, C);
    if (overlaps(c.grad, c.student) || overlaps(c.grad, c.teacher))
        return status::error(errc::invalid_argument,
                             "%s: the gradient buffer overlaps the %s logits; it must be a separate buffer",
                             o.loss_name, overlaps(c.grad, c.student) ? "student" : "teacher");
    if (!c.rows.mask.empty() && static_cast<std::ptrdiff_t>(c.rows.mask.size()) != N)
        return status::error(errc::invalid_argument, "%s: per_row.mask has %zu entries but the logits have %td rows",
                             o.loss_name, c.rows.mask.size(), N);
    if (!c.rows.losses.empty() && static_cast<std::ptrdiff_t>(c.rows.losses.size()) != N)
        return status::error(errc::invalid_argument,
                             "%s: per_row.losses has %zu entries but the logits have %td rows",
                             o.loss_name, c.rows.losses.size(), N);
    return {};
}

// reduction::none returns the rows' losses, so the call needs somewhere to put them.
template <class T, class Label>
status check_losses_output(const loss_config& o, const loss_call<T, Label>& c) noexcept {
    if (o.reduce == reduction::none && c.rows.losses.empty() && c.student.rows > 0)
        return status::error(errc::invalid_argument,
                             "%s: reduction::none needs per_row.losses with one entry per row (%td)", o.loss_name,
                             c.student.rows);
    return {};
}

// Whether row i takes part: its label is not ignore_index and the row mask keeps it.
template <class T, class Label>
bool row_counts(const loss_call<T, Label>& c, std::int64_t ignore_index, std::ptrdiff_t i) noexcept {
    const auto at = static_cast<std::size_t>(i);
    return !(!c.labels.empty() && static_cast<std::int64_t>(c.labels[at]) == ignore_index) &&
           !(!c.rows.mask.empty() && c.rows.mask[at] == 0);
}

// Validates the labels and counts the rows that take part (not ignore_index, not masked out).
// `classes` is the row's number of classes: the logits' columns, or the vocabulary of a shard.
template <class T, class Label>
status count_rows(const loss_config& o, const loss_call<T, Label>& c, std::int64_t classes,
                  std::int64_t& counted) noexcept {
    const auto N = c.student.rows;
    const std::int64_t C = classes;
    counted = 0;
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        if (!c.labels.empty()) {
            const auto y = static_cast<std::int64_t>(c.labels[static_cast<std::size_t>(i)]);
            if (y == o.ignore_index) continue;
            if (y < 0 || y >= C)
                return status::error(errc::out_of_range,
                                     "%s: label %lld at row %td is out of range: classes are [0, %lld) and "
                                     "ignore_index is %lld",
                                     o.loss_name, static_cast<long long>(y), i, static_cast<long long>(C),
                                     static_cast<long long>(o.ignore_index));
        }
        if (row_counts(c, o.ignore_index, i)) ++counted;
    }
    return {};
}

// The opt-in scan: NaN and +inf are errors; -inf is a legal class mask. Probabilities must also
// be >= 0.
template <class T>
status check_finite(const char* loss_name, const char* which, const matrix_view<const T>& x,
                    bool probabilities = false) noexcept {
    for (std::ptrdiff_t i = 0; i < x.rows; ++i) {
        const T* row = x.row(i);
        for (std::ptrdiff_t j = 0; j < x.cols; ++j) {
            if (std::isnan(row[j]) || row[j] == std::numeric_limits<T>::infinity())
                return status::error(errc::invalid_argument,
                                     "%s: %s: element (%td, %td) is %s (check_finite rejects NaN and +inf; -inf is "
                                     "a legal class mask)",
                                     loss_name, which, i, j, std::isnan(row[j]) ? "NaN" : "+inf");
            if (probabilities && row[j] < 0)
                return status::error(errc::invalid_argument,
                                     "%s: %s: element (%td, %td) is %g; probabilities must be >= 0", loss_name,
                                     which, i, j, static_cast<double>(row[j]));
        }
    }
    return {};
}

}  // namespace distill::detail
