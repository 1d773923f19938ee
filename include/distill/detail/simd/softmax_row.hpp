// distill/detail/simd/softmax_row.hpp - softmax(s / T) or log_softmax(s / T) of one row.
//
// Contract: as reference::softmax_row; noexcept, no allocation, any C >= 1, any alignment; `out` may
// be `s` itself (in place: each element is read before it is written).
//
// One exponential per element, and the row read from memory once:
//   sweep 1, block by block (row_blocks.hpp): the block's max (from memory, leaving the block in
//     L1), the running max and sum updated online, and e = exp((s - running max) / T) from L1 into
//     `out` with its sum. log_softmax needs no e in `out`, it stores a copy of s there instead:
//     either way `out`'s lines are fetched while the core is busy with exponentials, not in sweep 2.
//   sweep 2 over `out` (still in L2 for rows up to a few hundred KB): softmax scales each block's e
//     by exp((block's max - row max) / T) / Z, which is 1 / Z exactly for every block from the one
//     holding the row max on; log_softmax writes (s - max) / T - log Z.
// Sweep 2 recomputing the exponentials from s instead (as this kernel once did) costs a second
// exponential per element, which is most of a softmax's time once the row is in cache.
//
// A row of at most eight vectors is held in registers instead, from its load to its store
// (lane_softmax_row up to two vectors, register_softmax_row up to eight), and whole groups of rows of at
// most lane_softmax_max_cols classes run side by side (softmax_group), with the bits each row gets
// alone (lane_softmax.hpp).
//
// Special rows, as the reference: a NaN or +inf logit makes the sum, so every output, NaN; a row
// all -inf returns false and leaves `out` untouched. A block whose running max is still -inf has
// only zero exponentials: sweep 1 stores nothing for it (so nothing is written before the row is
// known to be defined) and sweep 2 writes 0 / Z there (NaN when Z is).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>

#include <xsimd/xsimd.hpp>

#include "../row_terms.hpp"
#include "exp.hpp"
#include "lane_softmax.hpp"
#include "row_blocks.hpp"

