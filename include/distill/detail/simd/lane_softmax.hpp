// distill/detail/simd/lane_softmax.hpp - softmax(s / T) or log_softmax(s / T) of short rows, a
// group of them side by side, one row per lane.
//
// Contract: as reference::softmax_row for each of the W rows of a group (W the lanes of a batch);
// noexcept, no allocation, C <= lane_softmax_max_cols, any strides and alignment; `out` may be `s`
// itself with the same stride (in place: the whole group is read before any of it is written).
//
// A row of ten classes fills part of a vector or two, and a kernel that runs one row at a time
// spends most of its time on what a row costs whatever its length: reducing a vector to the row's max
// and to its sum, a tail loaded and stored under a mask. Here W rows run side by side, row r in lane
// r: they are copied transposed into a tile on the stack (column c of the group is one vector), and
// the max, the exponentials, the sum and the outputs run down the columns, one vector operation per
// column for the whole group; the outputs go back through the tile. One exponential per element.
//
// The rows of a call that fill no whole group run through lane_softmax_row, which is a lane's
// arithmetic along one row: the same operations in the same order (the max is exact in any order;
// the sum is one fixed tree, halving_sum), so that a row's bits do not depend on whether it ran in a
// group, on which rows shared it, on how many rows the call has or on where a thread's share of
// them begins. Special rows as softmax_row: a NaN or +inf logit makes the row's sum, so its every
// output, NaN; a row all -inf is reported and left untouched.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include <xsimd/xsimd.hpp>

#include "../row_terms.hpp"
#include "exp.hpp"
#include "row_blocks.hpp"

