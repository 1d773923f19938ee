// distill/detail/top_k_row.hpp - one row of the loss against a teacher given by its top k classes,
// shared by both kernel layers: they gather the student's sums and write its gradient over the
// whole row; everything about the k classes (a few hundred at most) is scalar, in double, here.
//
// The categories are the row's k teacher classes and one more, the tail: every other class of
// the vocabulary. The teacher's tail mass is 1 - sum_k p (mode tail_bucket) or 0 (renormalize,
// where p is renormalised over the k classes); the student's is the sum of q over the columns
// outside the k, gathered directly (never as 1 - sum_k q, which cancels). A divergence of the
// family is then the same policy (divergences.hpp) over these k + 1 categories, and its gradient
// reaches every column of the row through the softmax: a teacher class c gets
// dD/dx_c = gradient(element c), every other class j the tail's share in proportion to its mass,
// dD/dx_j = (q_j / q_tail) gradient(tail element). docs/math.md derives both modes.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "divergences.hpp"
#include "row_statistics.hpp"
#include "row_terms.hpp"
#include "storage_type.hpp"

namespace distill::detail {

// The most teacher classes a row may have: the sorted copy of a row's classes lives on the stack.
inline constexpr std::ptrdiff_t max_top_k = 1024;
// The most classes whose elements (lq, lp, q, p) a row keeps from its loss for its gradient (8 KiB).
inline constexpr std::size_t cached_elements = 256;

// How the teacher's mass outside its k classes is treated.
enum class tail_treatment : unsigned char { renormalize, bucket };

// The top-k path's own constants of a call.
struct top_k_terms {
    tail_treatment tail = tail_treatment::bucket;
    std::int64_t padding_index = -1;
    double mass_tolerance = 1e-4;
};

// A teacher class of a row: its column in the vocabulary and its slot among the row's k inputs.
struct top_k_entry {
    std::int32_t column;
    std::int32_t slot;
};

// Copies row's k classes, padding dropped, into `out` sorted by column and returns how many there
// are. The caller has checked the indices (in range, no repeats).
template <class I>
std::ptrdiff_t sorted_entries(const I* indices, std::ptrdiff_t k, std::int64_t padding_index, top_k_entry* out) noexcept {
    std::ptrdiff_t n = 0;
    for (std::ptrdiff_t j = 0; j < k; ++j) {
        const auto c = static_cast<std::int64_t>(indices[j]);
        if (c != padding_index) out[n++] = {static_cast<std::int32_t>(c), static_cast<std::int32_t>(j)};
    }
    std::sort(out, out + n, [](const top_k_entry& a, const top_k_entry& b) { return a.column < b.column; });
    return n;
}

// Calls run(begin, end) for each stretch of columns between teacher classes and column(entry) for
// each teacher class, left to right over the row's C columns.
template <class Run, class Column>
void for_each_run(std::ptrdiff_t C, std::span<const top_k_entry> entries, Run&& run, Column&& column) noexcept {
    std::ptrdiff_t begin = 0;
    for (const top_k_entry& e : entries) {
        if (e.column > begin) run(begin, static_cast<std::ptrdiff_t>(e.column));
        column(e);
        begin = static_cast<std::ptrdiff_t>(e.column) + 1;
    }
    if (C > begin) run(begin, C);
}

// What a kernel layer gathers over the student's row, relative to its max ms.
struct top_k_student_sums {
    double z_tail = 0;  // sum of e_q = exp((s - ms) / T) over the columns outside the teacher's classes
    double z_top = 0;   // the same over the teacher's classes
    double zr = 0;      // sum of exp(s - ms) over the row (the hard term's softmax)
    double sum_x = 0;   // sum of w_c (s_c - ms) over the row (label smoothing)
};

// The teacher's distribution over the row's k + 1 categories:
// log p_c = (value_logit(c) - shift) * inv_t - log_z. The shift comes off before the scale, as the
// dense kernels take (t - max t) / T: the row's largest value then has exactly 0 however large the
// values are, where (v * inv_t) - shift would keep the product's rounding (an FMA keeps all of it).
struct top_k_teacher_row {
    double shift = 0;
    double log_z = 0;
    double p_tail = 0;
    double lp_tail = -std::numeric_limits<double>::infinity();
    bool defined = true;  // renormalize needs some mass among the k classes
};

// The teacher's value of a slot on the logit scale (log v for probabilities).
template <class T>
double value_logit(const T* values, std::int32_t slot, const row_terms& k) noexcept {
    const auto v = static_cast<double>(values[slot]);
    return k.teacher_probabilities ? std::log(v) : v;
}

// renormalize: log_z = log sum_k exp(y), p_tail = 0 (as for a row whose k classes are all its
// columns: no tail is left for the rounding of their mass). bucket: the values are the teacher's own
// log-probabilities (or probabilities), kept as they are, with p_tail = 1 - sum_k p; a top-k mass
// above 1 by no more than the call's tolerance (the checks refused more) is the values' rounding:
// they are scaled to sum to 1 and the tail is 0.
template <class T>
top_k_teacher_row teacher_row(const T* values, std::span<const top_k_entry> entries, std::ptrdiff_t C,
                              const row_terms& k, const top_k_terms& tk) noexcept {
    top_k_teacher_row r;
    double max_v = -std::numeric_limits<double>::infinity();
    for (const top_k_entry& e : entries) max_v = sticky_max(max_v, value_logit(values, e.slot, k));
    const double shift = shift_of(max_v);
    double z = 0;
    for (const top_k_entry& e : entries) z += std::exp((value_logit(values, e.slot, k) - shift) * k.teacher_inv_temperature);
    if (tk.tail == tail_treatment::renormalize || static_cast<std::ptrdiff_t>(entries.size()) == C) {
        r.defined = !(max_v == -std::numeric_limits<double>::infinity() && !std::isnan(z));
        r.shift = shift;
        r.log_z = std::log(z);
        return r;
    }
    // The values are the teacher's log-probabilities (T does not apply to them): kept as they are
    // (shift and log_z 0) unless their mass is above 1.
    const double mass = z * std::exp(shift);
    if (mass > 1) {
        r.shift = shift;
        r.log_z = std::log(z);
    } else {
        r.p_tail = 1 - mass;
        r.lp_tail = std::log(r.p_tail);
    }
    return r;
}

// The loss of one row against its top-k teacher, with the kernel layer `Kernels` (detail/backend.hpp)
// gathering the student's sums and writing the gradient when `grad` is not null. `entries` are the
// row's teacher classes, sorted (empty when the call has no soft term).
template <class Kernels, class T, class G>
row_result top_k_row(const T* s, std::ptrdiff_t C, const T* values, std::span<const top_k_entry> entries,
                     std::int64_t label, const row_terms& k, const top_k_terms& tk, G* grad) noexcept {
    row_result out;
    const double ms = Kernels::template row_max<T>(s, C);
    // The gradient sweep reads e_q back from here: the gradient buffer unless it is the student
    // logits or 16 bits wide (e_q rounded to 8 or 11 bits), where e_q is recomputed.
    G* park = can_park_in<G> && grad && !k.grad_in_place ? grad : nullptr;
    const top_k_student_sums sums = Kernels::template top_k_sums<T>(s, C, entries, ms, k, park);
    row_stats st;
    st.ms = ms;
    st.zq = sums.z_tail + sums.z_top;
    st.zr = sums.zr;
    out.student_defined = student_defined(st);
    if (!out.student_defined) return out;
    const top_k_teacher_row teacher = k.soft ? teacher_row(values, entries, C, k, tk) : top_k_teacher_row{};
    out.teacher_defined = teacher.defined;
    if (!out.teacher_defined) return out;

    if (k.hard) {
        // As row_loss_from: CE = -(1 - eps) w_y log r_y - (eps / C) sum_c w_c log r_c.
        const double eps = k.smoothing, classes = static_cast<double>(C);
        out.ce = -(1 - eps) * k.label_weight * (static_cast<double>(s[label]) - ms) - eps * sums.sum_x / classes +
                 k.hard_r_weight(classes) * std::log(sums.zr);
    }
    if (!k.soft) {
        if (grad)
            Kernels::template top_k_gradient<T>(s, C, entries, ms, 0.0, sums.zr, label, k,
                                                [](const top_k_entry&, double) { return 0.0; }, park != nullptr, grad);
        return out;
    }
    with_divergence(k.divergence, [&]<class Policy>() {
        const double log_zq = std::log(st.zq);
        const auto element_of = [&](const top_k_entry& e, double s_c) {
            element<double> x;
            x.lq = (s_c - ms) * k.inv_temperature - log_zq;
            x.lp = (value_logit(values, e.slot, k) - teacher.shift) * k.teacher_inv_temperature - teacher.log_z;
            x.q = std::exp(x.lq);
            x.p = std::exp(x.lp);
            return x;
        };
        element<double> tail;
        tail.lq = std::log(sums.z_tail) - log_zq;
        tail.q = sums.z_tail / st.zq;
        tail.lp = teacher.lp_tail;
        tail.p = teacher.p_tail;
        divergence_sums<double> d{};
        // The k elements, kept for the gradient sweep when they fit (it would otherwise take each one's
        // two exponentials again).
        std::array<element<double>, cached_elements> cache;
        const bool cached = grad && entries.size() <= cache.size();
        for (std::size_t j = 0; j < entries.size(); ++j) {
            const element<double> x = element_of(entries[j], static_cast<double>(s[entries[j].column]));
            if (cached) cache[j] = x;
            Policy::accumulate(x, k.params, d);
        }
        if (tail.p > 0 || tail.q > 0) Policy::accumulate(tail, k.params, d);  // an empty tail adds nothing
        const divergence_value value = Policy::finish(d, k.params, target_element{});
        out.divergence = value.value;
        if (!grad) return;
        // Column j outside the teacher's classes: soft_grad (q_j / q_tail) gradient(tail), with
        // q_j / q_tail = e_j / z_tail. No such column has mass when z_tail is 0.
        const double tail_coefficient =
            sums.z_tail > 0 ? k.soft_grad * Policy::gradient(tail, value, k.params) / sums.z_tail : 0.0;
        Kernels::template top_k_gradient<T>(
            s, C, entries, ms, tail_coefficient, sums.zr, label, k,
            [&](const top_k_entry& e, double s_c) {
                const element<double> x = cached ? cache[static_cast<std::size_t>(&e - entries.data())] : element_of(e, s_c);
                return k.soft_grad * Policy::gradient(x, value, k.params);
            },
            park != nullptr, grad);
    });
    return out;
}

}  // namespace distill::detail
