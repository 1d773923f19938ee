// distill/detail/simd/narrow_load_store.hpp - load and store for logits and gradients stored in 16
// bits (Eigen::bfloat16, Eigen::half): a batch of float lanes is read from W 16-bit values and
// written back to them, converting in registers, so that the kernels run in float over 16-bit data
// without a float copy of it.
//
// bfloat16 -> float is exact: the 16 bits are the float's upper half (zero-extend, shift left 16).
// float -> bfloat16 rounds to nearest even, (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16, with a NaN
// kept a quiet NaN of its sign (0x7FC0 / 0xFFC0): bit for bit what Eigen's scalar conversion gives,
// so tails (converted element by element) and full vectors agree. half <-> float uses the F16C
// (x86-64-v3) or AVX-512F conversions, rounding to nearest even as Eigen's. Other instruction sets
// convert element by element through a small float array.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include "../vector_ops.hpp"
#if defined(__AVX2__) || defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace distill::detail::simd {

template <class Arch>
inline constexpr bool is_avx512_arch = std::is_base_of_v<xsimd::avx512f, Arch>;
template <class Arch>
inline constexpr bool is_avx2_arch = std::is_base_of_v<xsimd::avx2, Arch>;

// Element by element, through Eigen's own conversions: tails, and instruction sets without a
// vector conversion.
template <class Arch, class H>
inline xsimd::batch<float, Arch> widen_by_element(const H* p, std::size_t n, float fill) noexcept {
    constexpr std::size_t lanes = xsimd::batch<float, Arch>::size;
    alignas(Arch::alignment()) float lane[lanes];
    for (std::size_t i = 0; i < lanes; ++i) lane[i] = i < n ? static_cast<float>(p[i]) : fill;
    return xsimd::batch<float, Arch>::load_aligned(lane);
}
template <class Arch, class H>
inline void narrow_by_element(H* p, std::size_t n, const xsimd::batch<float, Arch>& x) noexcept {
    constexpr std::size_t lanes = xsimd::batch<float, Arch>::size;
    alignas(Arch::alignment()) float lane[lanes];
    x.store_aligned(lane);
    for (std::size_t i = 0; i < n; ++i) p[i] = H(lane[i]);
}

// A full batch of W 16-bit values as float lanes.
template <class Arch>
DISTILL_ALWAYS_INLINE xsimd::batch<float, Arch> widen(const Eigen::bfloat16* p) noexcept {
    using V = xsimd::batch<float, Arch>;
#if defined(__AVX512F__)
    if constexpr (is_avx512_arch<Arch>) {
        const __m512i bits = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return V(_mm512_castsi512_ps(_mm512_slli_epi32(bits, 16)));
    }
#endif
#if defined(__AVX2__)
    if constexpr (is_avx2_arch<Arch>) {
        const __m256i bits = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return V(_mm256_castsi256_ps(_mm256_slli_epi32(bits, 16)));
    }
#endif
    return widen_by_element<Arch>(p, V::size, 0.0f);
}

template <class Arch>
DISTILL_ALWAYS_INLINE xsimd::batch<float, Arch> widen(const Eigen::half* p) noexcept {
    using V = xsimd::batch<float, Arch>;
#if defined(__AVX512F__)
    if constexpr (is_avx512_arch<Arch>)
        return V(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#endif
#if defined(__AVX2__) && defined(__F16C__)
    if constexpr (is_avx2_arch<Arch>) return V(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#endif
    return widen_by_element<Arch>(p, V::size, 0.0f);
}

// A full batch of float lanes written as W 16-bit values.
template <class Arch>
DISTILL_ALWAYS_INLINE void narrow(Eigen::bfloat16* p, const xsimd::batch<float, Arch>& x) noexcept {
#if defined(__AVX512F__)
    if constexpr (is_avx512_arch<Arch>) {
        const __m512 f = x;
        const __m512i bits = _mm512_castps_si512(f);
        const __m512i high = _mm512_srli_epi32(bits, 16);
        const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
        __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), lsb), 16);
        const __m512i quiet_nan =
            _mm512_or_si512(_mm512_and_si512(high, _mm512_set1_epi32(0x8000)), _mm512_set1_epi32(0x7FC0));
        rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q), quiet_nan);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(rounded));
        return;
    }
#endif
#if defined(__AVX2__)
    if constexpr (is_avx2_arch<Arch>) {
        const __m256 f = x;
        const __m256i bits = _mm256_castps_si256(f);
        const __m256i high = _mm256_srli_epi32(bits, 16);
        const __m256i lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
        __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), lsb), 16);
        const __m256i quiet_nan =
            _mm256_or_si256(_mm256_and_si256(high, _mm256_set1_epi32(0x8000)), _mm256_set1_epi32(0x7FC0));
        rounded = _mm256_blendv_epi8(rounded, quiet_nan, _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q)));
        // Every lane is in [0, 0xFFFF]: the unsigned saturating pack keeps it as it is.
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                         _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1)));
        return;
    }
#endif
    narrow_by_element<Arch>(p, xsimd::batch<float, Arch>::size, x);
}

template <class Arch>
DISTILL_ALWAYS_INLINE void narrow(Eigen::half* p, const xsimd::batch<float, Arch>& x) noexcept {
#if defined(__AVX512F__)
    if constexpr (is_avx512_arch<Arch>) {
        const __m512 f = x;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
        return;
    }
#endif
#if defined(__AVX2__) && defined(__F16C__)
    if constexpr (is_avx2_arch<Arch>) {
        const __m256 f = x;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
        return;
    }
#endif
    narrow_by_element<Arch>(p, xsimd::batch<float, Arch>::size, x);
}

// The kernels' load and store (row_blocks.hpp) for 16-bit pointers: a full batch or a tail of n
// with the neutral fill, as for float.
template <class Arch>
DISTILL_ALWAYS_INLINE xsimd::batch<float, Arch> load(const Eigen::bfloat16* p, std::ptrdiff_t n, float fill) noexcept {
    return n == static_cast<std::ptrdiff_t>(xsimd::batch<float, Arch>::size)
               ? widen<Arch>(p)
               : widen_by_element<Arch>(p, static_cast<std::size_t>(n), fill);
}
template <class Arch>
DISTILL_ALWAYS_INLINE xsimd::batch<float, Arch> load(const Eigen::half* p, std::ptrdiff_t n, float fill) noexcept {
    return n == static_cast<std::ptrdiff_t>(xsimd::batch<float, Arch>::size)
               ? widen<Arch>(p)
               : widen_by_element<Arch>(p, static_cast<std::size_t>(n), fill);
}
template <class Arch>
DISTILL_ALWAYS_INLINE void store(Eigen::bfloat16* p, std::ptrdiff_t n, const xsimd::batch<float, Arch>& x) noexcept {
    if (n == static_cast<std::ptrdiff_t>(xsimd::batch<float, Arch>::size))
        narrow<Arch>(p, x);
    else
        narrow_by_element<Arch>(p, static_cast<std::size_t>(n), x);
}
template <class Arch>
DISTILL_ALWAYS_INLINE void store(Eigen::half* p, std::ptrdiff_t n, const xsimd::batch<float, Arch>& x) noexcept {
    if (n == static_cast<std::ptrdiff_t>(xsimd::batch<float, Arch>::size))
        narrow<Arch>(p, x);
    else
        narrow_by_element<Arch>(p, static_cast<std::size_t>(n), x);
}

}  // namespace distill::detail::simd
