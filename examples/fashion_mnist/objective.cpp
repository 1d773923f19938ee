#include "objective.hpp"

#include <cstdio>
#include <stdexcept>
#include <type_traits>

namespace demo {

std::string divergence_name(const distill::divergence& d) {
    constexpr const char* names[] = {"forward_kl",      "reverse_kl",      "jensen_shannon", "skew_kl",
                                     "skew_reverse_kl", "total_variation", "decoupled_kd"};
    static_assert(std::size(names) == std::variant_size_v<distill::divergence>);
    return names[d.index()];
}

std::string divergence_label(const distill::divergence& d) {
    constexpr const char* labels[] = {"forward KL", "reverse KL", "JSD", "skew KL", "skew reverse KL", "TVD", "DKD"};
    static_assert(std::size(labels) == std::variant_size_v<distill::divergence>);
    return labels[d.index()];
}

std::vector<std::pair<std::string, double>> divergence_parameters(const distill::divergence& d) {
    return std::visit(
        [](const auto& v) -> std::vector<std::pair<std::string, double>> {
            using V = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<V, distill::jensen_shannon>) return {{"beta", v.beta}};
            else if constexpr (std::is_same_v<V, distill::skew_kl> || std::is_same_v<V, distill::skew_reverse_kl>)
                return {{"skew", v.skew}};
            else if constexpr (std::is_same_v<V, distill::decoupled_kd>)
                return {{"target_weight", v.target_weight}, {"non_target_weight", v.non_target_weight}};
            else return {};
        },
        d);
}

std::string describe(const loss_recipe& r) {
    char text[64];
    std::snprintf(text, sizeof text, "T=%g alpha=%g", r.temperature, r.alpha);
    std::string out = text;
    for (const auto& [name, value] : divergence_parameters(r.divergence)) {
        std::snprintf(text, sizeof text, " %s=%g", name.c_str(), value);
        out += text;
    }
    return out;
}

objective::objective(objective_kind kind, loss_recipe recipe) : kind_(kind), recipe_(std::move(recipe)) {}

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
    const loss_recipe& r = recipe_;
    switch (kind_) {
    case objective_kind::hard_labels: {
        const distill::cross_entropy<float> ce({.reduce = distill::reduction::mean});
        return ce.loss_and_grad(student, labels, grad);
    }
    case objective_kind::distillation: {
        const distill::distillation_loss<float> kd({.temperature = r.temperature, .alpha = r.alpha,
                                                    .reduce = distill::reduction::mean, .divergence = r.divergence});
        return kd.loss_and_grad(student, teacher, labels, grad);
    }
    case objective_kind::distillation_with_unlabelled: {
        // Not ignore_index or a row mask for the unlabelled rows: both drop a row from the soft term
        // too, and the soft term is the whole point of those rows.
        distill::loss_value total;
        if (labelled > 0) {
            const distill::distillation_loss<float> kd({.temperature = r.temperature, .alpha = r.alpha,
                                                        .reduce = distill::reduction::divide_by,
                                                        .normalizer = batch_rows, .divergence = r.divergence});
            total = kd.loss_and_grad(student.topRows(labelled), teacher.topRows(labelled), labels,
                                     grad.topRows(labelled));
        }
        if (labelled < rows) {
            const auto n = rows - labelled;
            distill::loss_value soft;
            if (std::holds_alternative<distill::decoupled_kd>(r.divergence)) {
                // DKD splits the distribution at the row's target class, which an unlabelled row does
                // not have: the teacher's top class stands in for it, and alpha = 1 keeps the hard
                // term (which would train on that guess) out.
                std::vector<std::int64_t> teacher_top(static_cast<std::size_t>(n));
                for (Eigen::Index i = 0; i < n; ++i) {
                    Eigen::Index top = 0;
                    teacher.row(labelled + i).maxCoeff(&top);
                    teacher_top[static_cast<std::size_t>(i)] = top;
                }
                const distill::distillation_loss<float> dkd({.temperature = r.temperature, .alpha = 1.0,
                                                             .reduce = distill::reduction::divide_by,
                                                             .normalizer = batch_rows, .divergence = r.divergence});
                soft = dkd.loss_and_grad(student.bottomRows(n), teacher.bottomRows(n), teacher_top,
                                         grad.bottomRows(n));
            } else {
                const distill::divergence_loss<float> d({.divergence = r.divergence, .temperature = r.temperature,
                                                         .reduce = distill::reduction::divide_by,
                                                         .normalizer = batch_rows});
                soft = d.loss_and_grad(student.bottomRows(n), teacher.bottomRows(n), grad.bottomRows(n));
            }
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
