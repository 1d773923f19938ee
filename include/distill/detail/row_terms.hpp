// distill/detail/row_terms.hpp - what one row kernel is asked to compute, shared by both kernel
// layers (SIMD and reference) so that they answer exactly the same question.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace distill::detail {

// The divergences the kernels know (one policy each, detail/divergences.hpp).
enum class divergence_kind : unsigned char {
    forward_kl,
    reverse_kl,
    jensen_shannon,
    skew_kl,
    skew_reverse_kl,
    total_variation,
    decoupled_kd,
};

// The divergences' own parameters (each policy reads the ones it has).
struct divergence_params {
    double beta = 0.5;               // jensen_shannon: m = beta p + (1 - beta) q, 0 < beta < 1
    double skew = 0.1;               // skew_kl, skew_reverse_kl
    double target_weight = 1;        // decoupled_kd
    double non_target_weight = 8;    // decoupled_kd
};

// Constants of one loss call. Reductions and weights are folded into the gradient coefficients by
// the API layer, so a kernel knows nothing about reductions.
struct row_terms {
    double temperature = 1;          // T
    double inv_temperature = 1;      // 1 / T, for the student
    double teacher_inv_temperature = 1;  // 1 / T for teacher logits, 1 for log-probabilities and probabilities
    bool teacher_probabilities = false;  // teacher values are probabilities: their logit is log t
    int integer_temperature = 0;     // T when T is a whole number in [1, 16], else 0: r = q^T then
                                     // costs multiplies instead of a third exponential
    bool soft = false;               // the divergence term is present (needs teacher values)
    bool hard = false;               // the cross-entropy term is present (needs a label)
    divergence_kind divergence = divergence_kind::forward_kl;
    divergence_params params;
    double smoothing = 0;            // label smoothing eps
    // Class weights of the hard term (PyTorch's `weight`), or null: C weights in the kernel's own
    // scalar type (the functor keeps them so), with label_weight = w_y of the row and
    // class_weight_sum = sum_c w_c. Without them every class weighs 1.
    const void* class_weights = nullptr;
    double label_weight = 1;
    double class_weight_sum = 0;
    bool grad_in_place = false;      // the gradient is written over the student logits: nothing
                                     // may be parked in it, so sweep 1's e_p is recomputed later
    double soft_grad = 0;            // gradient coefficient of d D / d(s / T)
    double hard_grad = 0;            // gradient coefficient of d CE / ds = r - target
    // The row's number of classes, which label smoothing spreads eps over, when the kernel is given
    // only some of the row's columns (a vocabulary shard, sharded.hpp); 0: the C columns it is given
    // are the whole row.
    std::ptrdiff_t row_classes = 0;

    double classes(std::ptrdiff_t C) const noexcept { return static_cast<double>(row_classes > 0 ? row_classes : C); }

    template <class T>
    const T* class_weights_as() const noexcept { return static_cast<const T*>(class_weights); }
    // The coefficient of r in the hard term's gradient: (1 - eps) w_y + eps W / C, which is 1
    // without class weights.
    double hard_r_weight(double classes) const noexcept {
        return class_weights ? (1 - smoothing) * label_weight + smoothing * class_weight_sum / classes : 1.0;
    }

    // The row's label is read by the kernel: for the hard term, and for a divergence defined
    // around the target class.
    bool needs_label() const noexcept { return hard || (soft && divergence == divergence_kind::decoupled_kd); }
};

// Unweighted per-row results. `*_defined` is false when every logit of that row is -inf: the
// softmax is then 0/0 and the API reports the row.
struct row_result {
    double divergence = 0;
    double ce = 0;
    double cancelled = 0;  // statistics-first forward KL: what its value cancels (worth_terms)
    bool student_defined = true;
    bool teacher_defined = true;
};

// A whole row's kernel as the scheduler calls it: (student row, teacher row or null, label,
// classes, the row's terms, gradient row or null) -> the row's result.
template <class T, class G>
using row_function = row_result (*)(const T*, const T*, std::int64_t, std::ptrdiff_t, const row_terms&, G*) noexcept;

// Rows a group kernel runs side by side, one a lane, as the scheduler hands them over: at most
// max_group_rows (16, the float lanes of AVX-512), all with the call's terms, each with its
// gradient row or null; the kernel writes each row's result.
inline constexpr int max_group_rows = 16;
template <class T, class G>
struct row_group {
    const row_terms* terms;
    int count;
    const T* student[max_group_rows];
    const T* teacher[max_group_rows];
    std::int64_t label[max_group_rows];
    G* grad[max_group_rows];
    row_result result[max_group_rows];
};

// A group kernel: runs the group's rows (C classes each), each exactly as the call's row_function
// would run it alone.
template <class T, class G>
using group_function = void (*)(row_group<T, G>&, std::ptrdiff_t) noexcept;

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
