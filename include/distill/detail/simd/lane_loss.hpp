// distill/detail/simd/lane_loss.hpp - the loss and gradient of short statistics-first rows (forward
// KL, the cross-entropy, or both), a group of them side by side, one row per lane.
//
// Contract: each of a group's rows gets the bits shaped_kernel's short-row kernel gives it alone
// (short_row in fused_row.hpp: its result, and its gradient when the row has a gradient row);
// noexcept, no allocation, 1 to W rows of 1 <= C <= lane_loss_max_cols classes anywhere in memory; a
// gradient row may be its student row (in place: the whole group is read before any of it is
// written). The scheduler hands it full groups only (schedule.hpp, run_pieces_in_groups).
//
// A row of ten classes fills part of a vector or two, and the one-row kernel spends most of its time
// on what a row costs whatever its length: reducing vectors to the row's maxima and four sums, tails
// loaded and stored under masks, a call through the scheduler's layers. Here W rows run side by
// side, row r in lane r: their logits are copied transposed into tiles on the stack (column c of
// the group is one vector), and the maxima, the exponentials, the sums and the gradient run down the
// columns, one vector operation per column for the whole group. Each lane's statistics are then
// finished by the one-row kernel's own code (its loss in double, std::log of its sums as any row
// takes them; its gradient coefficients), and the gradient goes back through the tile. Two
// exponentials an element at a whole T, three at a fractional T with the cross-entropy term: the
// formula's minimum, with no lane left idle. (The sums' logarithms a vector at a time, xsimd's log,
// made the groups faster on AVX-512 but a row alone slower by 20 ns, and were not kept.)
//
// The same bits as alone: every element's arithmetic is the one-row kernel's, lane for lane, through
// the same functions (so the compiler has the same products to fuse, or not); the maxima are exact
// in any order; the sums add in one fixed tree (halving_sum down a lane's columns, halving_add along
// the one-row kernel's vectors). So a row's bits do not depend on whether it ran in a group, on which
// rows shared it, or on the call's size and thread count. A row with a NaN logit is the exception
// that does not matter: which maximum a NaN leaves differs between the two orders (as it does
// between reduce_max's forms, compat.hpp), and the row's loss and gradient are NaN either way, their
// payloads aside.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "../row_terms.hpp"
#include "../storage_type.hpp"
#include "exp.hpp"
#include "fused_row.hpp"
#include "lane_softmax.hpp"