namespace distill::detail::simd {

// A row of one block of at most eight vectors (2W < C <= 8W: 33 to 128 float classes on AVX-512, 17
// to 64 on AVX2), held in registers from its load to its store: none of the sweeps' block bookkeeping,
// no copy through `out`, no second read. Its exponentials are summed by two running vector sums (the
// even and the odd vectors: two dependency chains), then halving_add. Chosen by the row's length alone.
template <class Arch, bool Log, bool UnitT, class T>
DISTILL_ALWAYS_INLINE bool register_softmax_row(const T* s, std::ptrdiff_t C, double inv_t, T* out) noexcept {
    using V = xsimd::batch<T, Arch>;
    constexpr std::ptrdiff_t W = V::size;
    constexpr int most = 8;
    constexpr T fill = -std::numeric_limits<T>::infinity();
    const int vectors = static_cast<int>((C + W - 1) / W);
    V x[most];
    V vm(fill);
#pragma GCC unroll 8
    for (int v = 0; v < most; ++v)
        if (v < vectors) {
            x[v] = load<Arch>(s + v * W, std::min(W, C - v * W), fill);
            vm = xsimd::max(vm, x[v]);
        }
    const T m = reduce_max(vm);
    const V shift(m == fill ? T(0) : m), v_inv_t(static_cast<T>(inv_t));
    V e[most];
    V even(T(0)), odd(T(0));
#pragma GCC unroll 8
    for (int v = 0; v < most; ++v)
        if (v < vectors) {
            x[v] = scaled_logit<UnitT>(x[v], shift, v_inv_t);  // kept: log_softmax's output is x - log Z
            e[v] = exp_nonpositive<Arch>(x[v]);
            if (v % 2 == 0)
                even += e[v];
            else
                odd += e[v];
        }
    const T z = halving_add(even + odd);
    if (m == fill && !std::isnan(z)) return false;  // all -inf
    const V constant(row_constant<Log>(z));
#pragma GCC unroll 8
    for (int v = 0; v < most; ++v)
        if (v < vectors) store<Arch>(out + v * W, std::min(W, C - v * W), Log ? x[v] - constant : e[v] * constant);
    return true;
}

// The sweeps of one row.
template <class Arch, bool Log, bool UnitT, class T>
bool softmax_row_sweeps(const T* s, std::ptrdiff_t C, double inv_t, T* out) noexcept {
    using V = xsimd::batch<T, Arch>;
    constexpr std::ptrdiff_t W = V::size;
    if (C <= W) return lane_softmax_row<Arch, Log, UnitT, 1>(s, C, inv_t, out);
    if (C <= 2 * W) return lane_softmax_row<Arch, Log, UnitT, 2>(s, C, inv_t, out);
    if (C <= 8 * W) return register_softmax_row<Arch, Log, UnitT>(s, C, inv_t, out);
    constexpr double minus_inf = -std::numeric_limits<double>::infinity();
    constexpr T fill = -std::numeric_limits<T>::infinity();
    const V v_inv_t(static_cast<T>(inv_t));
    const std::ptrdiff_t block = block_length(C, W);
    std::array<double, max_blocks> block_max;  // the running max each block's e are relative to

    double m = minus_inf, z = 0;
    for (std::ptrdiff_t b = 0, begin = 0; begin < C; ++b, begin += block) {
        const std::ptrdiff_t end = std::min(C, begin + block);
        // Two accumulators: the max is a dependency chain of one operation per vector.
        V m0(fill), m1(fill);  // NaN needs no test: its exponential makes the sum NaN
        std::ptrdiff_t i = begin;
        for (; i + 2 * W <= end; i += 2 * W) {
            m0 = xsimd::max(m0, V::load_unaligned(s + i));
            m1 = xsimd::max(m1, V::load_unaligned(s + i + W));
        }
        for_each_vector<W>(i, end, [&](std::ptrdiff_t j, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA { m0 = xsimd::max(m0, load<Arch>(s + j, n, fill)); });
        const double new_m = sticky_max(m, reduce_max(xsimd::max(m0, m1)));
        if (m != minus_inf && !(new_m == m)) z *= std::exp((m - new_m) * inv_t);
        m = new_m;
        block_max[static_cast<std::size_t>(b)] = m;
        const bool store_block = m != minus_inf;
        const V shift(static_cast<T>(shift_of(m)));
        for (std::ptrdiff_t c = begin; c < end;) {
            const std::ptrdiff_t chunk_end = std::min(end, c + flush_vectors * W);
            V part(T(0));
            for_each_vector<W>(c, chunk_end, [&](std::ptrdiff_t j, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                prefetch_ahead(s + j, block);
                const V x = load<Arch>(s + j, n, fill);
                const V e = exp_nonpositive<Arch>(scaled_logit<UnitT>(x, shift, v_inv_t));
                if (store_block) store<Arch>(out + j, n, Log ? x : e);
                part += e;
            });
            z += reduce_add(part);
            c = chunk_end;
        }
    }
    if (m == minus_inf && !std::isnan(z)) return false;  // all -inf

    const double inv_z = 1 / z;
    const V shift(static_cast<T>(m)), log_z(static_cast<T>(std::log(z)));
    for (std::ptrdiff_t b = 0, begin = 0; begin < C; ++b, begin += block) {
        const std::ptrdiff_t end = std::min(C, begin + block);
        const double mb = block_max[static_cast<std::size_t>(b)];
        if constexpr (Log) {
            const T* x = mb == minus_inf ? s : out;  // blocks not stored in sweep 1 read the logits
            for_each_vector<W>(begin, end, [&](std::ptrdiff_t j, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                store<Arch>(out + j, n, scaled_logit<UnitT>(load<Arch>(x + j, n, fill), shift, v_inv_t) - log_z);
            });
        } else if (mb == minus_inf) {
            const V zero_over_z(static_cast<T>(0 * inv_z));
            for_each_vector<W>(begin, end, [&](std::ptrdiff_t j, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA { store<Arch>(out + j, n, zero_over_z); });
        } else {
            const V scale(static_cast<T>(mb == m ? inv_z : std::exp((mb - m) * inv_t) * inv_z));
            for_each_vector<W>(begin, end, [&](std::ptrdiff_t j, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                store<Arch>(out + j, n, load<Arch>(out + j, n, T(0)) * scale);
            });
        }
    }
    return true;
}

// The rows that softmax_group runs side by side when they have C classes: W when the lane kernel
// takes such rows, else 1 (rows run one by one).
template <class Arch, class T>
std::ptrdiff_t softmax_group_rows(std::ptrdiff_t C) noexcept {
    return C <= lane_softmax_max_cols<Arch, T> ? static_cast<std::ptrdiff_t>(xsimd::batch<T, Arch>::size) : 1;
}

// softmax_group_rows(C) rows (row r at s + r * s_stride) side by side, with the bits each would get
// from softmax_row. Returns the first row whose logits are all -inf (left untouched), or -1.
template <class Arch, class T>
std::ptrdiff_t softmax_group(const T* s, std::ptrdiff_t s_stride, T* out, std::ptrdiff_t out_stride, std::ptrdiff_t C,
                             double inv_t, bool log) noexcept {
    if (inv_t == 1)
        return log ? lane_softmax_group<Arch, true, true>(s, s_stride, out, out_stride, C, inv_t)
                   : lane_softmax_group<Arch, false, true>(s, s_stride, out, out_stride, C, inv_t);
    return log ? lane_softmax_group<Arch, true, false>(s, s_stride, out, out_stride, C, inv_t)
               : lane_softmax_group<Arch, false, false>(s, s_stride, out, out_stride, C, inv_t);
}

// One row. Returns false for an all -inf row (`out` untouched).
template <class Arch, class T>
bool softmax_row(const T* s, std::ptrdiff_t C, double inv_t, bool log, T* out) noexcept {
    if (inv_t == 1)
        return log ? softmax_row_sweeps<Arch, true, true>(s, C, inv_t, out)
                   : softmax_row_sweeps<Arch, false, true>(s, C, inv_t, out);
    return log ? softmax_row_sweeps<Arch, true, false>(s, C, inv_t, out)
               : softmax_row_sweeps<Arch, false, false>(s, C, inv_t, out);
}

}  // namespace distill::detail::simd
