#include "objective.hpp"

#include <stdexcept>

namespace demo {

objective::objective(objective_kind kind, double temperature, double alpha)
    : kind_(kind), temperature_(temperature), alpha_(alpha) {}

distill::loss_value objective::loss_and_grad(const matrix& student, const matrix& teacher,
                                             std::span<const std::int64_t> labels, matrix& grad) const {
    const auto rows = student.rows();
    const auto labelled = static_cast<Eigen::Index>(labels.size());
    grad.resize(rows, student.cols());

    // The loss objects are cheap, immutable option holders; building them per batch keeps the
    // normaliser below visibly tied to this batch. reduction::divide_by with the batch size makes the
    // labelled and unlabelled halves two parts of one mean over all rows: their sum is exactly the
    // loss of the whole batch, and their gradients land in disjoint rows of `grad`.
    const double batch_rows = static_cast<double>(rows);
    switch (kind_) {
    case objective_kind::hard_labels: {
        const distill::cross_entropy<float> ce({.reduce = distill::reduction::mean});
        return ce.loss_and_grad(student, labels, grad);
    }
    case objective_kind::distillation: {
        const distill::distillation_loss<float> kd(
            {.temperature = temperature_, .alpha = alpha_, .reduce = distill::reduction::mean});
        return kd.loss_and_grad(student, teacher, labels, grad);
    }
    case objective_kind::distillation_with_unlabelled: {
        // Not ignore_index or a row mask for the unlabelled rows: both drop a row from the soft term
        // too, and the soft term is the whole point of those rows.
        distill::loss_value total;
        if (labelled > 0) {
            const distill::distillation_loss<float> kd({.temperature = temperature_, .alpha = alpha_,
                                                        .reduce = distill::reduction::divide_by,
                                                        .normalizer = batch_rows});
            total = kd.loss_and_grad(student.topRows(labelled), teacher.topRows(labelled), labels,
                                     grad.topRows(labelled));
        }
        if (labelled < rows) {
            const distill::kl_divergence<float> kl({.temperature = temperature_,
                                                    .reduce = distill::reduction::divide_by,
                                                    .normalizer = batch_rows});
            const distill::loss_value soft = kl.loss_and_grad(
                student.bottomRows(rows - labelled), teacher.bottomRows(rows - labelled),
                grad.bottomRows(rows - labelled));
            total.total += soft.total;
            total.soft += soft.soft;
            total.rows_counted += soft.rows_counted;
        }
        return total;
    }
    }
    throw std::logic_error("unknown objective_kind");
}

}  // namespace demo
