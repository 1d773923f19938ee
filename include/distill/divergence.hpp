// distill/divergence.hpp - which divergence compares the teacher's distribution p with the student's q.
//
// p = softmax(t / T) (the teacher), q = softmax(s / T) (the student), both over the C classes of a
// row. Each divergence is an option struct with its own parameters; `divergence` holds any of them,
// so a trainer can choose one at run time. docs/math.md defines each one and derives its gradient.
#pragma once

#include <variant>

namespace distill {

// KL(p || q) = sum_c p_c log(p_c / q_c): Hinton's soft-target term (mass-covering).
struct forward_kl {};

// KL(q || p) = sum_c q_c log(q_c / p_c): mode-seeking (MiniLLM, Gu et al. 2024).
struct reverse_kl {};

// Generalised Jensen-Shannon divergence with m = beta p + (1 - beta) q:
//     beta KL(p || m) + (1 - beta) KL(q || m)        (GKD, Agarwal et al. 2024)
// With TRL's `generalized_jsd_loss` semantics at the ends: beta = 0 is forward KL(p || q) and
// beta = 1 is reverse KL(q || p), although the formula itself tends to 0 there.
struct jensen_shannon {
    double beta = 0.5;  // in [0, 1]
};

// Skew KL, KL(p || a p + (1 - a) q), a = skew (DistiLLM, Ko et al. 2024). a = 0 is forward KL.
struct skew_kl {
    double skew = 0.1;  // in [0, 1]
};

// Skew reverse KL, KL(q || (1 - a) p + a q), a = skew (DistiLLM). a = 0 is reverse KL.
struct skew_reverse_kl {
    double skew = 0.1;  // in [0, 1]
};

// Total variation distance, 0.5 sum_c |p_c - q_c|.
struct total_variation {};

// Decoupled knowledge distillation (Zhao et al., CVPR 2022), with y the row's label:
//     target_weight * KL([p_y, 1 - p_y] || [q_y, 1 - q_y])               (TCKD)
//   + non_target_weight * KL(p / (1 - p_y) || q / (1 - q_y)) over c != y  (NCKD)
// Needs labels, so it is offered by distillation_loss only.
struct decoupled_kd {
    double target_weight = 1.0;      // alpha in the paper, >= 0
    double non_target_weight = 8.0;  // beta in the paper, >= 0
};

using divergence =
    std::variant<forward_kl, reverse_kl, jensen_shannon, skew_kl, skew_reverse_kl, total_variation, decoupled_kd>;

// What the teacher's values are. The temperature applies to logits only: log-probabilities and
// probabilities already are a distribution, which the library uses as given (renormalised, so
// that the rounding of stored values cannot make a divergence negative). To soften stored
// log-probabilities by T, pass them as logits: they differ from the logits by a constant per row.
enum class teacher_input {
    logits,             // p = softmax(t / T)
    log_probabilities,  // p = exp(t) / sum exp(t)   (PyTorch's log_target = True)
    probabilities,      // p = t / sum t             (t >= 0)
};

}  // namespace distill
