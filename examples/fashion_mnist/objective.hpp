// What each model minimises, and the only place the trainer touches distill. Every loss value and
// every gradient the trainer uses comes from distill's fused loss_and_grad calls below.
#pragma once

#include "matrix.hpp"

#include <distill/distill.hpp>

#include <cstdint>
#include <span>
#include <string>

namespace demo {

// A row's label is withheld from the student (the "unlabelled" images) when it is this value.
inline constexpr std::int64_t no_label = -1;

enum class objective_kind {
    hard_labels,   // cross-entropy with the true labels (teacher, hard-label students)
    distillation,  // Hinton: alpha * T^2 * KL(teacher || student at T) + (1 - alpha) * CE
    // Labelled rows as `distillation`; rows whose label is withheld get the pure soft term T^2 * KL,
    // so the teacher's knowledge of the 59,000 unlabelled images still reaches the student.
    distillation_with_unlabelled,
};

class objective {
public:
    objective(objective_kind kind, double temperature, double alpha);

    // The batch has its labelled rows first (`labels` holds exactly those, no_label-free) and the
    // unlabelled rows after them. `teacher` holds the teacher's logits for the same rows (unused by
    // hard_labels). Writes dLoss/dstudent into `grad` (same shape as `student`) and returns the loss,
    // a mean over every row of the batch.
    distill::loss_value loss_and_grad(const matrix& student, const matrix& teacher,
                                      std::span<const std::int64_t> labels, matrix& grad) const;

    objective_kind kind() const { return kind_; }

private:
    objective_kind kind_;
    double temperature_;
    double alpha_;
};

}  // namespace demo
