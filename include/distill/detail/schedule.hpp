// distill/detail/schedule.hpp - from a validated loss call to row kernels and back to one number.
//
// Planning folds the reduction and the options into the row kernels' constants (row_terms). The
// schedule then cuts the work into pieces that do not depend on the executor: up to 64 pieces of
// whole rows, or, when the rows are fewer than 64 and long, each row cut into segments of blocks
// whose sweeps run as separate parallel phases with the segments' statistics merged in a fixed
// order between them. The pieces' sums are added in their fixed order, so results are bitwise
// identical for any thread count. The same scheduler drives both backends (detail/backend.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

#include "../reduction.hpp"
#include "../status.hpp"
#include "backend.hpp"
#include "loss_call.hpp"
#include "row_statistics.hpp"
#include "validation.hpp"

namespace distill::detail {

// Rows are cut into at most this many pieces, whatever the executor: the pieces' sums live on the
// stack and are added in order, which fixes the reduction order.
inline constexpr std::ptrdiff_t max_pieces = 64;
// Blocks per row at most (the per-block teacher maxima of the statistics-first kernel live on the stack).
inline constexpr std::ptrdiff_t max_row_blocks = 64;

// The weights a row's terms are multiplied by.
struct loss_weights {
    double soft = 0, hard = 0;  // alpha T^2 (or alpha) and 1 - alpha
    double reduction = 1;       // the reduction, as a factor on every row
};

// Fills the kernels' constants and the weights of a validated call whose terms `soft` and `hard` are
// present and of which `counted` rows take part (the soft and hard flags of k are set here).
inline void plan_terms(const loss_config& o, bool soft, bool hard, std::int64_t counted, row_terms& k,
                       loss_weights& w) noexcept {
    k.soft = soft;
    k.hard = hard;
    w.reduction = 1;
    if (o.reduce == reduction::mean) w.reduction = counted > 0 ? 1.0 / static_cast<double>(counted) : 0.0;
    if (o.reduce == reduction::divide_by) w.reduction = 1.0 / o.normalizer;

    // Without a soft term the temperature plays no part: r = softmax(s) is then computed as q at T = 1.
    k.temperature = k.soft ? o.temperature : 1.0;
    k.inv_temperature = 1.0 / k.temperature;
    k.teacher_inv_temperature = o.teacher == teacher_input::logits ? k.inv_temperature : 1.0;
    k.teacher_probabilities = o.teacher == teacher_input::probabilities;
    k.integer_temperature = whole_temperature(k.temperature);
    k.divergence = o.divergence;
    k.params = o.params;
    k.smoothing = k.hard ? o.label_smoothing : 0.0;
    const double alpha = o.soft_term && o.hard_term ? o.alpha : 1.0;
    w.soft = alpha * (o.scale_by_t_squared ? o.temperature * o.temperature : 1.0);
    w.hard = o.soft_term && o.hard_term ? 1 - o.alpha : 1.0;
    // d(T^2 D)/ds = T dD/dx and d D/ds = (dD/dx) / T, x = s / T (docs/math.md).
    k.soft_grad = w.reduction * w.soft * k.inv_temperature;
    k.hard_grad = w.reduction * w.hard;
}

struct piece_result {
    double soft = 0, hard = 0;
    std::ptrdiff_t bad_row = -1;  // first row whose softmax is undefined (all -inf)
    bool bad_teacher = false;
};

// Everything one loss call needs once it has been validated.
template <class Isa, class T, class Label>
struct loss_plan {
    using kernels = backend<Isa>;
    const loss_config* options;
    const loss_call<T, Label>* call;
    row_terms terms;
    loss_weights weights;                               // alpha, T^2 and the reduction
    std::int64_t counted = 0;                           // rows taking part
    bool needs_sums = false;                            // a normalise-first divergence: sweep 2 sums
    std::ptrdiff_t piece_count = 0;
    std::array<piece_result, max_pieces> pieces{};
    // Few long rows: each row is cut into `segments` runs of blocks, so that the pieces of work stay
    // max_pieces even when the rows are fewer (an LLM vocabulary over a handful of tokens).
    std::ptrdiff_t segments = 1;
    std::ptrdiff_t blocks = 0;  // per row
    std::array<row_stats, max_pieces> segment_stats{};
    std::array<divergence_sums<double>, max_pieces> segment_sums{};
    std::array<row_stats, max_pieces> merged{};          // per row
    std::array<divergence_value, max_pieces> values{};   // per row
    std::array<std::array<double, max_row_blocks>, max_pieces> teacher_max_at{};  // per row

