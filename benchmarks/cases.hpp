// The suite's cases, in the order they run: distill_bench times them, distill_count counts them.
#pragma once

#include "bench_common.hpp"

#include <vector>

namespace distill_bench {

inline std::vector<case_spec> all_cases() {
    // Grouped by shape so the inputs of a shape are generated once. 1 x 10 measures the fixed cost
    // of a call (one short row); 64 x 10, 256 x 10 and 128 x 100 the cost per short row.
    struct shape { std::ptrdiff_t rows, cols; };
    const shape float_shapes[] = {{1, 10},      {64, 10},     {256, 10},   {128, 100},
                                  {256, 1000},  {512, 32000}, {32, 128256}};
    std::vector<case_spec> cases;
    for (const auto& s : float_shapes) {
        cases.push_back({loss_kind::distillation, s.rows, s.cols, false, 4.0});
        if (s.rows == 512 && s.cols == 32000) {
            // Integer and non-integer temperatures: an implementation may derive softmax(s) from
            // softmax(s / T) by powers when T is an integer.
            cases.push_back({loss_kind::distillation, s.rows, s.cols, false, 1.0});
            cases.push_back({loss_kind::distillation, s.rows, s.cols, false, 2.5});
        }
        cases.push_back({loss_kind::kl, s.rows, s.cols, false, 4.0});
        cases.push_back({loss_kind::softmax, s.rows, s.cols, false, 1.0});
        cases.push_back({loss_kind::log_softmax, s.rows, s.cols, false, 1.0});
        if ((s.rows == 512 && s.cols == 32000) || (s.rows == 32 && s.cols == 128256)) {
            // The divergence family on the two LLM shapes, one case per divergence, at T = 2.
            for (const divergence_case d :
                 {divergence_case::forward_kl, divergence_case::reverse_kl, divergence_case::jsd, divergence_case::skew_kl,
                  divergence_case::skew_reverse_kl, divergence_case::tvd, divergence_case::dkd})
                cases.push_back({loss_kind::divergence, s.rows, s.cols, false, 2.0, 1.0, d});
        }
    }
    cases.push_back({loss_kind::distillation, 512, 32000, true, 4.0});
    cases.push_back({loss_kind::kl, 512, 32000, true, 4.0});
    cases.push_back({loss_kind::softmax, 512, 32000, true, 1.0});
    cases.push_back({loss_kind::log_softmax, 512, 32000, true, 1.0});
    return cases;
}

} // namespace distill_bench
