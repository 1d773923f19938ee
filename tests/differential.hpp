// The SIMD row kernel against the reference row kernel, with errors measured against the size of
// the terms that make up each result: the bound the differential sweep (tests/differential.test.cpp),
// the kernel tests (tests/kernels.test.cpp) and the fuzzer (fuzz/fuzz_loss.cpp) assert, and that
// docs/reliability.md states.
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
//
// The other divergences get their scale by the same rule: each result is a sum of products of
// probabilities (relative error a few ulps, plus the relative error of their row sum Z) and logs
// (absolute error a few ulps of their size, plus the relative error of Z), so its scale is the
// same expression with every difference replaced by the sum of the absolute values, every log l
// by |l| + 1 (one more for the factor's own relative error), and every row sum that enters a
// gradient (reverse KL's D, JSD's K) by its own scale. divergence_terms below writes out each one
// next to the formula it bounds (the formulas are those of detail/divergences.hpp). Gradient
// entries are never measured against less than q_c + p_c, the size of the probabilities they are
// made of (see divergence_scales), and total variation's subgradient gets a slack at near-ties
// (row_scales::grad_slack). Some rows cannot be compared, for reasons given where they are
// recognised: decoupled KD's underflow (an open engine finding), a divergence that is +inf in
// one kernel only because a probability is below one type's range, and the gradient of a row whose
// divergence is +inf.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

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
//   relative error of their Z). The normalise-first divergences add their terms in the same 32-term
//   float partials, so the same bound holds for their sums.
// double: the reference adds the C terms of each row sum in one plain loop, which rounds by up to
//   (C - 1)u = C * 1.1e-16 of the sum; the SIMD kernel does better. So 1e-13 + 2.3e-16 * C.
template <class T>
struct kernel_bound {
    static constexpr bool is_float = std::is_same_v<T, float>;
    static double loss(std::ptrdiff_t C) { return is_float ? 4e-6 : 1e-13 + 2.3e-16 * static_cast<double>(C); }
    static double grad(std::ptrdiff_t C) { return loss(C); }
};

struct row_scales {
    double divergence = 0, ce = 0;
    double grad = 0;      // max over the row of an entry's scale
    double grad_sum = 0;  // sum over the row of the entries' scales: the scale of the row's gradient sum
    // An absolute allowance on every gradient entry, nonzero for total variation only: where p_c and
    // q_c are equal to within the kernels' rounding, the subgradient sign(q_c - p_c) may come out
    // +1, 0 or -1 in either kernel. Entry c then moves by up to soft_grad q_c and, through
    // G = sum q g, every entry j by soft_grad q_j q_c: at most 2 soft_grad times the tied mass.
    double grad_slack = 0;
};

// The exponent floors of the SIMD exponential (simd/exp.hpp): float results below 2^-126 are
// flushed to 0 (x < -87.34), double ones below 2^-1022 (x < -708.3964); the reference's std::exp
// keeps subnormals down to -745 in double. Probabilities below these differ between the kernels.
template <class T>
constexpr double exp_floor() {
    return std::is_same_v<T, float> ? -87.33 : -708.39;
}

namespace scale_detail {

constexpr double inf = std::numeric_limits<double>::infinity();

// x * y with 0 * anything = 0: a scale term of a zero probability is 0, even beside an infinite log.
inline double times(double x, double y) { return x == 0 ? 0.0 : x * y; }

// One row, normalised in double as the reference does: log q, log p and their exponentials.
struct normalised_row {
    std::vector<double> lq, lp, q, p;
    double log_zq = 0, log_zp = 0;  // lq + log_zq is the shifted logit (s - max s) / T, likewise lp
    bool defined = false;
};

template <class T>
normalised_row normalise(const T* s, const T* t, std::ptrdiff_t C, const distill::detail::row_terms& k) {
    namespace ref = distill::detail::reference;
    normalised_row n;
    const double ms = ref::row_max(s, C);
    if (ms == ref::minus_inf) return n;
    const double lzq = ref::log_sum_exp(s, C, ms, k.inv_temperature);
    n.log_zq = lzq;
    const auto size = static_cast<std::size_t>(C);
    n.lq.resize(size);
    n.q.resize(size);
    n.lp.assign(size, -inf);
    n.p.assign(size, 0.0);
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        n.lq[c] = (static_cast<double>(s[c]) - ms) * k.inv_temperature - lzq;
        n.q[c] = std::exp(n.lq[c]);
    }
    if (k.soft) {
        double mt = -inf;
        for (std::ptrdiff_t c = 0; c < C; ++c) mt = std::max(mt, distill::detail::teacher_logit(t, c, k));
        if (mt == -inf) return n;
        double zp = 0;
        for (std::ptrdiff_t c = 0; c < C; ++c)
            zp += std::exp((distill::detail::teacher_logit(t, c, k) - mt) * k.teacher_inv_temperature);
        n.log_zp = std::log(zp);
        for (std::ptrdiff_t c = 0; c < C; ++c) {
            n.lp[c] = (distill::detail::teacher_logit(t, c, k) - mt) * k.teacher_inv_temperature - n.log_zp;
            n.p[c] = std::exp(n.lp[c]);
        }
    }
    n.defined = true;
    return n;
}

