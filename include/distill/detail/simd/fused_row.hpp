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
//
// The sweeps run over a range of blocks, so that a long row can be cut into segments that run on
// different threads: each segment's statistics are relative to its own maxima, and `merge` brings
// them to common maxima in a fixed order (the parallel form of the online softmax).
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

// Sweep-1 statistics of a stretch of a row, relative to the stretch's own running maxima.
struct row_stats {
    double ms = -std::numeric_limits<double>::infinity();  // max of s
    double mt = -std::numeric_limits<double>::infinity();  // max of t
    double zq = 0, zr = 0, zp = 0;                         // sums of e_q, e_r, e_p
    double acc = 0;                                        // the divergence's accumulator
    double sum_x = 0;                                      // sum of (s - ms), for label smoothing
    std::ptrdiff_t seen = 0;                               // elements covered
};

// Re-expresses `a` relative to maxima that are at least its own: every x falls by ds / T, every
// e_q by exp(-ds / T), every e_r by exp(-ds), every (s - ms) by ds; the teacher's sums by exp(-dt / T).
// A max of -inf has empty sums (except sums that are already +-inf), which need no rescale.
template <class Divergence>
inline void rebase(row_stats& a, double new_ms, double new_mt, double inv_t, bool soft) noexcept {
    constexpr double minus_inf = -std::numeric_limits<double>::infinity();
    double ds = 0, dt = 0, f = 1;
    if (a.ms != minus_inf && !(new_ms == a.ms)) {
        ds = new_ms - a.ms;
        a.zq *= std::exp(-ds * inv_t);
        a.zr *= std::exp(-ds);
        a.sum_x -= static_cast<double>(a.seen) * ds;
    }
    if (soft) {
        if (a.mt != minus_inf && !(new_mt == a.mt)) {
            dt = new_mt - a.mt;
            f = std::exp(-dt * inv_t);
        }
        a.acc = Divergence::rescale(a.acc, a.zp, ds, dt, inv_t, f);
        a.zp *= f;
    }
    a.ms = new_ms;
    a.mt = new_mt;
}

// The statistics of two adjacent stretches as one (a on the left).
template <class Divergence = forward_kl>
inline row_stats merge(row_stats a, row_stats b, const row_terms& k) noexcept {
    const double ms = sticky_max(a.ms, b.ms), mt = sticky_max(a.mt, b.mt);
    rebase<Divergence>(a, ms, mt, k.inv_temperature, k.soft);
    rebase<Divergence>(b, ms, mt, k.inv_temperature, k.soft);
    a.zq += b.zq;
    a.zr += b.zr;
    a.zp += b.zp;
    a.acc += b.acc;
    a.sum_x += b.sum_x;
    a.seen += b.seen;
    return a;
}

// The blocks of a row of C elements of type T.
template <class Arch, class T>
inline std::ptrdiff_t row_blocks(std::ptrdiff_t C) noexcept {
    const std::ptrdiff_t block = block_length(C, xsimd::batch<T, Arch>::size);
    return (C + block - 1) / block;
}

// The kernels for one shape of the loss, fixed at compile time so that the inner loops carry no
// tests: Soft / Hard say which terms are present; Power says how r = softmax(s) is obtained:
// 0 by its own exponential, p > 0 as q^p (T = p, the multiplies unrolled), -1 as q^T for a whole
// T known only at run time.
template <class Arch, class Divergence, bool Soft, bool Hard, int Power, class T>
struct shaped_kernel {
    using V = xsimd::batch<T, Arch>;
    static constexpr std::ptrdiff_t W = V::size;
    static constexpr T minus_inf = -std::numeric_limits<T>::infinity();
    static constexpr double minus_inf_d = -std::numeric_limits<double>::infinity();

    static V r_from(const V& e_q, const V& shifted, const row_terms& k) noexcept {
        if constexpr (Power == 0)
            return exp_nonpositive<Arch>(shifted);
        else
            return whole_power(e_q, Power > 0 ? Power : k.integer_temperature);
    }