namespace distill::detail::simd {

// The longest row a group takes: the lane softmax's (12 floats, 6 doubles), for the same reason,
// the one-row kernel's cost growing with its vectors and the group's with its columns (where the
// two cross for the losses has not been measured).
template <class Arch, class T>
inline constexpr std::ptrdiff_t lane_loss_max_cols = lane_softmax_max_cols<Arch, T>;

// The group's rows through kernel K (a statistics-first shaped_kernel over T, the rows' own type).
// Lanes past rows.count repeat row 0, and what they compute is dropped.
template <class Arch, class K, class T, class G>
[[gnu::noinline]] void lane_loss_group(row_group<T, G>& rows, std::ptrdiff_t C) noexcept {
    using V = typename K::V;
    constexpr std::ptrdiff_t W = K::W, P = lane_loss_max_cols<Arch, T>;
    constexpr bool Soft = K::soft, Hard = K::hard;
    constexpr T minus_inf = -std::numeric_limits<T>::infinity();
    static_assert(W <= max_group_rows);
    const auto select = [](auto c, auto a, auto b) { return xsimd::select(c, a, b); };
    const row_terms& k = *rows.terms;

    alignas(64) T student[P * W], teacher[P * W];  // [c * W + r]: column c of lane r
    for (std::ptrdiff_t r = 0; r < W; ++r) {
        const std::ptrdiff_t from = r < rows.count ? r : 0;
        for (std::ptrdiff_t c = 0; c < C; ++c) student[c * W + r] = rows.student[from][c];
        if constexpr (Soft)
            for (std::ptrdiff_t c = 0; c < C; ++c) teacher[c * W + r] = rows.teacher[from][c];
    }

    // short_statistics, lane by lane. To keep the frame small (a loss call must run on a 64 KiB
    // stack, docs/api.md), the tiles are reused: the teacher's holds its values on the logit scale
    // once they are read, then e_p; the student's e_q, then the gradient.
    V vms(minus_inf), vmt(minus_inf);
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        vms = xsimd::max(vms, V::load_aligned(student + c * W));
        if constexpr (Soft) {
            const V tv = K::teacher_at(teacher + c * W, W, k.teacher_probabilities);
            tv.store_aligned(teacher + c * W);
            vmt = xsimd::max(vmt, tv);
        }
    }
    const V zero(T(0)), v_inv_t(static_cast<T>(k.inv_temperature)),
        v_teacher_inv_t(static_cast<T>(k.teacher_inv_temperature));
    const V shift_s = xsimd::select(vms == V(minus_inf), zero, vms);  // shift_of, lane by lane
    const V shift_t = xsimd::select(vmt == V(minus_inf), zero, vmt);
    V e_r[P];
    V part[P];  // the elements' shares of one sum at a time, halved in place (halving_sum)
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        const V shifted = V::load_aligned(student + c * W) - shift_s;
        const V x = shifted * v_inv_t;
        const V e_q = exp_nonpositive<Arch>(x);
        e_q.store_aligned(student + c * W);
        if constexpr (Hard) e_r[c] = K::r_from(e_q, shifted, k);
        if constexpr (Soft) {
            const V y = (V::load_aligned(teacher + c * W) - shift_t) * v_teacher_inv_t;
            const V e_p = exp_nonpositive<Arch>(y);
            e_p.store_aligned(teacher + c * W);
            part[c] = forward_kl_policy::term(x, y, e_p, zero, select);
        }
    }
    const std::ptrdiff_t slots = sum_slots<Arch, T>(C);
    const auto sum = [&](auto&& share) {
        for (std::ptrdiff_t c = 0; c < C; ++c) part[c] = share(c);
        halving_sum(part, C, slots);
        return part[0];
    };
    V acc(T(0)), zp(T(0)), zr(T(0));
    if constexpr (Soft) {
        halving_sum(part, C, slots);  // the terms
        acc = part[0];
        zp = sum([&](std::ptrdiff_t c) { return V::load_aligned(teacher + c * W); });
    }
    if constexpr (Hard) zr = sum([&](std::ptrdiff_t c) { return e_r[c]; });
    const V zq = sum([&](std::ptrdiff_t c) { return V::load_aligned(student + c * W); });

    // Each row's loss and gradient coefficients, as short_row finishes them.
    alignas(64) T lane_ms[W], lane_zq[W], lane_mt[W] = {}, lane_zr[W] = {}, lane_zp[W] = {}, lane_acc[W] = {};
    alignas(64) T coef_q[W] = {}, coef_p[W] = {}, coef_r[W] = {};
    vms.store_aligned(lane_ms);
    zq.store_aligned(lane_zq);
    if constexpr (Hard) zr.store_aligned(lane_zr);
    if constexpr (Soft) {
        vmt.store_aligned(lane_mt);
        zp.store_aligned(lane_zp);
        acc.store_aligned(lane_acc);
    }
    bool writes[max_group_rows] = {};
    for (int r = 0; r < rows.count; ++r) {
        const row_stats st =
            K::short_row_stats(lane_ms[r], lane_mt[r], lane_zq[r], lane_zr[r], lane_zp[r], lane_acc[r], C, k);
        divergence_value value;
        const row_result& out = rows.result[r] =
            row_loss<Arch, forward_kl_policy>(st, {}, rows.student[r], rows.teacher[r], rows.label[r], C, k, value,
                                              static_cast<const G*>(nullptr), nullptr);
        writes[r] = rows.grad[r] && out.student_defined && out.teacher_defined;
        if (writes[r]) {
            const auto coefficients = K::coefficients_of(st, k, C);
            coef_q[r] = coefficients.q;
            coef_p[r] = coefficients.p;
            coef_r[r] = coefficients.r;
        }
    }

    // short_gradient, lane by lane, into the student tile (read whole above), then out.
    const V v_coef_q = V::load_aligned(coef_q), v_coef_p = V::load_aligned(coef_p);
    const typename K::hard_part hard(V::load_aligned(coef_r), k, C);
    for (std::ptrdiff_t c = 0; c < C; ++c)
        K::short_gradient_of(v_coef_q, v_coef_p, hard, V::load_aligned(student + c * W),
                             Soft ? V::load_aligned(teacher + c * W) : zero, e_r[c], c, 1)
            .store_aligned(student + c * W);
    for (int r = 0; r < rows.count; ++r) {
        if (!writes[r]) continue;
        G* g = rows.grad[r];
        for (std::ptrdiff_t c = 0; c < C; ++c) g[c] = student[c * W + r];
        K::subtract_label_target(g, rows.label[r], 0, C, k);
    }
}

// The group kernel for rows of C classes in a call with terms k, or null where rows run one at a
// time: a group takes what the one-row short kernel takes (statistics-first, no label smoothing),
// rows of at most lane_loss_max_cols with logits and gradient both float or both double (a 16-bit
// type is widened and narrowed by the one-row kernel's loads and stores, which the tiles would have
// to repeat), without class weights (each column would weigh differently in every lane's gradient).
template <class Arch, class T, class G>
group_function<T, G> group_kernel(std::ptrdiff_t C, const row_terms& k) noexcept {
    if constexpr (!std::is_same_v<T, compute_t<T>> || !std::is_same_v<G, T>) {
        return nullptr;
    } else {
        if (!statistics_first(k) || C > lane_loss_max_cols<Arch, T> || !short_row_fits<Arch, T>(C, k) ||
            k.class_weights)
            return nullptr;
        return with_statistics_first_kernel<Arch, T, G>(
            k, [&]<class K>() -> group_function<T, G> { return &lane_loss_group<Arch, K, T, G>; });
    }
}

}  // namespace distill::detail::simd