// The divergence's loss scale and each entry's gradient scale (unweighted: dD/dx), by the rule in
// the header, next to the formulas of detail/divergences.hpp they bound.
template <class T>
void divergence_terms(const normalised_row& n, std::int64_t label, const distill::detail::row_terms& k,
                      double& loss, std::vector<double>& grad, double& grad_slack) {
    using distill::detail::divergence_kind;
    const auto C = n.q.size();
    const std::vector<double>&lq = n.lq, &lp = n.lp, &q = n.q, &p = n.p;
    const distill::detail::divergence_params& w = k.params;
    const auto log_of_mixture = [&](double wp, std::size_t c) { return std::log(wp * p[c] + (1 - wp) * q[c]); };
    switch (k.divergence) {
        case divergence_kind::forward_kl:
            // D = sum p (lp - lq);  dD/dx = q - p.
            for (std::size_t c = 0; c < C; ++c) {
                loss += times(p[c], std::abs(lp[c]) + std::abs(lq[c]) + 2);
                grad[c] = q[c] + p[c];
            }
            return;
        case divergence_kind::reverse_kl: {
            // D = sum q (lq - lp);  dD/dx = q (lq - lp - D), D with the error of the loss scale.
            for (std::size_t c = 0; c < C; ++c) loss += times(q[c], std::abs(lq[c]) + std::abs(lp[c]) + 2);
            for (std::size_t c = 0; c < C; ++c) grad[c] = times(q[c], std::abs(lq[c]) + std::abs(lp[c]) + loss + 2);
            return;
        }
        case divergence_kind::jensen_shannon: {
            // D = beta sum p (lp - lm) + (1 - beta) sum q (lq - lm), m = beta p + (1 - beta) q;
            // dD/dx = (1 - beta) q (lq - lm - K), K = sum q (lq - lm) with the error of its own scale.
            double K = 0;
            for (std::size_t c = 0; c < C; ++c) {
                const double lm = std::abs(log_of_mixture(w.beta, c));
                loss += w.beta * times(p[c], std::abs(lp[c]) + lm + 2) + (1 - w.beta) * times(q[c], std::abs(lq[c]) + lm + 2);
                K += times(q[c], std::abs(lq[c]) + lm + 2);
            }
            for (std::size_t c = 0; c < C; ++c)
                grad[c] = (1 - w.beta) * times(q[c], std::abs(lq[c]) + std::abs(log_of_mixture(w.beta, c)) + K + 2);
            return;
        }
        case divergence_kind::skew_kl: {
            // D = sum p (lp - lm), m = a p + (1 - a) q;  dD/dx = (1 - a)(q W - w), w = p q / m, W = sum w.
            double W = 0;
            std::vector<double> overlap(C, 0.0);
            for (std::size_t c = 0; c < C; ++c)
                if (p[c] * q[c] != 0) W += overlap[c] = p[c] * q[c] / (w.skew * p[c] + (1 - w.skew) * q[c]);
            for (std::size_t c = 0; c < C; ++c) {
                loss += times(p[c], std::abs(lp[c]) + std::abs(log_of_mixture(w.skew, c)) + 2);
                grad[c] = (1 - w.skew) * (q[c] * W + overlap[c]);
            }
            return;
        }
        case divergence_kind::skew_reverse_kl: {
            // D = sum q (lq - lm), m = (1 - a) p + a q;  dD/dx = q (lq - lm - D - a (q / m - S)),
            // S = sum q^2 / m; D with the error of the loss scale.
            double S = 0;
            std::vector<double> ratio(C, 0.0);
            for (std::size_t c = 0; c < C; ++c) {
                loss += times(q[c], std::abs(lq[c]) + std::abs(log_of_mixture(1 - w.skew, c)) + 2);
                if (q[c] != 0) S += q[c] * (ratio[c] = q[c] / ((1 - w.skew) * p[c] + w.skew * q[c]));
            }
            for (std::size_t c = 0; c < C; ++c)
                grad[c] = times(q[c], std::abs(lq[c]) + std::abs(log_of_mixture(1 - w.skew, c)) + loss + 2 +
                                          w.skew * (ratio[c] + S));
            return;
        }
        case divergence_kind::total_variation: {
            // D = 0.5 sum |p - q|;  dD/dx = q (g - G), g = 0.5 sign(q - p), G = sum q g. Ties: within
            // four times the bound of each other, p and q may compare either way in the kernels.
            const double tie = 4 * kernel_bound<T>::loss(static_cast<std::ptrdiff_t>(C));
            double tied_mass = 0;
            for (std::size_t c = 0; c < C; ++c) {
                loss += p[c] + q[c];
                grad[c] = q[c];  // q (|g| + |G|) <= q
                if (p[c] + q[c] != 0 && std::abs(p[c] - q[c]) <= tie * (p[c] + q[c])) tied_mass += q[c];
            }
            grad_slack = 2 * tied_mass;
            break;
        }
        case divergence_kind::decoupled_kd: {
            // TCKD = p_y (lp_y - lq_y) + P (log P - log Q), NCKD = A / P - log P + log Q with
            // A = sum_{c != y} p (lp - lq), P and Q the non-target masses;
            // dD/dx_c = q_c (wt (Q - P) + wn) / Q - wn p_c / P (c != y), dD/dx_y = wt (P - Q).
            const auto y = static_cast<std::size_t>(label);
            double P = 0, Q = 0, A_scale = 0;
            for (std::size_t c = 0; c < C; ++c)
                if (c != y) {
                    P += p[c];
                    Q += q[c];
                    A_scale += times(p[c], std::abs(lp[c]) + std::abs(lq[c]) + 2);
                }
            const double log_P = std::abs(std::log(P)), log_Q = std::abs(std::log(Q));
            const double tckd = times(p[y], std::abs(lp[y]) + std::abs(lq[y]) + 2) + times(P, log_P + log_Q + 2);
            const double nckd = P > 0 ? A_scale / P + log_P + log_Q + 2 : 0.0;
            // A part of weight 0 is left out (never 0 * inf), as the library does.
            loss = (w.target_weight != 0 ? w.target_weight * tckd : 0.0) +
                   (w.non_target_weight != 0 ? w.non_target_weight * nckd : 0.0);
            for (std::size_t c = 0; c < C; ++c)
                grad[c] = c == y ? w.target_weight * (P + Q)
                                 : (Q > 0 ? q[c] * (w.target_weight * (Q + P) + w.non_target_weight) / Q : 0.0) +
                                       (P > 0 ? w.non_target_weight * p[c] / P : 0.0);
            return;
        }
    }
}

