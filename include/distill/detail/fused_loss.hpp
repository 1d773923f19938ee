// distill/detail/fused_loss.hpp - from a validated loss call to row kernels and back to one number.
//
// The API layer hands over views and a loss_config; this file validates them (once, at the
// boundary), counts the rows that take part, folds the reduction into the gradient coefficients,
// runs the row kernel over a fixed partition of the rows through the caller's executor, and adds
// the pieces up in a fixed order. The partition depends only on the number of rows, never on the
// executor, so results are bitwise identical for any thread count.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "../executor.hpp"
#include "../reduction.hpp"
#include "../status.hpp"
#include "../logits.hpp"
#include "row_terms.hpp"
#include "reference/fused_row.hpp"
#if !defined(DISTILL_NO_SIMD)
#include "simd/fused_row.hpp"
#endif

namespace distill::detail {

// The options of any of the three losses, in one shape.
struct loss_config {
    const char* loss_name = "";  // for messages: "kl_divergence", "cross_entropy", "distillation_loss"
    double temperature = 1;
    double alpha = 1;            // 1: soft term only (kl_divergence); 0: hard term only (cross_entropy)
    bool scale_by_t_squared = true;
    double label_smoothing = 0;
    std::int64_t ignore_index = -100;
    reduction reduce = reduction::mean;
    double normalizer = 1;
    bool check_finite = false;
};

template <class T, class Label>
struct loss_call {
    matrix_view<const T> student;
    matrix_view<const T> teacher;  // data == nullptr: the loss has no teacher (cross_entropy)
    std::span<const Label> labels; // empty: no labels
    per_row rows;
    matrix_view<T> grad;           // data == nullptr: loss only
};

template <class T>
row_result run_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                   T* grad) noexcept {
#if defined(DISTILL_NO_SIMD)
    return reference::fused_row(s, t, label, C, k, grad);
#else
    return simd::fused_row<xsimd::default_arch>(s, t, label, C, k, grad);
#endif
}

inline status check_options(const loss_config& o) noexcept {
    if (!(o.temperature > 0) || !std::isfinite(o.temperature))
        return status::error(errc::invalid_argument, "%s: temperature must be finite and > 0, got %s",
                             o.loss_name, format_number(o.temperature).c_str());
    if (!(o.alpha >= 0 && o.alpha <= 1))
        return status::error(errc::invalid_argument, "%s: alpha must be in [0, 1], got %s", o.loss_name,
                             format_number(o.alpha).c_str());
    if (!(o.label_smoothing >= 0 && o.label_smoothing < 1))
        return status::error(errc::invalid_argument, "%s: label_smoothing must be in [0, 1), got %s",
                             o.loss_name, format_number(o.label_smoothing).c_str());
    if (o.reduce == reduction::divide_by && (!(o.normalizer > 0) || !std::isfinite(o.normalizer)))
        return status::error(errc::invalid_argument,
                             "%s: normalizer must be finite and > 0 for reduction::divide_by, got %s",
                             o.loss_name, format_number(o.normalizer).c_str());
    return {};
}

