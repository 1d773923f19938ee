// One call of a case through distill's public API, as a user writes it: shared by distill_bench
// (timed) and distill_count (exponentials and instructions counted).
#pragma once

#include "bench_common.hpp"

#include <distill/distill.hpp>

#include <span>

namespace distill_bench {

// docs/api.md gives the executor to the loss calls; softmax takes one only if the headers say so.
// Without it the multi-thread softmax case is not registered (see register_ours).
template <class Scalar>
inline constexpr bool softmax_accepts_executor =
    requires(const omp_executor& e, const matrix<Scalar>& s, matrix<Scalar>& o) { distill::softmax(e, s, o, 1.0); };

// The public option struct of a divergence case (all but decoupled KD, see call).
inline distill::divergence divergence_option(divergence_case d) {
    switch (d) {
    case divergence_case::forward_kl: return distill::forward_kl{};
    case divergence_case::reverse_kl: return distill::reverse_kl{};
    case divergence_case::jsd: return distill::jensen_shannon{jsd_beta};
    case divergence_case::skew_kl: return distill::skew_kl{skew};
    case divergence_case::skew_reverse_kl: return distill::skew_reverse_kl{skew};
    case divergence_case::tvd: return distill::total_variation{};
    case divergence_case::dkd: return distill::decoupled_kd{dkd_target_weight, dkd_non_target_weight};
    }
    return distill::forward_kl{};
}

template <class Scalar>
struct callers {
    static constexpr bool softmax_takes_executor = softmax_accepts_executor<Scalar>;

    // One call of the case through the public API; `exec` is used only when threads > 1, `ws` (the
    // distillation and KL cases) only when given.
    static double call(const case_spec& c, inputs<Scalar>& in, const omp_executor* exec,
                       distill::workspace* ws = nullptr) {
        switch (c.kind) {
        case loss_kind::distillation: {
            const distill::distillation_loss<Scalar> loss({.temperature = c.temperature, .alpha = c.alpha, .workspace = ws});
            const std::span<const std::int64_t> labels(in.labels);
            if (exec) return loss.loss_and_grad(*exec, in.student, in.teacher, labels, in.out).total;
            return loss.loss_and_grad(in.student, in.teacher, labels, in.out).total;
        }
        case loss_kind::kl: {
            const distill::kl_divergence<Scalar> loss({.temperature = c.temperature, .workspace = ws});
            if (exec) return loss.loss_and_grad(*exec, in.student, in.teacher, in.out).total;
            return loss.loss_and_grad(in.student, in.teacher, in.out).total;
        }
        case loss_kind::divergence: {
            // Every option at its default (scale_by_t_squared, mean, teacher logits) but the
            // divergence and T. Decoupled KD needs labels: distillation_loss with alpha = 1 is the
            // divergence alone, T^2-scaled, with no cross-entropy term.
            if (c.divergence == divergence_case::dkd) {
                const distill::distillation_loss<Scalar> loss(
                    {.temperature = c.temperature, .alpha = 1.0, .divergence = divergence_option(c.divergence)});
                const std::span<const std::int64_t> labels(in.labels);
                if (exec) return loss.loss_and_grad(*exec, in.student, in.teacher, labels, in.out).total;
                return loss.loss_and_grad(in.student, in.teacher, labels, in.out).total;
            }
            const distill::divergence_loss<Scalar> loss(
                {.divergence = divergence_option(c.divergence), .temperature = c.temperature});
            if (exec) return loss.loss_and_grad(*exec, in.student, in.teacher, in.out).total;
            return loss.loss_and_grad(in.student, in.teacher, in.out).total;
        }
        case loss_kind::softmax:
            if constexpr (softmax_takes_executor) {
                if (exec) {
                    distill::softmax(*exec, in.student, in.out, c.temperature);
                    return 0;
                }
            }
            distill::softmax(in.student, in.out, c.temperature);
            return 0;
        case loss_kind::top_k: {
            ensure_top_k(in, c.top_k, c.temperature);
            const distill::top_k_distillation_loss<Scalar> loss(
                {.temperature = c.temperature, .alpha = 1.0, .teacher = distill::teacher_input::log_probabilities});
            const auto teacher = distill::top_k(in.top_indices, in.top_values);
            if (exec) return loss.loss_and_grad(*exec, in.student, teacher, distill::no_labels, in.out).total;
            return loss.loss_and_grad(in.student, teacher, distill::no_labels, in.out).total;
        }
        case loss_kind::log_softmax:
            if (exec)
                distill::log_softmax(*exec, in.student, in.out, c.temperature);
            else
                distill::log_softmax(in.student, in.out, c.temperature);
            return 0;
        }
        return 0;
    }
};

} // namespace distill_bench
