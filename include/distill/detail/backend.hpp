// distill/detail/backend.hpp - the one place that chooses the kernels a call runs: the SIMD
// kernels for the instruction set the compiler flags enable, or the scalar reference when
// DISTILL_NO_SIMD is defined. Both backends offer the same row phases, so the scheduler above them
// is the same code.
//
// The choice is a type, `isa`, that every driver above the kernels takes as a template argument
// (the API defaults it). Translation units built with different flags therefore instantiate
// differently named functions, and a program that links them keeps each unit's own kernels instead
// of whichever copy the linker happened to keep.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "divergences.hpp"
#include "reference/fused_row.hpp"
#include "reference/top_k_row.hpp"
#include "row_statistics.hpp"
#include "row_terms.hpp"
#include "storage_type.hpp"
#if !defined(DISTILL_NO_SIMD)
#include <xsimd/xsimd.hpp>

#include "simd/fused_row.hpp"
#include "simd/lane_loss.hpp"
#include "simd/park_teacher.hpp"
#include "simd/softmax_row.hpp"
#include "simd/top_k_row.hpp"
#endif

namespace distill::detail {

// The instruction-set tag of the reference kernels.
struct no_simd {
    static constexpr const char* name() noexcept { return "none (DISTILL_NO_SIMD)"; }
};

#if defined(DISTILL_NO_SIMD)
using isa = no_simd;
#else
using isa = xsimd::default_arch;
#endif

template <class Isa>
struct backend;

template <>
struct backend<no_simd> {
    template <class T>
    static std::ptrdiff_t block_columns(std::ptrdiff_t C) noexcept {
        return reference::block_columns(C);
    }
    template <class T>
    static std::ptrdiff_t row_blocks(std::ptrdiff_t C) noexcept {
        return reference::row_blocks(C);
    }
    static bool statistics_first(const row_terms&) noexcept { return false; }

    template <class T, class G>
    static row_stats statistics(const T* s, const T* t, std::ptrdiff_t C, const row_terms& k, G*, std::ptrdiff_t first,
                                std::ptrdiff_t last, block_maxima*, compute_t<T>* = nullptr) noexcept {
        return reference::statistics(s, t, C, k, first, last);
    }
    template <class T, class G>
    static divergence_sums<double> sums(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C,
                                        const row_terms& k, const row_stats& st, const G*, const block_maxima*,
                                        std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
        return with_divergence(k.divergence, [&]<class Policy>() {
            return reference::sums<Policy>(s, t, label, C, k, st, first, last);
        });
    }
    template <class T, class G>
    static row_result row_loss(const row_stats& st, const divergence_sums<double>& sums, const T* s, const T* t,
                               std::int64_t label, std::ptrdiff_t C, const row_terms& k, divergence_value& value,
                               const G*, const block_maxima*) noexcept {
        return with_divergence(k.divergence, [&]<class Policy>() {
            return detail::row_loss<Policy>(st, sums, false, s, t, label, C, k, value);
        });
    }
    template <class T, class G>
    static void gradient(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                         const row_stats& st, const divergence_value& value, G* grad, std::ptrdiff_t first,
                         std::ptrdiff_t last, const block_maxima*, const compute_t<T>* = nullptr) noexcept {
        with_divergence(k.divergence, [&]<class Policy>() {
            reference::gradient<Policy>(s, t, label, C, k, st, value, grad, first, last);
        });
    }
    template <class T, class G>
    static row_result fused_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                                G* grad) noexcept {
        return reference::fused_row(s, t, label, C, k, grad);
    }
    // The function that runs each row of a call whole: chosen once per call.
    template <class T, class G>
    static row_function<T, G> row_kernel(std::ptrdiff_t, const row_terms&) noexcept {
        return &reference::fused_row<T, G>;
    }
    // Rows run one at a time: no group kernel.
    template <class T, class G>
    static group_function<T, G> group_kernel(std::ptrdiff_t, const row_terms&) noexcept {
        return nullptr;
    }
    template <class T>
    static int group_rows() noexcept {
        return 1;
    }
    // The reference gradient recomputes p: nothing to park.
    static constexpr bool parks_teacher = false;
    template <class T>
    static void park_teacher(const T*, std::ptrdiff_t, const row_terms&, double, T*, std::ptrdiff_t, std::ptrdiff_t,
                             block_maxima*) noexcept {}
    // softmax (or log_softmax) of one row; false for a row all -inf. Rows run one at a time.
    template <class T>
    static bool softmax_row(const T* s, std::ptrdiff_t C, double inv_t, bool log, T* out) noexcept {
        return reference::softmax_row(s, C, inv_t, log, out);
    }
    template <class T>
    static std::ptrdiff_t softmax_group_rows(std::ptrdiff_t) noexcept {
        return 1;
    }
    // A group of one row (never asked for: softmax_group_rows is 1), for the callers' one code.
    template <class T>
    static std::ptrdiff_t softmax_group(const T* s, std::ptrdiff_t, T* out, std::ptrdiff_t, std::ptrdiff_t C,
                                        double inv_t, bool log) noexcept {
        return reference::softmax_row(s, C, inv_t, log, out) ? -1 : 0;
    }

