// distill/detail/divergence.hpp - the per-element terms of the soft (teacher vs student) divergence.
//
// The fused kernels are two sweeps over a row: sweep 1 gathers statistics, sweep 2 writes the
// gradient. A divergence is a policy that says what sweep 1 accumulates, how that accumulator
// follows a change of the running maxima, how the row's divergence follows from it, and what
// sweep 2 writes. The roadmap's divergences (reverse KL, generalized JSD, skew KL, TVD, decoupled
// KD) are further policies of this shape, written for both `V = double` (reference) and
// `V = xsimd::batch` (SIMD).
//
// Notation (DESIGN.md section 2): x = (s - max s) / T and y = (t - max t) / T, the shifted scaled
// logits; e_q = exp(x), e_p = exp(y); Z_q, Z_p their row sums; q = e_q / Z_q, p = e_p / Z_p.
#pragma once

#include <cmath>

namespace distill::detail {

// Forward KL, KL(p || q) = sum_c p_c (log p_c - log q_c), with 0 log 0 = 0.
//   Accumulator:  A = sum_c e_p (y - x)
//   Row value:    KL = A / Z_p - log Z_p + log Z_q
//   Gradient:     d KL / d x = q - p
struct forward_kl {
    // Sweep-1 term of one element. `zero` is V(0); where e_p = 0 (teacher masks the class) the term
    // is 0 even when x = -inf, which is the 0 log 0 = 0 convention.
    template <class V, class Select>
    static V term(V x, V y, V e_p, V zero, Select select) noexcept {
        return select(e_p != zero, e_p * (y - x), zero);  // a NaN e_p reaches the loss through Z_p anyway
    }

    // The running student max rose by ds and the teacher max by dt (both >= 0, raw logit units):
    // every x falls by ds / T and every y by dt / T, while e_p scales by f = exp(-dt / T).
    // Returns the accumulator relative to the new maxima; z_p is the teacher sum before scaling.
    static double rescale(double acc, double z_p, double ds, double dt, double inv_t, double f) noexcept {
        if (z_p == 0) return acc;  // no teacher mass seen yet: the accumulator is still 0
        // The rise underflows all teacher mass seen so far (dt / T > ~745): relative to the new max
        // it is 0, as in the reference, and 0 * inf (a student-masked class) must not become NaN.
        if (f == 0) return 0;
        return f * (acc + z_p * (ds - dt) * inv_t);
    }

    static double value(double acc, double z_q, double z_p) noexcept {
        return acc / z_p - std::log(z_p) + std::log(z_q);
    }
};

}  // namespace distill::detail
