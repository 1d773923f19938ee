// distill/detail/simd/fused_row.hpp - the fused loss row kernels, written once over
// xsimd::batch<T, Arch>.
//
// Contract: same inputs and meaning as reference::fused_row (the oracle they are tested against);
// noexcept, no allocation, any C >= 1, any alignment. `grad`, when given, must not overlap s or t:
// the statistics-first kernel parks the teacher's exponentials in it.
//
// Two kernel shapes (docs/design.md counts their sweeps and exponentials):
// - statistics-first, for forward KL (and the cross-entropy term alone). Sweep 1, block by block:
//   block maxima of s and t, then the exponentials relative to the running maxima, summed (online
//   softmax); sums follow a rising max by a scalar rescale per block. The loss follows from these
//   sums alone. Sweep 2 writes g = soft_grad (q - p) + hard_grad (r - target), with p parked in
//   `grad` by sweep 1 and rescaled per block by exp((block max - row max) / T).
// - normalise-first, for every other divergence: sweep 1 as above without the divergence's
//   terms; sweep 2 sums the policy's terms over normalised p and q; sweep 3 writes the gradient,
//   which needs the row scalars of sweep 2.
// r = softmax(s) is q^T for a whole T in [1, 16], else one more exp.
//
// The sweeps run over a range of blocks, so that a long row can be cut into segments that run on
// different threads: each segment's statistics are relative to its own maxima, and `merge`
// (row_statistics.hpp) brings them to common maxima in a fixed order.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "../divergences.hpp"
#include "../reference/fused_row.hpp"
#include "../row_statistics.hpp"
#include "../row_terms.hpp"
#include "../storage_type.hpp"
#include "exp.hpp"
#include "row_blocks.hpp"
#include "vector_ops.hpp"

namespace distill::detail::simd {

// The blocks of a row of C elements stored as T (cut by the lanes of its compute type).
template <class Arch, class T>
inline std::ptrdiff_t row_blocks(std::ptrdiff_t C) noexcept {
    const std::ptrdiff_t block = block_length(C, xsimd::batch<compute_t<T>, Arch>::size);
    return (C + block - 1) / block;
}

// Forward KL runs statistics-first; every other divergence normalise-first. A row without a
// divergence term runs with forward KL's kernels whatever divergence its call names (with_row_policy):
// no policy plays a part there, and so every other policy compiles its normalise-first kernels alone.
template <class Policy>
inline constexpr bool runs_statistics_first = std::is_same_v<Policy, forward_kl_policy>;
inline bool statistics_first(const row_terms& k) noexcept {
    return !k.soft || k.divergence == divergence_kind::forward_kl;
}

// Calls fn.template operator()<Policy>() with the policy whose kernels run a row of k.
template <class Fn>
inline decltype(auto) with_row_policy(const row_terms& k, Fn&& fn) noexcept {
    if (!k.soft) return fn.template operator()<forward_kl_policy>();
    return with_divergence(k.divergence, std::forward<Fn>(fn));
}

// The longest statistics-first row held in registers, in vectors (shaped_kernel::short_statistics).
inline constexpr int short_row_most_vectors = 8;

// The kernels for one shape of the loss, fixed at compile time so that the inner loops carry no
// tests: StatisticsFirst says whether sweep 1 keeps forward KL's accumulator and parks e_p;
// Soft / Hard say which terms are present; Power says how r = softmax(s) is obtained: 0 by its own
// exponential, p > 0 as q^p (T = p, the multiplies unrolled), -1 as q^T for a whole T known only at
// run time. In is the logits' storage type, Out the gradient's; both compute in T = compute_t<In>
// (float for the 16-bit types, which are widened as they are loaded and narrowed as they are stored).
// A 16-bit gradient buffer is never parked in (can_park_in): e_p is recomputed there, as in place.
template <class Arch, bool StatisticsFirst, bool Soft, bool Hard, int Power, class In, class Out = In>
struct shaped_kernel {
    using T = compute_t<In>;
    using V = xsimd::batch<T, Arch>;
    static constexpr bool soft = Soft, hard = Hard;
    static constexpr bool parks = can_park_in<Out>;
    static constexpr std::ptrdiff_t W = V::size;
    static constexpr T minus_inf = -std::numeric_limits<T>::infinity();
    static constexpr double minus_inf_d = -std::numeric_limits<double>::infinity();

    DISTILL_ALWAYS_INLINE static V r_from(const V& e_q, const V& shifted, const row_terms& k) noexcept {
        if constexpr (Power == 0)
            return exp_nonpositive<Arch>(shifted);
        else
            return whole_power(e_q, Power > 0 ? Power : k.integer_temperature);
    }

    // The teacher's values on the logit scale (log t for probabilities); a tail is filled with -inf.
    DISTILL_ALWAYS_INLINE static V teacher_at(const In* t, std::ptrdiff_t n, bool probabilities) noexcept {
        return probabilities ? log_of(load<Arch>(t, n, T(0))) : load<Arch>(t, n, minus_inf);
    }