    // The top-k teacher's row (detail/top_k_row.hpp).
    template <class T>
    static double row_max(const T* s, std::ptrdiff_t C) noexcept {
        return reference::row_max(s, C);
    }
    // The reference recomputes e_q in the gradient sweep: nothing is parked.
    template <class T, class G>
    static top_k_student_sums top_k_sums(const T* s, std::ptrdiff_t C, std::span<const top_k_entry> entries,
                                         double ms, const row_terms& k, G*) noexcept {
        return reference::top_k_sums(s, C, entries, ms, k);
    }
    template <class T, class G, class SoftAt>
    static void top_k_gradient(const T* s, std::ptrdiff_t C, std::span<const top_k_entry> entries, double ms,
                               double tail_coefficient, double zr, std::int64_t label, const row_terms& k,
                               SoftAt&& soft_at, bool, G* grad) noexcept {
        reference::top_k_gradient(s, C, entries, ms, tail_coefficient, zr, label, k, soft_at, grad);
    }
};

#if !defined(DISTILL_NO_SIMD)
template <class Arch>
struct backend {
    template <class T>
    static std::ptrdiff_t block_columns(std::ptrdiff_t C) noexcept {
        return simd::block_length(C, xsimd::batch<compute_t<T>, Arch>::size);
    }
    template <class T>
    static std::ptrdiff_t row_blocks(std::ptrdiff_t C) noexcept {
        return simd::row_blocks<Arch, T>(C);
    }
    static bool statistics_first(const row_terms& k) noexcept { return simd::statistics_first(k); }

