// distill/detail/simd/vector_ops.hpp - detail::vector_ops for xsimd batches, so that the divergence
// policies (written once over a scalar or a batch) run in the SIMD kernels.
#pragma once

#include <limits>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "../vector_ops.hpp"

namespace distill::detail {

template <class T, class Arch>
struct vector_ops<xsimd::batch<T, Arch>> {
    using V = xsimd::batch<T, Arch>;
    using scalar = T;
    DISTILL_ALWAYS_INLINE static V select(const xsimd::batch_bool<T, Arch>& c, const V& a, const V& b) noexcept { return xsimd::select(c, a, b); }
    // xsimd 8.1's double log reads a subnormal's exponent field as a normal number's: log(3.3e-313)
    // came out -746.5 where it is -719.5 (a teacher probability there moved a reverse KL by 0.3%). A
    // subnormal is scaled into the normal range by 2^54 first and 54 ln 2 taken off after; 0, NaN and
    // negative values keep their -inf and NaN. Its float log handles subnormals itself.
    DISTILL_ALWAYS_INLINE static V log(const V& x) noexcept {
        if constexpr (std::is_same_v<T, double>) {
            const auto subnormal = x < V(std::numeric_limits<double>::min());
            const V scaled = xsimd::select(subnormal, x * V(0x1p54), x);
            return xsimd::log(scaled) - xsimd::select(subnormal, V(54 * 0.69314718055994530942), V(0.0));
        } else {
            return xsimd::log(x);
        }
    }
    DISTILL_ALWAYS_INLINE static V abs(const V& x) noexcept { return xsimd::abs(x); }
};

}  // namespace distill::detail
