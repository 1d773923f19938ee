// The SIMD row kernel against the reference row kernel, with errors measured against the size of
// the terms that make up each result: the bound the differential sweep (tests/differential.test.cpp) and
// the fuzzer (fuzz/fuzz_loss.cpp) assert, and that docs/reliability.md states.
//
// Why scales and not plain relative error: a KL of two nearly equal rows is a difference of terms
// of size ~|log p|, so its absolute error is a few ulps of those terms however small the KL is (at
// float precision about 6e-8 * T^2 per unit of log-probability); a gradient entry q - p is a
// difference of probabilities, exact to a few ulps of the larger one. So, per row:
//   KL scale   = sum_c p_c (|log p_c| + |log q_c| + 2)
//   CE scale   = (1 - eps)(|log r_y| + 1) + eps / C * sum_c (|log r_c| + 1)
//   grad scale = max_c |soft_grad| (q_c + p_c) + |hard_grad| (r_c + target_c)
// (tests/golden.test.cpp measures against PyTorch with the same scales.) Every |log q| is at least
// log Z_q, so the scales also cover the error of the row sums Z_q, Z_p and of the KL accumulator.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include <distill/distill.hpp>
// Named explicitly: under DISTILL_NO_SIMD the API does not include the SIMD kernels, but they are
// compared with the reference in every build.
#include <distill/detail/simd/fused_row.hpp>

namespace distill_test {

// The documented bound, as a fraction of the scales above, for rows of C classes. Worst cases by
// construction, not observed maxima (the sweep prints those):
// float: the SIMD kernel adds float partial sums of up to 32 terms per lane before they reach the
//   double accumulators, and each addition rounds by half an ulp of the partial sum (u = 2^-24), so
//   Z_q, Z_p, Z_r and the KL accumulator carry up to 31u = 1.9e-6 of their size; the KL
//   accumulator's terms add up to at most twice the KL scale, and the sums enter the loss as logs
//   (absolute error = relative error of Z, and the scale is at least 2). With the exponentials' few
//   ulps this gives 4e-6 of the scale for the loss and for the gradient (q, p and r carry the
//   relative error of their Z).
// double: the reference adds the C terms of each row sum in one plain loop, which rounds by up to
//   (C - 1)u = C * 1.1e-16 of the sum; the SIMD kernel does better. So 1e-13 + 2.3e-16 * C.
template <class T>
struct kernel_bound {
    static constexpr bool is_float = std::is_same_v<T, float>;
    static double loss(std::ptrdiff_t C) { return is_float ? 4e-6 : 1e-13 + 2.3e-16 * static_cast<double>(C); }
    static double grad(std::ptrdiff_t C) { return loss(C); }
};

struct row_scales {
    double kl = 0, ce = 0, grad = 0;
};

// The scales of one row, from log-probabilities evaluated in double as the reference does.
template <class T>
row_scales reference_scales(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C,
                            const distill::detail::row_terms& k) {
    namespace ref = distill::detail::reference;
    row_scales out;
    const double inv_t = k.inv_temperature, eps = k.smoothing;
    const double ms = ref::row_max(s, C);
    if (ms == ref::minus_inf) return out;
    const double lzq = ref::log_sum_exp(s, C, ms, inv_t), lzr = ref::log_sum_exp(s, C, ms, 1.0);
    double mt = 0, lzp = 0;
    if (k.soft) {
        mt = ref::row_max(t, C);
        if (mt == ref::minus_inf) return out;
        lzp = ref::log_sum_exp(t, C, mt, inv_t);
    }
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        const double lq = (s[c] - ms) * inv_t - lzq, q = std::exp(lq);
        double p = 0, r = 0, target = 0;
        if (k.soft) {
            const double lp = (t[c] - mt) * inv_t - lzp;
            p = std::exp(lp);
            if (p != 0) out.kl += p * (std::abs(lp) + std::abs(lq) + 2);
        }
        if (k.hard) {
            const double lr = s[c] - ms - lzr;
            r = std::exp(lr);
            target = (c == label ? 1 - eps : 0.0) + eps / static_cast<double>(C);
            if (eps > 0) out.ce += eps / static_cast<double>(C) * (std::abs(lr) + 1);
            if (c == label) out.ce += (1 - eps) * (std::abs(lr) + 1);
        }
        out.grad = std::max(out.grad, (k.soft ? std::abs(k.soft_grad) * (q + p) : 0.0) +
                                          (k.hard ? std::abs(k.hard_grad) * (r + target) : 0.0));
    }
    return out;
}

// Errors of one row as fractions of its scales (0 where both agree exactly, +inf where one is
// finite and the other not, or where the kernels disagree on whether the row is defined).
struct row_errors {
    double kl = 0, ce = 0, grad = 0;
    // For information: plain relative errors, of the loss terms where they are at least 0.01 and of
    // the gradient entries that are at least 1% of the row's gradient scale.
    double loss_relative = 0, grad_relative = 0;
    double worst() const { return std::max({kl, ce, grad}); }
};

inline double scaled_error(double a, double b, double scale) {
    if (a == b) return 0;  // equal values, infinities included
    if (std::isnan(a) && std::isnan(b)) return 0;
    if (!std::isfinite(a) || !std::isfinite(b)) return std::numeric_limits<double>::infinity();
    return std::abs(a - b) / scale;  // a nonzero difference at scale 0 is +inf: it must be exact
}

// g_ref and g_simd: C entries each, written by the kernels.
template <class T>
row_errors compare_kernels(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C,
                           const distill::detail::row_terms& k, T* g_ref, T* g_simd) {
    namespace ref = distill::detail::reference;
    namespace simd = distill::detail::simd;
    const auto r = ref::fused_row(s, t, label, C, k, g_ref);
    const auto v = simd::fused_row<xsimd::default_arch>(s, t, label, C, k, g_simd);
    row_errors e;
    if (r.student_defined != v.student_defined || r.teacher_defined != v.teacher_defined) {
        e.kl = std::numeric_limits<double>::infinity();
        return e;
    }
    if (!r.student_defined || !r.teacher_defined) return e;  // no loss, no gradient: nothing to compare
    const row_scales sc = reference_scales(s, t, label, C, k);
    if (k.soft) e.kl = scaled_error(v.divergence, r.divergence, sc.kl);
    if (k.hard) e.ce = scaled_error(v.ce, r.ce, sc.ce);
    for (auto [a, b] : {std::pair{v.divergence, r.divergence}, std::pair{v.ce, r.ce}})
        if (std::isfinite(b) && std::abs(b) >= 0.01) e.loss_relative = std::max(e.loss_relative, std::abs(a - b) / std::abs(b));
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        const double a = static_cast<double>(g_simd[c]), b = static_cast<double>(g_ref[c]);
        e.grad = std::max(e.grad, scaled_error(a, b, sc.grad));
        if (std::abs(b) >= 0.01 * sc.grad) e.grad_relative = std::max(e.grad_relative, std::abs(a - b) / std::abs(b));
    }
    return e;
}

}  // namespace distill_test
