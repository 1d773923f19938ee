// distill/detail/reference/top_k_row.hpp - the scalar oracle of the top-k kernels (detail/top_k_row.hpp):
// the student's sums and the gradient over a whole row, in double, column by column.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../row_terms.hpp"
#include "../top_k_row.hpp"
#include "fused_row.hpp"

namespace distill::detail::reference {

// The student's sums relative to ms: e_q apart for the teacher's classes and the rest.
template <class T>
top_k_student_sums top_k_sums(const T* s, std::ptrdiff_t C, std::span<const top_k_entry> entries, double ms,
                              const row_terms& k) noexcept {
    top_k_student_sums sums;
    const double shift = shift_of(ms);
    const auto hard_terms = [&](std::ptrdiff_t c, double x) {
        if (!k.hard) return;
        sums.zr += std::exp(x);
        if (k.smoothing > 0) sums.sum_x += class_weight<T>(k, c) * x;
    };
    for_each_run(
        C, entries,
        [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
            for (std::ptrdiff_t c = begin; c < end; ++c) {
                const double x = static_cast<double>(s[c]) - shift;
                sums.z_tail += std::exp(x * k.inv_temperature);
                hard_terms(c, x);
            }
        },
        [&](const top_k_entry& e) {
            const double x = static_cast<double>(s[e.column]) - shift;
            sums.z_top += std::exp(x * k.inv_temperature);
            hard_terms(e.column, x);
        });
    return sums;
}

// The gradient over the row: tail_coefficient e_q outside the teacher's classes, soft_at(entry,
// s_c) on them, plus the hard term's hard_grad (a r - target) everywhere (as reference::gradient).
// Each column is read before it is written, so the gradient may be the student logits themselves.
template <class T, class G, class SoftAt>
void top_k_gradient(const T* s, std::ptrdiff_t C, std::span<const top_k_entry> entries, double ms,
                    double tail_coefficient, double zr, std::int64_t label, const row_terms& k, SoftAt&& soft_at,
                    G* grad) noexcept {
    const double log_zr = k.hard ? std::log(zr) : 0.0;
    const double r_weight = k.hard_r_weight(static_cast<double>(C));
    const auto hard_at = [&](std::ptrdiff_t c, double s_c) {
        if (!k.hard) return 0.0;
        const double r = std::exp(s_c - ms - log_zr);
        const double target = (c == label ? (1 - k.smoothing) * k.label_weight : 0.0) +
                              k.smoothing * class_weight<T>(k, c) / static_cast<double>(C);
        return k.hard_grad * (r_weight * r - target);
    };
    for_each_run(
        C, entries,
        [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
            for (std::ptrdiff_t c = begin; c < end; ++c) {
                const double s_c = static_cast<double>(s[c]);
                const double e_q = std::exp((s_c - ms) * k.inv_temperature);
                grad[c] = from_double<G>(tail_coefficient * e_q + hard_at(c, s_c));
            }
        },
        [&](const top_k_entry& e) {
            const double s_c = static_cast<double>(s[e.column]);
            grad[e.column] = from_double<G>(soft_at(e, s_c) + hard_at(e.column, s_c));
        });
}

}  // namespace distill::detail::reference