    std::int64_t label_of(std::ptrdiff_t i) const noexcept {
        return terms.needs_label() ? static_cast<std::int64_t>(call->labels[static_cast<std::size_t>(i)]) : -1;
    }
    const T* teacher_row(std::ptrdiff_t i) const noexcept { return call->has_teacher ? call->teacher.row(i) : nullptr; }
    T* grad_row(std::ptrdiff_t i) const noexcept { return call->has_grad ? call->grad.row(i) : nullptr; }
    bool counts(std::ptrdiff_t i) const noexcept { return row_counts(*call, options->ignore_index, i); }
};

// Adds row i's result to its piece and returns the row's (weighted-by-alpha) loss; an undefined
// row is recorded for the error instead.
template <class Isa, class T, class Label>
double record_row(const loss_plan<Isa, T, Label>& plan, piece_result& r, std::ptrdiff_t i,
                  const row_result& rr) noexcept {
    if (!rr.student_defined || !rr.teacher_defined) {
        if (r.bad_row < 0) r.bad_row = i, r.bad_teacher = !rr.teacher_defined;
        return 0;
    }
    const double soft = plan.terms.soft ? plan.weights.soft * rr.divergence : 0.0;
    const double hard = plan.terms.hard ? plan.weights.hard * rr.ce : 0.0;
    r.soft += soft;
    r.hard += hard;
    return soft + hard;
}

// Runs pieces [first, last) of the plan, each row whole. Not inlined into the executor's code on
// purpose: compiled once, its floating-point operations (and the compiler's choices to fuse them
// into FMAs) are the same whichever executor calls it, which is what makes results bitwise
// independent of it.
template <class Isa, class T, class Label>
[[gnu::noinline]] void run_pieces(loss_plan<Isa, T, Label>& plan, std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
    const loss_call<T, Label>& c = *plan.call;
    const auto N = c.student.rows, C = c.student.cols;
    for (std::ptrdiff_t p = first; p < last; ++p) {
        piece_result& r = plan.pieces[static_cast<std::size_t>(p)];
        for (std::ptrdiff_t i = p * N / plan.piece_count; i < (p + 1) * N / plan.piece_count; ++i) {
            T* g = plan.grad_row(i);
            double row_loss = 0;
            if (!plan.counts(i)) {
                if (g) std::fill(g, g + C, T(0));
            } else {
                row_loss = record_row(plan, r, i,
                                      backend<Isa>::fused_row(c.student.row(i), plan.teacher_row(i), plan.label_of(i),
                                                              C, plan.terms, g));
            }
            if (!c.rows.losses.empty()) c.rows.losses[static_cast<std::size_t>(i)] = row_loss;
        }
    }
}

// Segment work item w = row * segments + segment: its row, first and last block.
struct segment_item {
    std::ptrdiff_t row, first, last;
};
template <class Isa, class T, class Label>
segment_item segment_of(const loss_plan<Isa, T, Label>& plan, std::ptrdiff_t w) noexcept {
    const std::ptrdiff_t j = w % plan.segments;
    return {w / plan.segments, j * plan.blocks / plan.segments, (j + 1) * plan.blocks / plan.segments};
}

// Whether row i's later sweeps run: it takes part and its softmaxes exist.
template <class Isa, class T, class Label>
bool row_defined(const loss_plan<Isa, T, Label>& plan, std::ptrdiff_t i) noexcept {
    const row_stats& st = plan.merged[static_cast<std::size_t>(i)];
    return plan.counts(i) && student_defined(st) && teacher_defined(st, plan.terms);
}

// Sweep 1 of segment items [first, last). Not inlined, for the reason run_pieces gives.
template <class Isa, class T, class Label>
[[gnu::noinline]] void run_segment_statistics(loss_plan<Isa, T, Label>& plan, std::ptrdiff_t first,
                                              std::ptrdiff_t last) noexcept {
    const loss_call<T, Label>& c = *plan.call;
    for (std::ptrdiff_t w = first; w < last; ++w) {
        const segment_item s = segment_of(plan, w);
        if (!plan.counts(s.row)) continue;
        plan.segment_stats[static_cast<std::size_t>(w)] = backend<Isa>::statistics(
            c.student.row(s.row), plan.teacher_row(s.row), c.student.cols, plan.terms, plan.grad_row(s.row), s.first,
            s.last, plan.teacher_max_at[static_cast<std::size_t>(s.row)].data());
    }
}

// Sweep 2 (normalise-first divergences) of segment items [first, last).
template <class Isa, class T, class Label>
[[gnu::noinline]] void run_segment_sums(loss_plan<Isa, T, Label>& plan, std::ptrdiff_t first,
                                        std::ptrdiff_t last) noexcept {
    const loss_call<T, Label>& c = *plan.call;
    for (std::ptrdiff_t w = first; w < last; ++w) {
        const segment_item s = segment_of(plan, w);
        if (!row_defined(plan, s.row)) continue;
        const auto at = static_cast<std::size_t>(s.row);
        plan.segment_sums[static_cast<std::size_t>(w)] = backend<Isa>::sums(
            c.student.row(s.row), plan.teacher_row(s.row), plan.label_of(s.row), c.student.cols, plan.terms,
            plan.merged[at], plan.grad_row(s.row), plan.teacher_max_at[at].data(), s.first, s.last);
    }
}

// The gradient sweep of segment items [first, last).
template <class Isa, class T, class Label>
[[gnu::noinline]] void run_segment_gradients(loss_plan<Isa, T, Label>& plan, std::ptrdiff_t first,
                                             std::ptrdiff_t last) noexcept {
    const loss_call<T, Label>& c = *plan.call;
    const std::ptrdiff_t C = c.student.cols;
    const std::ptrdiff_t block = backend<Isa>::template block_columns<T>(C);
    for (std::ptrdiff_t w = first; w < last; ++w) {
        const segment_item s = segment_of(plan, w);
        T* g = c.grad.row(s.row);
        if (!plan.counts(s.row)) {  // ignored rows get zeros
            std::fill(g + std::min(C, s.first * block), g + std::min(C, s.last * block), T(0));
            continue;
        }
        if (!row_defined(plan, s.row)) continue;  // refused rows are left as they are
        const auto at = static_cast<std::size_t>(s.row);
        backend<Isa>::gradient(c.student.row(s.row), plan.teacher_row(s.row), plan.label_of(s.row), C, plan.terms,
                               plan.merged[at], plan.values[at], g, s.first, s.last, plan.teacher_max_at[at].data());
    }
}

// Between the statistics sweep and the next: each row's segments merged in order.
template <class Isa, class T, class Label>
void merge_segment_statistics(loss_plan<Isa, T, Label>& plan) noexcept {
    for (std::ptrdiff_t i = 0; i < plan.call->student.rows; ++i) {
        if (!plan.counts(i)) continue;
        row_stats st = plan.segment_stats[static_cast<std::size_t>(i * plan.segments)];
        for (std::ptrdiff_t j = 1; j < plan.segments; ++j)
            st = merge(st, plan.segment_stats[static_cast<std::size_t>(i * plan.segments + j)], plan.terms);
        plan.merged[static_cast<std::size_t>(i)] = st;
    }
}

// Before the gradient sweep: each row's sums merged in order, its loss, its contribution.
template <class Isa, class T, class Label>
void finish_segmented_rows(loss_plan<Isa, T, Label>& plan) noexcept {
    const loss_call<T, Label>& c = *plan.call;
    for (std::ptrdiff_t i = 0; i < c.student.rows; ++i) {
        const auto at = static_cast<std::size_t>(i);
        double row_loss = 0;
        if (plan.counts(i)) {
            divergence_sums<double> sums = plan.segment_sums[static_cast<std::size_t>(i * plan.segments)];
            for (std::ptrdiff_t j = 1; j < plan.segments; ++j)
                sums = merge(sums, plan.segment_sums[static_cast<std::size_t>(i * plan.segments + j)]);
            row_loss = record_row(plan, plan.pieces[at], i,
                                  backend<Isa>::row_loss(plan.merged[at], sums, c.student.row(i), plan.teacher_row(i),
                                                         plan.label_of(i), c.student.cols, plan.terms, plan.values[at],
                                                         plan.grad_row(i), plan.teacher_max_at[at].data()));
        }
        if (!c.rows.losses.empty()) c.rows.losses[at] = row_loss;
    }
}

// Validates the call and fills the plan.
template <class Isa, class T, class Label>
status make_plan(const loss_config& o, const loss_call<T, Label>& c, loss_plan<Isa, T, Label>& plan) noexcept {
    if (status s = check_options(o); !s) return s;
    if (status s = check_shapes(o, c); !s) return s;
    if (status s = check_losses_output(o, c); !s) return s;
    if (status s = count_rows(o, c, c.student.cols, plan.counted); !s) return s;
    row_terms& k = plan.terms;
    k.soft = soft_active(o) && c.has_teacher;
    k.hard = hard_active(o) && !c.labels.empty();
    if (o.check_finite) {
        if (status s = check_finite(o.loss_name, "student logits", c.student); !s) return s;
        if (k.soft)
            if (status s = check_finite(o.loss_name, o.teacher == teacher_input::logits ? "teacher logits" : "teacher values",
                                        c.teacher, o.teacher == teacher_input::probabilities);
                !s)
                return s;
    }
    plan_terms(o, k.soft, k.hard, plan.counted, k, plan.weights);
    plan.options = &o;
    plan.call = &c;
    plan.needs_sums = k.soft && !backend<Isa>::statistics_first(k);
    plan.piece_count = std::min<std::ptrdiff_t>(c.student.rows, max_pieces);
    // The cut depends on the shape alone, never on the executor: results stay bitwise the same.
    plan.blocks = backend<Isa>::template row_blocks<T>(c.student.cols);
    // Decoupled KD rows stay whole: a row whose non-target mass underflows is redone in double.
    if (c.student.rows > 0 && c.student.rows < max_pieces && plan.blocks > 1 &&
        !(k.soft && k.divergence == divergence_kind::decoupled_kd))
        plan.segments = std::min(plan.blocks, max_pieces / c.student.rows);
    return {};
}

// Adds the pieces up in their fixed order.
template <class Isa, class T, class Label>
status finish_plan(const loss_plan<Isa, T, Label>& plan, loss_value& out) noexcept {
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
    out.soft = plan.weights.reduction * soft_sum;
    out.hard = plan.weights.reduction * hard_sum;
    out.total = out.soft + out.hard;
    out.rows_counted = plan.counted;
    return {};
}

template <class Isa, class T, class Label, class Exec>
status run_loss(Exec&& exec, const loss_config& o, const loss_call<T, Label>& c, loss_value& out) noexcept {
    out = {};
    loss_plan<Isa, T, Label> plan;
    if (status s = make_plan(o, c, plan); !s) return s;
    if (plan.segments > 1) {
        const std::ptrdiff_t items = c.student.rows * plan.segments;
        exec(std::ptrdiff_t{0}, items, [&plan](std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
            run_segment_statistics(plan, first, last);
        });
        merge_segment_statistics(plan);
        if (plan.needs_sums)
            exec(std::ptrdiff_t{0}, items, [&plan](std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
                run_segment_sums(plan, first, last);
            });
        finish_segmented_rows(plan);
        if (c.has_grad)
            exec(std::ptrdiff_t{0}, items, [&plan](std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
                run_segment_gradients(plan, first, last);
            });
        return finish_plan(plan, out);
    }
    if (plan.piece_count > 0)
        exec(std::ptrdiff_t{0}, plan.piece_count,
             [&plan](std::ptrdiff_t first, std::ptrdiff_t last) noexcept { run_pieces(plan, first, last); });
    return finish_plan(plan, out);
}

}  // namespace distill::detail
