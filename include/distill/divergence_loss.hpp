// distill/divergence_loss.hpp - any divergence of the family between the teacher's and the
// student's softened distributions, times T^2:
//
//     L_i = T^2 D(p_i, q_i),  p = softmax(t / T), q = softmax(s / T)
//
// with D one of forward_kl, reverse_kl, jensen_shannon, skew_kl, skew_reverse_kl or
// total_variation (divergence.hpp). One call returns the loss and writes dL/ds. decoupled_kd needs
// labels and is offered by distillation_loss.
#pragma once

#include "detail/warnings_push.hpp"  // GCC 12 AVX-512 false positives; pairs with warnings_pop.hpp below

#include "detail/loss_functor.hpp"
#include "divergence.hpp"
#include "reduction.hpp"
#include "workspace.hpp"

namespace distill {

struct divergence_options {
    distill::divergence divergence = forward_kl{};  // which divergence, with its parameters
    double temperature = 1.0;              // T in [1e-3, 1e3]
    bool scale_by_t_squared = true;        // multiply the divergence (and its gradient) by T^2
    reduction reduce = reduction::mean;    // mean = sum / rows counted
    double normalizer = 1.0;               // divisor for reduction::divide_by (> 0, finite)
    bool check_finite = false;             // opt-in scan: NaN or +inf -> error naming (row, column)
    teacher_input teacher = teacher_input::logits;  // what the teacher's values are
    // Forward KL only (the other divergences run normalise-first and do not use it):
    // Room for the student's exponentials of rows longer than 1024 classes, lent by the caller
    // (workspace.hpp): the gradient sweep then reads them instead of computing them again. Optional;
    // the results are the same bits with or without it.
    ::distill::workspace* workspace = nullptr;
};

namespace detail {

// The loss_config of divergence_options, for every functor built from them (no cross-entropy term).
inline loss_config divergence_config(const divergence_options& o, const char* loss_name) noexcept {
    loss_config c;
    c.loss_name = loss_name;
    c.soft_term = true;
    const divergence_choice d = choose(o.divergence);
    c.divergence = d.kind;
    c.params = d.params;
    c.temperature = o.temperature;
    c.scale_by_t_squared = o.scale_by_t_squared;
    c.teacher = o.teacher;
    c.reduce = o.reduce;
    c.normalizer = o.normalizer;
    c.check_finite = o.check_finite;
    c.exps_workspace = o.workspace;
    return c;
}

}  // namespace detail

// Calls: loss(student, teacher[, rows]) and loss_and_grad(student, teacher, grad[, rows]), each
// optionally with an executor first, and their non-throwing try_ twins (detail/loss_functor.hpp).
template <class Scalar>
class divergence_loss : public detail::loss_functor<divergence_loss<Scalar>, Scalar, 2> {
public:
    divergence_loss() = default;
    explicit divergence_loss(const divergence_options& options) : options_(options) { this->check_options_or_throw(); }
    const divergence_options& options() const noexcept { return options_; }

private:
    friend class detail::loss_functor<divergence_loss, Scalar, 2>;

    template <class Isa, class Exec, class Student, class Teacher, class Grad>
    status run(Exec& exec, const Student& student, const Teacher& teacher, Grad&& grad, loss_value& out,
               per_row rows) const noexcept {
        return detail::evaluate<Scalar, Isa>(exec, config(), student, teacher, detail::absent{}, grad, rows, out);
    }
    detail::loss_config config() const noexcept { return detail::divergence_config(options_, "divergence_loss"); }

    divergence_options options_{};
};

}  // namespace distill

#include "detail/warnings_pop.hpp"