namespace distill::detail::simd {

// The longest row the lane kernel takes: 48 bytes (12 floats, 6 doubles), and no more than the two
// vectors of the one-row kernel whose bits it repeats. Its cost grows with the row's classes, the
// one-row kernel's with its vectors; on Zen 4 they cross between 12 and 16 floats in the AVX2 build
// and at about 16 in the AVX-512 one (docs/benchmarks.md).
template <class Arch, class T>
inline constexpr std::ptrdiff_t lane_softmax_max_cols =
    std::min<std::ptrdiff_t>(48 / sizeof(T), 2 * xsimd::batch<T, Arch>::size);

// x = (s - shift) / T; at T = 1 without the multiply (the same bits: x * 1 = x), which saves one of
// the dozen FMA-port operations per vector that the exponential costs.
template <bool UnitT, class V>
DISTILL_ALWAYS_INLINE V scaled_logit(const V& s, const V& shift, const V& inv_t) noexcept {
    if constexpr (UnitT)
        return s - shift;
    else
        return (s - shift) * inv_t;
}

// A row's sum Z adds its exponentials pairwise, halving: over P slots (W when C <= W, else 2W), the
// slots from C on holding 0, slot j takes slot j + h for h = P/2, P/4, ..., 1; Z is slot 0. The
// one-row kernel does it along its vectors (for two vectors the first halving is one vector
// addition, the rest is halving_add); a lane does it down its columns, leaving out the additions of
// a slot known to be 0, which would change no bits. Either way a few additions deep, not C.
template <class Arch, class T>
constexpr std::ptrdiff_t sum_slots(std::ptrdiff_t C) noexcept {
    constexpr std::ptrdiff_t W = xsimd::batch<T, Arch>::size;
    return C <= W ? W : 2 * W;
}
// The halving sum of slots [0, n) of a (the rest 0), over P slots, in place: slot 0 is the sum.
template <class S>
DISTILL_ALWAYS_INLINE void halving_sum(S* a, std::ptrdiff_t n, std::ptrdiff_t P) noexcept {
    for (std::ptrdiff_t h = P / 2; h >= 1; h /= 2) {
        for (std::ptrdiff_t j = 0; j < h && j + h < n; ++j) a[j] += a[j + h];
        n = std::min(n, h);
    }
}

// A row's log Z (Log) or 1 / Z, in double whatever T, from its sum in T.
template <bool Log, class T>
DISTILL_ALWAYS_INLINE T row_constant(T z) noexcept {
    const double x = z;
    return static_cast<T>(Log ? std::log(x) : 1 / x);
}
// The same for each lane of z. A lane whose row is all -inf (Z = 0, the only rows with Z below 1) gets
// 0: its output is never written, and log(0) would set errno.
template <class Arch, bool Log, class T>
DISTILL_ALWAYS_INLINE xsimd::batch<T, Arch> lane_constants(const xsimd::batch<T, Arch>& z) noexcept {
    using V = xsimd::batch<T, Arch>;
    alignas(64) T lanes[V::size];
    z.store_aligned(lanes);
    for (T& lane : lanes) lane = lane == 0 ? T(0) : row_constant<Log>(lane);
    return V::load_aligned(lanes);
}

// One row of at most `Vectors` vectors (C <= 2W), held in registers: a lane's arithmetic, the
// vectors running along the row (softmax_row's kernel for every such row). Returns false for an all
// -inf row (`out` untouched).
template <class Arch, bool Log, bool UnitT, int Vectors, class T>
bool lane_softmax_row(const T* s, std::ptrdiff_t C, double inv_t, T* out) noexcept {
    using V = xsimd::batch<T, Arch>;
    constexpr std::ptrdiff_t W = V::size;
    constexpr T fill = -std::numeric_limits<T>::infinity();
    V x[Vectors];
    V vm(fill);
    for (int v = 0; v < Vectors; ++v) {
        x[v] = load<Arch>(s + v * W, std::min(W, C - v * W), fill);
        vm = xsimd::max(vm, x[v]);
    }
    const T m = reduce_max(vm);
    const V shift(m == fill ? T(0) : m), v_inv_t(static_cast<T>(inv_t));
    V e[Vectors];
    for (int v = 0; v < Vectors; ++v) {
        x[v] = scaled_logit<UnitT>(x[v], shift, v_inv_t);  // kept: log_softmax's output is x - log Z
        e[v] = exp_nonpositive<Arch>(x[v]);
    }
    const T z = halving_add(Vectors == 2 ? e[0] + e[1] : e[0]);
    if (m == fill && !std::isnan(z)) return false;  // all -inf
    const V constant(row_constant<Log>(z));
    for (int v = 0; v < Vectors; ++v)
        store<Arch>(out + v * W, std::min(W, C - v * W), Log ? x[v] - constant : e[v] * constant);
    return true;
}

// The W rows of a group, row r at s + r * s_stride. Returns the first row whose logits are all -inf
// (its output untouched), or -1. The tile is copied element by element: on Zen 4 that was as fast
// as gathering its columns with 8 lanes, and a third faster with 16 (64 x 10).
template <class Arch, bool Log, bool UnitT, class T>
[[gnu::noinline]] std::ptrdiff_t lane_softmax_group(const T* s, std::ptrdiff_t s_stride, T* out, std::ptrdiff_t out_stride,
                                                    std::ptrdiff_t C, double inv_t) noexcept {
    using V = xsimd::batch<T, Arch>;
    constexpr std::ptrdiff_t W = V::size, P = lane_softmax_max_cols<Arch, T>;
    constexpr T fill = -std::numeric_limits<T>::infinity();
    alignas(64) T tile[P * W];  // tile[c * W + r]: column c of row r
    for (std::ptrdiff_t r = 0; r < W; ++r)
        for (std::ptrdiff_t c = 0; c < C; ++c) tile[c * W + r] = s[r * s_stride + c];
    V x[P], sum[P];
    V m(fill);  // NaN needs no test: its exponential makes the sum NaN
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        x[c] = V::load_aligned(tile + c * W);
        m = xsimd::max(m, x[c]);
    }
    const V shift = xsimd::select(m == V(fill), V(T(0)), m), v_inv_t(static_cast<T>(inv_t));  // shift_of, per lane
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        x[c] = scaled_logit<UnitT>(x[c], shift, v_inv_t);
        sum[c] = exp_nonpositive<Arch>(x[c]);
        if constexpr (!Log) x[c] = sum[c];
    }
    halving_sum(sum, C, sum_slots<Arch, T>(C));
    const V z = sum[0];
    const V constant = lane_constants<Arch, Log>(z);
    for (std::ptrdiff_t c = 0; c < C; ++c) (Log ? x[c] - constant : x[c] * constant).store_aligned(tile + c * W);

    alignas(64) T lane_m[W], lane_z[W];
    m.store_aligned(lane_m);
    z.store_aligned(lane_z);
    std::ptrdiff_t undefined = -1;
    for (std::ptrdiff_t r = 0; r < W; ++r) {
        if (lane_m[r] == fill && !std::isnan(lane_z[r])) {  // all -inf: untouched
            if (undefined < 0) undefined = r;
            continue;
        }
        for (std::ptrdiff_t c = 0; c < C; ++c) out[r * out_stride + c] = tile[c * W + r];
    }
    return undefined;
}

}  // namespace distill::detail::simd
