// distill/detail/simd/fused_row.hpp - the fused loss row kernel, written once over
// xsimd::batch<T, Arch>.
//
// Contract: same inputs and meaning as reference::fused_row (the oracle it is tested against);
// noexcept, no allocation, any C >= 1, any alignment. `grad`, when given, must not overlap s or t:
// sweep 1 parks the teacher's exponentials in it.
//
// Sweep 1, block by block: block maxima of s and t, then the exponentials relative to the running
// maxima, summed (online softmax, Milakov & Gimelshein 2018); sums follow a rising max by a scalar
// rescale per block. The loss of the row follows from these sums alone. Sweep 2 writes
//     g = soft_grad * (q - p) + hard_grad * (r - target)
// Exponentials per element: q and p in sweep 1, q again in sweep 2; p is not recomputed (its value
// from sweep 1 waits in `grad`, rescaled per block by exp((block max - row max) / T)); r is q^T for a
// whole T in [1, 16], else one more exp in each sweep.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include <xsimd/xsimd.hpp>

#include "../divergence.hpp"
#include "../row_terms.hpp"
#include "exp.hpp"
#include "row_blocks.hpp"

namespace distill::detail::simd {

// The kernel for one shape of the loss, fixed at compile time so that the inner loops carry no
// tests: Soft / Hard say which terms are present; Power says how r = softmax(s) is obtained:
// 0 by its own exponential, p > 0 as q^p (T = p, the multiplies unrolled), -1 as q^T for a whole
// T known only at run time.
template <class Arch, class Divergence, bool Soft, bool Hard, int Power, class T>
row_result fused_row_as(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                        T* grad) noexcept {
    using V = xsimd::batch<T, Arch>;
    constexpr std::ptrdiff_t W = V::size;
    constexpr T minus_inf = -std::numeric_limits<T>::infinity();
    constexpr double minus_inf_d = -std::numeric_limits<double>::infinity();
    const auto select = [](auto c, auto a, auto b) { return xsimd::select(c, a, b); };
    const auto r_from = [&k](const V& e_q, const V& shifted) {
        if constexpr (Power == 0)
            return exp_nonpositive<Arch>(shifted);
        else
            return whole_power(e_q, Power > 0 ? Power : k.integer_temperature);
    };

    const bool smooth = Hard && k.smoothing > 0;
    const double inv_t = k.inv_temperature;
    const V v_inv_t(static_cast<T>(inv_t)), zero(T(0));

    const std::ptrdiff_t block = block_length(C, W);
    const std::ptrdiff_t blocks = (C + block - 1) / block;
    double teacher_max_at[max_blocks];  // running teacher max after each block: the shift of the e_p parked in grad

    double ms = minus_inf_d, mt = minus_inf_d;           // running maxima of s and t
    double zq = 0, zr = 0, zp = 0, acc = 0, sum_x = 0;  // sums relative to the running maxima
    std::ptrdiff_t seen = 0;

    // ---- sweep 1: statistics ----
    for (std::ptrdiff_t b = 0; b < blocks; ++b) {
        const std::ptrdiff_t begin = b * block, end = std::min(C, begin + block);

        // NaN needs no test here: a NaN logit makes its exponential NaN below, and so the sums.
        V vms(minus_inf), vmt(minus_inf);
        for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) {
            vms = xsimd::max(vms, load<Arch>(s + i, n, minus_inf));
            if constexpr (Soft) vmt = xsimd::max(vmt, load<Arch>(t + i, n, minus_inf));
        });
        const double new_ms = sticky_max(ms, reduce_max(vms));
        const double new_mt = Soft ? sticky_max(mt, reduce_max(vmt)) : minus_inf_d;

        double ds = 0, dt = 0, f = 1;
        if (ms != minus_inf_d && !(new_ms == ms)) {
            ds = new_ms - ms;
            zq *= std::exp(-ds * inv_t);
            zr *= std::exp(-ds);
            sum_x -= static_cast<double>(seen) * ds;
        }
        if constexpr (Soft) {
            if (mt != minus_inf_d && !(new_mt == mt)) {
                dt = new_mt - mt;
                f = std::exp(-dt * inv_t);
            }
            acc = Divergence::rescale(acc, zp, ds, dt, inv_t, f);
            zp *= f;
        }
        ms = new_ms;
        mt = new_mt;
        teacher_max_at[b] = mt;

