// distill/detail/reference/fused_row.hpp - the scalar oracle of the fused loss row kernel.
//
// Plain loops in double, written to be obviously right rather than fast: every test compares the
// SIMD kernels against this, and DISTILL_NO_SIMD routes every call here. Each divergence runs in
// its normalised form (detail/divergences.hpp), read off the definitions: maxima and sums first
// (sweep 1, exact two-pass maxima per stretch), then the divergence's sums over normalised p and q
// (sweep 2), then the gradient (sweep 3). The sweeps take a range of blocks, like the SIMD kernels,
// so that the same scheduler can cut a long row into segments.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "../divergences.hpp"
#include "../row_statistics.hpp"
#include "../row_terms.hpp"
#include "../storage_type.hpp"

namespace distill::detail::reference {

inline constexpr double minus_inf = -std::numeric_limits<double>::infinity();

// Blocks of 1024 columns (longer for rows of more than 64 blocks), as the SIMD kernels cut rows.
inline std::ptrdiff_t block_columns(std::ptrdiff_t C) noexcept {
    return std::max<std::ptrdiff_t>(1024, (C + 63) / 64);
}
inline std::ptrdiff_t row_blocks(std::ptrdiff_t C) noexcept {
    return (C + block_columns(C) - 1) / block_columns(C);
}

// Class c's weight in the hard term (1 without class weights), for logits stored as T: the
// weights are held in T's compute type (float for the 16-bit types).
template <class T>
double class_weight(const row_terms& k, std::ptrdiff_t c) noexcept {
    return k.class_weights ? static_cast<double>(k.class_weights_as<compute_t<T>>()[c]) : 1.0;
}

template <class T>
double row_max(const T* x, std::ptrdiff_t n) noexcept {
    double m = minus_inf;
    for (std::ptrdiff_t c = 0; c < n; ++c) m = sticky_max(m, static_cast<double>(x[c]));
    return m;
}

// log sum_c exp((x_c - max) * scale), the max taken from the caller.
template <class T>
double log_sum_exp(const T* x, std::ptrdiff_t n, double max, double scale) noexcept {
    double z = 0;
    for (std::ptrdiff_t c = 0; c < n; ++c) z += std::exp((static_cast<double>(x[c]) - max) * scale);
    return std::log(z);
}

// Sweep 1 over blocks [first, last): maxima, then the sums relative to them.
template <class T>
row_stats statistics(const T* s, const T* t, std::ptrdiff_t C, const row_terms& k, std::ptrdiff_t first,
                     std::ptrdiff_t last) noexcept {
    const std::ptrdiff_t c0 = first * block_columns(C), c1 = std::min(C, last * block_columns(C));
    row_stats st;
    for (std::ptrdiff_t c = c0; c < c1; ++c) {
        st.ms = sticky_max(st.ms, static_cast<double>(s[c]));
        if (k.soft) st.mt = sticky_max(st.mt, teacher_logit(t, c, k));
    }
    const double shift_s = shift_of(st.ms), shift_t = shift_of(st.mt);
    for (std::ptrdiff_t c = c0; c < c1; ++c) {
        const double x = static_cast<double>(s[c]) - shift_s;
        st.zq += std::exp(x * k.inv_temperature);
        if (k.hard) {
            st.zr += std::exp(x);
            if (k.smoothing > 0) {
                const double w = class_weight<T>(k, c);
                st.sum_x += w * x;
                st.weight_seen += w;
            }
        }
        if (k.soft) st.zp += std::exp((teacher_logit(t, c, k) - shift_t) * k.teacher_inv_temperature);
    }
    st.seen = c1 - c0;
    return st;
}

// Sweep 2 over blocks [first, last): the divergence's sums over normalised p and q.
template <class Policy, class T>
divergence_sums<double> sums(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                             const row_stats& st, std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
    const std::ptrdiff_t c0 = first * block_columns(C), c1 = std::min(C, last * block_columns(C));
    const row_normalizers n = normalizers(st);
    divergence_sums<double> sum{};
    for (std::ptrdiff_t c = c0; c < c1; ++c)
        if (!(Policy::excludes_label && c == label)) Policy::accumulate(element_at(s, t, c, k, n), k.params, sum);
    return sum;
}

// Sweep 3 over blocks [first, last): the gradient.
template <class Policy, class T, class G>
void gradient(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k, const row_stats& st,
              const divergence_value& value, G* grad, std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
    const std::ptrdiff_t c0 = first * block_columns(C), c1 = std::min(C, last * block_columns(C));
    const row_normalizers n = normalizers(st);
    const double log_zr = k.hard ? std::log(st.zr) : 0.0;
    const double r_weight = k.hard_r_weight(k.classes(C));
    for (std::ptrdiff_t c = c0; c < c1; ++c) {
        double g = 0;
        if (k.soft) {
            if constexpr (Policy::excludes_label) {
                g += k.soft_grad * (c == label ? Policy::label_gradient(value)
                                               : Policy::gradient(element_at(s, t, c, k, n), value, k.params));
            } else {
                g += k.soft_grad * Policy::gradient(element_at(s, t, c, k, n), value, k.params);
            }
        }
        if (k.hard) {
            // d/ds_c of -(1 - eps) w_y log r_y - (eps / C) sum_k w_k log r_k.
            const double r = std::exp(static_cast<double>(s[c]) - st.ms - log_zr);
            const double target =
                (c == label ? (1 - k.smoothing) * k.label_weight : 0.0) + k.smoothing * class_weight<T>(k, c) / k.classes(C);
            g += k.hard_grad * (r_weight * r - target);
        }
        grad[c] = from_double<G>(g);
    }
}

// One row of the loss with one policy: s and t are C logits, `label` is the row's class (unused
// unless k.needs_label()), `grad` receives the row's gradient when not null. A divergence defined
// outside the library runs through here too (tests/policy.test.cpp).
template <class Policy, class T, class G>
row_result fused_row_with(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                          G* grad) noexcept {
    const std::ptrdiff_t blocks = row_blocks(C);
    const row_stats st = statistics(s, t, C, k, 0, blocks);
    divergence_sums<double> sum{};
    if (k.soft && student_defined(st) && teacher_defined(st, k)) sum = sums<Policy>(s, t, label, C, k, st, 0, blocks);
    divergence_value value;
    const row_result out = row_loss<Policy>(st, sum, false, s, t, label, C, k, value);
    if (grad && out.student_defined && out.teacher_defined)
        gradient<Policy>(s, t, label, C, k, st, value, grad, 0, blocks);
    return out;
}

// One row, with the policy that k names.
template <class T, class G>
row_result fused_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                     G* grad) noexcept {
    return with_divergence(k.divergence,
                           [&]<class Policy>() { return fused_row_with<Policy>(s, t, label, C, k, grad); });
}

// softmax(s / T) (or its log) of one row into `out`. Returns false for an all -inf row.
template <class T>
bool softmax_row(const T* s, std::ptrdiff_t C, double inv_t, bool log, T* out) noexcept {
    const double m = row_max(s, C);
    if (m == minus_inf) return false;
    const double log_z = log_sum_exp(s, C, m, inv_t);
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        const double log_p = (s[c] - m) * inv_t - log_z;
        out[c] = static_cast<T>(log ? log_p : std::exp(log_p));
    }
    return true;
}

}  // namespace distill::detail::reference
