// distill/detail/top_k_loss.hpp - a loss call against a top-k teacher, from the caller's views to
// one number: its checks, then the rows in up to max_pieces pieces of whole rows, added in their
// fixed order (bitwise the same for every executor). The rows themselves are top_k_row.hpp's.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "../logits.hpp"
#include "../reduction.hpp"
#include "../status.hpp"
#include "backend.hpp"
#include "loss_call.hpp"
#include "schedule.hpp"
#include "top_k_row.hpp"
#include "validation.hpp"

namespace distill::detail {

// The dense part of the call (student, labels, rows, gradient) as loss_call has it, and the
// teacher's two N x k inputs.
template <class T, class I, class Label, class G = T>
struct top_k_call {
    loss_call<T, Label, G> dense;  // has_teacher is false: the teacher is below
    matrix_view<const I> indices;
    matrix_view<const T> values;
};

// The options that the top-k path does not take.
inline status check_top_k_options(const loss_config& o, const top_k_terms& tk) noexcept {
    if (!soft_active(o)) return {};
    if (o.divergence == divergence_kind::decoupled_kd)
        return status::error(errc::invalid_argument,
                             "%s: decoupled_kd is not defined for a top-k teacher (it needs the teacher's mass at "
                             "every non-target class)",
                             o.loss_name);
    if (tk.tail == tail_treatment::bucket && o.teacher == teacher_input::logits)
        return status::error(errc::invalid_argument,
                             "%s: top_k_mode::tail_bucket needs the teacher's values as log-probabilities or "
                             "probabilities (k logits do not say how much mass the other classes have); use "
                             "top_k_mode::renormalize for logits",
                             o.loss_name);
    if (tk.tail == tail_treatment::renormalize && o.divergence == divergence_kind::reverse_kl)
        return status::error(errc::invalid_argument,
                             "%s: reverse_kl with top_k_mode::renormalize is +inf whenever the student has mass "
                             "outside the teacher's k classes (the teacher has none there); use top_k_mode::tail_bucket",
                             o.loss_name);
    if (!(tk.mass_tolerance >= 0 && tk.mass_tolerance <= 0.1))
        return status::error(errc::invalid_argument, "%s: mass_tolerance must be in [0, 0.1], got %s", o.loss_name,
                             format_number(tk.mass_tolerance).c_str());
    return {};
}

template <class T, class I, class Label, class G>
status check_top_k_shapes(const loss_config& o, const top_k_call<T, I, Label, G>& c) noexcept {
    const auto N = c.dense.student.rows, C = c.dense.student.cols;
    // Tensors keep their leading dimensions: [2, 3, k] indices do not fit a [3, 2, V] student.
    const auto same_leading = [&](const auto& v) {
        const view_shape& a = v.shape;
        const view_shape& b = c.dense.student.shape;
        return a.rank == 0 || b.rank == 0 || (a.rank == b.rank && (a.rank < 3 || (a.extents[0] == b.extents[0])));
    };
    if (c.indices.rows != N || c.values.rows != N || c.values.cols != c.indices.cols || !same_leading(c.indices) ||
        !same_leading(c.values))
        return status::error(errc::invalid_argument,
                             "%s: teacher indices are %s and values %s; both must be %td x k (the student's rows)",
                             o.loss_name, format_shape(c.indices).c_str(), format_shape(c.values).c_str(), N);
    if (c.indices.cols > max_top_k)
        return status::error(errc::invalid_argument, "%s: the teacher has %td classes per row; at most %td are supported",
                             o.loss_name, c.indices.cols, max_top_k);
    if (C > std::numeric_limits<std::int32_t>::max())
        return status::error(errc::invalid_argument,
                             "%s: the student has %td classes; a top-k teacher supports at most 2^31 - 1", o.loss_name, C);
    if (c.dense.has_grad && (views_overlap(c.dense.grad, c.indices) || views_overlap(c.dense.grad, c.values)))
        return status::error(errc::invalid_argument, "%s: the gradient buffer overlaps the teacher's indices or values",
                             o.loss_name);
    return {};
}

// Row i's teacher: indices in [0, C) or the padding index, none twice; values that are what the
// options say they are; a top-k mass of at most 1 + mass_tolerance. `entries` is scratch.
template <class T, class I, class Label, class G>
status check_top_k_row(const loss_config& o, const top_k_terms& tk, const top_k_call<T, I, Label, G>& c,
                       std::ptrdiff_t i, top_k_entry* entries) noexcept {
    const I* idx = c.indices.row(i);
    const T* val = c.values.row(i);
    const std::ptrdiff_t k = c.indices.cols;
    const std::int64_t C = c.dense.student.cols;
    const double max_log_probability = std::log1p(tk.mass_tolerance);
    for (std::ptrdiff_t j = 0; j < k; ++j) {
        const auto column = static_cast<std::int64_t>(idx[j]);
        if (column == tk.padding_index) continue;
        if (column < 0 || column >= C)
            return status::error(errc::out_of_range,
                                 "%s: teacher index %lld at (%td, %td) is out of range: classes are [0, %lld) and the "
                                 "padding index is %lld",
                                 o.loss_name, static_cast<long long>(column), i, j, static_cast<long long>(C),
                                 static_cast<long long>(tk.padding_index));
        const double v = static_cast<double>(val[j]);
        if (std::isnan(v))
            return status::error(errc::invalid_argument, "%s: teacher value at (%td, %td) is NaN", o.loss_name, i, j);
        const char* rule = nullptr;
        if (o.teacher == teacher_input::logits && v == std::numeric_limits<double>::infinity())
            rule = "logits must be finite or -inf";
        else if (o.teacher == teacher_input::log_probabilities && v > max_log_probability)
            rule = "log-probabilities must be <= 0";
        else if (o.teacher == teacher_input::probabilities && !(v >= 0 && v <= 1 + tk.mass_tolerance))
            rule = "probabilities must be in [0, 1]";
        if (rule)
            return status::error(errc::invalid_argument, "%s: teacher value at (%td, %td) is %s; %s", o.loss_name, i, j,
                                 format_number(v).c_str(), rule);
    }
    const std::ptrdiff_t n = sorted_entries(idx, k, tk.padding_index, entries);
    for (std::ptrdiff_t j = 1; j < n; ++j)
        if (entries[j].column == entries[j - 1].column)
            return status::error(errc::invalid_argument,
                                 "%s: teacher index %d appears twice in row %td (at %d and %d); each class at most once",
                                 o.loss_name, entries[j].column, i, std::min(entries[j - 1].slot, entries[j].slot),
                                 std::max(entries[j - 1].slot, entries[j].slot));
    if (o.teacher != teacher_input::logits) {
        double mass = 0;
        for (std::ptrdiff_t j = 0; j < n; ++j) {
            const double v = static_cast<double>(val[entries[j].slot]);
            mass += o.teacher == teacher_input::probabilities ? v : std::exp(v);
        }
        if (mass > 1 + tk.mass_tolerance)
            return status::error(errc::invalid_argument,
                                 "%s: the teacher's top-k mass in row %td is %s, above 1 + mass_tolerance (%s)",
                                 o.loss_name, i, format_number(mass).c_str(), format_number(tk.mass_tolerance).c_str());
    }
    return {};
}

template <class Isa, class T, class I, class Label, class G>
struct top_k_plan {
    const loss_config* options;
    const top_k_call<T, I, Label, G>* call;
    top_k_terms top;
    row_terms terms;
    loss_weights weights;
    std::int64_t counted = 0;
    double weight_sum = 0, hard_weight_sum = 0;
    std::ptrdiff_t piece_count = 0;
    std::array<piece_result, max_pieces> pieces;  // the first piece_count, started by run_top_k_loss