    // Sweep 1 over blocks [first, last). Parks e_p in grad (when given) and records, per block, the
    // teacher max its parked values are relative to.
    static row_stats statistics(const T* s, const T* t, std::ptrdiff_t C, const row_terms& k, T* grad,
                                std::ptrdiff_t first, std::ptrdiff_t last, double* teacher_max_at) noexcept {
        const auto select = [](auto c, auto a, auto b) { return xsimd::select(c, a, b); };
        const bool smooth = Hard && k.smoothing > 0;
        const V v_inv_t(static_cast<T>(k.inv_temperature)), zero(T(0));
        const std::ptrdiff_t block = block_length(C, W);
        row_stats st;
        for (std::ptrdiff_t b = first; b < last; ++b) {
            const std::ptrdiff_t begin = b * block, end = std::min(C, begin + block);
            // NaN needs no test here: a NaN logit makes its exponential NaN below, and so the sums.
            V vms(minus_inf), vmt(minus_inf);
            for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) {
                vms = xsimd::max(vms, load<Arch>(s + i, n, minus_inf));
                if constexpr (Soft) vmt = xsimd::max(vmt, load<Arch>(t + i, n, minus_inf));
            });
            rebase<Divergence>(st, sticky_max(st.ms, reduce_max(vms)),
                               Soft ? sticky_max(st.mt, reduce_max(vmt)) : minus_inf_d, k.inv_temperature, Soft);
            teacher_max_at[b] = st.mt;

            const V shift_s(static_cast<T>(shift_of(st.ms))), shift_t(static_cast<T>(shift_of(st.mt)));
            for (std::ptrdiff_t chunk = begin; chunk < end; chunk += flush_vectors * W) {
                V part_zq(T(0)), part_zr(T(0)), part_zp(T(0)), part_acc(T(0)), part_x(T(0));
                for_each_vector<W>(chunk, std::min(end, chunk + flush_vectors * W), [&](std::ptrdiff_t i, std::ptrdiff_t n) {
                    const V shifted = load<Arch>(s + i, n, minus_inf) - shift_s;
                    const V x = shifted * v_inv_t;
                    const V e_q = exp_nonpositive<Arch>(x);
                    part_zq += e_q;
                    if constexpr (Hard) {
                        part_zr += r_from(e_q, shifted, k);
                        if (smooth) {
                            if (n == W)
                                part_x += shifted;
                            else  // the -inf fill of a tail must not reach the sum of logits
                                for (std::ptrdiff_t j = 0; j < n; ++j)
                                    st.sum_x += static_cast<double>(s[i + j]) - shift_of(st.ms);
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
                st.zq += reduce_add(part_zq);
                if constexpr (Hard) {
                    st.zr += reduce_add(part_zr);
                    if (smooth) st.sum_x += reduce_add(part_x);
                }
                if constexpr (Soft) {
                    st.zp += reduce_add(part_zp);
                    st.acc += reduce_add(part_acc);
                }
            }
            st.seen += end - begin;
        }
        return st;
    }

    // Sweep 2 over blocks [first, last), from the whole row's statistics.
    static void gradient(const T* s, std::int64_t label, std::ptrdiff_t C, const row_terms& k, const row_stats& st,
                         T* grad, std::ptrdiff_t first, std::ptrdiff_t last, const double* teacher_max_at) noexcept {
        const double eps = k.smoothing;
        const V v_inv_t(static_cast<T>(k.inv_temperature)), zero(T(0));
        const V coef_q(static_cast<T>(k.soft_grad / st.zq));
        const V coef_r(static_cast<T>(k.hard_grad / st.zr));
        const V uniform(static_cast<T>(k.hard_grad * eps / static_cast<double>(C)));
        const V shift_s(static_cast<T>(st.ms));
        const std::ptrdiff_t block = block_length(C, W);
        for (std::ptrdiff_t b = first; b < last; ++b) {
            const std::ptrdiff_t begin = b * block, end = std::min(C, begin + block);
            // p = e_p(parked) * exp((block's shift - mt) / T) / Z_p; a block whose teacher logits were
            // all -inf parked zeros, and its factor must not be exp(+large) * 0.
            const double at = teacher_max_at[b];
            const V coef_p(static_cast<T>(
                Soft && at != minus_inf_d ? k.soft_grad * std::exp((at - st.mt) * k.inv_temperature) / st.zp : 0.0));
            for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) {
                const V shifted = load<Arch>(s + i, n, minus_inf) - shift_s;
                const V e_q = exp_nonpositive<Arch>(shifted * v_inv_t);
                V g = zero;
                if constexpr (Soft) g = xsimd::fnma(coef_p, load<Arch>(grad + i, n, T(0)), coef_q * e_q);
                if constexpr (Hard) g += xsimd::fms(coef_r, r_from(e_q, shifted, k), uniform);
                store<Arch>(grad + i, n, g);
            });
            if (Hard && label >= begin && label < end) grad[label] -= static_cast<T>(k.hard_grad * (1 - eps));
        }
    }
};

