// What each model minimises, and the only place the trainer touches distill's losses. Every loss
// value and every gradient the trainer uses comes from distill's fused loss_and_grad calls.
#pragma once

#include "matrix.hpp"

#include <distill/distill.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace demo {

// A row's label is withheld from the student (the "unlabelled" images) when it is this value.
inline constexpr std::int64_t no_label = -1;

enum class objective_kind {
    hard_labels,   // cross-entropy with the true labels (teacher, hard-label students)
    // alpha * T^2 * D(teacher || student at T) + (1 - alpha) * CE, D the recipe's divergence
    // (Hinton's loss when D is forward KL). Every row is labelled.
    distillation,
    // Labelled rows as `distillation`; rows whose label is withheld get the soft term T^2 * D alone,
    // so the teacher's knowledge of the unlabelled images still reaches the student. A batch without
    // any labelled row is pure soft-target training (Hinton's transfer set without labels).
    distillation_with_unlabelled,
};

// The soft term and its weights: the hyperparameters the validation split chooses.
struct loss_recipe {
    distill::divergence divergence = distill::forward_kl{};
    double temperature = 1.0;
    double alpha = 1.0;  // weight of the soft term on labelled rows
};

// "forward_kl", "reverse_kl", "jensen_shannon", ... (the option struct's name).
std::string divergence_name(const distill::divergence& d);
// Short label for tables and plots: "forward KL", "JSD", "skew KL", ...
std::string divergence_label(const distill::divergence& d);
// The divergence's own parameters by name: {"beta", 0.5}, {"skew", 0.1}, DKD's two weights; empty for
// forward KL, reverse KL and TVD.
std::vector<std::pair<std::string, double>> divergence_parameters(const distill::divergence& d);
// "T=2 alpha=0.9 beta=0.5": the recipe in one short line.
std::string describe(const loss_recipe& r);

class objective {
public:
    objective(objective_kind kind, loss_recipe recipe);

    // The batch has its labelled rows first (`labels` holds exactly those, no_label-free) and the
    // unlabelled rows after them. `teacher` holds the teacher's logits for the same rows (unused by
    // hard_labels). Writes dLoss/dstudent into `grad` (same shape as `student`) and returns the loss,
    // a mean over every row of the batch.
    distill::loss_value loss_and_grad(const matrix& student, const matrix& teacher,
                                      std::span<const std::int64_t> labels, matrix& grad) const;

    objective_kind kind() const { return kind_; }
    const loss_recipe& recipe() const { return recipe_; }

private:
    objective_kind kind_;
    loss_recipe recipe_;
};

}  // namespace demo
