// distill/cross_entropy.hpp - the hard-label term: cross-entropy of softmax(s) against the labels.
//
// CE_i = -(1 - eps) log r_{i,y_i} - (eps / C) sum_c log r_ic, r = softmax(s): label smoothing as in
// PyTorch's F.cross_entropy(label_smoothing=eps) (Szegedy et al. 2016). Rows whose label is
// ignore_index take no part. dCE/ds = r - ((1 - eps) onehot(y) + eps / C). docs/math.md derives it.
#pragma once

#include "detail/warnings_push.hpp"  // GCC 12 AVX-512 false positives; pairs with warnings_pop.hpp below

#include <cstdint>

#include "detail/evaluate.hpp"
#include "executor.hpp"
#include "reduction.hpp"
#include "status.hpp"

namespace distill {

struct cross_entropy_options {
    double label_smoothing = 0.0;        // eps in [0, 1)
    std::int64_t ignore_index = -100;    // rows with this label take no part
    reduction reduce = reduction::mean;  // mean = sum / rows counted
    double normalizer = 1.0;             // divisor for reduction::divide_by (> 0, finite)
    bool check_finite = false;           // opt-in scan: NaN or +inf -> error naming (row, column)
};

template <class Scalar>
class cross_entropy {
    static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                  "distill::cross_entropy is defined for float and double");

public:
    using scalar_type = Scalar;

    cross_entropy() = default;
    explicit cross_entropy(const cross_entropy_options& options) : options_(options) {
#if defined(__cpp_exceptions)
        detail::throw_if_error(detail::check_options(config()));
#endif
    }
    const cross_entropy_options& options() const noexcept { return options_; }

    template <executor Exec, class Student, class Labels>
    status try_loss(Exec&& exec, const Student& student, const Labels& labels, loss_value& out,
                    per_row rows = {}) const noexcept {
        return detail::evaluate<Scalar>(exec, config(), student, detail::absent{}, labels, detail::absent{}, rows,
                                        out);
    }
    template <executor Exec, class Student, class Labels, class Grad>
    status try_loss_and_grad(Exec&& exec, const Student& student, const Labels& labels, Grad&& grad,
                             loss_value& out, per_row rows = {}) const noexcept {
        return detail::evaluate<Scalar>(exec, config(), student, detail::absent{}, labels, grad, rows, out);
    }
    template <class Student, class Labels>
        requires(!executor<Student>)
    status try_loss(const Student& student, const Labels& labels, loss_value& out, per_row rows = {}) const noexcept {
        return try_loss(sequential, student, labels, out, rows);
    }
    template <class Student, class Labels, class Grad>
        requires(!executor<Student>)
    status try_loss_and_grad(const Student& student, const Labels& labels, Grad&& grad, loss_value& out,
                             per_row rows = {}) const noexcept {
        return try_loss_and_grad(sequential, student, labels, grad, out, rows);
    }

#if defined(__cpp_exceptions)
    template <executor Exec, class Student, class Labels>
    loss_value loss(Exec&& exec, const Student& student, const Labels& labels, per_row rows = {}) const {
        loss_value v;
        detail::throw_if_error(try_loss(exec, student, labels, v, rows));
        return v;
    }
    template <executor Exec, class Student, class Labels, class Grad>
    loss_value loss_and_grad(Exec&& exec, const Student& student, const Labels& labels, Grad&& grad,
                             per_row rows = {}) const {
        loss_value v;
        detail::throw_if_error(try_loss_and_grad(exec, student, labels, grad, v, rows));
        return v;
    }
    template <class Student, class Labels>
        requires(!executor<Student>)
    loss_value loss(const Student& student, const Labels& labels, per_row rows = {}) const {
        return loss(sequential, student, labels, rows);
    }
    template <class Student, class Labels, class Grad>
        requires(!executor<Student>)
    loss_value loss_and_grad(const Student& student, const Labels& labels, Grad&& grad, per_row rows = {}) const {
        return loss_and_grad(sequential, student, labels, grad, rows);
    }
#endif

private:
    detail::loss_config config() const noexcept {
        detail::loss_config c;
        c.loss_name = "cross_entropy";
        c.alpha = 0;
        c.label_smoothing = options_.label_smoothing;
        c.ignore_index = options_.ignore_index;
        c.reduce = options_.reduce;
        c.normalizer = options_.normalizer;
        c.check_finite = options_.check_finite;
        return c;
    }

    cross_entropy_options options_{};
};

}  // namespace distill

#include "detail/warnings_pop.hpp"
