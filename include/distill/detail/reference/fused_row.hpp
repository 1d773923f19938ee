// distill/detail/reference/fused_row.hpp - the scalar oracle of the fused loss row kernel.
//
// Plain loops in double, written to be obviously right rather than fast: every test compares the
// SIMD kernels against this, and DISTILL_NO_SIMD routes every call here. Two passes per softmax
// (max, then sums), the formulas of DESIGN.md section 2 read off directly.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "../row_terms.hpp"

namespace distill::detail::reference {

inline constexpr double minus_inf = -std::numeric_limits<double>::infinity();

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

// One row of the distillation loss: s and t are C logits, `label` is the class of the hard term
// (unused when !k.hard), `grad` receives the row's gradient when not null.
template <class T>
row_result fused_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                     T* grad) noexcept {
    row_result out;
    const double inv_t = k.inv_temperature;
    const double ms = row_max(s, C);
    if (ms == minus_inf) {
        out.student_defined = false;
        return out;
    }
    // log q_c = (s_c - ms) / T - log_zq ;  log r_c = s_c - ms - log_zr
    const double log_zq = log_sum_exp(s, C, ms, inv_t);
    const double log_zr = k.hard ? log_sum_exp(s, C, ms, 1.0) : 0.0;

    double mt = 0, log_zp = 0;
    if (k.soft) {
        mt = row_max(t, C);
        if (mt == minus_inf) {
            out.teacher_defined = false;
            return out;
        }
        log_zp = log_sum_exp(t, C, mt, inv_t);
        double kl = 0;
        for (std::ptrdiff_t c = 0; c < C; ++c) {
            const double log_p = (t[c] - mt) * inv_t - log_zp;
            const double log_q = (s[c] - ms) * inv_t - log_zq;
            const double p = std::exp(log_p);
            // 0 log 0 = 0: a class the teacher masks adds nothing. `!= 0`, not `> 0`, so that NaN propagates.
            if (p != 0) kl += p * (log_p - log_q);
        }
        out.kl = kl;
    }
    if (k.hard) {
        const double eps = k.smoothing;
        double sum_log_r = 0;
        if (eps > 0)
            for (std::ptrdiff_t c = 0; c < C; ++c) sum_log_r += s[c] - ms - log_zr;
        out.ce = -(1 - eps) * (s[label] - ms - log_zr) - eps * sum_log_r / static_cast<double>(C);
    }
    if (grad) {
        const double uniform = k.hard ? k.smoothing / static_cast<double>(C) : 0.0;
        for (std::ptrdiff_t c = 0; c < C; ++c) {
            double g = 0;
            if (k.soft) {
                const double q = std::exp((s[c] - ms) * inv_t - log_zq);
                const double p = std::exp((t[c] - mt) * inv_t - log_zp);
                g += k.soft_grad * (q - p);
            }
            if (k.hard) {
                const double r = std::exp(s[c] - ms - log_zr);
                const double target = (c == label ? 1 - k.smoothing : 0.0) + uniform;
                g += k.hard_grad * (r - target);
            }
            grad[c] = static_cast<T>(g);
        }
    }
    return out;
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
