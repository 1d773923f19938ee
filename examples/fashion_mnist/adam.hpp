// AdamW (Kingma & Ba 2015; decoupled weight decay, Loshchilov & Hutter 2019) over the layers of an mlp.
#pragma once

#include "mlp.hpp"

#include <cmath>
#include <vector>

namespace demo {

class adam {
public:
    struct settings {
        float beta1 = 0.9f;
        float beta2 = 0.999f;
        float epsilon = 1e-8f;
        // Decoupled from the gradient, so the decay is the same for every weight whatever Adam's
        // per-weight scaling; applied to weights only (decaying biases only costs accuracy).
        float weight_decay = 0.0f;
    };

    adam(mlp& net, settings s) : net_(net), s_(s) {
        for (const dense_layer& layer : net.layers()) {
            moments_.push_back({matrix::Zero(layer.weights.rows(), layer.weights.cols()),
                                matrix::Zero(layer.weights.rows(), layer.weights.cols()),
                                row_vector::Zero(layer.bias.size()), row_vector::Zero(layer.bias.size())});
        }
    }

    // One update from the gradients backward() left in the layers.
    void step(float learning_rate) {
        ++t_;
        // Bias corrections: the moments start at 0 and would under-estimate for the first ~1/(1-beta) steps.
        const float c1 = 1.0f - std::pow(s_.beta1, static_cast<float>(t_));
        const float c2 = 1.0f - std::pow(s_.beta2, static_cast<float>(t_));
        auto layers = net_.layers();
        for (std::size_t k = 0; k < layers.size(); ++k) {
            layers[k].weights *= 1.0f - learning_rate * s_.weight_decay;
            update(layers[k].weights.array(), layers[k].weights_grad.array(), moments_[k].m_w.array(),
                   moments_[k].v_w.array(), learning_rate, c1, c2);
            update(layers[k].bias.array(), layers[k].bias_grad.array(), moments_[k].m_b.array(),
                   moments_[k].v_b.array(), learning_rate, c1, c2);
        }
    }

private:
    struct moment_pair {
        matrix m_w, v_w;
        row_vector m_b, v_b;
    };

    template <class P, class G, class M>
    void update(P&& param, const G& grad, M&& m, M&& v, float lr, float c1, float c2) const {
        m = s_.beta1 * m + (1.0f - s_.beta1) * grad;
        v = s_.beta2 * v + (1.0f - s_.beta2) * grad.square();
        param -= lr * (m / c1) / ((v / c2).sqrt() + s_.epsilon);
    }

    mlp& net_;
    settings s_;
    std::vector<moment_pair> moments_;
    long t_ = 0;
};

}  // namespace demo
