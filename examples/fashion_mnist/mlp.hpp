// A multilayer perceptron with ReLU hidden layers and inverted dropout, forward and hand-written
// backward. The output layer returns raw logits: the loss (distill) owns the softmax.
#pragma once

#include "matrix.hpp"
#include "random.hpp"

#include <cstdint>
#include <iosfwd>
#include <span>
#include <vector>

namespace demo {

struct dense_layer {
    matrix weights;        // inputs x outputs, so a batch multiplies as X * W
    row_vector bias;       // 1 x outputs
    matrix weights_grad;   // same shapes, filled by backward()
    row_vector bias_grad;
};

// Weights and biases of an mlp with these layer sizes.
inline std::int64_t parameter_count(std::span<const int> sizes) {
    std::int64_t n = 0;
    for (std::size_t k = 0; k + 1 < sizes.size(); ++k) n += std::int64_t{sizes[k]} * sizes[k + 1] + sizes[k + 1];
    return n;
}

class mlp {
public:
    // sizes = {784, hidden..., 10}. He initialisation (He et al. 2015) keeps the activations' scale
    // steady through ReLU layers; biases start at 0.
    mlp(std::vector<int> sizes, float dropout, random_source& init);

    // Training mode draws a fresh dropout mask from `rng` and keeps what backward() needs.
    const matrix& forward_train(const matrix& x, random_source& rng);
    // dlogits = dLoss/dlogits for the batch last passed to forward_train; fills every *_grad.
    void backward(const matrix& dlogits);

    // Inference: no dropout, in chunks so 60,000 rows through a wide teacher stay within a few MB.
    matrix predict(const matrix& x) const;

    std::span<dense_layer> layers() { return layers_; }
    const std::vector<int>& sizes() const { return sizes_; }
    float dropout() const { return dropout_; }
    std::int64_t parameter_count() const { return demo::parameter_count(sizes_); }

    void save(std::ostream& out) const;
    // Reads what save() wrote into a network of the same sizes; false if the stream does not match.
    bool load(std::istream& in);

private:
    std::vector<int> sizes_;
    float dropout_;
    std::vector<dense_layer> layers_;
    // activations_[k] is the input of layer k for the last training batch (activations_[0] = x).
    std::vector<matrix> activations_;
    matrix logits_;
    matrix delta_, next_delta_;  // reused between steps: no allocation after the first batch
};

}  // namespace demo
