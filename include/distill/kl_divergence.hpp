// distill/kl_divergence.hpp - the soft-target term: KL(p_teacher^T || q_student^T), times T^2.
//
// Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015): the student
// matches the teacher's softened distribution p = softmax(t / T) with its own q = softmax(s / T).
// Forward KL (teacher || student), 0 log 0 = 0; the T^2 factor keeps the gradient's scale
// independent of T and can be switched off. d(T^2 KL)/ds = T (q - p). docs/math.md derives it.
#pragma once

#include "detail/warnings_push.hpp"  // GCC 12 AVX-512 false positives; pairs with warnings_pop.hpp below

#include "detail/evaluate.hpp"
#include "executor.hpp"
#include "reduction.hpp"
#include "status.hpp"

namespace distill {

struct kl_options {
    double temperature = 1.0;            // T > 0, finite
    bool scale_by_t_squared = true;      // multiply KL (and its gradient) by T^2
    reduction reduce = reduction::mean;  // mean = sum / rows counted (PyTorch's batchmean)
    double normalizer = 1.0;             // divisor for reduction::divide_by (> 0, finite)
    bool check_finite = false;           // opt-in scan: NaN or +inf -> error naming (row, column)
};

template <class Scalar>
class kl_divergence {
    static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                  "distill::kl_divergence is defined for float and double");

public:
    using scalar_type = Scalar;

    kl_divergence() = default;
    explicit kl_divergence(const kl_options& options) : options_(options) {
#if defined(__cpp_exceptions)
        detail::throw_if_error(detail::check_options(config()));
#endif
    }
    const kl_options& options() const noexcept { return options_; }

    // Non-throwing twins: the status says what was wrong; `out` holds the result when it is ok.
    template <executor Exec, class Student, class Teacher>
    status try_loss(Exec&& exec, const Student& student, const Teacher& teacher, loss_value& out,
                    per_row rows = {}) const noexcept {
        return detail::evaluate<Scalar>(exec, config(), student, teacher, detail::absent{}, detail::absent{}, rows,
                                        out);
    }
    template <executor Exec, class Student, class Teacher, class Grad>
    status try_loss_and_grad(Exec&& exec, const Student& student, const Teacher& teacher, Grad&& grad,
                             loss_value& out, per_row rows = {}) const noexcept {
        return detail::evaluate<Scalar>(exec, config(), student, teacher, detail::absent{}, grad, rows, out);
    }
    template <class Student, class Teacher>
        requires(!executor<Student>)
    status try_loss(const Student& student, const Teacher& teacher, loss_value& out, per_row rows = {}) const noexcept {
        return try_loss(sequential, student, teacher, out, rows);
    }
    template <class Student, class Teacher, class Grad>
        requires(!executor<Student>)
    status try_loss_and_grad(const Student& student, const Teacher& teacher, Grad&& grad, loss_value& out,
                             per_row rows = {}) const noexcept {
        return try_loss_and_grad(sequential, student, teacher, grad, out, rows);
    }

#if defined(__cpp_exceptions)
    // The loss alone (one sweep over the logits).
    template <executor Exec, class Student, class Teacher>
    loss_value loss(Exec&& exec, const Student& student, const Teacher& teacher, per_row rows = {}) const {
        loss_value v;
        detail::throw_if_error(try_loss(exec, student, teacher, v, rows));
        return v;
    }
    // The loss, and dL/d(student logits) written into `grad` (N x C), in one fused call.
    template <executor Exec, class Student, class Teacher, class Grad>
    loss_value loss_and_grad(Exec&& exec, const Student& student, const Teacher& teacher, Grad&& grad,
                             per_row rows = {}) const {
        loss_value v;
        detail::throw_if_error(try_loss_and_grad(exec, student, teacher, grad, v, rows));
        return v;
    }
    template <class Student, class Teacher>
        requires(!executor<Student>)
    loss_value loss(const Student& student, const Teacher& teacher, per_row rows = {}) const {
        return loss(sequential, student, teacher, rows);
    }
    template <class Student, class Teacher, class Grad>
        requires(!executor<Student>)
    loss_value loss_and_grad(const Student& student, const Teacher& teacher, Grad&& grad, per_row rows = {}) const {
        return loss_and_grad(sequential, student, teacher, grad, rows);
    }
#endif

private:
    detail::loss_config config() const noexcept {
        detail::loss_config c;
        c.loss_name = "kl_divergence";
        c.temperature = options_.temperature;
        c.alpha = 1;
        c.scale_by_t_squared = options_.scale_by_t_squared;
        c.reduce = options_.reduce;
        c.normalizer = options_.normalizer;
        c.check_finite = options_.check_finite;
        return c;
    }

    kl_options options_{};
};

}  // namespace distill

#include "detail/warnings_pop.hpp"
