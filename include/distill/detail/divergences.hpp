// distill/detail/divergences.hpp - each divergence as one policy, written once for scalars (the
// reference kernels, V = double) and for SIMD batches (V = xsimd::batch).
//
// Notation: x = (s - max s) / T and y = (t - max t) / T_t, the shifted scaled logits (T_t = T for
// teacher logits, 1 for log-probabilities); lq = log q = x - log Z_q and lp = log p = y - log Z_p,
// q = exp(lq), p = exp(lp). A divergence D(p, q) = sum_c f(p_c, q_c) is differentiated through the
// student's softmax: dD/dx_c = q_c (g_c - sum_k q_k g_k) with g = df/dq; docs/math.md derives each.
//
// The normalised form, which every divergence has, needs p and q themselves, so it runs after
// sweep 1 has found the row's maxima and sums (Z_q, Z_p):
//   - `accumulate` adds the terms of one element (or one batch) to `sum_count` running sums;
//   - `finish` turns the row's sums into its value and the row scalars the gradient needs;
//   - `gradient` is dD/dx of one element given those scalars.
// A policy with `excludes_label` (decoupled KD) leaves the label's column out of `accumulate` and
// `gradient` and receives it in `finish` and `label_gradient` instead.
//
// Forward KL also has a statistics-first form (`term`, `rescale`, `value`): its row value follows
// from sums that an online softmax can keep (sum_c e_p (y - x)), so the SIMD kernel needs no
// separate sweep for it.
#pragma once

#include <array>
#include <cmath>
#include <limits>

#include "row_terms.hpp"
#include "vector_ops.hpp"

namespace distill::detail {

// One element (or one batch of elements) of a row, normalised.
template <class V>
struct element {
    V lq, lp;  // log q, log p (-inf for a masked class)
    V q, p;
};

// The running sums of the normalised sweep; every policy has at most three.
template <class V>
using divergence_sums = std::array<V, 3>;

// The row's divergence and the row scalars its gradient needs.
struct divergence_value {
    double value = 0;
    double a = 0, b = 0, c = 0;
};

// The target class's own element, for policies that treat it apart (decoupled KD).
using target_element = element<double>;

// p log(p / q) - p + q, a term of KL(p || q) with its share of sum_c (q_c - p_c) = 0 added: it is
// >= 0 for every p, q >= 0, so no rounding can make a row's sum of them negative, and a row of
// nearly equal p and q keeps the digits of its own (small) size. With d = log p - log q the term
// is q h(d), h(d) = d e^d - e^d + 1 = sum_{n >= 2} (n - 1) d^n / n!: from the series where
// |d| < 1/2 (the direct form cancels there), directly elsewhere (at most a few ulps lost). Masked
// classes: p = 0 gives q, and q = 0 < p gives +inf, the true value.
template <class V>
DISTILL_ALWAYS_INLINE V kl_term(const V& p, const V& q, const V& lp, const V& lq) noexcept {
    using S = typename vector_ops<V>::scalar;
    // (n - 1) / n! for n = 2..17; the series is cut where its next term is below an ulp at |d| = 1/2.
    constexpr double coefficient[] = {1. / 2, 1. / 3, 1. / 8, 1. / 30, 1. / 144, 1. / 840, 1. / 5760, 1. / 45360,
                                      1. / 403200, 1. / 3991680, 11. / 479001600, 12. / 6227020800.,
                                      13. / 87178291200., 14. / 1307674368000., 15. / 20922789888000.,
                                      16. / 355687428096000.};
    constexpr int terms = sizeof(S) == sizeof(float) ? 10 : 16;
    const V d = lp - lq;
    V poly(static_cast<S>(coefficient[terms - 1]));
    for (int n = terms - 2; n >= 0; --n) poly = poly * d + V(static_cast<S>(coefficient[n]));
    const V series = q * (d * d * poly);
    const V direct = product_unless_zero(p, d - V(1)) + q;
    return where(abs_of(d) < V(0.5), series, direct);
}

// KL(p || q) = sum_c p_c (lp_c - lq_c), with 0 log 0 = 0, summed as kl_term.  dD/dx = q - p.
struct forward_kl_policy {
    static constexpr int sum_count = 1;
    static constexpr bool excludes_label = false;

