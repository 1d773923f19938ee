// distill/detail/simd/exp.hpp - e^x for x <= 0, the only exponentials a softmax needs once the row
// max is subtracted.
//
// Contract (float): x in [-inf, 0] or NaN. Max error 2 ulp against the correctly rounded e^x for
// x in [-87.3, 0] (tests/exp.test.cpp sweeps it); results below 2^-126 (x < -87.34) are flushed to
// +0, which changes no softmax sum (each sum is >= 1); -inf -> 0; NaN -> NaN. No overflow handling:
// x > 0 is outside the contract (the kernels never pass it).
// Double: x in [-inf, 0] or NaN; max error 2 ulp for x in [-708.39, 0] (tests/exp.test.cpp sweeps it;
// about 1 ulp measured); results below 2^-1022 (x < -708.3964) flushed to +0; -inf -> 0; NaN -> NaN.
//
// Why our own: xsimd's exp handles the whole real line (ldexp with range fix-ups, overflow to +inf;
// in double a rational approximation with a division, and a lane-by-lane int64 conversion that is
// undefined behaviour for -inf and NaN); knowing x <= 0 leaves Cody-Waite range reduction, a
// polynomial (e^r = 1 + r + r^2 P(r), P of degree 5 in float, 9 in double) and 2^n put together
// from the exponent bits: fewer instructions on the kernels' critical resource (FMA ports).
//
// Counting (tests and the benchmark suite only): a program that defines DISTILL_COUNT_EXP_CALLS
// before including distill gets `exp_lanes`, the lanes of every vector exponential evaluated here
// (each call adds its batch's lane count), so that a test can pin the exponentials per element a
// kernel spends. Without the macro the hook expands to nothing. The kernels' per-block scalar
// std::exp rescales are not counted: they are per block, not per element.
#pragma once

#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "../vector_ops.hpp"
#include "compat.hpp"

#ifdef DISTILL_COUNT_EXP_CALLS
#include <atomic>
namespace distill::detail::simd {
// Relaxed atomic: an executor may evaluate rows on several threads.
inline std::atomic<std::uint64_t> exp_lanes{0};
}  // namespace distill::detail::simd
#define DISTILL_COUNT_EXP(V) ::distill::detail::simd::exp_lanes.fetch_add(V::size, std::memory_order_relaxed)
#else
#define DISTILL_COUNT_EXP(V) ((void)0)
#endif

