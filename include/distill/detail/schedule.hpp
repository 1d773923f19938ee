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
#include <optional>
#include <span>
#include <utility>

#include "../reduction.hpp"
#include "../status.hpp"
#include "backend.hpp"
#include "loss_call.hpp"
#include "row_statistics.hpp"
#include "storage_type.hpp"
#include "validation.hpp"
#include "../workspace.hpp"

namespace distill::detail {

// Rows are cut into at most this many pieces, whatever the executor: the pieces' sums live on the
// stack and are added in order, which fixes the reduction order.
inline constexpr std::ptrdiff_t max_pieces = 64;
// Blocks per row at most (the per-block teacher maxima of the statistics-first kernel live on the stack).
inline constexpr std::ptrdiff_t max_row_blocks = 64;
// A row of several blocks is cut into this many segments at most, by its length alone: its
// statistics are gathered per segment and merged in order, whether the segments run on different
// threads (few rows) or one after another (many rows). So a row's bits never depend on the other
// rows of the call, nor on the thread count.
inline constexpr std::ptrdiff_t max_row_segments = 8;
// Rows split into segments that run as separate work items: at most this many (max_pieces items).
inline constexpr std::ptrdiff_t max_split_rows = max_pieces / 2;

// The weights a row's terms are multiplied by.
struct loss_weights {
    double soft = 0, hard = 0;  // alpha T^2 (or alpha) and 1 - alpha
    double reduction = 1;       // the reduction, as a factor on every row (of the soft term)
    double hard_reduction = 1;  // the same for the hard term, whose mean divides by the targets' class weights
};

// The kernels' constants and the reduction's weights of a validated call whose counted rows weigh
// weight_sum in all (their count without row weights) and hard_weight_sum with their targets' class
// weights; which terms are active is the caller's (a term needs its inputs).
template <class T>
void plan_terms(const loss_config& o, bool soft, bool hard, double weight_sum, double hard_weight_sum, row_terms& k,
                loss_weights& w) noexcept {
    k.soft = soft;
    k.hard = hard;
    w.reduction = 1;
    if (o.reduce == reduction::mean) w.reduction = weight_sum > 0 ? 1.0 / weight_sum : 0.0;
    if (o.reduce == reduction::divide_by) w.reduction = 1.0 / o.normalizer;
    w.hard_reduction = w.reduction;
    if (o.reduce == reduction::mean && o.class_weights) w.hard_reduction = hard_weight_sum > 0 ? 1.0 / hard_weight_sum : 0.0;

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
    k.hard_grad = w.hard_reduction * w.hard;
    if (k.hard && o.class_weights) {
        k.class_weights = o.class_weights;
        k.class_weight_sum = 0;
        for (std::ptrdiff_t j = 0; j < o.class_weight_count; ++j)
            k.class_weight_sum += static_cast<double>(static_cast<const compute_t<T>*>(o.class_weights)[j]);
    }
}

// A piece's sums, and its first row whose softmax is undefined (all -inf), or -1. No default member
// values: a plan holds 64 pieces (2 KB), and setting them all on every call, where a small call uses
// one, was a fifth of that call's cost; the planner starts the pieces it uses from `fresh_piece`.
struct piece_result {
    double soft, hard;
    std::ptrdiff_t bad_row;
    bool bad_teacher;
};
inline constexpr piece_result fresh_piece{0, 0, -1, false};

// What the rows split into segments keep between the phases.
struct split_row_state {
    std::array<row_stats, max_pieces> segment_stats{};
    std::array<divergence_sums<double>, max_pieces> segment_sums{};
    std::array<row_stats, max_split_rows> merged{};          // per row
    std::array<divergence_value, max_split_rows> values{};   // per row
    std::array<std::array<block_maxima, max_row_blocks>, max_split_rows> maxima{};  // per row
};

// Everything one loss call needs once it has been validated.
template <class Isa, class T, class Label, class G>
struct loss_plan {
    using kernels = backend<Isa>;
    const loss_config* options;
    const loss_call<T, Label, G>* call;
    row_terms terms;
    loss_weights weights;                               // alpha, T^2 and the reduction
    std::int64_t counted = 0;                           // rows taking part
    double weight_sum = 0;                              // their weights' sum
    double hard_weight_sum = 0;                         // and times their targets' class weights
    bool needs_sums = false;                            // a normalise-first divergence: sweep 2 sums
    std::ptrdiff_t piece_count = 0;
    std::array<piece_result, max_pieces> pieces;  // the first piece_count, started by make_plan
    // Each row is cut into `segments` runs of blocks (by its length alone). With few rows the
    // segments run as separate work items (`split_rows`), so that an LLM vocabulary over a handful
    // of tokens still keeps every thread busy.
    std::ptrdiff_t segments = 1;
    std::ptrdiff_t blocks = 0;  // per row
    bool split_rows = false;
    // The split rows' state (42 KB), constructed by make_plan for split calls only: zeroing it on
    // every call was most of the cost of a small call (a 1 x 10 loss).
    std::optional<split_row_state> split;
    // The caller's workspace, when this call uses it (statistics-first rows of several blocks with a
    // gradient): sweep 1 parks e_q in a slot of it for the gradient sweep. A split row holds its own
    // slot through the call (split_exps, null where none was free); pieces take one while they run.
    workspace* exps_workspace = nullptr;
    std::array<compute_t<T>*, max_split_rows> split_exps;  // set by make_plan for split calls only