template <class T, class Label>
status check_shapes(const loss_config& o, const loss_call<T, Label>& c) noexcept {
    const auto N = c.student.rows, C = c.student.cols;
    if (C == 0)
        return status::error(errc::invalid_argument,
                             "%s: student logits have 0 classes (shape %td x 0); at least 1 class is needed",
                             o.loss_name, N);
    if (c.teacher.data && !same_shape(c.teacher, c.student))
        return status::error(errc::invalid_argument, "%s: teacher logits are %s but student logits are %s; they must match",
                             o.loss_name, format_shape(c.teacher).c_str(), format_shape(c.student).c_str());
    const bool has_labels = !c.labels.empty();
    if (has_labels && static_cast<std::ptrdiff_t>(c.labels.size()) != N)
        return status::error(errc::invalid_argument, "%s: labels have %zu entries but the logits have %td rows",
                             o.loss_name, c.labels.size(), N);
    if (!has_labels && o.alpha < 1 && N > 0)
        return status::error(errc::invalid_argument,
                             "%s: no labels given but alpha = %s; the hard-label term needs one label per row "
                             "(without labels, alpha must be 1: pure distillation)",
                             o.loss_name, format_number(o.alpha).c_str());
    if (c.grad.data && !same_shape(c.grad, c.student))
        return status::error(errc::invalid_argument, "%s: gradient buffer is %s but student logits are %s; they must match",
                             o.loss_name, format_shape(c.grad).c_str(), format_shape(c.student).c_str());
    if (views_overlap(c.grad, c.student) || views_overlap(c.grad, c.teacher))
        return status::error(errc::invalid_argument,
                             "%s: the gradient buffer overlaps the %s logits; it must be a separate buffer",
                             o.loss_name, views_overlap(c.grad, c.student) ? "student" : "teacher");
    if (!c.rows.mask.empty() && static_cast<std::ptrdiff_t>(c.rows.mask.size()) != N)
        return status::error(errc::invalid_argument, "%s: per_row.mask has %zu entries but the logits have %td rows",
                             o.loss_name, c.rows.mask.size(), N);
    if (!c.rows.losses.empty() && static_cast<std::ptrdiff_t>(c.rows.losses.size()) != N)
        return status::error(errc::invalid_argument,
                             "%s: per_row.losses has %zu entries but the logits have %td rows",
                             o.loss_name, c.rows.losses.size(), N);
    if (o.reduce == reduction::none && c.rows.losses.empty() && N > 0)
        return status::error(errc::invalid_argument,
                             "%s: reduction::none needs per_row.losses with one entry per row (%td)", o.loss_name, N);
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
template <class T, class Label>
status count_rows(const loss_config& o, const loss_call<T, Label>& c, std::int64_t& counted) noexcept {
    const auto N = c.student.rows, C = c.student.cols;
    counted = 0;
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        if (!c.labels.empty()) {
            const auto y = static_cast<std::int64_t>(c.labels[static_cast<std::size_t>(i)]);
            if (y == o.ignore_index) continue;
            if (y < 0 || y >= C)
                return status::error(errc::out_of_range,
                                     "%s: label %lld at row %td is out of range: classes are [0, %td) and "
                                     "ignore_index is %lld",
                                     o.loss_name, static_cast<long long>(y), i, C,
                                     static_cast<long long>(o.ignore_index));
        }
        if (row_counts(c, o.ignore_index, i)) ++counted;
    }
    return {};
}

// The opt-in scan: NaN and +inf are errors; -inf is a legal class mask.
template <class T>
status check_finite(const char* loss_name, const char* which, const matrix_view<const T>& x) noexcept {
    for (std::ptrdiff_t i = 0; i < x.rows; ++i) {
        const T* row = x.row(i);
        for (std::ptrdiff_t j = 0; j < x.cols; ++j)
            if (std::isnan(row[j]) || row[j] == std::numeric_limits<T>::infinity())
                return status::error(errc::invalid_argument,
                                     "%s: %s logits: element (%td, %td) is %s (check_finite rejects NaN and "
                                     "+inf; -inf is a legal class mask)",
                                     loss_name, which, i, j, std::isnan(row[j]) ? "NaN" : "+inf");
    }
    return {};
}

// Rows are cut into at most this many pieces, whatever the executor: the pieces' sums live on the
// stack and are added in order, which fixes the reduction order.
inline constexpr std::ptrdiff_t max_pieces = 64;

struct piece_result {
    double soft = 0, hard = 0;
    std::ptrdiff_t bad_row = -1;  // first row whose softmax is undefined (all -inf)
    bool bad_teacher = false;
};

