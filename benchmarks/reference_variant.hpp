// Our reference path (the scalar oracle, DISTILL_NO_SIMD) behind a plain-function boundary.
//
// The same inline templates compiled twice, with and without DISTILL_NO_SIMD, in one program would
// break the one-definition rule: the linker keeps one of the two copies. So the reference variant is
// a shared library compiled with DISTILL_NO_SIMD and hidden visibility: its inline code binds inside
// the library, and only these functions (plain types only) are exported.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(_WIN32)
#define DISTILL_BENCH_REFERENCE_API
#else
#define DISTILL_BENCH_REFERENCE_API __attribute__((visibility("default")))
#endif

namespace distill_bench::reference_variant {

// Each returns the reduced loss (softmax: 0) and writes the gradient (softmax: the probabilities).
DISTILL_BENCH_REFERENCE_API double distillation_loss_and_grad(const float* s, const float* t, const std::int64_t* labels,
                                                              float* grad, std::ptrdiff_t rows, std::ptrdiff_t cols,
                                                              double temperature, double alpha);
DISTILL_BENCH_REFERENCE_API double distillation_loss_and_grad(const double* s, const double* t, const std::int64_t* labels,
                                                              double* grad, std::ptrdiff_t rows, std::ptrdiff_t cols,
                                                              double temperature, double alpha);
DISTILL_BENCH_REFERENCE_API double kl_loss_and_grad(const float* s, const float* t, float* grad, std::ptrdiff_t rows,
                                                    std::ptrdiff_t cols, double temperature);
DISTILL_BENCH_REFERENCE_API double kl_loss_and_grad(const double* s, const double* t, double* grad, std::ptrdiff_t rows,
                                                    std::ptrdiff_t cols, double temperature);
DISTILL_BENCH_REFERENCE_API double softmax(const float* s, float* out, std::ptrdiff_t rows, std::ptrdiff_t cols,
                                           double temperature);
DISTILL_BENCH_REFERENCE_API double softmax(const double* s, double* out, std::ptrdiff_t rows, std::ptrdiff_t cols,
                                           double temperature);
DISTILL_BENCH_REFERENCE_API double log_softmax(const float* s, float* out, std::ptrdiff_t rows, std::ptrdiff_t cols,
                                               double temperature);
DISTILL_BENCH_REFERENCE_API double log_softmax(const double* s, double* out, std::ptrdiff_t rows, std::ptrdiff_t cols,
                                               double temperature);

} // namespace distill_bench::reference_variant
