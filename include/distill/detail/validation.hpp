// distill/detail/validation.hpp - every check of a loss call, done once at the API boundary before
// any kernel runs. Nothing here throws: each check returns a status whose message names the
// argument, its value and what was expected.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../logits.hpp"
#include "../reduction.hpp"
#include "../status.hpp"
#include "loss_call.hpp"
#include "storage_type.hpp"

namespace distill::detail {

// Temperatures outside [1e-3, 1e3] are refused: beyond them float logits lose the softmax (1 / T
// overflows the float range of (s - max s) / T, or T^2 and 1 / T leave the range where a float
// gradient keeps its digits), and no distillation recipe uses them.
inline constexpr double min_temperature = 1e-3;
inline constexpr double max_temperature = 1e3;

inline status check_options(const loss_config& o) noexcept {
    const auto in_unit_interval = [](double v) { return v >= 0 && v <= 1; };
    if (o.soft_term && !(o.temperature >= min_temperature && o.temperature <= max_temperature))
        return status::error(errc::invalid_argument, "%s: temperature must be in [%s, %s], got %s", o.loss_name,
                             format_number(min_temperature).c_str(), format_number(max_temperature).c_str(),
                             format_number(o.temperature).c_str());
    if (o.soft_term && o.hard_term && !in_unit_interval(o.alpha))
        return status::error(errc::invalid_argument, "%s: alpha must be in [0, 1], got %s", o.loss_name,
                             format_number(o.alpha).c_str());
    if (o.soft_term) {
        if (!in_unit_interval(o.params.beta))
            return status::error(errc::invalid_argument, "%s: jensen_shannon beta must be in [0, 1], got %s",
                                 o.loss_name, format_number(o.params.beta).c_str());
        if (!in_unit_interval(o.params.skew))
            return status::error(errc::invalid_argument, "%s: %s skew must be in [0, 1], got %s", o.loss_name,
                                 divergence_name(o.divergence), format_number(o.params.skew).c_str());
        for (double w : {o.params.target_weight, o.params.non_target_weight})
            if (!(w >= 0) || !std::isfinite(w))
                return status::error(errc::invalid_argument,
                                     "%s: decoupled_kd weights must be finite and >= 0, got target_weight %s and "
                                     "non_target_weight %s",
                                     o.loss_name, format_number(o.params.target_weight).c_str(),
                                     format_number(o.params.non_target_weight).c_str());
        if (o.divergence == divergence_kind::decoupled_kd && !o.hard_term)
            return status::error(errc::invalid_argument,
                                 "%s: decoupled_kd needs each row's label; use distillation_loss, which takes labels",
                                 o.loss_name);
    }
    if (o.hard_term && !(o.label_smoothing >= 0 && o.label_smoothing < 1))
        return status::error(errc::invalid_argument, "%s: label_smoothing must be in [0, 1), got %s", o.loss_name,
                             format_number(o.label_smoothing).c_str());
    if (o.reduce == reduction::divide_by && (!(o.normalizer > 0) || !std::isfinite(o.normalizer)))
        return status::error(errc::invalid_argument,
                             "%s: normalizer must be finite and > 0 for reduction::divide_by, got %s", o.loss_name,
                             format_number(o.normalizer).c_str());
    return {};
}

// Whether two views are the very same elements: the gradient written over the student logits.
template <class G, class T>
bool same_view(const matrix_view<G>& a, const matrix_view<const T>& b) noexcept {
    if constexpr (!std::is_same_v<G, T>) return false;  // a float gradient of 16-bit logits is another buffer
    else return a.data == b.data && a.rows == b.rows && a.cols == b.cols && (a.rows <= 1 || a.row_stride == b.row_stride);
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
template <class T, class Label, class G>
status check_shapes(const loss_config& o, const loss_call<T, Label, G>& c, bool whole_rows = true) noexcept {
    const auto N = c.student.rows, C = c.student.cols;
    if (C == 0 && whole_rows)
        return status::error(errc::invalid_argument,
                             "%s: student logits have 0 classes (shape %td x 0); at least 1 class is needed",
                             o.loss_name, N);
    if (c.has_teacher && !same_shape(c.teacher, c.student))
        return status::error(errc::invalid_argument, "%s: teacher %s are %s but student logits are %s; they must match",
                             o.loss_name, o.teacher == teacher_input::logits ? "logits" : "values",
                             format_shape(c.teacher).c_str(), format_shape(c.student).c_str());
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
                             "%s: no labels given but alpha = %s; the hard-label term needs one label per row "
                             "(without labels, alpha must be 1: pure distillation)",
                             o.loss_name, format_number(o.alpha).c_str());
    }
    if (c.has_grad && !same_shape(c.grad, c.student))
        return status::error(errc::invalid_argument, "%s: gradient buffer is %s but student logits are %s; they must match",
                             o.loss_name, format_shape(c.grad).c_str(), format_shape(c.student).c_str());
    // The gradient may be the student logits themselves (in place), never a part of them or of
    // the teacher's values.
    const bool in_place = c.has_grad && same_view(c.grad, c.student);
    const bool over_teacher = c.has_grad && c.has_teacher && views_overlap(c.grad, c.teacher);
    if ((c.has_grad && !in_place && views_overlap(c.grad, c.student)) || over_teacher)
        return status::error(errc::invalid_argument,
                             "%s: the gradient buffer overlaps the %s logits; it must be a separate buffer or the "
                             "student logits themselves",
                             o.loss_name, over_teacher ? "teacher" : "student");
    if (!c.rows.mask.empty() && static_cast<std::ptrdiff_t>(c.rows.mask.size()) != N)
        return status::error(errc::invalid_argument, "%s: per_row.mask has %zu entries but the logits have %td rows",
                             o.loss_name, c.rows.mask.size(), N);
    if (o.class_weights && hard_active(o)) {
        if (o.class_weight_count != C)
            return status::error(errc::invalid_argument,
                                 "%s: class_weights has %td entries but the logits have %td classes", o.loss_name,
                                 o.class_weight_count, C);
        const auto* w = static_cast<const compute_t<T>*>(o.class_weights);
        for (std::ptrdiff_t j = 0; j < C; ++j)
            if (!(w[j] >= 0) || !std::isfinite(w[j]))
                return status::error(errc::invalid_argument,
                                     "%s: class_weights[%td] is %s; class weights must be finite and >= 0", o.loss_name,
                                     j, format_number(static_cast<double>(w[j])).c_str());
    }
    if (!c.rows.weights.empty() && static_cast<std::ptrdiff_t>(c.rows.weights.size()) != N)
        return status::error(errc::invalid_argument,
                             "%s: per_row.weights has %zu entries but the logits have %td rows", o.loss_name,
                             c.rows.weights.size(), N);
    if (!c.rows.losses.empty() && static_cast<std::ptrdiff_t>(c.rows.losses.size()) != N)
        return status::error(errc::invalid_argument,
                             "%s: per_row.losses has %zu entries but the logits have %td rows",
                             o.loss_name, c.rows.losses.size(), N);
    return {};
}

