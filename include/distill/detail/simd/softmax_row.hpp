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
#include "row_blocks.hpp"

namespace distill::detail::simd {

template <class Arch, class T>
bool softmax_row(const T* s, std::ptrdiff_t C, double inv_t, bool log, T* out) noexcept {
    using V = xsimd::batch<T, Arch>;
    constexpr std::ptrdiff_t W = V::size;
    constexpr T minus_inf = -std::numeric_limits<T>::infinity();
    const V v_inv_t(static_cast<T>(inv_t)), zero(T(0));
    const std::ptrdiff_t block = block_length(C, W);

    double m = -std::numeric_limits<double>::infinity(), z = 0;
    for (std::ptrdiff_t begin = 0; begin < C; begin += block) {
        const std::ptrdiff_t end = std::min(C, begin + block);
        V vm(minus_inf);
        auto nan = zero != zero;
        for (std::ptrdiff_t i = begin; i < end; i += W) {
            const V sv = load<Arch>(s + i, std::min(W, end - i), minus_inf);
            vm = xsimd::max(vm, sv);
            nan = nan || (sv != sv);
        }
        const double nan_or = xsimd::any(nan) ? std::numeric_limits<double>::quiet_NaN() : 0.0;
        const double new_m = sticky_max(m, reduce_max(vm) + nan_or);
        if (m != -std::numeric_limits<double>::infinity() && !(new_m == m)) z *= std::exp((m - new_m) * inv_t);
        m = new_m;
        const V shift(static_cast<T>(shift_of(m)));
        for (std::ptrdiff_t i = begin; i < end;) {
            const std::ptrdiff_t chunk_end = std::min(end, i + flush_vectors * W);
            V part(T(0));
            for (; i < chunk_end; i += W)
                part += xsimd::exp((load<Arch>(s + i, std::min(W, end - i), minus_inf) - shift) * v_inv_t);
            z += reduce_add(part);
        }
    }
    if (m == -std::numeric_limits<double>::infinity()) return false;

    const V shift(static_cast<T>(m));
    const V log_z(static_cast<T>(std::log(z))), inv_z(static_cast<T>(1 / z));
    for (std::ptrdiff_t i = 0; i < C; i += W) {
        const std::ptrdiff_t n = std::min(W, C - i);
        const V x = (load<Arch>(s + i, n, minus_inf) - shift) * v_inv_t;
        store<Arch>(out + i, n, log ? x - log_z : xsimd::exp(x) * inv_z);
    }
    return true;
}

}  // namespace distill::detail::simd