    const loss_call<T, Label, G>& dense() const noexcept { return call->dense; }
    // Row i's constants: the gradient scaled by the row's weight and its label's class weight.
    row_terms terms_of(std::ptrdiff_t i) const noexcept {
        row_terms k = terms;
        const double w = row_weight(dense(), i);
        k.soft_grad *= w;
        k.hard_grad *= w;
        if (k.class_weights && k.hard) k.label_weight = label_class_weight(*options, dense(), i);
        return k;
    }
};

// Rows of pieces [first, last), each on one thread. Not inlined, for the reason run_pieces gives.
template <class Isa, class T, class I, class Label, class G>
[[gnu::noinline]] void run_top_k_pieces(top_k_plan<Isa, T, I, Label, G>& plan, std::ptrdiff_t first,
                                        std::ptrdiff_t last) noexcept {
    const top_k_call<T, I, Label, G>& c = *plan.call;
    const loss_call<T, Label, G>& d = c.dense;
    const auto N = d.student.rows, C = d.student.cols;
    top_k_entry entries[max_top_k];
    for (std::ptrdiff_t p = first; p < last; ++p) {
        piece_result& r = plan.pieces[static_cast<std::size_t>(p)];
        for (std::ptrdiff_t i = p * N / plan.piece_count; i < (p + 1) * N / plan.piece_count; ++i) {
            G* g = d.has_grad ? d.grad.row(i) : nullptr;
            double loss = 0;
            if (!row_counts(d, plan.options->ignore_index, i)) {
                if (g) std::fill(g, g + C, from_double<G>(0));
            } else {
                const row_terms k = plan.terms_of(i);
                const std::ptrdiff_t n = k.soft ? sorted_entries(c.indices.row(i), c.indices.cols, plan.top.padding_index, entries) : 0;
                const std::int64_t label = k.hard ? static_cast<std::int64_t>(d.labels[static_cast<std::size_t>(i)]) : -1;
                const row_result rr = top_k_row<backend<Isa>>(d.student.row(i), C, c.values.row(i),
                                                              std::span<const top_k_entry>(entries, static_cast<std::size_t>(n)),
                                                              label, k, plan.top, g);
                if (!rr.student_defined || !rr.teacher_defined) {
                    if (r.bad_row < 0) r.bad_row = i, r.bad_teacher = rr.student_defined;
                } else {
                    const double w = row_weight(d, i);
                    const double soft = k.soft ? w * (plan.weights.soft * rr.divergence) : 0.0;
                    const double hard = k.hard ? w * (plan.weights.hard * rr.ce) : 0.0;
                    r.soft += soft;
                    r.hard += hard;
                    loss = soft + hard;
                }
            }
            if (!d.rows.losses.empty()) d.rows.losses[static_cast<std::size_t>(i)] = loss;
        }
    }
}

template <class Isa, class T, class I, class Label, class G, class Exec>
status run_top_k_loss(Exec&& exec, const loss_config& o, const top_k_terms& tk, const top_k_call<T, I, Label, G>& c,
                      loss_value& out) noexcept {
    out = {};
    const loss_call<T, Label, G>& d = c.dense;
    if (status s = check_options(o); !s) return s;
    if (status s = check_top_k_options(o, tk); !s) return s;
    if (status s = check_shapes(o, d); !s) return s;
    if (status s = check_top_k_shapes(o, c); !s) return s;
    if (status s = check_losses_output(o, d); !s) return s;
    top_k_plan<Isa, T, I, Label, G> plan;
    if (status s = count_rows(o, d, d.student.cols, plan.counted, plan.weight_sum, plan.hard_weight_sum); !s) return s;
    row_terms& k = plan.terms;
    k.soft = soft_active(o);
    k.hard = hard_active(o) && !d.labels.empty();
    if (o.check_finite)
        if (status s = check_finite(o.loss_name, "student logits", d.student); !s) return s;
    if (k.soft) {
        top_k_entry entries[max_top_k];
        for (std::ptrdiff_t i = 0; i < d.student.rows; ++i)
            if (row_counts(d, o.ignore_index, i))
                if (status s = check_top_k_row(o, tk, c, i, entries); !s) return s;
    }
    plan_terms<T>(o, k.soft, k.hard, plan.weight_sum, plan.hard_weight_sum, k, plan.weights);
    k.grad_in_place = d.has_grad && static_cast<const void*>(d.grad.data) == static_cast<const void*>(d.student.data) &&
                      d.student.rows > 0;
    plan.options = &o;
    plan.call = &c;
    plan.top = tk;
    plan.piece_count = std::min<std::ptrdiff_t>(d.student.rows, max_pieces);
    std::fill_n(plan.pieces.begin(), plan.piece_count, fresh_piece);
    if (plan.piece_count > 0)
        exec(std::ptrdiff_t{0}, plan.piece_count,
             [&plan](std::ptrdiff_t first, std::ptrdiff_t last) noexcept { run_top_k_pieces(plan, first, last); });

    return add_pieces(std::span(plan.pieces).first(static_cast<std::size_t>(plan.piece_count)), plan.weights,
                      plan.counted, plan.weight_sum, out, [&](const piece_result& r) {
                          return r.bad_teacher
                                     ? status::error(errc::invalid_argument,
                                                     "%s: row %td of the teacher's top-k has no mass (every entry "
                                                     "padding, -inf or 0), so there is no distribution to renormalise "
                                                     "(top_k_mode::renormalize, or k classes that are the whole row)",
                                                     o.loss_name, r.bad_row)
                                     : status::error(errc::invalid_argument,
                                                     "%s: row %td of the student logits is entirely -inf (every class "
                                                     "masked), so its softmax is undefined",
                                                     o.loss_name, r.bad_row);
                      });
}

}  // namespace distill::detail