// Everything one loss call needs once it has been validated.
template <class T, class Label>
struct loss_plan {
    const loss_config* options;
    const loss_call<T, Label>* call;
    row_terms terms;
    double soft_loss_weight = 0, hard_loss_weight = 0;  // alpha T^2 (or alpha) and 1 - alpha
    double weight = 1;                                  // the reduction, as a factor on every row
    std::int64_t counted = 0;                           // rows taking part
    std::ptrdiff_t piece_count = 0;
    std::array<piece_result, max_pieces> pieces{};
#if !defined(DISTILL_NO_SIMD)
    // Few long rows: each row is cut into `segments` runs of blocks, so that the pieces of work stay
    // max_pieces even when the rows are fewer (an LLM vocabulary over a handful of tokens).
    std::ptrdiff_t segments = 1;
    std::ptrdiff_t blocks = 0;  // per row
    std::array<simd::row_stats, max_pieces> segment_stats{};
    std::array<simd::row_stats, max_pieces> merged{};  // per row
    std::array<std::array<double, simd::max_blocks>, max_pieces> teacher_max_at{};  // per row
#endif
};

// Adds row i's result to its piece and returns the row's (weighted-by-alpha) loss; an undefined
// row is recorded for the error instead.
template <class T, class Label>
double record_row(const loss_plan<T, Label>& plan, piece_result& r, std::ptrdiff_t i, const row_result& rr) noexcept {
    if (!rr.student_defined || !rr.teacher_defined) {
        if (r.bad_row < 0) r.bad_row = i, r.bad_teacher = !rr.teacher_defined;
        return 0;
    }
    const double soft = plan.terms.soft ? plan.soft_loss_weight * rr.kl : 0.0;
    const double hard = plan.terms.hard ? plan.hard_loss_weight * rr.ce : 0.0;
    r.soft += soft;
    r.hard += hard;
    return soft + hard;
}

// Runs pieces [first, last) of the plan. Not inlined into the executor's code on purpose: compiled
// once, its floating-point operations (and the compiler's choices to fuse them into FMAs) are the
// same whichever executor calls it, which is what makes results bitwise independent of it.
template <class T, class Label>
[[gnu::noinline]] void run_pieces(loss_plan<T, Label>& plan, std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
    const loss_call<T, Label>& c = *plan.call;
    const loss_config& o = *plan.options;
    const auto N = c.student.rows, C = c.student.cols;
    const row_terms& k = plan.terms;
    for (std::ptrdiff_t p = first; p < last; ++p) {
        piece_result& r = plan.pieces[static_cast<std::size_t>(p)];
        for (std::ptrdiff_t i = p * N / plan.piece_count; i < (p + 1) * N / plan.piece_count; ++i) {
            T* g = c.grad.data ? c.grad.row(i) : nullptr;
            const auto at = static_cast<std::size_t>(i);
            double row_loss = 0;
            if (!row_counts(c, o.ignore_index, i)) {
                if (g) std::fill(g, g + C, T(0));
            } else {
                const std::int64_t y = k.hard ? static_cast<std::int64_t>(c.labels[at]) : -1;
                row_loss = record_row(
                    plan, r, i, run_row(c.student.row(i), c.teacher.data ? c.teacher.row(i) : nullptr, y, C, k, g));
            }
            if (!c.rows.losses.empty()) c.rows.losses[at] = row_loss;
        }
    }
}

#if !defined(DISTILL_NO_SIMD)
// Segment work item w = row * segments + segment: its first and last block.
template <class T, class Label>
std::pair<std::ptrdiff_t, std::ptrdiff_t> segment_blocks(const loss_plan<T, Label>& plan, std::ptrdiff_t w) noexcept {
    const std::ptrdiff_t j = w % plan.segments;
    return {j * plan.blocks / plan.segments, (j + 1) * plan.blocks / plan.segments};
}

