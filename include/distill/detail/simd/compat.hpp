// distill/detail/simd/compat.hpp - the few xsimd calls whose names changed between releases.
//
// Debian ships xsimd 8.1; users elsewhere have 9 to 13. 8.1 has `hadd` and no `reduce_add` /
// `reduce_max`; 9 added the reduce_ family and later releases removed `hadd`. Everything else the
// kernels use (batch, load/store_unaligned, select, max, fma, exp) is spelled the same in all of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
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

// Horizontal max. Once per block of a long row, but twice per row of a short one (student and
// teacher), where a store and a chain of dependent compares (15 for AVX-512 float) cost about 40 of
// a 10-class row's 950 instructions (AVX2 build): on AVX-512 and AVX2 it halves the vector
// log2(lanes) times in registers. Which lane a NaN comes out
// of differs between the two forms; it does not matter, as a NaN logit's exponential makes the
// sums NaN whatever the max. Other instruction sets go through memory (the same on every xsimd).
template <class T, class Arch>
inline T reduce_max(const xsimd::batch<T, Arch>& x) noexcept {
#if defined(__AVX512F__)
    if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
        if constexpr (std::is_same_v<T, float>)
            return _mm512_reduce_max_ps(x);
        else
            return _mm512_reduce_max_pd(x);
    }
#endif
#if defined(__AVX__)
    if constexpr (std::is_base_of_v<xsimd::avx, Arch>) {
        if constexpr (std::is_same_v<T, float>) {
            __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
            m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
        } else {
            const __m128d m = _mm_max_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
            return _mm_cvtsd_f64(_mm_max_sd(m, _mm_unpackhi_pd(m, m)));
        }
    }
#endif
    constexpr std::size_t lanes = xsimd::batch<T, Arch>::size;
    alignas(Arch::alignment()) T lane[lanes];
    x.store_aligned(lane);
    T m = lane[0];
    for (std::size_t i = 1; i < lanes; ++i) m = lane[i] > m ? lane[i] : m;
    return m;
}

// Horizontal sum in a fixed order: the vector halved log2(lanes) times, lane j taking lane j + h
// for h = lanes/2, ..., 1. The row kernels of short softmax and loss rows sum with it, and a lane
// of their group kernels repeats the same tree down its columns (lane_softmax.hpp, lane_loss.hpp),
// so the two get the same bits; reduce_add's order is whatever the xsimd release chose. In registers on AVX-512 and AVX2,
// through memory (the same order) elsewhere.
template <class T, class Arch>
inline T halving_add(const xsimd::batch<T, Arch>& x) noexcept {
#if defined(__AVX512F__)
    if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
        if constexpr (std::is_same_v<T, float>) {
            const __m512d d = _mm512_castps_pd(x);
            const __m256 h = _mm256_add_ps(_mm256_castpd_ps(_mm512_castpd512_pd256(d)),
                                           _mm256_castpd_ps(_mm512_extractf64x4_pd(d, 1)));
            __m128 m = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            m = _mm_add_ps(m, _mm_movehl_ps(m, m));
            return _mm_cvtss_f32(_mm_add_ss(m, _mm_shuffle_ps(m, m, 1)));
        } else {
            const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(x), _mm512_extractf64x4_pd(x, 1));
            const __m128d m = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
            return _mm_cvtsd_f64(_mm_add_sd(m, _mm_unpackhi_pd(m, m)));
        }
    }
#endif
#if defined(__AVX__)
    if constexpr (std::is_base_of_v<xsimd::avx, Arch>) {
        if constexpr (std::is_same_v<T, float>) {
            __m128 m = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
            m = _mm_add_ps(m, _mm_movehl_ps(m, m));
            return _mm_cvtss_f32(_mm_add_ss(m, _mm_shuffle_ps(m, m, 1)));
        } else {
            const __m128d m = _mm_add_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
            return _mm_cvtsd_f64(_mm_add_sd(m, _mm_unpackhi_pd(m, m)));
        }
    }
