// distill/kl_divergence.hpp - the soft-target term: KL(p_teacher^T || q_student^T), times T^2.
//
// Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015): the student
// matches the teacher's softened distribution p = softmax(t / T) with its own q = softmax(s / T).
// Forward KL (teacher || student), 0 log 0 = 0; the T^2 factor keeps the gradient's scale
// independent of T and can be switched off. d(T^2 KL)/ds = T (q - p). docs/math.md derives it.
// divergence_loss offers the other divergences with the same calls.
#pragma once

#include "detail/warnings_push.hpp"  // GCC 12 AVX-512 false positives; pairs with warnings_pop.hpp below

#include "detail/loss_functor.hpp"
#include "divergence.hpp"
#include "reduction.hpp"
#include "workspace.hpp"

namespace distill {

struct kl_options {
    double temperature = 1.0;            // T in [1e-3, 1e3]
    bool scale_by_t_squared = true;      // multiply KL (and its gradient) by T^2
    reduction reduce = reduction::mean;  // mean = sum / rows counted (PyTorch's batchmean)
    double normalizer = 1.0;             // divisor for reduction::divide_by (> 0, finite)
    bool check_finite = false;           // opt-in scan: NaN or +inf -> error naming (row, column)
    teacher_input teacher = teacher_input::logits;  // what the teacher's values are
    // Room for the student's exponentials of rows longer than 1024 classes, lent by the caller
    // (workspace.hpp): the gradient sweep then reads them instead of computing them again. Optional;
    // the results are the same bits with or without it.
    ::distill::workspace* workspace = nullptr;
};

// Calls: loss(student, teacher[, rows]) and loss_and_grad(student, teacher, grad[, rows]), each
// optionally with an executor first, and their non-throwing try_ twins (detail/loss_functor.hpp).
template <class Scalar>
class kl_divergence : public detail::loss_functor<kl_divergence<Scalar>, Scalar, 2> {
public:
    kl_divergence() = default;
    explicit kl_divergence(const kl_options& options) : options_(options) { this->check_options_or_throw(); }
    const kl_options& options() const noexcept { return options_; }

private:
    friend class detail::loss_functor<kl_divergence, Scalar, 2>;

    template <class Isa, class Exec, class Student, class Teacher, class Grad>
    status run(Exec& exec, const Student& student, const Teacher& teacher, Grad&& grad, loss_value& out,
               per_row rows) const noexcept {
        return detail::evaluate<Scalar, Isa>(exec, config(), student, teacher, detail::absent{}, grad, rows, out);
    }
    detail::loss_config config() const noexcept {
        detail::loss_config c;
        c.loss_name = "kl_divergence";
        c.soft_term = true;
        c.temperature = options_.temperature;
        c.scale_by_t_squared = options_.scale_by_t_squared;
        c.teacher = options_.teacher;
        c.reduce = options_.reduce;
        c.normalizer = options_.normalizer;
        c.check_finite = options_.check_finite;
        c.exps_workspace = options_.workspace;
        return c;
    }

    kl_options options_{};
};

}  // namespace distill

#include "detail/warnings_pop.hpp"