// Sweep 1 of segment items [first, last). Not inlined, for the reason run_pieces gives.
template <class T, class Label>
[[gnu::noinline]] void run_segment_statistics(loss_plan<T, Label>& plan, std::ptrdiff_t first,
                                              std::ptrdiff_t last) noexcept {
    const loss_call<T, Label>& c = *plan.call;
    for (std::ptrdiff_t w = first; w < last; ++w) {
        const std::ptrdiff_t i = w / plan.segments;
        if (!row_counts(c, plan.options->ignore_index, i)) continue;
        const auto [b0, b1] = segment_blocks(plan, w);
        plan.segment_stats[static_cast<std::size_t>(w)] = simd::row_statistics<xsimd::default_arch>(
            c.student.row(i), c.teacher.data ? c.teacher.row(i) : nullptr, c.student.cols, plan.terms,
            c.grad.data ? c.grad.row(i) : nullptr, b0, b1, plan.teacher_max_at[static_cast<std::size_t>(i)].data());
    }
}

// Sweep 2 of segment items [first, last).
template <class T, class Label>
[[gnu::noinline]] void run_segment_gradients(loss_plan<T, Label>& plan, std::ptrdiff_t first,
                                             std::ptrdiff_t last) noexcept {
    const loss_call<T, Label>& c = *plan.call;
    const std::ptrdiff_t C = c.student.cols;
    const std::ptrdiff_t block = simd::block_length(C, xsimd::batch<T, xsimd::default_arch>::size);
    for (std::ptrdiff_t w = first; w < last; ++w) {
        const std::ptrdiff_t i = w / plan.segments;
        const auto [b0, b1] = segment_blocks(plan, w);
        T* g = c.grad.row(i);
        const piece_result& r = plan.pieces[static_cast<std::size_t>(i)];
        if (!row_counts(c, plan.options->ignore_index, i) || r.bad_row >= 0) {  // ignored rows get zeros; refused rows are left
            if (r.bad_row < 0) std::fill(g + std::min(C, b0 * block), g + std::min(C, b1 * block), T(0));
            continue;
        }
        const std::int64_t y = plan.terms.hard ? static_cast<std::int64_t>(c.labels[static_cast<std::size_t>(i)]) : -1;
        simd::row_gradient<xsimd::default_arch>(c.student.row(i), y, C, plan.terms,
                                                plan.merged[static_cast<std::size_t>(i)], g, b0, b1,
                                                plan.teacher_max_at[static_cast<std::size_t>(i)].data());
    }
}

// Between the sweeps: each row's segments merged in order, its loss, its contribution.
template <class T, class Label>
void merge_segments(loss_plan<T, Label>& plan) noexcept {
    const loss_call<T, Label>& c = *plan.call;
    for (std::ptrdiff_t i = 0; i < c.student.rows; ++i) {
        piece_result& r = plan.pieces[static_cast<std::size_t>(i)];
        const auto at = static_cast<std::size_t>(i);
        double row_loss = 0;
        if (row_counts(c, plan.options->ignore_index, i)) {
            simd::row_stats st = plan.segment_stats[static_cast<std::size_t>(i * plan.segments)];
            for (std::ptrdiff_t j = 1; j < plan.segments; ++j)
                st = simd::merge(st, plan.segment_stats[static_cast<std::size_t>(i * plan.segments + j)], plan.terms);
            plan.merged[at] = st;
            const std::int64_t y = plan.terms.hard ? static_cast<std::int64_t>(c.labels[at]) : -1;
            row_loss = record_row(plan, r, i, simd::row_loss(st, c.student.row(i), y, c.student.cols, plan.terms));
        }
        if (!c.rows.losses.empty()) c.rows.losses[at] = row_loss;
    }
}
#endif