    template <class V>
    DISTILL_ALWAYS_INLINE static void accumulate(const element<V>& e, const divergence_params&, divergence_sums<V>& sum) noexcept {
        sum[0] += kl_term(e.p, e.q, e.lp, e.lq);
    }
    static divergence_value finish(const divergence_sums<double>& sum, const divergence_params&,
                                   const target_element&) noexcept {
        return {sum[0]};
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static V gradient(const element<V>& e, const divergence_value&, const divergence_params&) noexcept {
        return e.q - e.p;
    }

    // Statistics-first form. Accumulator A = sum_c e_p (y - x), so KL = A / Z_p - log Z_p + log Z_q.
    // `zero` is V(0); where e_p = 0 (teacher masks the class) the term is 0 even when x = -inf.
    template <class V, class Select>
    DISTILL_ALWAYS_INLINE static V term(V x, V y, V e_p, V zero, Select select) noexcept {
        return select(e_p != zero, e_p * (y - x), zero);  // a NaN e_p reaches the loss through Z_p anyway
    }

    // The running student max rose by ds and the teacher max by dt (both >= 0, raw logit units):
    // every x falls by ds / T and every y by dt / T_t, while e_p scales by f = exp(-dt / T_t).
    // Returns the accumulator relative to the new maxima; z_p is the teacher sum before scaling.
    static double rescale(double acc, double z_p, double ds, double dt, double inv_t, double teacher_inv_t,
                          double f) noexcept {
        if (z_p == 0) return acc;  // no teacher mass seen yet: the accumulator is still 0
        // The rise underflows all teacher mass seen so far (dt / T > ~745): relative to the new max
        // it is 0, as in the reference, and 0 * inf (a student-masked class) must not become NaN.
        if (f == 0) return 0;
        return f * (acc + z_p * (ds * inv_t - dt * teacher_inv_t));
    }

    // The statistics-first value cancels terms of size |A / Z_p|, log Z_p and log Z_q, so it carries
    // a few ulps of their sum (of the kernel's scalar type): a row whose KL is not well above that
    // (nearly equal p and q) is worth recomputing from its terms. Both come from one pair of
    // logarithms, which on a row of ten classes cost as much as its exponentials.
    // A +inf value is worth its terms too: A is +inf once a student-masked class had teacher mass
    // relative to a stretch's own maximum, and no later rise of the maximum can take that back, even
    // where the mass, relative to the row's maximum, is below the exponential's range and so counts
    // as none (a segment of a long row whose maximum is far below the row's). The terms, taken with
    // the row's maxima, tell the two apart. NaN is kept.
    struct statistics_value {
        double kl = 0;
        double cancelled = 0;  // |A / Z_p| + |log Z_p| + |log Z_q| + 1
    };
    static statistics_value value(double acc, double z_q, double z_p) noexcept {
        const double a = acc / z_p, log_zp = std::log(z_p), log_zq = std::log(z_q);
        return {a - log_zp + log_zq, std::abs(a) + std::abs(log_zp) + std::abs(log_zq) + 1};
    }
    template <class T>
    static bool worth_terms(const statistics_value& v) noexcept {
        return v.kl < 64 * std::numeric_limits<T>::epsilon() * v.cancelled ||
               v.kl == std::numeric_limits<double>::infinity();
    }
};

// KL(q || p) = sum_c q_c (lq_c - lp_c), summed as kl_term.  dD/dx = q (lq - lp - D).
struct reverse_kl_policy {
    static constexpr int sum_count = 1;
    static constexpr bool excludes_label = false;

    template <class V>
    DISTILL_ALWAYS_INLINE static void accumulate(const element<V>& e, const divergence_params&, divergence_sums<V>& sum) noexcept {
        sum[0] += kl_term(e.q, e.p, e.lq, e.lp);  // >= 0 term by term, as for forward KL
    }
    static divergence_value finish(const divergence_sums<double>& sum, const divergence_params&,
                                   const target_element&) noexcept {
        return {sum[0], sum[0]};
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static V gradient(const element<V>& e, const divergence_value& r, const divergence_params&) noexcept {
        return product_unless_zero(e.q, e.lq - e.lp - V(r.a));
    }
};


// Generalised JSD, 0 < beta < 1, m = beta p + (1 - beta) q:
//   D = beta sum p (lp - lm) + (1 - beta) sum q (lq - lm);  dD/dx = (1 - beta) q (lq - lm - K),
//   K = sum q (lq - lm) = KL(q || m).  (beta = 0 and 1 are forward and reverse KL: the API maps them.)
struct jensen_shannon_policy {
    static constexpr int sum_count = 2;
    static constexpr bool excludes_label = false;

