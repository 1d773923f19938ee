// distill/detail/simd/softmax_row.hpp - softmax(s / T) or log_softmax(s / T) of one row.
//
// Contract: as reference::softmax_row; noexcept, no allocation, any C >= 1, any alignment.
// Sweep 1 is the online max and sum of the fused kernel with one input; sweep 2 writes.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

#include <xsimd/xsimd.hpp>

#include "../row_terms.hpp"
#include "exp.hpp"
#include "row_blocks.hpp"

namespace distill::detail::simd {

template <class Arch, class T>
bool softmax_row(const T* s, std::ptrdiff_t C, double inv_t, bool log, T* out) noexcept {
    using V = xsimd::batch<T, Arch>;
    constexpr std::ptrdiff_t W = V::size;
    constexpr T minus_inf = -std::numeric_limits<T>::infinity();
    const V v_inv_t(static_cast<T>(inv_t));
    const std::ptrdiff_t block = block_length(C, W);

    double m = -std::numeric_limits<double>::infinity(), z = 0;
    for (std::ptrdiff_t begin = 0; begin < C; begin += block) {
        const std::ptrdiff_t end = std::min(C, begin + block);
        V vm(minus_inf);  // NaN needs no test: its exponential makes the sum NaN
        for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) { vm = xsimd::max(vm, load<Arch>(s + i, n, minus_inf)); });
        const double new_m = sticky_max(m, reduce_max(vm));
        if (m != -std::numeric_limits<double>::infinity() && !(new_m == m)) z *= std::exp((m - new_m) * inv_t);
        m = new_m;
        const V shift(static_cast<T>(shift_of(m)));
        for (std::ptrdiff_t i = begin; i < end;) {
            const std::ptrdiff_t chunk_end = std::min(end, i + flush_vectors * W);
            V part(T(0));
            for_each_vector<W>(i, chunk_end, [&](std::ptrdiff_t j, std::ptrdiff_t n) {
                part += exp_nonpositive<Arch>((load<Arch>(s + j, n, minus_inf) - shift) * v_inv_t);
            });
            z += reduce_add(part);
            i = chunk_end;
        }
    }
    if (m == -std::numeric_limits<double>::infinity() && !std::isnan(z)) return false;  // all -inf

    const V shift(static_cast<T>(m));
    const V log_z(static_cast<T>(std::log(z))), inv_z(static_cast<T>(1 / z));
    for_each_vector<W>(0, C, [&](std::ptrdiff_t i, std::ptrdiff_t n) {
        const V x = (load<Arch>(s + i, n, minus_inf) - shift) * v_inv_t;
        store<Arch>(out + i, n, log ? x - log_z : exp_nonpositive<Arch>(x) * inv_z);
    });
    return true;
}

}  // namespace distill::detail::simd