// Validates the call and fills the plan.
template <class T, class Label>
status make_plan(const loss_config& o, const loss_call<T, Label>& c, loss_plan<T, Label>& plan) noexcept {
    std::int64_t& counted = plan.counted;
    if (status s = check_options(o); !s) return s;
    if (status s = check_shapes(o, c); !s) return s;
    if (status s = count_rows(o, c, counted); !s) return s;
    if (o.check_finite) {
        if (status s = check_finite(o.loss_name, "student", c.student); !s) return s;
        if (c.teacher.data && o.alpha > 0)
            if (status s = check_finite(o.loss_name, "teacher", c.teacher); !s) return s;
    }
    double& weight = plan.weight;
    if (o.reduce == reduction::mean) weight = counted > 0 ? 1.0 / static_cast<double>(counted) : 0.0;
    if (o.reduce == reduction::divide_by) weight = 1.0 / o.normalizer;

    row_terms& k = plan.terms;
    k.soft = o.alpha > 0;
    k.hard = o.alpha < 1 && !c.labels.empty();
    // Without a soft term the temperature plays no part: r = softmax(s) is then computed as q at T = 1.
    k.temperature = k.soft ? o.temperature : 1.0;
    k.inv_temperature = 1.0 / k.temperature;
    k.integer_temperature = whole_temperature(k.temperature);
    k.smoothing = k.hard ? o.label_smoothing : 0.0;
    plan.soft_loss_weight = o.alpha * (o.scale_by_t_squared ? o.temperature * o.temperature : 1.0);
    plan.hard_loss_weight = 1 - o.alpha;
    // d(T^2 KL)/ds = T (q - p) and d KL/ds = (q - p) / T  (docs/math.md).
    k.soft_grad = weight * plan.soft_loss_weight * k.inv_temperature;
    k.hard_grad = weight * plan.hard_loss_weight;
    plan.options = &o;
    plan.call = &c;
    plan.piece_count = std::min<std::ptrdiff_t>(c.student.rows, max_pieces);
#if !defined(DISTILL_NO_SIMD)
    // The cut depends on the shape alone, never on the executor: results stay bitwise the same.
    plan.blocks = simd::row_blocks<xsimd::default_arch, T>(c.student.cols);
    if (c.student.rows > 0 && c.student.rows < max_pieces && plan.blocks > 1)
        plan.segments = std::min(plan.blocks, max_pieces / c.student.rows);
#endif
    return {};
}

// Adds the pieces up in their fixed order.
template <class T, class Label>
status finish_plan(const loss_plan<T, Label>& plan, loss_value& out) noexcept {
    const loss_config& o = *plan.options;
    double soft_sum = 0, hard_sum = 0;
    for (std::ptrdiff_t p = 0; p < plan.piece_count; ++p) {
        const piece_result& r = plan.pieces[static_cast<std::size_t>(p)];
        if (r.bad_row >= 0)
            return status::error(errc::invalid_argument,
                                 "%s: row %td of the %s logits is entirely -inf (every class masked), so its "
                                 "softmax is undefined",
                                 o.loss_name, r.bad_row, r.bad_teacher ? "teacher" : "student");
        soft_sum += r.soft;
        hard_sum += r.hard;
    }
    out.soft = plan.weight * soft_sum;
    out.hard = plan.weight * hard_sum;
    out.total = out.soft + out.hard;
    out.rows_counted = plan.counted;
    return {};
}

template <class T, class Label, class Exec>
status run_loss(Exec&& exec, const loss_config& o, const loss_call<T, Label>& c, loss_value& out) noexcept {
    out = {};
    loss_plan<T, Label> plan;
    if (status s = make_plan(o, c, plan); !s) return s;
#if !defined(DISTILL_NO_SIMD)
    if (plan.segments > 1) {
        const std::ptrdiff_t items = c.student.rows * plan.segments;
        exec(std::ptrdiff_t{0}, items, [&plan](std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
            run_segment_statistics(plan, first, last);
        });
        merge_segments(plan);
        if (c.grad.data)
            exec(std::ptrdiff_t{0}, items, [&plan](std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
                run_segment_gradients(plan, first, last);
            });
        return finish_plan(plan, out);
    }
#endif
    if (plan.piece_count > 0)
        exec(std::ptrdiff_t{0}, plan.piece_count,
             [&plan](std::ptrdiff_t first, std::ptrdiff_t last) noexcept { run_pieces(plan, first, last); });
    return finish_plan(plan, out);
}

}  // namespace distill::detail
