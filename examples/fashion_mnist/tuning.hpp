// The hyperparameter search: small grids over each divergence's recipe, scored on the validation
// split. The grids are written out here so a reader sees exactly what was tried.
#pragma once

#include "objective.hpp"

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace demo {

struct grid_spec {
    // Hinton's loss (forward KL) gets the full T x alpha grid, drawn as the heatmap.
    std::vector<double> hinton_temperatures{1, 2, 4, 8};
    std::vector<double> hinton_alphas{0.5, 0.7, 0.9, 1.0};
    // Every other divergence: T x alpha x its own parameter.
    std::vector<double> temperatures{1, 2, 4};
    std::vector<double> alphas{0.5, 0.9};
    std::vector<double> jsd_betas{0.1, 0.5, 0.9};    // GKD's range; 0.5 is the symmetric JSD
    std::vector<double> skews{0.1, 0.25, 0.5};       // DistiLLM uses 0.1
    // (target, non-target) weights; the DKD paper uses (1, 8) on CIFAR-100.
    std::vector<std::pair<double, double>> dkd_weights{{1, 1}, {1, 4}, {1, 8}};
    // The omitted-class students (soft targets only, so no alpha): T alone.
    std::vector<double> omitted_class_temperatures{2, 4, 8};
    // The students' own dropout, chosen first on the hard-label student.
    std::vector<double> dropouts{0.0, 0.2, 0.5};
};

// The seven divergences in the order of the tables: forward KL (Hinton), reverse KL, JSD, skew KL,
// skew reverse KL, TVD, DKD; each with its default parameters.
std::vector<distill::divergence> divergence_family();

// Every recipe tried for divergence `kind` (its parameters are replaced by the grid's), in the order
// that breaks ties: smaller T first, then smaller alpha, then the parameter's order above.
std::vector<loss_recipe> grid_for(const distill::divergence& kind, const grid_spec& spec);

// One divergence searched in one setting.
struct search_result {
    std::string setting;       // "1000", "1000_unlabelled", "all", "without_<class>"
    distill::divergence kind;  // which divergence (its parameters are the grid's business)
    std::vector<loss_recipe> grid;
    std::vector<double> validation_accuracy;  // per grid point, mean over the tuning seeds
    std::size_t chosen = 0;
    const loss_recipe& best() const { return grid[chosen]; }
    double best_accuracy() const { return validation_accuracy[chosen]; }
};

// The first index of the largest value (ties go to the earlier grid point).
std::size_t best_index(const std::vector<double>& values);

}  // namespace demo