    // `student_exps` (a row of the compute type, or null): where a statistics-first sweep 1 parks
    // e_q for the gradient sweep, which then spends no exponential on it.
    template <class T, class G>
    static row_stats statistics(const T* s, const T* t, std::ptrdiff_t C, const row_terms& k, G* grad,
                                std::ptrdiff_t first, std::ptrdiff_t last, block_maxima* maxima,
                                compute_t<T>* student_exps = nullptr) noexcept {
        return simd::with_row_policy(k, [&]<class Policy>() {
            return simd::row_statistics<Arch, Policy>(s, t, C, k, grad, first, last, maxima, student_exps);
        });
    }
    // `parked` (the row's gradient buffer, or null) holds the teacher's e_p from sweep 1.
    template <class T, class G>
    static divergence_sums<double> sums(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C,
                                        const row_terms& k, const row_stats& st, const G* parked,
                                        const block_maxima* maxima, std::ptrdiff_t first,
                                        std::ptrdiff_t last) noexcept {
        return simd::with_row_policy(k, [&]<class Policy>() {
            return simd::row_sums<Arch, Policy>(s, t, label, C, k, st, parked, maxima, first, last);
        });
    }
    template <class T, class G>
    static row_result row_loss(const row_stats& st, const divergence_sums<double>& sums, const T* s, const T* t,
                               std::int64_t label, std::ptrdiff_t C, const row_terms& k, divergence_value& value,
                               const G* parked, const block_maxima* maxima) noexcept {
        return simd::with_row_policy(k, [&]<class Policy>() {
            return simd::row_loss<Arch, Policy>(st, sums, s, t, label, C, k, value, parked, maxima);
        });
    }
    template <class T, class G>
    static void gradient(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                         const row_stats& st, const divergence_value& value, G* grad, std::ptrdiff_t first,
                         std::ptrdiff_t last, const block_maxima* maxima,
                         const compute_t<T>* student_exps = nullptr) noexcept {
        simd::with_row_policy(k, [&]<class Policy>() {
            simd::row_gradient<Arch, Policy>(s, t, label, C, k, st, value, grad, first, last, maxima, student_exps);
        });
    }
    template <class T, class G>
    static row_result fused_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                                G* grad) noexcept {
        return simd::fused_row<Arch>(s, t, label, C, k, grad);
    }
    // The function that runs each row of a call whole, chosen once per call: for short and one-block
    // rows that shape's kernel itself (simd::row_kernel).
    template <class T, class G>
    static row_function<T, G> row_kernel(std::ptrdiff_t C, const row_terms& k) noexcept {
        return simd::row_kernel<Arch, T, G>(C, k);
    }
    // The kernel that runs group_rows() short rows side by side with the bits each gets from
    // row_kernel alone, or null where rows run one at a time (simd/lane_loss.hpp).
    template <class T, class G>
    static group_function<T, G> group_kernel(std::ptrdiff_t C, const row_terms& k) noexcept {
        return simd::group_kernel<Arch, T, G>(C, k);
    }
    template <class T>
    static int group_rows() noexcept {
        return static_cast<int>(xsimd::batch<compute_t<T>, Arch>::size);
    }
    // The gradient sweep reads the teacher's e_p from the gradient buffer: for a row whose sweep 1
    // ran in another call, park_teacher puts it there, relative to the row's teacher max mt.
    static constexpr bool parks_teacher = true;
    template <class T>
    static void park_teacher(const T* t, std::ptrdiff_t C, const row_terms& k, double mt, T* grad,
                             std::ptrdiff_t first, std::ptrdiff_t last, block_maxima* maxima) noexcept {
        simd::park_teacher<Arch>(t, C, k, mt, grad, first, last, maxima);
    }
    // softmax (or log_softmax) of one row; false for a row all -inf. Short rows also run
    // softmax_group_rows(C) at a time, side by side, with the same bits (simd/lane_softmax.hpp):
    // softmax_group returns the first of them all -inf, or -1.
    template <class T>
    static bool softmax_row(const T* s, std::ptrdiff_t C, double inv_t, bool log, T* out) noexcept {
        return simd::softmax_row<Arch>(s, C, inv_t, log, out);
    }
    template <class T>
    static std::ptrdiff_t softmax_group_rows(std::ptrdiff_t C) noexcept {
        return simd::softmax_group_rows<Arch, T>(C);
    }
    template <class T>
    static std::ptrdiff_t softmax_group(const T* s, std::ptrdiff_t s_stride, T* out, std::ptrdiff_t out_stride,
                                        std::ptrdiff_t C, double inv_t, bool log) noexcept {
        return simd::softmax_group<Arch>(s, s_stride, out, out_stride, C, inv_t, log);
    }

    // The top-k teacher's row (detail/top_k_row.hpp).
    template <class T>
    static double row_max(const T* s, std::ptrdiff_t C) noexcept {
        return simd::row_max<Arch>(s, C);
    }
    // `park` (the row's gradient buffer, or null) receives e_q from the sums sweep; `parked` says so.
    // A 16-bit gradient buffer is never given as `park` (top_k_row.hpp).
    template <class T, class G>
    static top_k_student_sums top_k_sums(const T* s, std::ptrdiff_t C, std::span<const top_k_entry> entries,
                                         double ms, const row_terms& k, G* park) noexcept {
        return simd::with_top_k_kernel<Arch, T, G>(k, [&]<class Kernel>() { return Kernel::sums(s, C, entries, ms, k, park); });
    }
    template <class T, class G, class SoftAt>
    static void top_k_gradient(const T* s, std::ptrdiff_t C, std::span<const top_k_entry> entries, double ms,
                               double tail_coefficient, double zr, std::int64_t label, const row_terms& k,
                               SoftAt&& soft_at, bool parked, G* grad) noexcept {
        simd::with_top_k_kernel<Arch, T, G>(k, [&]<class Kernel>() {
            Kernel::gradient(s, C, entries, ms, tail_coefficient, zr, label, k, soft_at, parked, grad);
        });
    }
};
#endif

}  // namespace distill::detail
