// distill/detail/simd/exp.hpp - e^x for x <= 0, the only exponentials a softmax needs once the row
// max is subtracted.
//
// Contract (float): x in [-inf, 0] or NaN. Max error 2 ulp against the correctly rounded e^x for
// x in [-87.3, 0] (tests/exp.test.cpp sweeps it); results below 2^-126 (x < -87.34) are flushed to
// +0, which changes no softmax sum (each sum is >= 1); -inf -> 0; NaN -> NaN. No overflow handling:
// x > 0 is outside the contract (the kernels never pass it).
// Double: xsimd::exp (its own contract, about 1 ulp; tests/exp.test.cpp holds it to 2 ulp), with
// -inf, NaN and huge negative x kept out of its lane-by-lane integer conversion.
//
// Why our own: xsimd's exp handles the whole real line (ldexp with range fix-ups, overflow to +inf);
// knowing x <= 0 leaves Cody-Waite range reduction, a degree-6 polynomial and one integer add into
// the exponent bits: fewer instructions on the kernels' critical resource (FMA ports).
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
    // x = n ln2 + r, |r| <= ln2 / 2; ln2 split in a part exact in float (hi) and the rest (lo)
    // so that n * hi is exact for |n| <= 127 (Cody & Waite 1980).
    const V n = xsimd::nearbyint(x * V(1.44269504088896341f));
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
    // 2^n: add n to the exponent field. n >= -126 keeps the field positive; below, flush to 0.
    const auto scaled = bitwise_as_int(p) + (xsimd::to_int(n) << 23);
    const V result = bitwise_as_float<Arch>(scaled);
    return xsimd::select(x < V(-87.33654f), V(0.0f), xsimd::select(x != x, x, result));
}

template <class Arch>
DISTILL_ALWAYS_INLINE xsimd::batch<double, Arch> exp_nonpositive(const xsimd::batch<double, Arch>& x) noexcept {
    using V = xsimd::batch<double, Arch>;
    DISTILL_COUNT_EXP(V);
    // Where the ISA has no vector double -> int64 conversion (AVX2), xsimd converts round(x / ln2)
    // lane by lane in C++, which is undefined behaviour for -inf (masked classes, tail fill), NaN
    // and x < -6.4e18 (UBSan reports it). Below -1000 the result is 0 anyway (xsimd flushes from
    // -708.4), so those lanes go in as -1000; NaN is put back afterwards (isnan, not x != x:
    // xsimd 8.1's != is an ordered compare on AVX, false for NaN). x > 0 is outside the contract but
    // reaches here when a NaN logit hid the row max (xsimd::max drops NaN lanes); the result is NaN
    // through that logit's own exponential, so those lanes go in as 0 (UBSan found 1e43 / ln2).
    // AVX-512 needs them too: xsimd 8.1's double exp converts lane by lane there as well (UBSan:
    // -inf to long), although the ISA has a vector conversion.
    V safe = xsimd::select(x >= V(-1000.0), x, V(-1000.0));
    safe = xsimd::select(safe <= V(0.0), safe, V(0.0));
    return xsimd::select(xsimd::isnan(x), x, xsimd::exp(safe));
}

}  // namespace distill::detail::simd