        const V shift_s(static_cast<T>(shift_of(ms))), shift_t(static_cast<T>(shift_of(mt)));
        for (std::ptrdiff_t chunk = begin; chunk < end; chunk += flush_vectors * W) {
            V part_zq(T(0)), part_zr(T(0)), part_zp(T(0)), part_acc(T(0)), part_x(T(0));
            for_each_vector<W>(chunk, std::min(end, chunk + flush_vectors * W), [&](std::ptrdiff_t i, std::ptrdiff_t n) {
                const V sv = load<Arch>(s + i, n, minus_inf);
                const V shifted = sv - shift_s;
                const V x = shifted * v_inv_t;
                const V e_q = exp_nonpositive<Arch>(x);
                part_zq += e_q;
                if constexpr (Hard) {
                    part_zr += r_from(e_q, shifted);
                    if (smooth) {
                        if (n == W)
                            part_x += shifted;
                        else  // the -inf fill of a tail must not reach the sum of logits
                            for (std::ptrdiff_t j = 0; j < n; ++j) sum_x += static_cast<double>(s[i + j]) - shift_of(ms);
                    }
                }
                if constexpr (Soft) {
                    const V y = (load<Arch>(t + i, n, minus_inf) - shift_t) * v_inv_t;
                    const V e_p = exp_nonpositive<Arch>(y);
                    part_zp += e_p;
                    part_acc += Divergence::term(x, y, e_p, zero, select);
                    if (grad) store<Arch>(grad + i, n, e_p);
                }
            });
            zq += reduce_add(part_zq);
            if constexpr (Hard) {
                zr += reduce_add(part_zr);
                if (smooth) sum_x += reduce_add(part_x);
            }
            if constexpr (Soft) {
                zp += reduce_add(part_zp);
                acc += reduce_add(part_acc);
            }
        }
        seen += end - begin;
    }

    row_result out;
    // A max of -inf means no logit above -inf: an all -inf row, unless NaNs (which max skips) are
    // there, and then the sums are NaN and the NaN goes on to the loss.
    if (ms == minus_inf_d && !std::isnan(zq)) {
        out.student_defined = false;
        return out;
    }
    if (Soft && mt == minus_inf_d && !std::isnan(zp)) {
        out.teacher_defined = false;
        return out;
    }
    const double eps = k.smoothing;
    if constexpr (Soft) out.kl = Divergence::value(acc, zq, zp);
    if constexpr (Hard)
        out.ce = -(1 - eps) * (static_cast<double>(s[label]) - ms) - eps / static_cast<double>(C) * sum_x +
                 std::log(zr);
    if (!grad) return out;

    // ---- sweep 2: gradient ----
    const V coef_q(static_cast<T>(k.soft_grad / zq));
    const V coef_r(static_cast<T>(k.hard_grad / zr));
    const V uniform(static_cast<T>(k.hard_grad * eps / static_cast<double>(C)));
    const V shift_s(static_cast<T>(ms));
    for (std::ptrdiff_t b = 0; b < blocks; ++b) {
        const std::ptrdiff_t begin = b * block, end = std::min(C, begin + block);
        // p = e_p(parked) * exp((block's shift - mt) / T) / Z_p; a block whose teacher logits were all
        // -inf parked zeros, and its factor must not be exp(+large) * 0.
        const double at = teacher_max_at[b];
        const V coef_p(static_cast<T>(Soft && at != minus_inf_d ? k.soft_grad * std::exp((at - mt) * inv_t) / zp : 0.0));
        for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) {
            const V shifted = load<Arch>(s + i, n, minus_inf) - shift_s;
            const V e_q = exp_nonpositive<Arch>(shifted * v_inv_t);
            V g = zero;
            if constexpr (Soft) g = xsimd::fnma(coef_p, load<Arch>(grad + i, n, T(0)), coef_q * e_q);
            if constexpr (Hard) g += xsimd::fms(coef_r, r_from(e_q, shifted), uniform);
            store<Arch>(grad + i, n, g);
        });
    }
    if constexpr (Hard) grad[label] -= static_cast<T>(k.hard_grad * (1 - eps));
    return out;
}

template <class Arch, class Divergence = forward_kl, class T>
row_result fused_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                     T* grad) noexcept {
    if (k.soft && k.hard) {
        switch (k.integer_temperature) {
            case 0: return fused_row_as<Arch, Divergence, true, true, 0>(s, t, label, C, k, grad);
            case 1: return fused_row_as<Arch, Divergence, true, true, 1>(s, t, label, C, k, grad);
            case 2: return fused_row_as<Arch, Divergence, true, true, 2>(s, t, label, C, k, grad);
            case 4: return fused_row_as<Arch, Divergence, true, true, 4>(s, t, label, C, k, grad);
            default: return fused_row_as<Arch, Divergence, true, true, -1>(s, t, label, C, k, grad);
        }
    }
    if (k.soft) return fused_row_as<Arch, Divergence, true, false, 0>(s, t, label, C, k, grad);
    // The hard term alone runs at T = 1 (row_terms), where r is q itself.
    if (k.integer_temperature == 1) return fused_row_as<Arch, Divergence, false, true, 1>(s, t, label, C, k, grad);
    return fused_row_as<Arch, Divergence, false, true, 0>(s, t, label, C, k, grad);
}

}  // namespace distill::detail::simd