namespace distill::detail::simd {

template <class Arch>
DISTILL_ALWAYS_INLINE xsimd::batch<float, Arch> exp_nonpositive(const xsimd::batch<float, Arch>& x) noexcept {
    using V = xsimd::batch<float, Arch>;
    DISTILL_COUNT_EXP(V);
    // n = round(x / ln2) by a shifter, as for double below: adding 1.5 * 2^23 + 127 leaves n + 127,
    // the biased exponent of 2^n, in the low bits of t's mantissa, so neither a rounding instruction
    // nor a float -> int conversion is needed, and n itself is t - shifter, exactly.
    const V shifter(0x1.8p23f + 127.0f);
    const V t = xsimd::fma(x, V(1.44269504088896341f), shifter);
    const V n = t - shifter;
    // x = n ln2 + r, |r| <= ln2 / 2 (plus rounding); ln2 split in a part exact in float (hi) and the
    // rest (lo) so that n * hi is exact for |n| <= 127 (Cody & Waite 1980).
    V r = xsimd::fma(n, V(-0.693359375f), x);
    r = xsimd::fma(n, V(2.12194440e-4f), r);
    // e^r on [-ln2/2, ln2/2]: Cephes expf's minimax polynomial, 1 + r + r^2 P(r).
    V p = V(1.9875691500e-4f);
    p = xsimd::fma(p, r, V(1.3981999507e-3f));
    p = xsimd::fma(p, r, V(8.3334519073e-3f));
    p = xsimd::fma(p, r, V(4.1665795894e-2f));
    p = xsimd::fma(p, r, V(1.6666665459e-1f));
    p = xsimd::fma(p, r, V(5.0000001201e-1f));
    p = xsimd::fma(p, r * r, r) + V(1.0f);
    // 2^n from t's low bits shifted into the exponent field (n + 127 in [1, 127] wherever the result
    // is kept), and a multiply by it, exact. A NaN x makes p NaN and so the product: no NaN test is
    // needed. Below 2^-126 (x < -87.34, -inf included) the result is flushed to 0, where n + 127 <= 0
    // would not make a power of two.
    const V two_to_n = bitwise_as<float>(bitwise_as<std::int32_t>(t) << 23);
    return xsimd::select(x < V(-87.33654f), V(0.0f), p * two_to_n);
}

template <class Arch>
DISTILL_ALWAYS_INLINE xsimd::batch<double, Arch> exp_nonpositive(const xsimd::batch<double, Arch>& x) noexcept {
    using V = xsimd::batch<double, Arch>;
    DISTILL_COUNT_EXP(V);
    // n = round(x / ln2) by a shifter: adding 1.5 * 2^52 + 1023 leaves n + 1023, the biased exponent
    // of 2^n, in the low bits of t's mantissa, so 2^n needs no double -> int64 conversion (AVX2 has
    // none; a C++ one would be undefined behaviour for -inf and NaN) and n itself is t - shifter,
    // exactly.
    const V shifter(0x1.8p52 + 1023.0);
    const V t = xsimd::fma(x, V(1.4426950408889634), shifter);
    const V n = t - shifter;
    // x = n ln2 + r, |r| <= ln2 / 2 (plus rounding); ln2 in two parts, the first with its low 21 bits
    // zero, so that n * hi is exact for |n| < 2^21 (Cody & Waite 1980).
    V r = xsimd::fma(n, V(-0x1.62e42fee00000p-1), x);
    r = xsimd::fma(n, V(-0x1.a39ef35793c76p-33), r);
    // e^r = 1 + r + r^2 P(r) on [-0.35, 0.35]: P of degree 9, the Chebyshev interpolant of
    // (e^r - 1 - r) / r^2 (relative error of the sum below 2e-17 before rounding; the coefficients'
    // derivation is in docs/math.md).
    V p = V(0x1.af3cd7b3560d9p-26);
    p = xsimd::fma(p, r, V(0x1.2894eb03786e2p-22));
    p = xsimd::fma(p, r, V(0x1.71de0be80e7e8p-19));
    p = xsimd::fma(p, r, V(0x1.a019b62aaa671p-16));
    p = xsimd::fma(p, r, V(0x1.a01a01a83a3a3p-13));
    p = xsimd::fma(p, r, V(0x1.6c16c1794bd5cp-10));
    p = xsimd::fma(p, r, V(0x1.111111111091ap-7));
    p = xsimd::fma(p, r, V(0x1.5555555553b72p-5));
    p = xsimd::fma(p, r, V(0x1.5555555555556p-3));
    p = xsimd::fma(p, r, V(0x1.0000000000001p-1));
    p = xsimd::fma(p, r * r, r) + V(1.0);
    // 2^n from t's low bits shifted into the exponent field (n + 1023 in [1, 1023] wherever the
    // result is kept), and a multiply by it, exact. A NaN x makes p NaN and so the product: no NaN
    // test is needed. Below ln(2^-1022) the result would leave the normal range: flushed to 0 (so is
    // -inf). x > 0 (a NaN logit hid the row max) gives a meaningless lane, never undefined behaviour:
    // the integer step is a vector instruction, and that row is NaN through the NaN's own exponential.
    const V two_to_n = bitwise_as<double>(bitwise_as<std::int64_t>(t) << 52);
    return xsimd::select(x < V(-708.3964185322641), V(0.0), p * two_to_n);
}

}  // namespace distill::detail::simd