    // Sweep 1 over blocks [first, last). Statistics-first: parks e_p in grad (when given). Records,
    // per block, the student and teacher maxima its exponentials are relative to. `student_exps`,
    // when given (a row of one block: the stack; a longer row: a slot of the caller's workspace),
    // receives e_q, which the gradient sweep then reads instead of computing it again.
    static row_stats statistics(const In* s, const In* t, std::ptrdiff_t C, const row_terms& k, Out* grad,
                                std::ptrdiff_t first, std::ptrdiff_t last, block_maxima* maxima,
                                T* student_exps = nullptr) noexcept {
        const auto select = [](auto c, auto a, auto b) { return xsimd::select(c, a, b); };
        const bool smooth = Hard && k.smoothing > 0;
        const T* class_weights = k.class_weights_as<T>();  // weigh the smoothing sum, or null
        const bool probabilities = k.teacher_probabilities;
        const V v_inv_t(static_cast<T>(k.inv_temperature)), v_teacher_inv_t(static_cast<T>(k.teacher_inv_temperature));
        const V zero(T(0));
        const std::ptrdiff_t block = block_length(C, W);
        row_stats st;
        for (std::ptrdiff_t b = first; b < last; ++b) {
            const std::ptrdiff_t begin = b * block, end = std::min(C, begin + block);
            // NaN needs no test here: a NaN logit makes its exponential NaN below, and so the sums.
            V vms(minus_inf), vmt(minus_inf);
            for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                vms = xsimd::max(vms, load<Arch>(s + i, n, minus_inf));
                if constexpr (Soft) vmt = xsimd::max(vmt, teacher_at(t + i, n, probabilities));
            });
            rebase(st, sticky_max(st.ms, reduce_max(vms)), Soft ? sticky_max(st.mt, reduce_max(vmt)) : minus_inf_d, k);
            if (maxima) maxima[b] = {st.ms, st.mt};

