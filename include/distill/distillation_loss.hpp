// distill/distillation_loss.hpp - Hinton's distillation loss, the soft and hard terms fused:
//
//     L_i = alpha * T^2 * KL(p_i || q_i) + (1 - alpha) * CE(s_i, y_i)
//
// with p = softmax(t / T), q = softmax(s / T) (Hinton, Vinyals & Dean 2015). One call returns the
// loss with its two parts and writes dL/ds = alpha T (q - p) + (1 - alpha)(r - target), without
// allocating. A row whose label is ignore_index, or that the row mask excludes, takes no part in
// either term. Without labels (an empty label range) alpha must be 1: pure distillation, where the
// row mask says which rows count.
#pragma once

#include "detail/warnings_push.hpp"  // GCC 12 AVX-512 false positives; pairs with warnings_pop.hpp below

#include <cstdint>

#include "detail/evaluate.hpp"
#include "executor.hpp"
#include "reduction.hpp"
#include "status.hpp"

namespace distill {

struct distillation_options {
    double temperature = 1.0;            // T > 0, finite
    double alpha = 0.5;                  // weight of the soft (KL) term, in [0, 1]
    bool scale_by_t_squared = true;      // multiply the KL term by T^2
    double label_smoothing = 0.0;        // eps in [0, 1), hard term only
    std::int64_t ignore_index = -100;    // rows with this label take no part in either term
    reduction reduce = reduction::mean;  // mean = sum / rows counted
    double normalizer = 1.0;             // divisor for reduction::divide_by (> 0, finite)
    bool check_finite = false;           // opt-in scan: NaN or +inf -> error naming (row, column)
};

template <class Scalar>
class distillation_loss {
    static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                  "distill::distillation_loss is defined for float and double");

public:
    using scalar_type = Scalar;

    distillation_loss() = default;
    explicit distillation_loss(const distillation_options& options) : options_(options) {
#if defined(__cpp_exceptions)
        detail::throw_if_error(detail::check_options(config()));
#endif
    }
    const distillation_options& options() const noexcept { return options_; }

    template <executor Exec, class Student, class Teacher, class Labels>
    status try_loss(Exec&& exec, const Student& student, const Teacher& teacher, const Labels& labels,
                    loss_value& out, per_row rows = {}) const noexcept {
        return detail::evaluate<Scalar>(exec, config(), student, teacher, labels, detail::absent{}, rows, out);
    }
    template <executor Exec, class Student, class Teacher, class Labels, class Grad>
    status try_loss_and_grad(Exec&& exec, const Student& student, const Teacher& teacher, const Labels& labels,
                             Grad&& grad, loss_value& out, per_row rows = {}) const noexcept {
        return detail::evaluate<Scalar>(exec, config(), student, teacher, labels, grad, rows, out);
    }
    template <class Student, class Teacher, class Labels>
        requires(!executor<Student>)
    status try_loss(const Student& student, const Teacher& teacher, const Labels& labels, loss_value& out,
                    per_row rows = {}) const noexcept {
        return try_loss(sequential, student, teacher, labels, out, rows);
    }
    template <class Student, class Teacher, class Labels, class Grad>
        requires(!executor<Student>)
    status try_loss_and_grad(const Student& student, const Teacher& teacher, const Labels& labels, Grad&& grad,
                             loss_value& out, per_row rows = {}) const noexcept {
        return try_loss_and_grad(sequential, student, teacher, labels, grad, out, rows);
    }

#if defined(__cpp_exceptions)
    template <executor Exec, class Student, class Teacher, class Labels>
    loss_value loss(Exec&& exec, const Student& student, const Teacher& teacher, const Labels& labels,
                    per_row rows = {}) const {
        loss_value v;
        detail::throw_if_error(try_loss(exec, student, teacher, labels, v, rows));
        return v;
    }
    template <executor Exec, class Student, class Teacher, class Labels, class Grad>
    loss_value loss_and_grad(Exec&& exec, const Student& student, const Teacher& teacher, const Labels& labels,
                             Grad&& grad, per_row rows = {}) const {
        loss_value v;
        detail::throw_if_error(try_loss_and_grad(exec, student, teacher, labels, grad, v, rows));
        return v;
    }
    template <class Student, class Teacher, class Labels>
        requires(!executor<Student>)
    loss_value loss(const Student& student, const Teacher& teacher, const Labels& labels, per_row rows = {}) const {
        return loss(sequential, student, teacher, labels, rows);
    }
    template <class Student, class Teacher, class Labels, class Grad>
        requires(!executor<Student>)
    loss_value loss_and_grad(const Student& student, const Teacher& teacher, const Labels& labels, Grad&& grad,
                             per_row rows = {}) const {
        return loss_and_grad(sequential, student, teacher, labels, grad, rows);
    }
#endif

private:
    detail::loss_config config() const noexcept {
        detail::loss_config c;
        c.loss_name = "distillation_loss";
        c.temperature = options_.temperature;
        c.alpha = options_.alpha;
        c.scale_by_t_squared = options_.scale_by_t_squared;
        c.label_smoothing = options_.label_smoothing;
        c.ignore_index = options_.ignore_index;
        c.reduce = options_.reduce;
        c.normalizer = options_.normalizer;
        c.check_finite = options_.check_finite;
        return c;
    }

    distillation_options options_{};
};

}  // namespace distill

#include "detail/warnings_pop.hpp"
