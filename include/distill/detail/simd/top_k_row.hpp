// distill/detail/simd/top_k_row.hpp - the top-k kernels (detail/top_k_row.hpp) over xsimd batches.
//
// Contract: as reference/top_k_row.hpp; noexcept, no allocation, any C >= 1, any alignment. The
// stretches between the teacher's classes run vectorised, with a masked tail each; the k classes
// themselves are scalar, in double. Sweeps: the row's max; the sums (one exponential per element,
// two for the hard term at a fractional T), parking e_q in the gradient buffer when there is one
// and it is not the student logits; the gradient, from the parked e_q (no exponential; at a
// fractional T with the hard term, r's own exponential), or recomputing e_q in place.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include <xsimd/xsimd.hpp>

#include "../row_terms.hpp"
#include "../storage_type.hpp"
#include "../top_k_row.hpp"
#include "exp.hpp"
#include "fused_row.hpp"
#include "row_blocks.hpp"

namespace distill::detail::simd {

template <class Arch, class In>
double row_max(const In* s, std::ptrdiff_t C) noexcept {
    using T = compute_t<In>;
    using V = xsimd::batch<T, Arch>;
    constexpr T minus_inf = -std::numeric_limits<T>::infinity();
    V m(minus_inf);  // NaN needs no test: its exponential makes the sums NaN
    for_each_vector<V::size>(0, C, [&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA { m = xsimd::max(m, load<Arch>(s + i, n, minus_inf)); });
    return static_cast<double>(reduce_max(m));
}

// Hard / Power / In / Out as in shaped_kernel (simd/fused_row.hpp), whose r and hard-term helpers
// these reuse.
template <class Arch, bool Hard, int Power, class In, class Out>
struct top_k_kernel {
    using shape = shaped_kernel<Arch, true, false, Hard, Power, In, Out>;
    using T = typename shape::T;
    using V = xsimd::batch<T, Arch>;
    static constexpr std::ptrdiff_t W = V::size;
    static constexpr T minus_inf = -std::numeric_limits<T>::infinity();

    // `park`, when not null, receives e_q of every column outside the teacher's classes, for the
    // gradient sweep to read back instead of recomputing it (never a 16-bit buffer: top_k_row.hpp).
    static top_k_student_sums sums(const In* s, std::ptrdiff_t C, std::span<const top_k_entry> entries, double ms,
                                   const row_terms& k, Out* park) noexcept {
        top_k_student_sums out;
        const double shift = shift_of(ms);
        const V v_shift(static_cast<T>(shift)), v_inv_t(static_cast<T>(k.inv_temperature));
        const bool smooth = Hard && k.smoothing > 0;
        const T* class_weights = k.class_weights_as<T>();
        const auto weight = [&](std::ptrdiff_t c) { return class_weights ? static_cast<double>(class_weights[c]) : 1.0; };
        for_each_run(
            C, entries,
            [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
                for (std::ptrdiff_t chunk = begin; chunk < end; chunk += flush_vectors * W) {
                    V part_z(T(0)), part_r(T(0)), part_x(T(0));
                    for_each_vector<W>(chunk, std::min(end, chunk + flush_vectors * W), [&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                        const V shifted = load<Arch>(s + i, n, minus_inf) - v_shift;
                        const V e_q = exp_nonpositive<Arch>(shifted * v_inv_t);
                        part_z += e_q;
                        if constexpr (shape::parks)
                            if (park) store<Arch>(park + i, n, e_q);
                        if constexpr (Hard) {
                            part_r += shape::r_from(e_q, shifted, k);
                            if (smooth) {
                                if (n == W)
                                    part_x += class_weights ? load<Arch>(class_weights + i, n, T(0)) * shifted : shifted;
                                else  // the -inf fill of a tail must not reach the sum of logits
                                    for (std::ptrdiff_t j = 0; j < n; ++j)
                                        out.sum_x += weight(i + j) * (static_cast<double>(s[i + j]) - shift);
                            }
                        }
                    });
                    out.z_tail += reduce_add(part_z);
                    if constexpr (Hard) {
                        out.zr += reduce_add(part_r);
                        if (smooth) out.sum_x += reduce_add(part_x);
                    }
                }
            },
            [&](const top_k_entry& e) {
                const double x = static_cast<double>(s[e.column]) - shift;
                out.z_top += std::exp(x * k.inv_temperature);
                if constexpr (Hard) {
                    out.zr += std::exp(x);
                    if (smooth) out.sum_x += weight(e.column) * x;
                }
            });
        return out;
    }

    // `parked`: the sums sweep left e_q in `grad` outside the teacher's classes.
    template <class SoftAt>
    static void gradient(const In* s, std::ptrdiff_t C, std::span<const top_k_entry> entries, double ms,
                         double tail_coefficient, double zr, std::int64_t label, const row_terms& k, SoftAt&& soft_at,
                         bool parked, Out* grad) noexcept {
        row_stats st;
        st.zr = zr;
        const typename shape::hard_part hard(k, st, C);
        const V v_shift(static_cast<T>(shift_of(ms))), v_inv_t(static_cast<T>(k.inv_temperature));
        const V coef_tail(static_cast<T>(tail_coefficient));
        const double log_zr = Hard ? std::log(zr) : 0.0;
        const double r_weight = k.hard_r_weight(static_cast<double>(C));
        const T* class_weights = k.class_weights_as<T>();
        for_each_run(
            C, entries,
            [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
                if (shape::parks && parked && !(Hard && Power == 0)) {  // e_q (and r from it) without s or an exponential
                    for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                        const V e_q = load<Arch>(grad + i, n, T(0));
                        V g = coef_tail * e_q;
                        if constexpr (Hard) g += hard.at(e_q, e_q, k, i, n);
                        shape::store_gradient(grad, i, n, g, label, k);
                    });
                    return;
                }
                for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                    const V shifted = load<Arch>(s + i, n, minus_inf) - v_shift;
                    const V e_q = shape::parks && parked ? load<Arch>(grad + i, n, T(0)) : exp_nonpositive<Arch>(shifted * v_inv_t);
                    V g = coef_tail * e_q;
                    if constexpr (Hard) g += hard.at(e_q, shifted, k, i, n);
                    shape::store_gradient(grad, i, n, g, label, k);
                });
            },
            [&](const top_k_entry& e) {
                const double s_c = static_cast<double>(s[e.column]);
                double g = soft_at(e, s_c);
                if constexpr (Hard) {
                    const double w = class_weights ? static_cast<double>(class_weights[e.column]) : 1.0;
                    g += k.hard_grad * (r_weight * std::exp(s_c - ms - log_zr) - k.smoothing * w / static_cast<double>(C));
                    // A 16-bit gradient takes the label's target off before its one rounding
                    // (shape::subtract_label_target leaves it to the stores).
                    if (is_16bit_float<Out> && e.column == label) g -= k.hard_grad * (1 - k.smoothing) * k.label_weight;
                }
                grad[e.column] = from_double<Out>(g);
            });
        shape::subtract_label_target(grad, label, 0, C, k);
    }
};

// Runs `fn` with the top_k_kernel for k's shape.
template <class Arch, class T, class G, class Fn>
decltype(auto) with_top_k_kernel(const row_terms& k, Fn&& fn) noexcept {
    if (!k.hard) return fn.template operator()<top_k_kernel<Arch, false, 0, T, G>>();
    if (k.integer_temperature) return fn.template operator()<top_k_kernel<Arch, true, -1, T, G>>();
    return fn.template operator()<top_k_kernel<Arch, true, 0, T, G>>();
}

}  // namespace distill::detail::simd