            const V shift_s(static_cast<T>(shift_of(st.ms))), shift_t(static_cast<T>(shift_of(st.mt)));
            for (std::ptrdiff_t chunk = begin; chunk < end; chunk += flush_vectors * W) {
                V part_zq(T(0)), part_zr(T(0)), part_zp(T(0)), part_acc(T(0)), part_x(T(0));
                for_each_vector<W>(chunk, std::min(end, chunk + flush_vectors * W), [&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                    prefetch_ahead(s + i, block);
                    if constexpr (Soft) prefetch_ahead(t + i, block);
                    const V shifted = load<Arch>(s + i, n, minus_inf) - shift_s;
                    const V x = shifted * v_inv_t;
                    const V e_q = exp_nonpositive<Arch>(x);
                    if (student_exps) store<Arch>(student_exps + i, n, e_q);
                    part_zq += e_q;
                    if constexpr (Hard) {
                        part_zr += r_from(e_q, shifted, k);
                        if (smooth) {
                            if (n == W)
                                part_x += class_weights ? load<Arch>(class_weights + i, n, T(0)) * shifted : shifted;
                            else  // the -inf fill of a tail must not reach the sum of logits
                                for (std::ptrdiff_t j = 0; j < n; ++j)
                                    st.sum_x += (class_weights ? static_cast<double>(class_weights[i + j]) : 1.0) *
                                                (static_cast<double>(s[i + j]) - shift_of(st.ms));
                        }
                    }
                    if constexpr (Soft) {
                        const V y = (teacher_at(t + i, n, probabilities) - shift_t) * v_teacher_inv_t;
                        const V e_p = exp_nonpositive<Arch>(y);
                        part_zp += e_p;
                        if constexpr (StatisticsFirst) part_acc += forward_kl_policy::term(x, y, e_p, zero, select);
                        if constexpr (parks)
                            if (grad && !k.grad_in_place) store<Arch>(grad + i, n, e_p);
                    }
                });
                st.zq += reduce_add(part_zq);
                if constexpr (Hard) {
                    st.zr += reduce_add(part_zr);
                    if (smooth) st.sum_x += reduce_add(part_x);
                }
                if constexpr (Soft) {
                    st.zp += reduce_add(part_zp);
                    if constexpr (StatisticsFirst) st.acc += reduce_add(part_acc);
                }
            }
            st.seen += end - begin;
            if (smooth) {
                if (class_weights)
                    for (std::ptrdiff_t c = begin; c < end; ++c) st.weight_seen += static_cast<double>(class_weights[c]);
                else
                    st.weight_seen += static_cast<double>(end - begin);
            }
        }
        return st;
    }

    // The hard term's gradient of one element: hard_grad (a r - eps w_c / C), a = (1 - eps) w_y +
    // eps W / C (1 without class weights); the label's -(1 - eps) w_y is subtracted after the block.
    struct hard_part {
        V coef_r, uniform;
        const T* class_weights;
        // `scale` brings an r relative to a block's max to the row's (gradient()).
        hard_part(const row_terms& k, const row_stats& st, std::ptrdiff_t C, double scale = 1) noexcept
            : hard_part(V(coefficient(k, st, C, scale)), k, C) {}
        // With coef_r given lane by lane (a group of short rows side by side, lane_loss.hpp).
        hard_part(const V& coef_r_lanes, const row_terms& k, std::ptrdiff_t C) noexcept
            : coef_r(coef_r_lanes), uniform(static_cast<T>(k.hard_grad * k.smoothing / k.classes(C))),
              class_weights(k.class_weights_as<T>()) {}
        static T coefficient(const row_terms& k, const row_stats& st, std::ptrdiff_t C, double scale = 1) noexcept {
            return static_cast<T>(k.hard_grad * k.hard_r_weight(k.classes(C)) / st.zr * scale);
        }
        DISTILL_ALWAYS_INLINE V at(const V& e_q, const V& shifted, const row_terms& k, std::ptrdiff_t i,
                                   std::ptrdiff_t n) const noexcept {
            return of(r_from(e_q, shifted, k), i, n);
        }
        // The same from r itself.
        DISTILL_ALWAYS_INLINE V of(const V& r, std::ptrdiff_t i, std::ptrdiff_t n) const noexcept {
            return class_weights ? xsimd::fms(coef_r, r, load<Arch>(class_weights + i, n, T(0)) * uniform)
                                 : xsimd::fms(coef_r, r, uniform);
        }
    };

    static T label_target(const row_terms& k) noexcept {
        return static_cast<T>(k.hard_grad * (1 - k.smoothing) * k.label_weight);
    }
    // A gradient stored in the compute type takes the label's target off after its block; a 16-bit
    // one takes it off before it is rounded (store_gradient): rounding g_y to 16 bits and then
    // g_y - target again would cost up to 2^-8 (bfloat16) of g_y, which can be far more than of the
    // result when r_y is near 1.
    static void subtract_label_target(Out* grad, std::int64_t label, std::ptrdiff_t begin, std::ptrdiff_t end,
                                      const row_terms& k) noexcept {
        if constexpr (!is_16bit_float<Out>)
            if (Hard && label >= begin && label < end) grad[label] -= label_target(k);
    }
    // Stores the n gradient values at i; a 16-bit gradient has the label's target taken off first.
    DISTILL_ALWAYS_INLINE static void store_gradient(Out* grad, std::ptrdiff_t i, std::ptrdiff_t n, V g,
                                                     std::int64_t label, const row_terms& k) noexcept {
        if constexpr (Hard && is_16bit_float<Out>) {
            if (label >= i && label < i + n) {
                alignas(Arch::alignment()) T lane[W];
                g.store_aligned(lane);
                lane[label - i] -= label_target(k);
                g = V::load_aligned(lane);
            }
        }
        store<Arch>(grad + i, n, g);
    }

    // Statistics-first sweep 2 over blocks [first, last), from the whole row's statistics. A block's
    // e_q is taken relative to the student max sweep 1 had reached there (maxima[b].student), read
    // from `student_exps` where sweep 1 parked it or else computed again by sweep 1's operations,
    // so that both give the same bits; one factor per block, folded into the coefficients, brings
    // it to the row max.
    static void gradient(const In* s, const In* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                         const row_stats& st, Out* grad, std::ptrdiff_t first, std::ptrdiff_t last,
                         const block_maxima* maxima, const T* student_exps = nullptr) noexcept {
        const V v_inv_t(static_cast<T>(k.inv_temperature)), zero(T(0));
        const std::ptrdiff_t block = block_length(C, W);
        for (std::ptrdiff_t b = first; b < last; ++b) {
            const std::ptrdiff_t begin = b * block, end = std::min(C, begin + block);
            // soft_grad p = soft_grad e_p(sweep 1) exp((block's shift - mt) / T) / Z_p.
            const parked_teacher teacher(grad, t, k, st, Soft ? maxima[b].teacher : minus_inf_d, k.soft_grad / st.zp);
            // e_q relative to the row max is e_q(sweep 1) exp((m_b - ms) / T), and r = q^T (or its own
            // exponential of the same shifted logits) takes exp(m_b - ms). A block whose max is still
            // -inf has e_q = 0, and its factor is exp(-inf) = 0 (ms is finite: the student is defined).
            const double m_b = maxima[b].student;
            const V coef_q(static_cast<T>(k.soft_grad / st.zq * std::exp((m_b - st.ms) * k.inv_temperature)));
            const hard_part hard(k, st, C, Hard ? std::exp(m_b - st.ms) : 1.0);
            const V shift_s(static_cast<T>(shift_of(m_b)));
            for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                const V shifted = load<Arch>(s + i, n, minus_inf) - shift_s;
                const V e_q = student_exps ? load<Arch>(student_exps + i, n, T(0)) : exp_nonpositive<Arch>(shifted * v_inv_t);
                V g = zero;
                if constexpr (Soft) g = xsimd::fnma(teacher.factor, teacher.e_p(i, n), coef_q * e_q);
                if constexpr (Hard) g += hard.at(e_q, shifted, k, i, n);
                store_gradient(grad, i, n, g, label, k);
            });
            subtract_label_target(grad, label, begin, end, k);
        }
    }

    // ---- short rows ----

    // A row of at most eight vectors (C <= 8W: a small classifier's ten classes, up to 128 float
    // classes on AVX-512) is held in registers from its load to its gradient: the formulas of
    // statistics() and gradient() over the one block such a row is, without the per-block
    // bookkeeping, the parking of e_p and the second read and exponentials of s (e_q, and r at a
    // fractional T: kept from sweep 1), which on rows this short cost more than the row's own
    // arithmetic. `Vectors` is the row's vector count when it is 1 or 2 (the loops then carry no
    // tests), else most_register_vectors with the count known at run time: one kernel for 3 to 8
    // vectors, its loops unrolled and guarded, rather than six more instantiations of every kernel
    // shape. Chosen by the row's length alone (short_row_fits), for loss() as for loss_and_grad(), so
    // a row's bits never depend on the call. Label smoothing keeps the general kernels (its sum of
    // logits must leave a tail's fill out lane by lane).
    static constexpr int most_register_vectors = short_row_most_vectors;

    template <int Vectors>
    struct short_row {
        V e_q[Vectors], e_r[Vectors], e_p[Vectors];
        row_stats st;
        int vectors;  // in use: Vectors, or fewer for the run-time count
    };

    template <int Vectors>
    static short_row<Vectors> short_statistics(const In* s, const In* t, std::ptrdiff_t C,
                                               const row_terms& k) noexcept {
        const auto select = [](auto c, auto a, auto b) { return xsimd::select(c, a, b); };
        const V v_inv_t(static_cast<T>(k.inv_temperature)), v_teacher_inv_t(static_cast<T>(k.teacher_inv_temperature));
        const V zero(T(0));
        short_row<Vectors> r;
        r.vectors = Vectors <= 2 ? Vectors : static_cast<int>((C + W - 1) / W);
        const int vectors = r.vectors;
        V sv[Vectors], tv[Vectors];
        V vms(minus_inf), vmt(minus_inf);
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v)
            if (v < vectors) {
                const std::ptrdiff_t i = v * W, n = std::min(W, C - i);
                sv[v] = load<Arch>(s + i, n, minus_inf);
                vms = xsimd::max(vms, sv[v]);
                if constexpr (Soft) {
                    tv[v] = teacher_at(t + i, n, k.teacher_probabilities);
                    vmt = xsimd::max(vmt, tv[v]);
                }
            }
        const T ms = reduce_max(vms), mt = Soft ? reduce_max(vmt) : minus_inf;
        const V shift_s(static_cast<T>(shift_of(ms))), shift_t(static_cast<T>(shift_of(mt)));
        V zq(T(0)), zr(T(0)), zp(T(0)), acc(T(0));
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v)
            if (v < vectors) {
                const V shifted = sv[v] - shift_s;
                const V x = shifted * v_inv_t;
                r.e_q[v] = exp_nonpositive<Arch>(x);
                zq += r.e_q[v];
                if constexpr (Hard) {
                    r.e_r[v] = r_from(r.e_q[v], shifted, k);
                    zr += r.e_r[v];
                }
                if constexpr (Soft) {
                    const V y = (tv[v] - shift_t) * v_teacher_inv_t;
                    r.e_p[v] = exp_nonpositive<Arch>(y);
                    zp += r.e_p[v];
                    acc += forward_kl_policy::term(x, y, r.e_p[v], zero, select);
                }
            }
        // Sums halve the vector (halving_add): the tree a lane of lane_loss_group repeats down its
        // columns, so that a row gets the same bits alone and beside others.
        r.st = short_row_stats(ms, mt, halving_add(zq), Hard ? halving_add(zr) : T(0), Soft ? halving_add(zp) : T(0),
                               Soft ? halving_add(acc) : T(0), C, k);
        return r;
    }

    // A short row's statistics from its maxima and sums in T, as sweep 1 would record them.
    static row_stats short_row_stats(T ms, T mt, T zq, T zr, T zp, T acc, std::ptrdiff_t C, const row_terms& k) noexcept {
        row_stats st;
        rebase(st, sticky_max(st.ms, ms), Soft ? sticky_max(st.mt, mt) : minus_inf_d, k);
        st.zq += zq;
        if constexpr (Hard) st.zr += zr;
        if constexpr (Soft) {
            st.zp += zp;
            st.acc += acc;
        }
        st.seen = C;
        return st;
    }

    // The coefficients of a short row's gradient: of e_q (soft_grad / Z_q), of e_p (gradient()'s
    // teacher factor for a block whose max is the row's: soft_grad / Z_p) and of r (hard_part).
    struct short_coefficients {
        T q, p, r;
    };
    static short_coefficients coefficients_of(const row_stats& st, const row_terms& k, std::ptrdiff_t C) noexcept {
        return {static_cast<T>(k.soft_grad / st.zq), static_cast<T>(k.soft_grad / st.zp),
                Hard ? hard_part::coefficient(k, st, C) : T(0)};
    }
    // One vector of a short row's gradient, before the label's target is taken off.
    DISTILL_ALWAYS_INLINE static V short_gradient_of(const V& coef_q, const V& teacher_factor, const hard_part& hard,
                                                     const V& e_q, const V& e_p, const V& e_r, std::ptrdiff_t i,
                                                     std::ptrdiff_t n) noexcept {
        V g(T(0));
        if constexpr (Soft) g = xsimd::fnma(teacher_factor, e_p, coef_q * e_q);
        if constexpr (Hard) g += hard.of(e_r, i, n);
        return g;
    }

    // gradient() of a short row, from the registers short_statistics filled.
    template <int Vectors>
    static void short_gradient(const short_row<Vectors>& r, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                               Out* grad) noexcept {
        const short_coefficients c = coefficients_of(r.st, k, C);
        const V coef_q(c.q), teacher_factor(c.p);
        const hard_part hard(V(c.r), k, C);
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v)
            if (v < (Vectors <= 2 ? Vectors : r.vectors)) {
                const std::ptrdiff_t i = v * W, n = std::min(W, C - i);
                store_gradient(grad, i, n, short_gradient_of(coef_q, teacher_factor, hard, r.e_q[v], r.e_p[v], r.e_r[v], i, n),
                               label, k);
            }
        subtract_label_target(grad, label, 0, C, k);
    }

    // ---- normalise-first ----

    // Row constants of the normalised sweeps, as batches.
    struct normalised_row {
        V shift_s, shift_t, inv_t, teacher_inv_t, log_zq, log_zp, inv_zq, inv_zp;
        normalised_row(const row_stats& st, const row_terms& k) noexcept
            : shift_s(static_cast<T>(st.ms)), shift_t(static_cast<T>(st.mt)),
              inv_t(static_cast<T>(k.inv_temperature)), teacher_inv_t(static_cast<T>(k.teacher_inv_temperature)),
              log_zq(static_cast<T>(std::log(st.zq))), log_zp(static_cast<T>(std::log(st.zp))),
              inv_zq(static_cast<T>(1 / st.zq)), inv_zp(static_cast<T>(1 / st.zp)) {}
    };

    // Where sweep 1's e_p comes from in the later sweeps of block b: read back from the gradient
    // buffer where it was parked, or, when the gradient is written over the student logits (nothing
    // may be parked there), recomputed by the very operations of sweep 1 (the block's shift, the
    // same rounding), so that in place and out of place give the same bits. `factor` brings it to
    // the row's teacher max: exp((block's max - row max) / T_t), over Z_p in the normalised sweeps.
    struct parked_teacher {
        const Out* parked;  // the gradient buffer, or null when recomputing
        const In* t;
        bool probabilities;
        V shift, teacher_inv_t, factor;
        parked_teacher(const Out* grad, const In* teacher, const row_terms& k, const row_stats& st, double at,
                       double scale) noexcept
            : parked(k.grad_in_place || !parks ? nullptr : grad), t(teacher), probabilities(k.teacher_probabilities),
              shift(static_cast<T>(shift_of(at))), teacher_inv_t(static_cast<T>(k.teacher_inv_temperature)),
              factor(static_cast<T>(block_factor(st, k, at, scale))) {}
        // A block whose teacher values were all -inf (or NaN, which max skips) parked zeros (or NaN):
        // its factor must not be exp(+large), and it is 0, unless the row's Z_p is NaN. Then the
        // NaN is kept: a NaN teacher value where the student has no mass (q = 0, which the policies'
        // products leave out) must still reach every p, as it does through log Z_p.
        static double block_factor(const row_stats& st, const row_terms& k, double at, double scale) noexcept {
            if (at != minus_inf_d) return scale * std::exp((at - st.mt) * k.teacher_inv_temperature);
            return std::isnan(scale) ? scale : 0.0;
        }
        DISTILL_ALWAYS_INLINE V e_p(std::ptrdiff_t i, std::ptrdiff_t n) const noexcept {
            if constexpr (parks)
                if (parked) return load<Arch>(parked + i, n, T(0));
            return exp_nonpositive<Arch>((teacher_at(t + i, n, probabilities) - shift) * teacher_inv_t);
        }
    };

    // n elements at i, normalised; `shifted` and `e_q` are kept for the hard term. p is sweep 1's
    // e_p times the block's factor when `teacher` is given, else its own exponential (loss() without
    // a gradient buffer).
    DISTILL_ALWAYS_INLINE static element<V> element_at(const In* s, const In* t, std::ptrdiff_t i, std::ptrdiff_t n,
                                                       const normalised_row& r, bool probabilities,
                                                       const parked_teacher* teacher, V& shifted, V& e_q) noexcept {
        shifted = load<Arch>(s + i, n, minus_inf) - r.shift_s;
        const V x = shifted * r.inv_t;
        e_q = exp_nonpositive<Arch>(x);
        const V y = (teacher_at(t + i, n, probabilities) - r.shift_t) * r.teacher_inv_t;
        const V p = teacher ? teacher->e_p(i, n) * teacher->factor : exp_nonpositive<Arch>(y) * r.inv_zp;
        return {x - r.log_zq, y - r.log_zp, e_q * r.inv_zq, p};
    }

    // Calls body(begin, end, b) for the columns of each block b in [first, last), leaving out the
    // label's column when the policy treats it apart.
    template <class Policy, class Body>
    static void for_each_block(std::ptrdiff_t C, std::int64_t label, std::ptrdiff_t first, std::ptrdiff_t last,
                               Body&& body) noexcept {
        const std::ptrdiff_t block = block_length(C, W);
        for (std::ptrdiff_t b = first; b < last; ++b) {
            const std::ptrdiff_t begin = b * block, end = std::min(C, begin + block);
            if (Policy::excludes_label && label >= begin && label < end) {
                body(begin, static_cast<std::ptrdiff_t>(label), b);
                body(static_cast<std::ptrdiff_t>(label) + 1, end, b);
            } else {
                body(begin, end, b);
            }
        }
    }

    // Sweep 2 over blocks [first, last): the policy's sums over normalised p and q.
    template <class Policy>
    static divergence_sums<double> sums(const In* s, const In* t, std::int64_t label, std::ptrdiff_t C,
                                        const row_terms& k, const row_stats& st, const Out* parked,
                                        const block_maxima* maxima, std::ptrdiff_t first,
                                        std::ptrdiff_t last) noexcept {
        const normalised_row row(st, k);
        const bool probabilities = k.teacher_probabilities;
        divergence_sums<double> total{};
        for_each_block<Policy>(C, label, first, last, [&](std::ptrdiff_t begin, std::ptrdiff_t end, std::ptrdiff_t b) {
            // Sweep 1's e_p, read back from the gradient buffer where it was parked, or recomputed by
            // sweep 1's own operations when there is none (loss(), in place), so that loss() and
            // loss_and_grad() give the same bits. Without sweep 1's block maxima (a vocabulary shard,
            // whose statistics were merged across ranks) p takes its own exponential.
            const parked_teacher teacher(parked, t, k, st, maxima ? maxima[b].teacher : 0.0, 1 / st.zp);
            const parked_teacher* source = maxima ? &teacher : nullptr;
            for (std::ptrdiff_t chunk = begin; chunk < end; chunk += flush_vectors * W) {
                divergence_sums<V> part{V(T(0)), V(T(0)), V(T(0))};
                for_each_vector<W>(chunk, std::min(end, chunk + flush_vectors * W), [&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                    V shifted, e_q;
                    Policy::accumulate(element_at(s, t, i, n, row, probabilities, source, shifted, e_q), k.params, part);
                });
                for (int j = 0; j < Policy::sum_count; ++j) total[j] += reduce_add(part[j]);
            }
        });
        return total;
    }

    // Sweep 3 over blocks [first, last): g = soft_grad dD/dx + hard_grad (r - target), reading p
    // from the gradient buffer (where sweep 1 parked it) just before writing the gradient there.
    template <class Policy>
    static void normalised_gradient(const In* s, const In* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                                    const row_stats& st, const divergence_value& value, Out* grad,
                                    std::ptrdiff_t first, std::ptrdiff_t last, const block_maxima* maxima) noexcept {
        const normalised_row row(st, k);
        const bool probabilities = k.teacher_probabilities;
        const V soft_grad(static_cast<T>(k.soft_grad));
        const hard_part hard(k, st, C);
        const std::ptrdiff_t block = block_length(C, W);
        // In place, the label's logit is read before its block is overwritten.
        const double s_label = Policy::excludes_label && Hard && label >= first * block && label < last * block
                                   ? static_cast<double>(s[label])
                                   : 0.0;
        for (std::ptrdiff_t b = first; b < last; ++b) {
            const std::ptrdiff_t begin = b * block, end = std::min(C, begin + block);
            const parked_teacher teacher(grad, t, k, st, maxima[b].teacher, 1 / st.zp);
            for_each_vector<W>(begin, end, [&](std::ptrdiff_t i, std::ptrdiff_t n) DISTILL_INLINE_LAMBDA {
                V shifted, e_q;
                const element<V> e = element_at(s, t, i, n, row, probabilities, &teacher, shifted, e_q);
                V g = soft_grad * Policy::gradient(e, value, k.params);
                if constexpr (Hard) g += hard.at(e_q, shifted, k, i, n);
                store_gradient(grad, i, n, g, label, k);
            });
            subtract_label_target(grad, label, begin, end, k);
            if constexpr (Policy::excludes_label) {
                if (label >= begin && label < end) {
                    double g = k.soft_grad * Policy::label_gradient(value);
                    if constexpr (Hard)
                        g += k.hard_grad * (k.hard_r_weight(k.classes(C)) * (std::exp(s_label - st.ms) / st.zr) -
                                            (1 - k.smoothing) * k.label_weight -
                                            k.smoothing * k.label_weight / k.classes(C));
                    grad[label] = from_double<Out>(g);
                }
            }
        }
    }
};

