// distill/detail/simd/vector_ops.hpp - detail::vector_ops for xsimd batches, so that the divergence
// policies (written once over a scalar or a batch) run in the SIMD kernels.
#pragma once

#include <xsimd/xsimd.hpp>

#include "../vector_ops.hpp"

namespace distill::detail {

template <class T, class Arch>
struct vector_ops<xsimd::batch<T, Arch>> {
    using V = xsimd::batch<T, Arch>;
    using scalar = T;
    DISTILL_ALWAYS_INLINE static V select(const xsimd::batch_bool<T, Arch>& c, const V& a, const V& b) noexcept { return xsimd::select(c, a, b); }
    DISTILL_ALWAYS_INLINE static V log(const V& x) noexcept { return xsimd::log(x); }
    DISTILL_ALWAYS_INLINE static V abs(const V& x) noexcept { return xsimd::abs(x); }
};

}  // namespace distill::detail