// Calls fn.template operator()<Kernel>() with the shaped_kernel that fits k.
template <class Arch, class Divergence, class T, class Fn>
inline decltype(auto) with_kernel(const row_terms& k, Fn&& fn) noexcept {
    if (k.soft && k.hard) {
        switch (k.integer_temperature) {
            case 0: return fn.template operator()<shaped_kernel<Arch, Divergence, true, true, 0, T>>();
            case 1: return fn.template operator()<shaped_kernel<Arch, Divergence, true, true, 1, T>>();
            case 2: return fn.template operator()<shaped_kernel<Arch, Divergence, true, true, 2, T>>();
            case 4: return fn.template operator()<shaped_kernel<Arch, Divergence, true, true, 4, T>>();
            default: return fn.template operator()<shaped_kernel<Arch, Divergence, true, true, -1, T>>();
        }
    }
    if (k.soft) return fn.template operator()<shaped_kernel<Arch, Divergence, true, false, 0, T>>();
    // The hard term alone runs at T = 1 (row_terms), where r is q itself.
    if (k.integer_temperature == 1) return fn.template operator()<shaped_kernel<Arch, Divergence, false, true, 1, T>>();
    return fn.template operator()<shaped_kernel<Arch, Divergence, false, true, 0, T>>();
}

template <class Arch, class Divergence = forward_kl, class T>
row_stats row_statistics(const T* s, const T* t, std::ptrdiff_t C, const row_terms& k, T* grad, std::ptrdiff_t first,
                         std::ptrdiff_t last, double* teacher_max_at) noexcept {
    return with_kernel<Arch, Divergence, T>(
        k, [&]<class K>() { return K::statistics(s, t, C, k, grad, first, last, teacher_max_at); });
}

template <class Arch, class Divergence = forward_kl, class T>
void row_gradient(const T* s, std::int64_t label, std::ptrdiff_t C, const row_terms& k, const row_stats& st, T* grad,
                  std::ptrdiff_t first, std::ptrdiff_t last, const double* teacher_max_at) noexcept {
    with_kernel<Arch, Divergence, T>(
        k, [&]<class K>() { K::gradient(s, label, C, k, st, grad, first, last, teacher_max_at); });
}

// The row's loss from its statistics.
template <class Divergence = forward_kl, class T>
row_result row_loss(const row_stats& st, const T* s, std::int64_t label, std::ptrdiff_t C, const row_terms& k) noexcept {
    constexpr double minus_inf = -std::numeric_limits<double>::infinity();
    row_result out;
    // A max of -inf means no logit above -inf: an all -inf row, unless NaNs (which max skips) are
    // there, and then the sums are NaN and the NaN goes on to the loss.
    if (st.ms == minus_inf && !std::isnan(st.zq)) {
        out.student_defined = false;
        return out;
    }
    if (k.soft && st.mt == minus_inf && !std::isnan(st.zp)) {
        out.teacher_defined = false;
        return out;
    }
    const double eps = k.smoothing;
    if (k.soft) out.kl = Divergence::value(st.acc, st.zq, st.zp);
    if (k.hard)
        out.ce = -(1 - eps) * (static_cast<double>(s[label]) - st.ms) - eps * st.sum_x / static_cast<double>(C) +
                 std::log(st.zr);
    return out;
}

// The whole row: statistics, loss, and (when grad is given) the gradient.
template <class Arch, class Divergence = forward_kl, class T>
row_result fused_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                     T* grad) noexcept {
    double teacher_max_at[max_blocks];
    const std::ptrdiff_t blocks = row_blocks<Arch, T>(C);
    const row_stats st = row_statistics<Arch, Divergence>(s, t, C, k, grad, 0, blocks, teacher_max_at);
    const row_result out = row_loss<Divergence>(st, s, label, C, k);
    if (grad && out.student_defined && out.teacher_defined)
        row_gradient<Arch, Divergence>(s, label, C, k, st, grad, 0, blocks, teacher_max_at);
    return out;
}

}  // namespace distill::detail::simd
