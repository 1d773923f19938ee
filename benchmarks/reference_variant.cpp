// Built only into the distill_bench_reference shared library, with DISTILL_NO_SIMD defined and
// hidden visibility (see reference_variant.hpp for why).
#ifndef DISTILL_NO_SIMD
#error "reference_variant.cpp must be compiled with DISTILL_NO_SIMD"
#endif

#include "reference_variant.hpp"

#include <distill/distill.hpp>

#include <span>

namespace distill_bench::reference_variant {
namespace {

template <class Scalar>
using matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using in_map = Eigen::Map<const matrix<Scalar>>;
template <class Scalar>
using out_map = Eigen::Map<matrix<Scalar>>;

template <class Scalar>
double distillation(const Scalar* s, const Scalar* t, const std::int64_t* y, Scalar* g, std::ptrdiff_t rows,
                    std::ptrdiff_t cols, double temperature, double alpha) {
    const distill::distillation_loss<Scalar> loss({.temperature = temperature, .alpha = alpha});
    out_map<Scalar> grad(g, rows, cols);
    return loss
        .loss_and_grad(in_map<Scalar>(s, rows, cols), in_map<Scalar>(t, rows, cols),
                       std::span<const std::int64_t>(y, static_cast<std::size_t>(rows)), grad)
        .total;
}

template <class Scalar>
double kl(const Scalar* s, const Scalar* t, Scalar* g, std::ptrdiff_t rows, std::ptrdiff_t cols, double temperature) {
    const distill::kl_divergence<Scalar> loss({.temperature = temperature});
    out_map<Scalar> grad(g, rows, cols);
    return loss.loss_and_grad(in_map<Scalar>(s, rows, cols), in_map<Scalar>(t, rows, cols), grad).total;
}

template <class Scalar>
double soft(const Scalar* s, Scalar* o, std::ptrdiff_t rows, std::ptrdiff_t cols, double temperature, bool log) {
    out_map<Scalar> out(o, rows, cols);
    if (log)
        distill::log_softmax(in_map<Scalar>(s, rows, cols), out, temperature);
    else
        distill::softmax(in_map<Scalar>(s, rows, cols), out, temperature);
    return 0;
}

} // namespace

double distillation_loss_and_grad(const float* s, const float* t, const std::int64_t* y, float* g, std::ptrdiff_t rows,
                                  std::ptrdiff_t cols, double temperature, double alpha) {
    return distillation(s, t, y, g, rows, cols, temperature, alpha);
}
double distillation_loss_and_grad(const double* s, const double* t, const std::int64_t* y, double* g,
                                  std::ptrdiff_t rows, std::ptrdiff_t cols, double temperature, double alpha) {
    return distillation(s, t, y, g, rows, cols, temperature, alpha);
}
double kl_loss_and_grad(const float* s, const float* t, float* g, std::ptrdiff_t rows, std::ptrdiff_t cols,
                        double temperature) {
    return kl(s, t, g, rows, cols, temperature);
}
double kl_loss_and_grad(const double* s, const double* t, double* g, std::ptrdiff_t rows, std::ptrdiff_t cols,
                        double temperature) {
    return kl(s, t, g, rows, cols, temperature);
}
double softmax(const float* s, float* o, std::ptrdiff_t rows, std::ptrdiff_t cols, double temperature) {
    return soft(s, o, rows, cols, temperature, false);
}
double softmax(const double* s, double* o, std::ptrdiff_t rows, std::ptrdiff_t cols, double temperature) {
    return soft(s, o, rows, cols, temperature, false);
}

double log_softmax(const float* s, float* o, std::ptrdiff_t rows, std::ptrdiff_t cols, double temperature) {
    return soft(s, o, rows, cols, temperature, true);
}

double log_softmax(const double* s, double* o, std::ptrdiff_t rows, std::ptrdiff_t cols, double temperature) {
    return soft(s, o, rows, cols, temperature, true);
}

} // namespace distill_bench::reference_variant
