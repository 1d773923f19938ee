#include "mlp.hpp"

#include <cmath>
#include <istream>
#include <ostream>

namespace demo {

mlp::mlp(std::vector<int> sizes, float dropout, random_source& init)
    : sizes_(std::move(sizes)), dropout_(dropout), activations_(sizes_.size() - 1) {
    for (std::size_t k = 0; k + 1 < sizes_.size(); ++k) {
        dense_layer layer;
        const float scale = std::sqrt(2.0f / static_cast<float>(sizes_[k]));
        layer.weights = matrix::NullaryExpr(sizes_[k], sizes_[k + 1], [&] { return scale * init.normal(); });
        layer.bias = row_vector::Zero(sizes_[k + 1]);
        layer.weights_grad = matrix::Zero(sizes_[k], sizes_[k + 1]);
        layer.bias_grad = row_vector::Zero(sizes_[k + 1]);
        layers_.push_back(std::move(layer));
    }
}

const matrix& mlp::forward_train(const matrix& x, random_source& rng) {
    activations_[0] = x;
    // Inverted dropout: kept units are scaled by 1/(1-p) during training so inference needs no change.
    const float keep_scale = 1.0f / (1.0f - dropout_);
    for (std::size_t k = 0; k + 1 < layers_.size(); ++k) {
        matrix& h = activations_[k + 1];
        h.noalias() = activations_[k] * layers_[k].weights;
        h.rowwise() += layers_[k].bias;
        for (float& v : h.reshaped()) {
            const bool kept = dropout_ == 0.0f || rng.uniform() >= dropout_;
            v = (v > 0.0f && kept) ? v * keep_scale : 0.0f;
        }
    }
    logits_.noalias() = activations_.back() * layers_.back().weights;
    logits_.rowwise() += layers_.back().bias;
    return logits_;
}

void mlp::backward(const matrix& dlogits) {
    delta_ = dlogits;
    const float keep_scale = 1.0f / (1.0f - dropout_);
    for (std::size_t k = layers_.size(); k-- > 0;) {
        dense_layer& layer = layers_[k];
        layer.weights_grad.noalias() = activations_[k].transpose() * delta_;
        layer.bias_grad = delta_.colwise().sum();
        if (k == 0) break;  // nobody needs dLoss/dpixels
        next_delta_.noalias() = delta_ * layer.weights.transpose();
        // activations_[k] = relu(z) * mask * keep_scale, so dh/dz is keep_scale where the stored value
        // is positive (unit active and kept) and 0 elsewhere: the mask need not be stored separately.
        next_delta_.array() *= (activations_[k].array() > 0.0f).cast<float>() * keep_scale;
        std::swap(delta_, next_delta_);
    }
}

matrix mlp::predict(const matrix& x) const {
    constexpr Eigen::Index chunk = 2048;
    matrix out(x.rows(), sizes_.back());
    matrix a, h;
    for (Eigen::Index begin = 0; begin < x.rows(); begin += chunk) {
        const Eigen::Index n = std::min(chunk, x.rows() - begin);
        a = x.middleRows(begin, n);
        for (std::size_t k = 0; k < layers_.size(); ++k) {
            h.noalias() = a * layers_[k].weights;
            h.rowwise() += layers_[k].bias;
            if (k + 1 < layers_.size()) h = h.cwiseMax(0.0f);
            std::swap(a, h);
        }
        out.middleRows(begin, n) = a;
    }
    return out;
}

void mlp::save(std::ostream& out) const {
    for (const dense_layer& layer : layers_) {
        out.write(reinterpret_cast<const char*>(layer.weights.data()), layer.weights.size() * sizeof(float));
        out.write(reinterpret_cast<const char*>(layer.bias.data()), layer.bias.size() * sizeof(float));
    }
}

bool mlp::load(std::istream& in) {
    for (dense_layer& layer : layers_) {
        in.read(reinterpret_cast<char*>(layer.weights.data()), layer.weights.size() * sizeof(float));
        in.read(reinterpret_cast<char*>(layer.bias.data()), layer.bias.size() * sizeof(float));
    }
    return static_cast<bool>(in) && in.peek() == std::char_traits<char>::eof();
}

}  // namespace demo