    template <class V>
    DISTILL_ALWAYS_INLINE static V log_mixture(const element<V>& e, const divergence_params& k) noexcept {
        return log_of(V(k.beta) * e.p + V(1 - k.beta) * e.q);
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static void accumulate(const element<V>& e, const divergence_params& k, divergence_sums<V>& sum) noexcept {
        const V lm = log_mixture(e, k);
        sum[0] += product_unless_zero(e.p, e.lp - lm);
        sum[1] += product_unless_zero(e.q, e.lq - lm);
    }
    static divergence_value finish(const divergence_sums<double>& sum, const divergence_params& k,
                                   const target_element&) noexcept {
        return {k.beta * sum[0] + (1 - k.beta) * sum[1], sum[1]};
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static V gradient(const element<V>& e, const divergence_value& r, const divergence_params& k) noexcept {
        return V(1 - k.beta) * product_unless_zero(e.q, e.lq - log_mixture(e, k) - V(r.a));
    }
};

// Skew KL, KL(p || m) with m = a p + (1 - a) q:
//   dD/dx = (1 - a)(q W - w),  w = p q / m,  W = sum w.
struct skew_kl_policy {
    static constexpr int sum_count = 2;
    static constexpr bool excludes_label = false;

    template <class V>
    DISTILL_ALWAYS_INLINE static V mixture(const element<V>& e, const divergence_params& k) noexcept {
        return V(k.skew) * e.p + V(1 - k.skew) * e.q;
    }
    // p q / m, 0 where p or q is 0 (then m may be 0 too); NaN stays NaN (see product_unless_zero).
    template <class V>
    DISTILL_ALWAYS_INLINE static V overlap(const element<V>& e, const V& m) noexcept {
        const V pq = e.p * e.q, zero(0);
        return where(pq == zero, zero, pq / m);
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static void accumulate(const element<V>& e, const divergence_params& k, divergence_sums<V>& sum) noexcept {
        const V m = mixture(e, k);
        sum[0] += product_unless_zero(e.p, e.lp - log_of(m));
        sum[1] += overlap(e, m);
    }
    static divergence_value finish(const divergence_sums<double>& sum, const divergence_params&,
                                   const target_element&) noexcept {
        return {sum[0], sum[1]};
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static V gradient(const element<V>& e, const divergence_value& r, const divergence_params& k) noexcept {
        return V(1 - k.skew) * (e.q * V(r.a) - overlap(e, mixture(e, k)));
    }
};

// Skew reverse KL, KL(q || m) with m = (1 - a) p + a q:
//   dD/dx = q (lq - lm - D) - a (q^2 / m - q S),  S = sum q^2 / m.
struct skew_reverse_kl_policy {
    static constexpr int sum_count = 2;
    static constexpr bool excludes_label = false;

    template <class V>
    DISTILL_ALWAYS_INLINE static V mixture(const element<V>& e, const divergence_params& k) noexcept {
        return V(1 - k.skew) * e.p + V(k.skew) * e.q;
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static void accumulate(const element<V>& e, const divergence_params& k, divergence_sums<V>& sum) noexcept {
        const V m = mixture(e, k);
        sum[0] += product_unless_zero(e.q, e.lq - log_of(m));
        sum[1] += product_unless_zero(e.q, e.q / m);
    }
    static divergence_value finish(const divergence_sums<double>& sum, const divergence_params&,
                                   const target_element&) noexcept {
        return {sum[0], sum[0], sum[1]};
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static V gradient(const element<V>& e, const divergence_value& r, const divergence_params& k) noexcept {
        const V m = mixture(e, k);
        return product_unless_zero(e.q, e.lq - log_of(m) - V(r.a) - V(k.skew) * (e.q / m - V(r.b)));
    }
};

// Total variation, 0.5 sum |p - q|, with the subgradient sign(0) = 0 where p = q:
//   dD/dx = q (g - G),  g = 0.5 sign(q - p),  G = sum q g.
struct total_variation_policy {
    static constexpr int sum_count = 2;
    static constexpr bool excludes_label = false;

    // The comparisons are false for NaN; adding (q - p) * 0 carries a NaN on into the gradient.
    template <class V>
    DISTILL_ALWAYS_INLINE static V half_sign(const element<V>& e) noexcept {
        const V zero(0), half(0.5);
        return where(e.q > e.p, half, where(e.q < e.p, -half, zero)) + (e.q - e.p) * zero;
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static void accumulate(const element<V>& e, const divergence_params&, divergence_sums<V>& sum) noexcept {
        sum[0] += abs_of(e.p - e.q);
        sum[1] += e.q * half_sign(e);
    }
    static divergence_value finish(const divergence_sums<double>& sum, const divergence_params&,
                                   const target_element&) noexcept {
        return {0.5 * sum[0], sum[1]};
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static V gradient(const element<V>& e, const divergence_value& r, const divergence_params&) noexcept {
        return e.q * (half_sign(e) - V(r.a));
    }
};

// Decoupled KD around the label y, with Q = sum_{c != y} q_c = 1 - q_y and P = 1 - p_y summed
// directly (not as 1 - q_y, which loses every digit when the target class is confident):
//   TCKD = p_y (lp_y - lq_y) + P (log P - log Q)
//   NCKD = A / P - log P + log Q,  A = sum_{c != y} p_c (lp_c - lq_c)   (0 when P = 0)
//   dD/dx_c = q_c (wt (Q - P) + wn) / Q - wn p_c / P  (c != y),   dD/dx_y = wt (P - Q).
struct decoupled_kd_policy {
    static constexpr int sum_count = 3;
    static constexpr bool excludes_label = true;

    template <class V>
    DISTILL_ALWAYS_INLINE static void accumulate(const element<V>& e, const divergence_params&, divergence_sums<V>& sum) noexcept {
        sum[0] += e.q;
        sum[1] += e.p;
        sum[2] += product_unless_zero(e.p, e.lp - e.lq);
    }
    static divergence_value finish(const divergence_sums<double>& sum, const divergence_params& k,
                                   const target_element& y) noexcept {
        const double Q = sum[0], P = sum[1], A = sum[2];
        const double nckd = P == 0 ? 0.0 : A / P - std::log(P) + std::log(Q);  // `== 0`: NaN propagates
        const double tckd = (y.p != 0 ? y.p * (y.lp - y.lq) : 0.0) + (P == 0 ? 0.0 : P * (std::log(P) - std::log(Q)));
        divergence_value r;
        // A weight of 0 leaves its term out (0 * inf would be NaN where the other part is +inf).
        r.value = (k.target_weight != 0 ? k.target_weight * tckd : 0.0) +
                  (k.non_target_weight != 0 ? k.non_target_weight * nckd : 0.0);
        // NCKD is taken as 0 when the teacher leaves no mass outside the target (P = 0), and so is
        // its share of the gradient.
        const double non_target = P == 0 ? 0.0 : k.non_target_weight;
        r.a = Q == 0 ? 0.0 : (k.target_weight * (Q - P) + non_target) / Q;  // coefficient of q
        r.b = P == 0 ? 0.0 : k.non_target_weight / P;                                // coefficient of p
        r.c = k.target_weight * (P - Q);                                            // the label's gradient
        return r;
    }
    template <class V>
    DISTILL_ALWAYS_INLINE static V gradient(const element<V>& e, const divergence_value& r, const divergence_params&) noexcept {
        return V(r.a) * e.q - V(r.b) * e.p;
    }
    static double label_gradient(const divergence_value& r) noexcept { return r.c; }
};

// Calls fn.template operator()<Policy>() with the policy of `kind`.
template <class Fn>
decltype(auto) with_divergence(divergence_kind kind, Fn&& fn) noexcept {
    switch (kind) {
        case divergence_kind::reverse_kl: return fn.template operator()<reverse_kl_policy>();
        case divergence_kind::jensen_shannon: return fn.template operator()<jensen_shannon_policy>();
        case divergence_kind::skew_kl: return fn.template operator()<skew_kl_policy>();
        case divergence_kind::skew_reverse_kl: return fn.template operator()<skew_reverse_kl_policy>();
        case divergence_kind::total_variation: return fn.template operator()<total_variation_policy>();
        case divergence_kind::decoupled_kd: return fn.template operator()<decoupled_kd_policy>();
        case divergence_kind::forward_kl: break;
    }
    return fn.template operator()<forward_kl_policy>();
}

}  // namespace distill::detail
