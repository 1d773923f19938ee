// distill/detail/row_terms.hpp - what one row kernel is asked to compute, shared by both kernel
// layers (SIMD and reference) so that they answer exactly the same question.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace distill::detail {

// Constants of one loss call. Reductions and weights are folded into the gradient coefficients by
// the API layer, so a kernel knows nothing about reductions.
struct row_terms {
    double temperature = 1;          // T
    double inv_temperature = 1;      // 1 / T
    int integer_temperature = 0;     // T when T is a whole number in [1, 16], else 0: r = q^T then
                                     // costs multiplies instead of a third exponential
    bool soft = false;               // the KL(p || q) term is present (needs teacher logits)
    bool hard = false;               // the cross-entropy term is present (needs a label)
    double smoothing = 0;            // label smoothing eps
    double soft_grad = 0;            // gradient coefficient of d KL / d(s / T) = q - p
    double hard_grad = 0;            // gradient coefficient of d CE / ds = r - target
};

// Unweighted per-row results. `*_defined` is false when every logit of that row is -inf: the
// softmax is then 0/0 and the API reports the row.
struct row_result {
    double kl = 0;
    double ce = 0;
    bool student_defined = true;
    bool teacher_defined = true;
};

// T in [1, 16] and whole: exp(s - m) = exp((s - m) / T)^T, a few multiplies instead of an exp.
// Above 16 the power's rounding error (about T ulp) would exceed the exponential's.
inline int whole_temperature(double t) noexcept {
    return (t >= 1 && t <= 16 && std::floor(t) == t) ? static_cast<int>(t) : 0;
}

// A max that keeps NaN once seen, so that a NaN logit always reaches the loss as NaN and a row
// with a NaN is never mistaken for an all -inf row.
inline double sticky_max(double m, double x) noexcept {
    return (std::isnan(m) || x <= m) ? m : x;
}

// The shift used when exponentiating relative to a running max: a max of -inf means every logit so
// far is -inf, and shifting by 0 keeps exp(-inf - 0) = 0 instead of exp(-inf + inf) = NaN.
inline double shift_of(double max) noexcept {
    return max == -std::numeric_limits<double>::infinity() ? 0.0 : max;
}

}  // namespace distill::detail
