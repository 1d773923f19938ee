// distill/cross_entropy.hpp - the hard-label term: cross-entropy of softmax(s) against the labels.
//
// CE_i = -(1 - eps) log r_{i,y_i} - (eps / C) sum_c log r_ic, r = softmax(s): label smoothing as in
// PyTorch's F.cross_entropy(label_smoothing=eps) (Szegedy et al. 2016). Rows whose label is
// ignore_index take no part. dCE/ds = r - ((1 - eps) onehot(y) + eps / C). docs/math.md derives it.
#pragma once

#include "detail/warnings_push.hpp"  // GCC 12 AVX-512 false positives; pairs with warnings_pop.hpp below

#include <cstdint>
#include <vector>

#include "detail/loss_functor.hpp"
#include "reduction.hpp"
#include "workspace.hpp"

namespace distill {

struct cross_entropy_options {
    double label_smoothing = 0.0;        // eps in [0, 1)
    std::int64_t ignore_index = -100;    // rows with this label take no part
    reduction reduce = reduction::mean;  // mean = sum / rows counted
    double normalizer = 1.0;             // divisor for reduction::divide_by (> 0, finite)
    bool check_finite = false;           // opt-in scan: NaN or +inf -> error naming (row, column)
    // Weights of the classes in the cross-entropy term (PyTorch's `weight`): empty, or one finite
    // weight >= 0 per class. Row i's CE is then -(1 - eps) w_y log r_y - (eps / C) sum_c w_c log r_c,
    // and mean divides that term by the sum of the counted rows' w_y.
    std::vector<double> class_weights = {};
    // Room for the exponentials of rows longer than 1024 classes, lent by the caller
    // (workspace.hpp): the gradient sweep then reads them instead of computing them again. Optional;
    // the results are the same bits with or without it.
    ::distill::workspace* workspace = nullptr;
};

// Calls: loss(student, labels[, rows]) and loss_and_grad(student, labels, grad[, rows]), each
// optionally with an executor first, and their non-throwing try_ twins (detail/loss_functor.hpp).
template <class Scalar>
class cross_entropy : public detail::loss_functor<cross_entropy<Scalar>, Scalar, 2> {
public:
    cross_entropy() = default;
    explicit cross_entropy(const cross_entropy_options& options)
        : options_(options), class_weights_(options.class_weights.begin(), options.class_weights.end()) {
        this->check_options_or_throw();
    }
    const cross_entropy_options& options() const noexcept { return options_; }

private:
    friend class detail::loss_functor<cross_entropy, Scalar, 2>;

    template <class Isa, class Exec, class Student, class Labels, class Grad>
    status run(Exec& exec, const Student& student, const Labels& labels, Grad&& grad, loss_value& out,
               per_row rows) const noexcept {
        return detail::evaluate<Scalar, Isa>(exec, config(), student, detail::absent{}, labels, grad, rows, out);
    }
    detail::loss_config config() const noexcept {
        detail::loss_config c;
        c.loss_name = "cross_entropy";
        c.hard_term = true;
        c.label_smoothing = options_.label_smoothing;
        if (!options_.class_weights.empty()) {
            c.class_weights = class_weights_.data();
            c.class_weight_count = static_cast<std::ptrdiff_t>(class_weights_.size());
        }
        c.ignore_index = options_.ignore_index;
        c.reduce = options_.reduce;
        c.normalizer = options_.normalizer;
        c.check_finite = options_.check_finite;
        c.exps_workspace = options_.workspace;
        return c;
    }

    cross_entropy_options options_{};
    std::vector<detail::compute_t<Scalar>> class_weights_;  // options_.class_weights in the kernels' compute type
};

}  // namespace distill

#include "detail/warnings_pop.hpp"