// Calls fn.template operator()<Kernel>() with the statistics-first shaped_kernel that fits k.
template <class Arch, class T, class G, class Fn>
inline decltype(auto) with_statistics_first_kernel(const row_terms& k, Fn&& fn) noexcept {
    if (k.soft && k.hard) {
        switch (k.integer_temperature) {
            case 0: return fn.template operator()<shaped_kernel<Arch, true, true, true, 0, T, G>>();
            case 1: return fn.template operator()<shaped_kernel<Arch, true, true, true, 1, T, G>>();
            case 2: return fn.template operator()<shaped_kernel<Arch, true, true, true, 2, T, G>>();
            case 4: return fn.template operator()<shaped_kernel<Arch, true, true, true, 4, T, G>>();
            default: return fn.template operator()<shaped_kernel<Arch, true, true, true, -1, T, G>>();
        }
    }
    if (k.soft) return fn.template operator()<shaped_kernel<Arch, true, true, false, 0, T, G>>();
    // The hard term alone runs at T = 1 (row_terms), where r is q itself.
    if (k.integer_temperature == 1) return fn.template operator()<shaped_kernel<Arch, true, false, true, 1, T, G>>();
    return fn.template operator()<shaped_kernel<Arch, true, false, true, 0, T, G>>();
}

// Likewise for the normalise-first kernels, which always have a divergence term. Their hard term
// takes r from its own exponential at every T: the q^T shortcut would double the kernels compiled
// for six policies, for a sweep that already spends two exponentials per element.
template <class Arch, class T, class G, class Fn>
inline decltype(auto) with_normalised_kernel(const row_terms& k, Fn&& fn) noexcept {
    if (!k.hard) return fn.template operator()<shaped_kernel<Arch, false, true, false, 0, T, G>>();
    return fn.template operator()<shaped_kernel<Arch, false, true, true, 0, T, G>>();
}