    std::int64_t label_of(std::ptrdiff_t i) const noexcept {
        return terms.needs_label() ? static_cast<std::int64_t>(call->labels[static_cast<std::size_t>(i)]) : -1;
    }
    const T* teacher_row(std::ptrdiff_t i) const noexcept { return call->has_teacher ? call->teacher.row(i) : nullptr; }
    G* grad_row(std::ptrdiff_t i) const noexcept { return call->has_grad ? call->grad.row(i) : nullptr; }
    bool counts(std::ptrdiff_t i) const noexcept { return row_counts(*call, options->ignore_index, i); }
    // Row i's kernel constants: the call's, with the gradient scaled by the row's weight and the
    // class weight of its label, written into `weighted`; without either weight, the call's own,
    // not copied (on a row of ten classes the copy, a call to memcpy, took about 20 instructions).
    const row_terms& terms_of(std::ptrdiff_t i, row_terms& weighted) const noexcept {
        if (call->rows.weights.empty() && !terms.class_weights) return terms;
        weighted = terms;
        const double w = row_weight(*call, i);
        weighted.soft_grad *= w;
        weighted.hard_grad *= w;
        if (weighted.class_weights && weighted.hard) weighted.label_weight = label_class_weight(*options, *call, i);
        return weighted;
    }
};

// Adds row i's result to its piece and returns the row's (weighted-by-alpha) loss; an undefined
// row is recorded for the error instead, naming the student when both sides are undefined (as the
// inputs are checked: student first).
template <class Isa, class T, class Label, class G>
double record_row(const loss_plan<Isa, T, Label, G>& plan, piece_result& r, std::ptrdiff_t i,
                  const row_result& rr) noexcept {
    if (!rr.student_defined || !rr.teacher_defined) {
        if (r.bad_row < 0) r.bad_row = i, r.bad_teacher = rr.student_defined;
        return 0;
    }
    const double w = row_weight(*plan.call, i);
    const double soft = plan.terms.soft ? w * (plan.weights.soft * rr.divergence) : 0.0;
    const double hard = plan.terms.hard ? w * (plan.weights.hard * rr.ce) : 0.0;
    r.soft += soft;
    r.hard += hard;
    return soft + hard;
}

// Row i's segment j: its first and last block.
template <class Isa, class T, class Label, class G>
std::pair<std::ptrdiff_t, std::ptrdiff_t> segment_blocks(const loss_plan<Isa, T, Label, G>& plan,
                                                         std::ptrdiff_t j) noexcept {
    return {j * plan.blocks / plan.segments, (j + 1) * plan.blocks / plan.segments};
}

// The statistics and the sums of a row's segments, merged left to right: the one order both ways of
// running the segments use.
inline row_stats merge_in_order(const row_stats* segment, std::ptrdiff_t count, const row_terms& k) noexcept {
    row_stats st = segment[0];
    for (std::ptrdiff_t j = 1; j < count; ++j) st = merge(st, segment[j], k);
    return st;
}
inline divergence_sums<double> merge_in_order(const divergence_sums<double>* segment, std::ptrdiff_t count) noexcept {
    divergence_sums<double> sums = segment[0];
    for (std::ptrdiff_t j = 1; j < count; ++j) sums = merge(sums, segment[j]);
    return sums;
}

// One counted row whose segments run one after another on this thread: the same phases, the same
// merges as when they run as separate work items.
template <class Isa, class T, class Label, class G>
row_result run_segments_in_turn(const loss_plan<Isa, T, Label, G>& plan, std::ptrdiff_t i, G* g,
                                compute_t<T>* student_exps) noexcept {
    using kernels = backend<Isa>;
    const loss_call<T, Label, G>& c = *plan.call;
    const T* s = c.student.row(i);
    const T* t = plan.teacher_row(i);
    const std::int64_t label = plan.label_of(i);
    const std::ptrdiff_t C = c.student.cols;
    row_terms weighted;
    const row_terms& k = plan.terms_of(i, weighted);
    std::array<row_stats, max_row_segments> stats;
    std::array<divergence_sums<double>, max_row_segments> sums{};
    block_maxima maxima[max_row_blocks];
    for (std::ptrdiff_t j = 0; j < plan.segments; ++j) {
        const auto [b0, b1] = segment_blocks(plan, j);
        stats[static_cast<std::size_t>(j)] = kernels::statistics(s, t, C, plan.terms, g, b0, b1, maxima, student_exps);
    }
    const row_stats st = merge_in_order(stats.data(), plan.segments, plan.terms);
    const bool defined = student_defined(st) && teacher_defined(st, plan.terms);
    divergence_sums<double> row_sums{};
    if (plan.needs_sums && defined) {
        for (std::ptrdiff_t j = 0; j < plan.segments; ++j) {
            const auto [b0, b1] = segment_blocks(plan, j);
            sums[static_cast<std::size_t>(j)] = kernels::sums(s, t, label, C, plan.terms, st, g, maxima, b0, b1);
        }
        row_sums = merge_in_order(sums.data(), plan.segments);
    }
    divergence_value value;
    const row_result out = kernels::row_loss(st, row_sums, s, t, label, C, k, value, g, maxima);
    if (g && out.student_defined && out.teacher_defined)
        for (std::ptrdiff_t j = 0; j < plan.segments; ++j) {
            const auto [b0, b1] = segment_blocks(plan, j);
            kernels::gradient(s, t, label, C, k, st, value, g, b0, b1, maxima, student_exps);
        }
    return out;
}

// Short rows side by side (backend::group_kernel): pieces [first, last) as run_pieces runs them,
// but with their counted rows gathered into groups of `lanes`, each run by the group kernel once it
// is full. The rows left at the end of this share of the pieces run one by one through the row
// function: a group costs about what its lanes cost full, which a few rows alone undercut (on
// Zen 5 a row alone cost less than its share of a group until the group was nearly full), and a
// row's bits are the same either way (simd/lane_loss.hpp). A row's result is recorded when it has
// run, in row order as run_pieces records them.
template <class Isa, class T, class Label, class G>
[[gnu::noinline]] void run_pieces_in_groups(loss_plan<Isa, T, Label, G>& plan, std::ptrdiff_t first, std::ptrdiff_t last,
                                            group_function<T, G> group_kernel, row_function<T, G> fused_row) noexcept {
    const loss_call<T, Label, G>& c = *plan.call;
    const auto N = c.student.rows, C = c.student.cols;
    const int lanes = backend<Isa>::template group_rows<T>();
    row_group<T, G> rows;
    rows.terms = &plan.terms;
    rows.count = 0;
    std::ptrdiff_t row[max_group_rows], piece[max_group_rows];  // where each lane's result goes
    const auto run_group = [&] {
        if (rows.count == lanes)
            group_kernel(rows, C);
        else
            for (int r = 0; r < rows.count; ++r)
                rows.result[r] = fused_row(rows.student[r], rows.teacher[r], rows.label[r], C, plan.terms, rows.grad[r]);
        for (int r = 0; r < rows.count; ++r) {
            const double row_loss = record_row(plan, plan.pieces[static_cast<std::size_t>(piece[r])], row[r], rows.result[r]);
            if (!c.rows.losses.empty()) c.rows.losses[static_cast<std::size_t>(row[r])] = row_loss;
        }
        rows.count = 0;
    };
    for (std::ptrdiff_t p = first; p < last; ++p) {
        for (std::ptrdiff_t i = p * N / plan.piece_count; i < (p + 1) * N / plan.piece_count; ++i) {
            G* g = plan.grad_row(i);
            if (!plan.counts(i)) {
                if (g) std::fill(g, g + C, from_double<G>(0));
                if (!c.rows.losses.empty()) c.rows.losses[static_cast<std::size_t>(i)] = 0;
                continue;
            }
            const int lane = rows.count++;
            rows.student[lane] = c.student.row(i);
            rows.teacher[lane] = plan.teacher_row(i);
            rows.label[lane] = plan.label_of(i);
            rows.grad[lane] = g;
            row[lane] = i;
            piece[lane] = p;
            if (rows.count == lanes) run_group();
        }
    }
    run_group();
}

// Runs pieces [first, last) of the plan, each row on one thread. Not inlined into the executor's code on
// purpose: compiled once, its floating-point operations (and the compiler's choices to fuse them
// into FMAs) are the same whichever executor calls it, which is what makes results bitwise
// independent of it.
template <class Isa, class T, class Label, class G>
[[gnu::noinline]] void run_pieces(loss_plan<Isa, T, Label, G>& plan, std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
    const loss_call<T, Label, G>& c = *plan.call;
    const auto N = c.student.rows, C = c.student.cols;
    const row_function<T, G> fused_row = backend<Isa>::template row_kernel<T, G>(C, plan.terms);
    // Short rows run side by side where the backend has a group kernel for them, the call has no row
    // weights (a group's rows share the call's terms) and this share of the pieces may fill a group.
    // The call's rows are tested first: a call of one row, the fixed cost of a call, spends no
    // division on its share.
    const int lanes = backend<Isa>::template group_rows<T>();
    if (N >= lanes && plan.segments == 1 && c.rows.weights.empty() &&
        last * N / plan.piece_count - first * N / plan.piece_count >= lanes)
        if (const group_function<T, G> group_kernel = backend<Isa>::template group_kernel<T, G>(C, plan.terms))
            return run_pieces_in_groups(plan, first, last, group_kernel, fused_row);
    // One slot of the workspace for the rows this thread runs (null: none given, or none free).
    compute_t<T>* const student_exps =
        plan.exps_workspace ? plan.exps_workspace->template acquire<compute_t<T>>() : nullptr;
    row_terms weighted;
    for (std::ptrdiff_t p = first; p < last; ++p) {
        piece_result& r = plan.pieces[static_cast<std::size_t>(p)];
        for (std::ptrdiff_t i = p * N / plan.piece_count; i < (p + 1) * N / plan.piece_count; ++i) {
            G* g = plan.grad_row(i);
            double row_loss = 0;
            if (!plan.counts(i)) {
                if (g) std::fill(g, g + C, from_double<G>(0));
            } else {
                row_loss = record_row(plan, r, i,
                                      plan.segments > 1
                                          ? run_segments_in_turn(plan, i, g, student_exps)
                                          : fused_row(c.student.row(i), plan.teacher_row(i), plan.label_of(i), C,
                                                      plan.terms_of(i, weighted), g));
            }
            if (!c.rows.losses.empty()) c.rows.losses[static_cast<std::size_t>(i)] = row_loss;
        }
    }
    if (plan.exps_workspace) plan.exps_workspace->release(student_exps);
}

// Segment work item w = row * segments + segment: its row, first and last block.
struct segment_item {
    std::ptrdiff_t row, first, last;
};
template <class Isa, class T, class Label, class G>
segment_item segment_of(const loss_plan<Isa, T, Label, G>& plan, std::ptrdiff_t w) noexcept {
    const auto [first, last] = segment_blocks(plan, w % plan.segments);
    return {w / plan.segments, first, last};
}

// Whether row i's later sweeps run: it takes part and its softmaxes exist.
template <class Isa, class T, class Label, class G>
bool row_defined(const loss_plan<Isa, T, Label, G>& plan, std::ptrdiff_t i) noexcept {
    const row_stats& st = plan.split->merged[static_cast<std::size_t>(i)];
    return plan.counts(i) && student_defined(st) && teacher_defined(st, plan.terms);
}

// Sweep 1 of segment items [first, last). Not inlined, for the reason run_pieces gives.
template <class Isa, class T, class Label, class G>
[[gnu::noinline]] void run_segment_statistics(loss_plan<Isa, T, Label, G>& plan, std::ptrdiff_t first,
                                              std::ptrdiff_t last) noexcept {
    const loss_call<T, Label, G>& c = *plan.call;
    for (std::ptrdiff_t w = first; w < last; ++w) {
        const segment_item s = segment_of(plan, w);
        if (!plan.counts(s.row)) continue;
        plan.split->segment_stats[static_cast<std::size_t>(w)] = backend<Isa>::statistics(
            c.student.row(s.row), plan.teacher_row(s.row), c.student.cols, plan.terms, plan.grad_row(s.row), s.first,
            s.last, plan.split->maxima[static_cast<std::size_t>(s.row)].data(), plan.split_exps[static_cast<std::size_t>(s.row)]);
    }
}

// Sweep 2 (normalise-first divergences) of segment items [first, last).
template <class Isa, class T, class Label, class G>
[[gnu::noinline]] void run_segment_sums(loss_plan<Isa, T, Label, G>& plan, std::ptrdiff_t first,
                                        std::ptrdiff_t last) noexcept {
    const loss_call<T, Label, G>& c = *plan.call;
    for (std::ptrdiff_t w = first; w < last; ++w) {
        const segment_item s = segment_of(plan, w);
        if (!row_defined(plan, s.row)) continue;
        const auto at = static_cast<std::size_t>(s.row);
        plan.split->segment_sums[static_cast<std::size_t>(w)] = backend<Isa>::sums(
            c.student.row(s.row), plan.teacher_row(s.row), plan.label_of(s.row), c.student.cols, plan.terms,
            plan.split->merged[at], plan.grad_row(s.row), plan.split->maxima[at].data(), s.first, s.last);
    }
}

// The gradient sweep of segment items [first, last).
template <class Isa, class T, class Label, class G>
[[gnu::noinline]] void run_segment_gradients(loss_plan<Isa, T, Label, G>& plan, std::ptrdiff_t first,
                                             std::ptrdiff_t last) noexcept {
    const loss_call<T, Label, G>& c = *plan.call;
    const std::ptrdiff_t C = c.student.cols;
    const std::ptrdiff_t block = backend<Isa>::template block_columns<T>(C);
    row_terms weighted;
    for (std::ptrdiff_t w = first; w < last; ++w) {
        const segment_item s = segment_of(plan, w);
        G* g = c.grad.row(s.row);
        if (!plan.counts(s.row)) {  // ignored rows get zeros
            std::fill(g + std::min(C, s.first * block), g + std::min(C, s.last * block), from_double<G>(0));
            continue;
        }
        if (!row_defined(plan, s.row)) continue;  // refused rows are left as they are
        const auto at = static_cast<std::size_t>(s.row);
        const split_row_state& split = *plan.split;
        backend<Isa>::gradient(c.student.row(s.row), plan.teacher_row(s.row), plan.label_of(s.row), C, plan.terms_of(s.row, weighted),
                               split.merged[at], split.values[at], g, s.first, s.last, split.maxima[at].data(),
                               plan.split_exps[at]);
    }
}

// Between the statistics sweep and the next: each row's segments merged in order.
template <class Isa, class T, class Label, class G>
void merge_segment_statistics(loss_plan<Isa, T, Label, G>& plan) noexcept {
    for (std::ptrdiff_t i = 0; i < plan.call->student.rows; ++i) {
        if (!plan.counts(i)) continue;
        split_row_state& split = *plan.split;
        split.merged[static_cast<std::size_t>(i)] =
            merge_in_order(&split.segment_stats[static_cast<std::size_t>(i * plan.segments)], plan.segments, plan.terms);
    }
}

// Before the gradient sweep: each row's sums merged in order, its loss, its contribution.
template <class Isa, class T, class Label, class G>
void finish_segmented_rows(loss_plan<Isa, T, Label, G>& plan) noexcept {
    const loss_call<T, Label, G>& c = *plan.call;
    row_terms weighted;
    for (std::ptrdiff_t i = 0; i < c.student.rows; ++i) {
        const auto at = static_cast<std::size_t>(i);
        double row_loss = 0;
        if (plan.counts(i)) {
            split_row_state& split = *plan.split;
            const divergence_sums<double> sums =
                merge_in_order(&split.segment_sums[static_cast<std::size_t>(i * plan.segments)], plan.segments);
            row_loss = record_row(plan, plan.pieces[at], i,
                                  backend<Isa>::row_loss(split.merged[at], sums, c.student.row(i), plan.teacher_row(i),
                                                         plan.label_of(i), c.student.cols, plan.terms_of(i, weighted), split.values[at],
                                                         plan.grad_row(i), split.maxima[at].data()));
        }
        if (!c.rows.losses.empty()) c.rows.losses[at] = row_loss;
    }
}

// Validates the call and fills the plan.
template <class Isa, class T, class Label, class G>
status make_plan(const loss_config& o, const loss_call<T, Label, G>& c, loss_plan<Isa, T, Label, G>& plan) noexcept {
    if (status s = check_options(o); !s) return s;
    if (status s = check_shapes(o, c); !s) return s;
    if (status s = check_losses_output(o, c); !s) return s;
    if (status s = count_rows(o, c, c.student.cols, plan.counted, plan.weight_sum, plan.hard_weight_sum); !s) return s;
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
    plan_terms<T>(o, k.soft, k.hard, plan.weight_sum, plan.hard_weight_sum, k, plan.weights);
    k.grad_in_place = c.has_grad && static_cast<const void*>(c.grad.data) == static_cast<const void*>(c.student.data) &&
                      c.student.rows > 0;
    plan.options = &o;
    plan.call = &c;
    plan.needs_sums = k.soft && !backend<Isa>::statistics_first(k);
    plan.piece_count = std::min<std::ptrdiff_t>(c.student.rows, max_pieces);
    std::fill_n(plan.pieces.begin(), plan.piece_count, fresh_piece);
    // The cut depends on the shape alone, never on the executor: results stay bitwise the same.
    plan.blocks = backend<Isa>::template row_blocks<T>(c.student.cols);
    // Decoupled KD rows stay whole: a row whose non-target mass underflows is redone in double.
    if (plan.blocks > 1 && !(k.soft && k.divergence == divergence_kind::decoupled_kd))
        plan.segments = std::min(plan.blocks, max_row_segments);
    plan.split_rows = plan.segments > 1 && c.student.rows * plan.segments <= max_pieces;
    if (plan.split_rows) {
        plan.split.emplace();
        plan.split_exps.fill(nullptr);
    }
    // A workspace must hold the rows of every call with a gradient that it is lent to, whether or not
    // this call's rows use it (same rule on every backend and for every row length).
    workspace* const ws = o.exps_workspace && o.exps_workspace->slots() > 0 && c.has_grad ? o.exps_workspace : nullptr;
    if (ws && c.student.cols > ws->max_classes())
        return status::error(errc::invalid_argument,
                             "%s: the workspace holds rows of up to %td classes; this call's rows have %td",
                             o.loss_name, ws->max_classes(), c.student.cols);
    if (ws && plan.blocks > 1 && backend<Isa>::statistics_first(k)) plan.exps_workspace = ws;
    return {};
}

// Adds the pieces up in their fixed order into `out`, or returns bad_row(piece) for the first piece
// that met a row without a softmax.
template <class BadRow>
status add_pieces(std::span<const piece_result> pieces, const loss_weights& weights, std::int64_t counted,
                  double weight_sum, loss_value& out, BadRow&& bad_row) noexcept {
    double soft_sum = 0, hard_sum = 0;
    for (const piece_result& r : pieces) {
        if (r.bad_row >= 0) return bad_row(r);
        soft_sum += r.soft;
        hard_sum += r.hard;
    }
    out.soft = weights.reduction * soft_sum;
    out.hard = weights.hard_reduction * hard_sum;
    out.total = out.soft + out.hard;
    out.rows_counted = counted;
    out.weight_sum = weight_sum;
    return {};
}

template <class Isa, class T, class Label, class G>
status finish_plan(const loss_plan<Isa, T, Label, G>& plan, loss_value& out) noexcept {
    const loss_config& o = *plan.options;
    return add_pieces(std::span(plan.pieces).first(static_cast<std::size_t>(plan.piece_count)), plan.weights,
                      plan.counted, plan.weight_sum, out, [&](const piece_result& r) {
                          return status::error(errc::invalid_argument,
                                               "%s: row %td of the %s logits is entirely -inf (every class masked), "
                                               "so its softmax is undefined",
                                               o.loss_name, r.bad_row, r.bad_teacher ? "teacher" : "student");
                      });
}

template <class Isa, class T, class Label, class G, class Exec>
status run_loss(Exec&& exec, const loss_config& o, const loss_call<T, Label, G>& c, loss_value& out) noexcept {
    out = {};
    loss_plan<Isa, T, Label, G> plan;
    if (status s = make_plan(o, c, plan); !s) return s;
    if (plan.split_rows) {
        const std::ptrdiff_t items = c.student.rows * plan.segments;
        if (plan.exps_workspace)
            for (std::ptrdiff_t i = 0; i < c.student.rows; ++i)
                plan.split_exps[static_cast<std::size_t>(i)] = plan.exps_workspace->template acquire<compute_t<T>>();
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
        if (plan.exps_workspace)
            for (compute_t<T>* slot : plan.split_exps) plan.exps_workspace->release(slot);
        return finish_plan(plan, out);
    }
    if (plan.piece_count > 0)
        exec(std::ptrdiff_t{0}, plan.piece_count,
             [&plan](std::ptrdiff_t first, std::ptrdiff_t last) noexcept { run_pieces(plan, first, last); });
    return finish_plan(plan, out);
}

}  // namespace distill::detail
