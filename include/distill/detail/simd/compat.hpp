// distill/detail/simd/compat.hpp - the few xsimd calls whose names changed between releases.
//
// Debian ships xsimd 8.1; users elsewhere have 9 to 13. 8.1 has `hadd` and no `reduce_add` /
// `reduce_max`; 9 added the reduce_ family and later releases removed `hadd`. Everything else the
// kernels use (batch, load/store_unaligned, select, max, fma, exp) is spelled the same in all of them.
// The partial loads and stores of a row's tail are here too: xsimd 8.1 has none, so they are written
// with the AVX-512 and AVX2 masked moves, and a copy through the stack elsewhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

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
// (-inf for logits: exp(-inf) = 0 and max(x, -inf) = x). AVX-512 and AVX2 load under a mask (the
// lanes past n are not read, so a tail at the end of a buffer never faults): one instruction instead
// of a copy through the stack, which matters where rows are short or cut into many stretches.
template <class T, class Arch>
inline xsimd::batch<T, Arch> load_partial(const T* p, std::size_t n, T fill) noexcept {
    constexpr std::size_t lanes = xsimd::batch<T, Arch>::size;
#if defined(__AVX512F__)
    if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
        if constexpr (std::is_same_v<T, float>)
            return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), static_cast<__mmask16>((1u << n) - 1), p);
        else if constexpr (std::is_same_v<T, double>)
            return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), static_cast<__mmask8>((1u << n) - 1), p);
    }
#endif
#if defined(__AVX2__)
    if constexpr (std::is_base_of_v<xsimd::avx2, Arch>) {
        if constexpr (std::is_same_v<T, float>) {
            const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, keep), _mm256_castsi256_ps(keep));
        } else if constexpr (std::is_same_v<T, double>) {
            const __m256i keep = _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(n)), _mm256_setr_epi64x(0, 1, 2, 3));
            return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, keep), _mm256_castsi256_pd(keep));
        }
    }
#endif
    alignas(Arch::alignment()) T lane[lanes];
    for (std::size_t i = 0; i < lanes; ++i) lane[i] = i < n ? p[i] : fill;
    return xsimd::batch<T, Arch>::load_aligned(lane);
}

template <class T, class Arch>
inline void store_partial(T* p, std::size_t n, const xsimd::batch<T, Arch>& x) noexcept {
    constexpr std::size_t lanes = xsimd::batch<T, Arch>::size;
#if defined(__AVX512F__)
    if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
        if constexpr (std::is_same_v<T, float>)
            return _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), x);
        else if constexpr (std::is_same_v<T, double>)
            return _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), x);
    }
#endif
#if defined(__AVX2__)
    if constexpr (std::is_base_of_v<xsimd::avx2, Arch>) {
        if constexpr (std::is_same_v<T, float>)
            return _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), x);
        else if constexpr (std::is_same_v<T, double>)
            return _mm256_maskstore_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(n)), _mm256_setr_epi64x(0, 1, 2, 3)), x);
    }
#endif
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