// The phases of a row over blocks [first, last), as the scheduler calls them, for one policy.
// `student_exps` (a row, or null) is used by the statistics-first kernels only.
template <class Arch, class Policy, class T, class G>
row_stats row_statistics(const T* s, const T* t, std::ptrdiff_t C, const row_terms& k, G* grad, std::ptrdiff_t first,
                         std::ptrdiff_t last, block_maxima* maxima, compute_t<T>* student_exps = nullptr) noexcept {
    if constexpr (runs_statistics_first<Policy>)
        return with_statistics_first_kernel<Arch, T, G>(
            k, [&]<class K>() { return K::statistics(s, t, C, k, grad, first, last, maxima, student_exps); });
    else
        return with_normalised_kernel<Arch, T, G>(
            k, [&]<class K>() { return K::statistics(s, t, C, k, grad, first, last, maxima); });
}

// The sums involve the divergence term alone: one kernel serves calls with and without the hard
// term (the largest code of the family, compiled once rather than twice per policy).
template <class Arch, class Policy, class T, class G>
divergence_sums<double> row_sums(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                                 const row_stats& st, const G* parked, const block_maxima* maxima,
                                 std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
    using K = shaped_kernel<Arch, false, true, false, 0, T, G>;
    return K::template sums<Policy>(s, t, label, C, k, st, parked, maxima, first, last);
}

