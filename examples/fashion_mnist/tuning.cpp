#include "tuning.hpp"

#include <stdexcept>
#include <type_traits>

namespace demo {

std::vector<distill::divergence> divergence_family() {
    return {distill::forward_kl{},      distill::reverse_kl{},      distill::jensen_shannon{}, distill::skew_kl{},
            distill::skew_reverse_kl{}, distill::total_variation{}, distill::decoupled_kd{}};
}

std::vector<loss_recipe> grid_for(const distill::divergence& kind, const grid_spec& spec) {
    // The divergence's own parameter values, as divergences.
    const std::vector<distill::divergence> variants = std::visit(
        [&](const auto& v) -> std::vector<distill::divergence> {
            using V = std::decay_t<decltype(v)>;
            std::vector<distill::divergence> out;
            if constexpr (std::is_same_v<V, distill::jensen_shannon>) {
                for (const double b : spec.jsd_betas) out.push_back(distill::jensen_shannon{.beta = b});
            } else if constexpr (std::is_same_v<V, distill::skew_kl> || std::is_same_v<V, distill::skew_reverse_kl>) {
                for (const double a : spec.skews) out.push_back(V{.skew = a});
            } else if constexpr (std::is_same_v<V, distill::decoupled_kd>) {
                for (const auto& [t, n] : spec.dkd_weights)
                    out.push_back(distill::decoupled_kd{.target_weight = t, .non_target_weight = n});
            } else {
                out.push_back(v);
            }
            return out;
        },
        kind);
    const bool hinton = std::holds_alternative<distill::forward_kl>(kind);
    const auto& temperatures = hinton ? spec.hinton_temperatures : spec.temperatures;
    const auto& alphas = hinton ? spec.hinton_alphas : spec.alphas;
    std::vector<loss_recipe> grid;
    for (const double t : temperatures)
        for (const double a : alphas)
            for (const auto& d : variants) grid.push_back({.divergence = d, .temperature = t, .alpha = a});
    if (grid.empty()) throw std::invalid_argument("grid_for: an empty grid");
    return grid;
}

std::size_t best_index(const std::vector<double>& values) {
    if (values.empty()) throw std::invalid_argument("best_index: no values");
    std::size_t best = 0;
    for (std::size_t i = 1; i < values.size(); ++i)
        if (values[i] > values[best]) best = i;
    return best;
}

}  // namespace demo