// divergence_terms' scales, with the gradient's floored at the probabilities' size.
template <class T>
void divergence_scales(const normalised_row& n, std::int64_t label, const distill::detail::row_terms& k,
                       double& loss, std::vector<double>& grad, double& grad_slack) {
    const auto C = n.q.size();
    grad.assign(C, 0.0);
    loss = 0;
    divergence_terms<T>(n, label, k, loss, grad, grad_slack);
    // Every entry is computed from q_c and p_c, which the float kernel knows to a few ulps only
    // down to its normal range: products of two small probabilities (p q in skew KL's overlap)
    // underflow there. So no entry's scale is below forward KL's q_c + p_c, the size of the
    // probabilities it is made of; a wrong term is the size of a probability and still shows.
    for (std::size_t c = 0; c < C; ++c) grad[c] = std::max(grad[c], n.q[c] + n.p[c]);
}

}  // namespace scale_detail

// Engine finding, open (decoupled KD): P and Q, the non-target masses, are sums of probabilities
// normalised by the whole row's maximum. When the target class dominates the other classes by more
// than the exponent range of the kernel's type allows ((max - max_{c != y}) / T above 87 in float,
// 708 in double), the non-target probabilities underflow, P or Q becomes 0 or loses its digits, and
// decoupled KD, which renormalises by P and Q, changes value: with Q = 0 the loss is NaN (PyTorch:
// finite, or +inf in float64 past 745), with P = 0 the NCKD term drops out (PyTorch keeps it). The
// same happens when the student masks every non-target class (NaN; PyTorch +inf). Rows where either
// side's largest non-target log-probability is within the exponent floor (plus log C and the
// digits of the bound) are not comparable between the float SIMD kernel and the double reference,
// and decoupled KD's value there is not PyTorch's: the comparisons leave them out and count them.
// Remove this when the engine computes P and Q relative to the non-target maximum.
template <class T>
bool decoupled_kd_mass_underflows(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C,
                                  const distill::detail::row_terms& k) {
    if (!k.soft || k.divergence != distill::detail::divergence_kind::decoupled_kd) return false;
    const double margin = std::log(static_cast<double>(C)) + (std::is_same_v<T, float> ? 16.0 : 39.0);
    const double floor = exp_floor<T>() + margin;
    double ms = -scale_detail::inf, mt = -scale_detail::inf, ms_other = -scale_detail::inf, mt_other = -scale_detail::inf;
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        const double sc = static_cast<double>(s[c]), tc = distill::detail::teacher_logit(t, c, k);
        ms = std::max(ms, sc);
        mt = std::max(mt, tc);
        if (c != label) ms_other = std::max(ms_other, sc), mt_other = std::max(mt_other, tc);
    }
    // Without teacher mass outside the label (every other class masked, or C = 1) P = 0 exactly in
    // both kernels and decoupled KD is its TCKD part alone, whatever Q is: comparable.
    if (mt_other == -scale_detail::inf) return false;
    // The teacher's non-target mass underflowed, or the student's underflowed or was masked away
    // entirely (Q = 0: NaN).
    return (mt_other - mt) * k.teacher_inv_temperature <= floor || !((ms_other - ms) * k.inv_temperature > floor);
}