template <class Arch, class Policy, class T, class G>
void row_gradient(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                  const row_stats& st, const divergence_value& value, G* grad, std::ptrdiff_t first,
                  std::ptrdiff_t last, const block_maxima* maxima, const compute_t<T>* student_exps = nullptr) noexcept {
    if constexpr (runs_statistics_first<Policy>)
        with_statistics_first_kernel<Arch, T, G>(
            k, [&]<class K>() { K::gradient(s, t, label, C, k, st, grad, first, last, maxima, student_exps); });
    else
        with_normalised_kernel<Arch, T, G>(k, [&]<class K>() {
            K::template normalised_gradient<Policy>(s, t, label, C, k, st, value, grad, first, last, maxima);
        });
}

// The row's loss from its statistics and sums (detail::row_loss). Forward KL's statistics-first
// value is recomputed from its terms (one more sweep) when it is too close to 0 to be trusted.
template <class Arch, class Policy, class T, class G>
row_result row_loss(const row_stats& st, const divergence_sums<double>& sums, const T* s, const T* t,
                    std::int64_t label, std::ptrdiff_t C, const row_terms& k, divergence_value& value,
                    const G* parked, const block_maxima* maxima) noexcept {
    row_result out = detail::row_loss<Policy>(st, sums, runs_statistics_first<Policy>, s, t, label, C, k, value);
    if constexpr (runs_statistics_first<Policy>) {
        if (k.soft && out.student_defined && out.teacher_defined &&
            forward_kl_policy::worth_terms<compute_t<T>>({out.divergence, out.cancelled})) {
            const divergence_sums<double> terms =
                row_sums<Arch, forward_kl_policy>(s, t, label, C, k, st, parked, maxima, 0,
                                                  row_blocks<Arch, T>(C));
            value = forward_kl_policy::finish(terms, k.params, {});
            out.divergence = value.value;
        }
    }
    return out;
}

