// distill/reduction.hpp - how per-row losses become the number a trainer back-propagates.
#pragma once

#include <cstdint>
#include <span>

namespace distill {

// none:      per-row losses into per_row::losses; loss_value::total is their sum.
// sum:       sum over rows counted.
// mean:      sum / rows counted (PyTorch's `batchmean` when no row is ignored); 0 when none counts.
// divide_by: sum / a caller-given normaliser, for gradient accumulation over micro-batches and
//            data-parallel training where the global count is known only to the caller.
// PyTorch's element-wise `mean` for KL (dividing by N * C) is a known trap and is not offered.
enum class reduction { none, sum, mean, divide_by };

// What a loss call returns. Every field is already reduced (weighted by the reduction).
struct loss_value {
    double total = 0;               // soft + hard
    double soft = 0;                // alpha * T^2 * divergence part (all of kl_divergence, divergence_loss)
    double hard = 0;                // (1 - alpha) * CE part (all of cross_entropy)
    std::int64_t rows_counted = 0;  // rows neither ignored (label) nor masked out (mask, weight 0)
    double weight_sum = 0;          // sum of the counted rows' weights (rows_counted without weights)
};

// Optional per-row inputs and outputs of a loss call.
struct per_row {
    std::span<const std::uint8_t> mask = {};  // empty: every row counts; else N entries, 0 = ignore
    std::span<double> losses = {};            // empty, or N entries receiving each row's (weighted) loss
    // Empty: every row weighs 1; else N finite weights >= 0 (a token's weight; 0 ignores the row).
    // Row i's loss and gradient are multiplied by weights[i], and mean divides by the sum of the
    // counted rows' weights: mean = sum_i w_i L_i / sum_i w_i.
    std::span<const float> weights = {};
};

}  // namespace distill
