// distill/detail/simd/compat.hpp - the few xsimd calls whose names changed between releases.
//
// Debian ships xsimd 8.1; users elsewhere have 9 to 13. 8.1 has `hadd` and no `reduce_add` /
// `reduce_max`; 9 added the reduce_ family and later releases removed `hadd`. Everything else the
// kernels use (batch, load/store_unaligned, select, max, fma, exp) is spelled the same in all of them.
#pragma once

#include <cstddef>
#include <cstdint>

#include <xsimd/xsimd.hpp>

namespace distill::detail::simd {

template <class T, class Arch>
inline T reduce_add(const xsimd::batch<T, Arch>& x) noexcept {
#if XSIMD_VERSION_MAJOR >= 9
    return xsimd::reduce_add(x);
#else
    return xsimd::hadd(x);
#endif
}

// Horizontal max through memory: called once per block, so its cost does not matter, and it
// spells the same on every xsimd release.
template <class T, class Arch>
inline T reduce_max(const xsimd::batch<T, Arch>& x) noexcept {
    constexpr std::size_t lanes = xsimd::batch<T, Arch>::size;
    alignas(Arch::alignment()) T lane[lanes];
    x.store_aligned(lane);
    T m = lane[0];
    for (std::size_t i = 1; i < lanes; ++i) m = lane[i] > m ? lane[i] : m;
    return m;
}

// Loads the first `n` (< lanes) elements of `p`, filling the rest with `fill`: tails are run through
// the same vector code as full batches, with a fill that is neutral for the operation at hand
// (-inf for logits: exp(-inf) = 0 and max(x, -inf) = x).
template <class T, class Arch>
inline xsimd::batch<T, Arch> load_partial(const T* p, std::size_t n, T fill) noexcept {
    constexpr std::size_t lanes = xsimd::batch<T, Arch>::size;
    alignas(Arch::alignment()) T lane[lanes];
    for (std::size_t i = 0; i < lanes; ++i) lane[i] = i < n ? p[i] : fill;
    return xsimd::batch<T, Arch>::load_aligned(lane);
}

template <class T, class Arch>
inline void store_partial(T* p, std::size_t n, const xsimd::batch<T, Arch>& x) noexcept {
    constexpr std::size_t lanes = xsimd::batch<T, Arch>::size;
    alignas(Arch::alignment()) T lane[lanes];
    x.store_aligned(lane);
    for (std::size_t i = 0; i < n; ++i) p[i] = lane[i];
}

// Reinterpreting float lanes as int32 and back: xsimd 8 spells it bitwise_cast<batch<U, A>>(x),
// xsimd 9 and later bitwise_cast<U>(x).
template <class Arch>
inline xsimd::batch<std::int32_t, Arch> bitwise_as_int(const xsimd::batch<float, Arch>& x) noexcept {
#if XSIMD_VERSION_MAJOR >= 9
    return xsimd::bitwise_cast<std::int32_t>(x);
#else
    return xsimd::bitwise_cast<xsimd::batch<std::int32_t, Arch>>(x);
#endif
}

template <class Arch>
inline xsimd::batch<float, Arch> bitwise_as_float(const xsimd::batch<std::int32_t, Arch>& x) noexcept {
#if XSIMD_VERSION_MAJOR >= 9
    return xsimd::bitwise_cast<float>(x);
#else
    return xsimd::bitwise_cast<xsimd::batch<float, Arch>>(x);
#endif
}

}  // namespace distill::detail::simd