// Whether a statistics-first row takes the short-row kernels (shaped_kernel::short_statistics): a
// row of at most eight vectors without label smoothing.
template <class Arch, class T>
bool short_row_fits(std::ptrdiff_t C, const row_terms& k) noexcept {
    return C <= short_row_most_vectors * static_cast<std::ptrdiff_t>(xsimd::batch<compute_t<T>, Arch>::size) &&
           !(k.hard && k.smoothing > 0);
}

// A short row whole, with kernel K over `Vectors` vectors: statistics and gradient from registers,
// the loss as for any row.
template <class Arch, class Policy, class K, int Vectors, class T, class G>
row_result short_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                     G* grad) noexcept {
    const auto r = K::template short_statistics<Vectors>(s, t, C, k);
    divergence_value value;
    // Nothing is parked: a forward KL recomputed from its terms takes p's own exponential.
    const row_result out =
        row_loss<Arch, Policy>(r.st, {}, s, t, label, C, k, value, static_cast<const G*>(nullptr), nullptr);
    if (grad && out.student_defined && out.teacher_defined) K::short_gradient(r, label, C, k, grad);
    return out;
}

// Calls fn.template operator()<K, Vectors>() with the short-row kernel that fits C and k.
template <class Arch, class T, class G, class Fn>
decltype(auto) with_short_row_kernel(std::ptrdiff_t C, const row_terms& k, Fn&& fn) noexcept {
    return with_statistics_first_kernel<Arch, T, G>(k, [&]<class K>() -> decltype(auto) {
        if (C <= K::W) return fn.template operator()<K, 1>();
        if (C <= 2 * K::W) return fn.template operator()<K, 2>();
        return fn.template operator()<K, K::most_register_vectors>();
    });
}