// Engine finding, open (Jensen-Shannon, skew KL, skew reverse KL): the mixture m = a p + b q is formed
// from the probabilities themselves, so where both weighted probabilities underflow the type while
// one of them is not 0, log m is -inf and the divergence +inf although it is bounded for
// 0 < a < 1 (TRL forms log m by logsumexp and stays finite); at a weight of 0 (skew 0) m is one
// probability alone, +inf wherever it underflowed and the other did not, where reverse (or forward)
// KL itself is finite. Examples: reference (DISTILL_NO_SIMD), double, Jensen-Shannon with s = {0, -745},
// t = {0, -inf}: +inf; float, skew_reverse_kl{0} with s = {0, 0, 0}, t = {0, -100, 1}: +inf while
// reverse_kl gives 33.2. True where that can happen in the SIMD kernel of type T (probabilities of
// classes below the exponential's floor are 0 there) or in the double reference. The fuzzer's
// finiteness model leaves these rows out; the comparisons treat them as any +inf in one kernel only.
template <class T>
bool mixture_may_underflow(const T* s, const T* t, std::ptrdiff_t C, const distill::detail::row_terms& k) {
    using distill::detail::divergence_kind;
    if (!k.soft) return false;
    double wp = 0, wq = 0;  // m = wp p + wq q
    switch (k.divergence) {
        case divergence_kind::jensen_shannon: wp = k.params.beta, wq = 1 - k.params.beta; break;
        case divergence_kind::skew_kl: wp = k.params.skew, wq = 1 - k.params.skew; break;
        case divergence_kind::skew_reverse_kl: wp = 1 - k.params.skew, wq = k.params.skew; break;
        default: return false;
    }
    const scale_detail::normalised_row n = scale_detail::normalise(s, t, C, k);
    if (!n.defined) return false;
    const auto at_risk = [&](double p, double q, double smallest) {
        return (p > 0 || q > 0) && wp * p <= 2 * smallest && wq * q <= 2 * smallest;
    };
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        const auto i = static_cast<std::size_t>(c);
        if (at_risk(n.p[i], n.q[i], std::numeric_limits<double>::denorm_min())) return true;  // the reference
        // The SIMD kernel: 0 below its exponential's floor (relative to the row's maximum).
        const double p = n.lp[i] + n.log_zp < exp_floor<T>() ? 0.0 : n.p[i];
        const double q = n.lq[i] + n.log_zq < exp_floor<T>() ? 0.0 : n.q[i];
        if (at_risk(p, q, static_cast<double>(std::numeric_limits<T>::denorm_min()))) return true;
    }
    return false;
}

