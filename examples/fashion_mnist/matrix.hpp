// The one matrix type of the trainer. Row-major because distill takes logits with one row per
// sample and unit inner stride, so the network's output goes to the loss without a copy.
#pragma once

#include <Eigen/Core>

namespace demo {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_vector = Eigen::Matrix<float, 1, Eigen::Dynamic>;

}  // namespace demo
