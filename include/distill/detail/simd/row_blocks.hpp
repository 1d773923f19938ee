// distill/detail/simd/row_blocks.hpp - how the SIMD row kernels cut a row, and the small vector
// helpers they share.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "../vector_ops.hpp"
#include "../storage_type.hpp"
#include "compat.hpp"
#include "narrow_load_store.hpp"

namespace distill::detail::simd {

// Sweep 1 reads each block twice: once for its maxima (from memory) and once for the exponentials
// (from L1, where the first read left it). A block of at least 1024 elements amortises the scalar
// bookkeeping between blocks; at most 64 blocks per row lets the per-block teacher maxima that
// sweep 2 needs live on the stack (rows longer than 64 x 1024 get longer blocks).
inline constexpr std::ptrdiff_t max_blocks = 64;
inline constexpr std::ptrdiff_t min_block_length = 1024;  // a multiple of every vector width

inline std::ptrdiff_t block_length(std::ptrdiff_t cols, std::ptrdiff_t lanes) noexcept {
    const std::ptrdiff_t b = std::max<std::ptrdiff_t>(min_block_length, (cols + max_blocks - 1) / max_blocks);
    return (b + lanes - 1) / lanes * lanes;
}

// Partial sums run in the compute precision (float for 16-bit logits) over at most this many vectors (32 terms per lane:
// relative error below 32 ulp of float, about 2e-6, worst case) before they are added into the
// double accumulators, which keeps "the loss accumulates in double" without a conversion per element.
inline constexpr std::ptrdiff_t flush_vectors = 32;

// Full batch or tail: the kernels run tails through the same code with a neutral fill. Pointers to
// 16-bit values load and store float batches (narrow_load_store.hpp).
template <class Arch, class T>
DISTILL_ALWAYS_INLINE xsimd::batch<T, Arch> load(const T* p, std::ptrdiff_t n, T fill) noexcept {
    using V = xsimd::batch<T, Arch>;
    return n == static_cast<std::ptrdiff_t>(V::size) ? V::load_unaligned(p)
                                                     : load_partial<T, Arch>(p, static_cast<std::size_t>(n), fill);
}

template <class Arch, class T>
DISTILL_ALWAYS_INLINE void store(T* p, std::ptrdiff_t n, const xsimd::batch<T, Arch>& x) noexcept {
    if (n == static_cast<std::ptrdiff_t>(xsimd::batch<T, Arch>::size))
        x.store_unaligned(p);
    else
        store_partial<T, Arch>(p, static_cast<std::size_t>(n), x);
}

// Asks for the cache line `ahead` elements past p, to be read soon. Sweep 1 reads a block from
// memory for its maxima and then spends its exponentials on it from L1, during which nothing else
// asks memory for anything; prefetching the next block (one line per vector) while the
// exponentials run overlaps the two (about 10% at 512 x 32000 on Zen 4). A hint only: it never
// faults, and the address is formed as an integer, so it may lie past the row's end (the next row
// of a contiguous batch) or past the buffer.
template <class T>
DISTILL_ALWAYS_INLINE void prefetch_ahead(const T* p, std::ptrdiff_t ahead) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(p) +
                                                     static_cast<std::uintptr_t>(ahead) * sizeof(T)));
#else
    (void)p, (void)ahead;
#endif
}

// Calls body(i, W) for each full vector of [begin, end) and body(i, n) once for a tail of n < W:
// with W a constant at the full-vector call sites, the kernels' tail tests fold away there.
template <std::ptrdiff_t W, class Body>
DISTILL_ALWAYS_INLINE void for_each_vector(std::ptrdiff_t begin, std::ptrdiff_t end, Body&& body) noexcept {
    std::ptrdiff_t i = begin;
    for (; i + W <= end; i += W) body(i, W);
    if (i < end) body(i, end - i);
}

// x^n for a small whole n >= 1 by squaring.
template <class V>
DISTILL_ALWAYS_INLINE V whole_power(V x, int n) noexcept {
    if (n == 1) return x;  // T = 1: r is q itself
    V result = (n & 1) ? x : V(1);
    for (n >>= 1; n > 0; n >>= 1) {
        x *= x;
        if (n & 1) result *= x;
    }
    return result;
}

}  // namespace distill::detail::simd