// reduction::none returns the rows' losses, so the call needs somewhere to put them.
template <class T, class Label, class G>
status check_losses_output(const loss_config& o, const loss_call<T, Label, G>& c) noexcept {
    if (o.reduce == reduction::none && c.rows.losses.empty() && c.student.rows > 0)
        return status::error(errc::invalid_argument,
                             "%s: reduction::none needs per_row.losses with one entry per row (%td)", o.loss_name,
                             c.student.rows);
    return {};
}

// Whether row i takes part: its label is not ignore_index, the row mask keeps it and its weight is
// not 0.
template <class T, class Label, class G>
bool row_counts(const loss_call<T, Label, G>& c, std::int64_t ignore_index, std::ptrdiff_t i) noexcept {
    const auto at = static_cast<std::size_t>(i);
    return !(!c.labels.empty() && static_cast<std::int64_t>(c.labels[at]) == ignore_index) &&
           !(!c.rows.mask.empty() && c.rows.mask[at] == 0) && !(!c.rows.weights.empty() && c.rows.weights[at] == 0);
}

// Row i's weight (1 without weights).
template <class T, class Label, class G>
double row_weight(const loss_call<T, Label, G>& c, std::ptrdiff_t i) noexcept {
    return c.rows.weights.empty() ? 1.0 : static_cast<double>(c.rows.weights[static_cast<std::size_t>(i)]);
}

// The class weight of row i's label (1 without class weights or labels).
template <class T, class Label, class G>
double label_class_weight(const loss_config& o, const loss_call<T, Label, G>& c, std::ptrdiff_t i) noexcept {
    if (!o.class_weights || c.labels.empty()) return 1.0;
    return static_cast<double>(static_cast<const compute_t<T>*>(o.class_weights)[c.labels[static_cast<std::size_t>(i)]]);
}

// Validates the labels and the row weights and counts the rows that take part (not ignore_index,
// not masked out, weight not 0), their weights' sum and hard_weight_sum: the counted rows' weights
// times their labels' class weights, the divisor of the hard term's mean (PyTorch divides a
// class-weighted cross-entropy by the sum of the targets' weights). `classes` is the row's number
// of classes: the logits' columns, or the vocabulary of a shard.
template <class T, class Label, class G>
status count_rows(const loss_config& o, const loss_call<T, Label, G>& c, std::int64_t classes, std::int64_t& counted,
                  double& weight_sum, double& hard_weight_sum) noexcept {
    const auto N = c.student.rows;
    const std::int64_t C = classes;
    counted = 0;
    weight_sum = 0;
    hard_weight_sum = 0;
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        if (!c.rows.weights.empty()) {
            const float w = c.rows.weights[static_cast<std::size_t>(i)];
            if (!(w >= 0) || !std::isfinite(w))
                return status::error(errc::invalid_argument,
                                     "%s: per_row.weights[%td] is %s; row weights must be finite and >= 0",
                                     o.loss_name, i, format_number(static_cast<double>(w)).c_str());
        }
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
        if (row_counts(c, o.ignore_index, i)) {
            ++counted;
            weight_sum += row_weight(c, i);
            hard_weight_sum += row_weight(c, i) * label_class_weight(o, c, i);
        }
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
            const double v = to_double(row[j]);  // exact for every storage type, 16-bit ones too
            if (std::isnan(v) || v == std::numeric_limits<double>::infinity())
                return status::error(errc::invalid_argument,
                                     "%s: %s: element (%td, %td) is %s (check_finite rejects NaN and +inf; -inf is "
                                     "a legal class mask)",
                                     loss_name, which, i, j, std::isnan(v) ? "NaN" : "+inf");
            if (probabilities && v < 0)
                return status::error(errc::invalid_argument,
                                     "%s: %s: element (%td, %td) is %s; probabilities must be >= 0", loss_name,
                                     which, i, j, format_number(v).c_str());
        }
    }
    return {};
}

}  // namespace distill::detail
