// distill/distillation_loss.hpp - the soft and hard terms fused (Hinton, Vinyals & Dean 2015):
//
//     L_i = alpha * T^2 * D(p_i, q_i) + (1 - alpha) * CE(s_i, y_i)
//
// with p = softmax(t / T), q = softmax(s / T) and D forward KL unless another divergence is chosen
// (divergence.hpp). One call returns the loss with its two parts and writes
// dL/ds = alpha T dD/d(s / T) + (1 - alpha)(r - target), without allocating. A row whose label is
// ignore_index, or that the row mask excludes, takes no part in either term. Without labels (an
// empty label range) alpha must be 1: pure distillation, where the row mask says which rows count.
#pragma once

#include "detail/warnings_push.hpp"  // GCC 12 AVX-512 false positives; pairs with warnings_pop.hpp below

#include <cstdint>
#include <vector>

#include "detail/loss_functor.hpp"
#include "divergence.hpp"
#include "reduction.hpp"
#include "workspace.hpp"

namespace distill {

struct distillation_options {
    double temperature = 1.0;            // T in [1e-3, 1e3]
    double alpha = 0.5;                  // weight of the soft (divergence) term, in [0, 1]
    bool scale_by_t_squared = true;      // multiply the soft term by T^2
    double label_smoothing = 0.0;        // eps in [0, 1), hard term only
    std::int64_t ignore_index = -100;    // rows with this label take no part in either term
    reduction reduce = reduction::mean;  // mean = sum / rows counted
    double normalizer = 1.0;             // divisor for reduction::divide_by (> 0, finite)
    bool check_finite = false;           // opt-in scan: NaN or +inf -> error naming (row, column)
    distill::divergence divergence = forward_kl{};           // the soft term
    teacher_input teacher = teacher_input::logits;  // what the teacher's values are
    // Weights of the classes in the cross-entropy term (PyTorch's `weight`): empty, or one finite
    // weight >= 0 per class. Row i's CE is then -(1 - eps) w_y log r_y - (eps / C) sum_c w_c log r_c,
    // and mean divides that term by the sum of the counted rows' w_y.
    std::vector<double> class_weights = {};
    // Room for the student's exponentials of rows longer than 1024 classes, lent by the caller
    // (workspace.hpp): the gradient sweep then reads them instead of computing them again. Optional;
    // the results are the same bits with or without it.
    ::distill::workspace* workspace = nullptr;
};

namespace detail {

// The loss_config of distillation_options, for every functor built from them; `class_weights` are
// the options' class weights in the functor's compute type (the kernels read them so).
template <class Scalar>
loss_config distillation_config(const distillation_options& o, const char* loss_name,
                                const std::vector<Scalar>& class_weights) noexcept {
    loss_config c;
    c.loss_name = loss_name;
    c.soft_term = true;
    c.hard_term = true;
    const divergence_choice d = choose(o.divergence);
    c.divergence = d.kind;
    c.params = d.params;
    c.temperature = o.temperature;
    c.alpha = o.alpha;
    c.scale_by_t_squared = o.scale_by_t_squared;
    c.teacher = o.teacher;
    c.label_smoothing = o.label_smoothing;
    if (!class_weights.empty()) {
        c.class_weights = class_weights.data();
        c.class_weight_count = static_cast<std::ptrdiff_t>(class_weights.size());
    }
    c.ignore_index = o.ignore_index;
    c.reduce = o.reduce;
    c.normalizer = o.normalizer;
    c.check_finite = o.check_finite;
    c.exps_workspace = o.workspace;
    return c;
}

}  // namespace detail

// Calls: loss(student, teacher, labels[, rows]) and loss_and_grad(student, teacher, labels, grad
// [, rows]), each optionally with an executor first, and their non-throwing try_ twins
// (detail/loss_functor.hpp).
template <class Scalar>
class distillation_loss : public detail::loss_functor<distillation_loss<Scalar>, Scalar, 3> {
public:
    distillation_loss() = default;
    explicit distillation_loss(const distillation_options& options)
        : options_(options), class_weights_(options.class_weights.begin(), options.class_weights.end()) {
        this->check_options_or_throw();
    }
    const distillation_options& options() const noexcept { return options_; }

private:
    friend class detail::loss_functor<distillation_loss, Scalar, 3>;

    template <class Isa, class Exec, class Student, class Teacher, class Labels, class Grad>
    status run(Exec& exec, const Student& student, const Teacher& teacher, const Labels& labels, Grad&& grad,
               loss_value& out, per_row rows) const noexcept {
        return detail::evaluate<Scalar, Isa>(exec, config(), student, teacher, labels, grad, rows, out);
    }
    detail::loss_config config() const noexcept {
        return detail::distillation_config(options_, "distillation_loss", class_weights_);
    }

    distillation_options options_{};
    std::vector<detail::compute_t<Scalar>> class_weights_;  // options_.class_weights in the kernels' compute type
};

}  // namespace distill

#include "detail/warnings_pop.hpp"
