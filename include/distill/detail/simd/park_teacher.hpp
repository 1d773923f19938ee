// distill/detail/simd/park_teacher.hpp - the teacher's exponentials, parked in the gradient buffer
// for a gradient sweep whose row statistics were gathered in another call (a vocabulary shard,
// detail/shard.hpp).
//
// Both SIMD gradient sweeps read e_p from the gradient buffer, where sweep 1 left it relative to
// the teacher max of its block (maxima[b].teacher), and bring it to p with one factor per block.
// Sweep 1 of a shard runs in an earlier call, before the ranks' statistics are merged, and its
// parked values and block maxima are gone by the gradient sweep. Once the whole row's teacher max
// m_t is known, parking is one exponential per element relative to it, with maxima[b].teacher = m_t
// for every block: a third of what running sweep 1 again would cost, which also sums e_q.
#pragma once

#include <cstddef>
#include <limits>

#include <xsimd/xsimd.hpp>

#include "../row_terms.hpp"
#include "exp.hpp"
#include "row_blocks.hpp"
#include "vector_ops.hpp"

namespace distill::detail::simd {

// Parks e_p = exp((t - m_t) / T_t) (t = log t for probabilities) for the blocks [first, last) of a
// row of C elements, the row's teacher max being mt (finite), and records mt as each block's max.
template <class Arch, class T>
void park_teacher(const T* t, std::ptrdiff_t C, const row_terms& k, double mt, T* grad, std::ptrdiff_t first,
                  std::ptrdiff_t last, block_maxima* maxima) noexcept {
    using V = xsimd::batch<T, Arch>;
    constexpr std::ptrdiff_t W = V::size;
    const V shift(static_cast<T>(mt)), inv_t(static_cast<T>(k.teacher_inv_temperature));
    const std::ptrdiff_t block = block_length(C, W);
    for (std::ptrdiff_t b = first; b < last; ++b) {
        maxima[b].teacher = mt;
        const std::ptrdiff_t begin = b * block, end = std::min(C, begin + block);
        for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
            // As sweep 1 reads the teacher: log t for probabilities, a tail filled with -inf (or 0).
            const V logit = k.teacher_probabilities ? log_of(load<Arch>(t + i, n, T(0)))
                                                    : load<Arch>(t + i, n, -std::numeric_limits<T>::infinity());
            store<Arch>(grad + i, n, exp_nonpositive<Arch>((logit - shift) * inv_t));
        });
    }
}

}  // namespace distill::detail::simd