// Engine finding, open (decoupled KD): where the teacher has no mass outside the label (every other
// class masked: P = 0), NCKD is defined as 0, but its gradient is not: the coefficient of q_c,
// (wt (Q - P) + wn) / Q, keeps wn / Q, so each row's gradient sums to wn times the soft coefficient
// instead of 0 (s = {0.3, -0.2, 0.5}, t = {-inf, -inf, 1}, label 2, weights 1 and 8: the gradient
// is {5.33, 3.23, -0.568}, central differences {0.354, 0.214, -0.568}). The fuzzer's row-sum check
// leaves these rows out (both kernels agree, so the comparisons keep them).
template <class T>
bool decoupled_kd_without_non_target_teacher_mass(const T* t, std::int64_t label, std::ptrdiff_t C,
                                                  const distill::detail::row_terms& k) {
    if (!k.soft || k.divergence != distill::detail::divergence_kind::decoupled_kd) return false;
    for (std::ptrdiff_t c = 0; c < C; ++c)
        if (c != label && distill::detail::teacher_logit(t, c, k) != -scale_detail::inf) return false;
    return true;
}

// The scales of one row, from log-probabilities evaluated in double as the reference does.
template <class T>
row_scales reference_scales(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C,
                            const distill::detail::row_terms& k) {
    row_scales out;
    const scale_detail::normalised_row n = scale_detail::normalise(s, t, C, k);
    if (!n.defined) return out;
    std::vector<double> soft_grad;
    if (k.soft) scale_detail::divergence_scales<T>(n, label, k, out.divergence, soft_grad, out.grad_slack);
    out.grad_slack *= std::abs(k.soft_grad);
    const double eps = k.smoothing, inv_t = 1.0;
    namespace ref = distill::detail::reference;
    const double ms = ref::row_max(s, C), lzr = k.hard ? ref::log_sum_exp(s, C, ms, inv_t) : 0.0;
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        double r = 0, target = 0;
        if (k.hard) {
            const double lr = s[c] - ms - lzr;
            r = std::exp(lr);
            target = (c == label ? 1 - eps : 0.0) + eps / static_cast<double>(C);
            if (eps > 0) out.ce += eps / static_cast<double>(C) * (std::abs(lr) + 1);
            if (c == label) out.ce += (1 - eps) * (std::abs(lr) + 1);
        }
        const double entry = (k.soft ? std::abs(k.soft_grad) * soft_grad[static_cast<std::size_t>(c)] : 0.0) +
                             (k.hard ? std::abs(k.hard_grad) * (r + target) : 0.0);
        out.grad = std::max(out.grad, entry);
        out.grad_sum += entry;
    }
    return out;
}

// Whether a probability of the row is nonzero in the double reference but 0 in the SIMD kernel of
// type T: its shifted logit ((s - max s) / T, or the teacher's) lies between the SIMD exponential's
// floor and std::exp's last subnormal (-745.13). Where such a class meets an exact 0 on the other
// side (a mask, or a probability that underflowed when the input was rounded to T), one kernel
// finds the divergence +inf and the other finite, and either is the right answer for its type
// (docs/reliability.md, "outside the representable range"): those rows are not compared.
template <class T>
bool probability_below_type_floor(const T* s, const T* t, std::ptrdiff_t C, const distill::detail::row_terms& k) {
    namespace ref = distill::detail::reference;
    const auto in_gap = [](double x) { return x > -745.14 && x < exp_floor<T>(); };
    const double ms = ref::row_max(s, C);
    for (std::ptrdiff_t c = 0; c < C; ++c)
        if (in_gap((static_cast<double>(s[c]) - ms) * k.inv_temperature)) return true;
    if (!k.soft) return false;
    double mt = -scale_detail::inf;
    for (std::ptrdiff_t c = 0; c < C; ++c) mt = std::max(mt, distill::detail::teacher_logit(t, c, k));
    for (std::ptrdiff_t c = 0; c < C; ++c)
        if (in_gap((distill::detail::teacher_logit(t, c, k) - mt) * k.teacher_inv_temperature)) return true;
    return false;
}

