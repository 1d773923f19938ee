// distill/detail/vector_ops.hpp - the few operations a divergence policy uses, spelled the same for
// a double (the reference kernels) and for an xsimd batch (the SIMD kernels, simd/vector_ops.hpp
// specialises `vector_ops` for batches), so that each policy is written once for both.
#pragma once

#include <cmath>

// The kernels' small vector helpers must be inlined into the loops that call them: a call per
// batch passes the batch through memory and costs more than the work. GCC and Clang otherwise
// stop inlining once a loop body grows (a divergence's terms plus two exponentials).
// The same holds for the lambdas a kernel loop calls once per batch (for_each_vector's bodies),
// written `[&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA { ... }`: left to itself,
// GCC at -O2 calls such a body out of line, its accumulators kept in memory through the captured
// references, which made a loss's first sweep about 1.4x slower.
#if defined(__GNUC__) || defined(__clang__)
#define DISTILL_ALWAYS_INLINE [[gnu::always_inline]] inline
#define DISTILL_INLINE_LAMBDA __attribute__((always_inline))
#else
#define DISTILL_ALWAYS_INLINE inline
#define DISTILL_INLINE_LAMBDA
#endif

namespace distill::detail {

template <class V>
struct vector_ops;  // specialised for double here and for xsimd::batch in simd/vector_ops.hpp

template <>
struct vector_ops<double> {
    using scalar = double;
    DISTILL_ALWAYS_INLINE static double select(bool c, double a, double b) noexcept { return c ? a : b; }
    DISTILL_ALWAYS_INLINE static double log(double x) noexcept { return std::log(x); }
    DISTILL_ALWAYS_INLINE static double abs(double x) noexcept { return std::abs(x); }
};

// where(c, a, b): a where c holds, else b, lane by lane.
template <class C, class V>
DISTILL_ALWAYS_INLINE V where(const C& c, const V& a, const V& b) noexcept {
    return vector_ops<V>::select(c, a, b);
}
template <class V>
DISTILL_ALWAYS_INLINE V log_of(const V& x) noexcept {
    return vector_ops<V>::log(x);
}
template <class V>
DISTILL_ALWAYS_INLINE V abs_of(const V& x) noexcept {
    return vector_ops<V>::abs(x);
}

// a * b where a != 0, else 0: the 0 log 0 = 0 convention, which keeps 0 * (-inf) out of a sum.
// Written as `a == 0 ? 0 : a * b` so that a NaN a propagates: xsimd 8.1's `!=` on AVX and AVX-512
// is an ordered compare, false for NaN.
template <class V>
DISTILL_ALWAYS_INLINE V product_unless_zero(const V& a, const V& b) noexcept {
    const V zero(0);
    return where(a == zero, zero, a * b);
}

}  // namespace distill::detail