#endif
    constexpr std::size_t lanes = xsimd::batch<T, Arch>::size;
    alignas(Arch::alignment()) T lane[lanes];
    x.store_aligned(lane);
    for (std::size_t h = lanes / 2; h >= 1; h /= 2)
        for (std::size_t j = 0; j < h; ++j) lane[j] += lane[j + h];
    return lane[0];
}

// Tails: the first `n` (< lanes) lanes of a vector. Loads on AVX-512 and AVX2 are masked loads,
// which touch (and can fault on) the active lanes only; for rows of a few tens of classes the tail
// is most of the row, and copying it lane by lane through a stack buffer made softmax at 64 x 10
// twice as slow (AVX-512). Stores go through a stack buffer, not masked: masked stores made
// kl_divergence at 256 x 1000 11% slower on Zen 4 (its parked teacher exponentials are stored, then
// read back).
#if defined(__AVX2__)
// Lanes i < n of an AVX2 vector of 32-bit (64-bit) elements: all ones. Templates on the
// architecture, as every kernel function, so that units built for other instruction sets never
// share (and link) one another's copy.
template <class Arch>
inline __m256i first_lanes_32(std::size_t n) noexcept {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
template <class Arch>
inline __m256i first_lanes_64(std::size_t n) noexcept {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(n)), _mm256_setr_epi64x(0, 1, 2, 3));
}
#endif

// Loads the first `n` (< lanes) elements of `p`, filling the rest with `fill`: tails are run through
// the same vector code as full batches, with a fill that is neutral for the operation at hand
// (-inf for logits: exp(-inf) = 0 and max(x, -inf) = x).
template <class T, class Arch>
inline xsimd::batch<T, Arch> load_partial(const T* p, std::size_t n, T fill) noexcept {
#if defined(__AVX512F__)
    if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
        if constexpr (std::is_same_v<T, float>)
            return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), static_cast<__mmask16>((1u << n) - 1), p);
        else
            return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), static_cast<__mmask8>((1u << n) - 1), p);
    }
#endif
#if defined(__AVX2__)
    if constexpr (std::is_base_of_v<xsimd::avx2, Arch>) {
        if constexpr (std::is_same_v<T, float>) {
            const __m256i m = first_lanes_32<Arch>(n);
            return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
        } else {
            const __m256i m = first_lanes_64<Arch>(n);
            return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
        }
    }
#endif
    constexpr std::size_t lanes = xsimd::batch<T, Arch>::size;
    alignas(Arch::alignment()) T lane[lanes];
    for (std::size_t i = 0; i < lanes; ++i) lane[i] = i < n ? p[i] : fill;
    return xsimd::batch<T, Arch>::load_aligned(lane);
}

// The n lanes go out in power-of-two pieces, each one move of a fixed size: written as a loop over
// the lanes, the copy became a call to memcpy, about 20 instructions a 10-class row (AVX2 build).
template <class T, class Arch>
inline void store_partial(T* p, std::size_t n, const xsimd::batch<T, Arch>& x) noexcept {
    constexpr std::size_t lanes = xsimd::batch<T, Arch>::size;
    alignas(Arch::alignment()) T lane[lanes];
    x.store_aligned(lane);
    const auto* from = reinterpret_cast<const unsigned char*>(lane);
    auto* to = reinterpret_cast<unsigned char*>(p);
    const std::size_t bytes = n * sizeof(T);
    std::size_t at = 0;
    for (std::size_t piece = sizeof(lane) / 2; piece >= sizeof(T); piece /= 2)
        if (bytes & piece) {
            std::memcpy(to + at, from + at, piece);
            at += piece;
        }
}

// The lanes of x reinterpreted as U (float <-> int32, double <-> int64): xsimd 8 spells it
// bitwise_cast<batch<U, A>>(x), xsimd 9 and later bitwise_cast<U>(x).
template <class U, class T, class Arch>
inline xsimd::batch<U, Arch> bitwise_as(const xsimd::batch<T, Arch>& x) noexcept {
#if XSIMD_VERSION_MAJOR >= 9
    return xsimd::bitwise_cast<U>(x);
#else
    return xsimd::bitwise_cast<xsimd::batch<U, Arch>>(x);
#endif
}

}  // namespace distill::detail::simd