// Why a row was not compared.
enum class left_out {
    no,
    decoupled_kd_underflow,  // decoupled_kd_mass_underflows: an open engine finding
    infinite_in_one_kernel,  // +inf in one kernel only: probability_below_type_floor (either answer is
                             // right) or mixture_may_underflow (an open engine finding)
};

// Errors of one row as fractions of its scales (0 where both agree exactly, +inf where one is
// finite and the other not, or where the kernels disagree on whether the row is defined).
struct row_errors {
    double divergence = 0, ce = 0, grad = 0;
    // For information: plain relative errors, of the loss terms where they are at least 0.01 and of
    // the gradient entries that are at least 1% of the row's gradient scale.
    double loss_relative = 0, grad_relative = 0;
    left_out left = left_out::no;
    // False where the divergence is +inf and the reference's gradient is not finite (reverse KL
    // where the teacher masks a class the student gives mass: q (lq - lp - D) is -inf or NaN).
    // There is no gradient to compare: the SIMD kernel's is whatever its underflows make of it.
    bool gradient_compared = true;
    double worst() const { return std::max({divergence, ce, grad}); }
};

// |a - b| beyond `slack`, as a fraction of `scale`.
inline double scaled_error(double a, double b, double scale, double slack = 0) {
    if (a == b) return 0;  // equal values, infinities included
    if (std::isnan(a) && std::isnan(b)) return 0;
    if (!std::isfinite(a) || !std::isfinite(b)) return std::numeric_limits<double>::infinity();
    const double beyond = std::abs(a - b) - slack;
    return beyond <= 0 ? 0.0 : beyond / scale;  // a nonzero difference at scale 0 is +inf: it must be exact
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
        e.divergence = std::numeric_limits<double>::infinity();
        return e;
    }
    if (!r.student_defined || !r.teacher_defined) return e;  // no loss, no gradient: nothing to compare
    if (decoupled_kd_mass_underflows(s, t, label, C, k)) {
        e.left = left_out::decoupled_kd_underflow;
        return e;
    }
    if (k.soft && std::isinf(v.divergence) != std::isinf(r.divergence) &&
        (probability_below_type_floor(s, t, C, k) || mixture_may_underflow(s, t, C, k))) {
        e.left = left_out::infinite_in_one_kernel;
        return e;
    }
    const row_scales sc = reference_scales(s, t, label, C, k);
    if (k.soft) e.divergence = scaled_error(v.divergence, r.divergence, sc.divergence);
    if (k.hard) e.ce = scaled_error(v.ce, r.ce, sc.ce);
    for (auto [a, b] : {std::pair{v.divergence, r.divergence}, std::pair{v.ce, r.ce}})
        if (std::isfinite(b) && std::abs(b) >= 0.01) e.loss_relative = std::max(e.loss_relative, std::abs(a - b) / std::abs(b));
    if (r.divergence == scale_detail::inf)
        for (std::ptrdiff_t c = 0; c < C && e.gradient_compared; ++c)
            e.gradient_compared = std::isfinite(static_cast<double>(g_ref[c]));
    if (!e.gradient_compared) return e;
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        const double a = static_cast<double>(g_simd[c]), b = static_cast<double>(g_ref[c]);
        e.grad = std::max(e.grad, scaled_error(a, b, sc.grad, sc.grad_slack));
        if (std::abs(b) >= 0.01 * sc.grad && std::abs(a - b) > sc.grad_slack)  // not a tie's subgradient
            e.grad_relative = std::max(e.grad_relative, std::abs(a - b) / std::abs(b));
    }
    return e;
}

}  // namespace distill_test