template <class Arch, class Policy, class T, class G>
row_result short_row_with(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                          G* grad) noexcept {
    return with_short_row_kernel<Arch, T, G>(C, k, [&]<class K, int Vectors>() {
        return short_row<Arch, Policy, K, Vectors>(s, t, label, C, k, grad);
    });
}

// A statistics-first row of one block (C <= min_block_length): sweep 1 parks e_q on the stack as well
// as e_p in the gradient buffer, so the gradient sweep spends no exponential on q (two an element
// where a longer row spends three: its e_q would not fit on a thread's stack). loss() runs the same
// sweep 1 (and so gets the same bits) without the gradient sweep.
template <class Arch, class Policy, class K, class T, class G>
row_result one_block_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                         G* grad) noexcept {
    alignas(64) compute_t<T> student_exps[min_block_length];
    block_maxima maxima[1];
    const row_stats st = K::statistics(s, t, C, k, grad, 0, 1, maxima, student_exps);
    divergence_value value;
    const row_result out = row_loss<Arch, Policy>(st, {}, s, t, label, C, k, value, grad, maxima);
    if (grad && out.student_defined && out.teacher_defined)
        K::gradient(s, t, label, C, k, st, grad, 0, 1, maxima, student_exps);
    return out;
}

template <class Arch, class Policy, class T, class G>
row_result one_block_row_with(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                              G* grad) noexcept {
    return with_statistics_first_kernel<Arch, T, G>(
        k, [&]<class K>() { return one_block_row<Arch, Policy, K>(s, t, label, C, k, grad); });
}

// The whole row with one policy: statistics, sums, loss, and (when grad is given) the gradient.
// A divergence defined outside the library runs through here too (tests/policy.test.cpp).
template <class Arch, class Policy, class T, class G>
row_result fused_row_with(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                          G* grad) noexcept {
    if constexpr (!runs_statistics_first<Policy>)
        if (!k.soft) return fused_row_with<Arch, forward_kl_policy>(s, t, label, C, k, grad);  // with_row_policy
    const std::ptrdiff_t blocks = row_blocks<Arch, T>(C);
    if constexpr (runs_statistics_first<Policy>) {
        if (short_row_fits<Arch, T>(C, k)) return short_row_with<Arch, Policy>(s, t, label, C, k, grad);
        if (blocks == 1) return one_block_row_with<Arch, Policy>(s, t, label, C, k, grad);
    }
    block_maxima maxima[max_blocks];
    const row_stats st = row_statistics<Arch, Policy>(s, t, C, k, grad, 0, blocks, maxima);
    divergence_sums<double> sums{};
    if constexpr (!runs_statistics_first<Policy>) {
        if (student_defined(st) && teacher_defined(st, k)) {
            sums = row_sums<Arch, Policy>(s, t, label, C, k, st, grad, maxima, 0, blocks);
            // Decoupled KD renormalises the non-target classes: where their mass underflows the
            // kernel's type (the target ahead by more than ~87 T in float), the row is computed in double.
            if constexpr (Policy::excludes_label)
                if (C > 1 && (sums[0] == 0 || sums[1] == 0))
                    return reference::fused_row_with<Policy>(s, t, label, C, k, grad);
        }
    }
    divergence_value value;
    const row_result out = row_loss<Arch, Policy>(st, sums, s, t, label, C, k, value, grad, maxima);
    if (grad && out.student_defined && out.teacher_defined)
        row_gradient<Arch, Policy>(s, t, label, C, k, st, value, grad, 0, blocks, maxima);
    return out;
}

// The whole row, with the policy that k names.
template <class Arch, class T, class G>
row_result fused_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                     G* grad) noexcept {
    return with_row_policy(k, [&]<class Policy>() { return fused_row_with<Arch, Policy>(s, t, label, C, k, grad); });
}

// The function that runs each whole row of a call (C and the call's terms k fixed) exactly as
// fused_row does. For rows of at most one block of a statistics-first call (one naming forward KL,
// or without a divergence term, as cross_entropy's) it is the short-row or one-block kernel itself,
// chosen here once per call rather than through the policy and kernel switches at every row: on a
// row of ten classes those layers of calls cost more than the row's loss without its logarithms. Any
// other call gets fused_row. The conditions are fused_row_with's, in its order (kept beside it rather
// than shared through a returned pointer, which cost 30 instructions a 10-class row in GCC 12's
// code), and the same functions run either way, so a row's bits do not depend on which.
template <class Arch, class T, class G>
row_function<T, G> row_kernel(std::ptrdiff_t C, const row_terms& k) noexcept {
    if (!statistics_first(k)) return &fused_row<Arch, T, G>;
    using Policy = forward_kl_policy;  // with_row_policy's choice for every statistics-first call
    if (short_row_fits<Arch, T>(C, k))
        return with_short_row_kernel<Arch, T, G>(C, k, [&]<class K, int Vectors>() -> row_function<T, G> {
            return &short_row<Arch, Policy, K, Vectors, T, G>;
        });
    if (row_blocks<Arch, T>(C) == 1)
        return with_statistics_first_kernel<Arch, T, G>(
            k, [&]<class K>() -> row_function<T, G> { return &one_block_row<Arch, Policy, K, T, G>; });
    return &fused_row<Arch, T, G>;
}

}  // namespace distill::detail::simd
