// distill/detail/vector_ops.hpp - the few operations a divergence policy uses, spelled the same for
// a double (the reference kernels) and for an xsimd batch (the SIMD kernels, simd/vector_ops.hpp
// specialises `vector_ops` for batches), so that each policy is written once for both.
#pragma once

#include <cmath>

namespace distill::detail {

template <class V>
struct vector_ops;  // specialised for double here and for xsimd::batch in simd/vector_ops.hpp

template <>
struct vector_ops<double> {
    static double select(bool c, double a, double b) noexcept { return c ? a : b; }
    static double log(double x) noexcept { return std::log(x); }
    static double abs(double x) noexcept { return std::abs(x); }
};

// where(c, a, b): a where c holds, else b, lane by lane.
template <class C, class V>
V where(const C& c, const V& a, const V& b) noexcept {
    return vector_ops<V>::select(c, a, b);
}
template <class V>
V log_of(const V& x) noexcept {
    return vector_ops<V>::log(x);
}
template <class V>
V abs_of(const V& x) noexcept {
    return vector_ops<V>::abs(x);
}

// a * b where a != 0, else 0: the 0 log 0 = 0 convention, which keeps 0 * (-inf) out of a sum.
// Tested as `a == 0` (false for NaN) so that a NaN a still propagates: xsimd 8.1's `!=` on AVX and
// AVX-512 is an ordered compare, false for NaN, which would turn a NaN probability's term into 0.
template <class V>
V product_unless_zero(const V& a, const V& b) noexcept {
    const V zero(0);
    return where(a == zero, zero, a * b);
}

}  // namespace distill::detail
