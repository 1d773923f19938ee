// distill/softmax.hpp - temperature softmax and log-softmax of N x C logits, row by row.
//
// softmax(s / T)_c = exp((s_c - max s) / T) / sum_k exp((s_k - max s) / T), computed with the max
// subtracted so that any finite logits work; -inf logits are masked classes (probability 0,
// log-probability -inf). A row whose logits are all -inf has no softmax and is an error naming it.
// `out` may be the input itself (in place); any other overlap with the input is refused. An executor
// first runs the rows on the caller's threads.
#pragma once

#include "detail/warnings_push.hpp"  // GCC 12 AVX-512 false positives; pairs with warnings_pop.hpp below

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <type_traits>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include "detail/backend.hpp"
#include "detail/validation.hpp"
#include "executor.hpp"
#include "logits.hpp"
#include "status.hpp"

namespace distill {

namespace detail {

template <class X>
inline constexpr bool is_logits = is_eigen_dense<std::remove_cvref_t<X>> || is_eigen_tensor<std::remove_cvref_t<X>> ||
                                  is_matrix_ref<std::remove_cvref_t<X>>;

// Rows run in at most this many pieces, each recording its first undefined row, so that the row an
// error names does not depend on the executor.
inline constexpr std::ptrdiff_t softmax_pieces = 64;

template <class Isa, class T>
[[gnu::noinline]] void softmax_rows(const matrix_view<const T>& in, const matrix_view<T>& out, double inv_t, bool log,
                                    std::ptrdiff_t pieces, std::ptrdiff_t first, std::ptrdiff_t last,
                                    std::ptrdiff_t* bad_row) noexcept {
    for (std::ptrdiff_t p = first; p < last; ++p)
        for (std::ptrdiff_t i = p * in.rows / pieces; i < (p + 1) * in.rows / pieces; ++i)
            if (!backend<Isa>::softmax_row(in.row(i), in.cols, inv_t, log, out.row(i)) && bad_row[p] < 0) bad_row[p] = i;
}

// The same for rows that the backend runs `together` at a time (short rows, simd/lane_softmax.hpp):
// pieces are cut between groups, and the rows after the last whole group run one by one, with the
// same bits. Kept apart from softmax_rows, which a call of one row runs through at no cost of this.
template <class Isa, class T>
[[gnu::noinline]] void softmax_row_groups(const matrix_view<const T>& in, const matrix_view<T>& out, double inv_t,
                                          bool log, std::ptrdiff_t together, std::ptrdiff_t pieces, std::ptrdiff_t first,
                                          std::ptrdiff_t last, std::ptrdiff_t* bad_row) noexcept {
    const std::ptrdiff_t groups = (in.rows + together - 1) / together;
    for (std::ptrdiff_t p = first; p < last; ++p) {
        std::ptrdiff_t i = together * (p * groups / pieces);
        const std::ptrdiff_t end = std::min(in.rows, together * ((p + 1) * groups / pieces));
        for (; i + together <= end; i += together) {
            const std::ptrdiff_t bad =
                backend<Isa>::softmax_group(in.row(i), in.row_stride, out.row(i), out.row_stride, in.cols, inv_t, log);
            if (bad >= 0 && bad_row[p] < 0) bad_row[p] = i + bad;
        }
        for (; i < end; ++i)
            if (!backend<Isa>::softmax_row(in.row(i), in.cols, inv_t, log, out.row(i)) && bad_row[p] < 0) bad_row[p] = i;
    }
}

template <class Isa, class Exec, class X, class Out>
status softmax_checked(Exec& exec, const X& logits, Out& out, double temperature, bool log) noexcept {
    using T = logits_scalar_t<X>;
    const char* name = log ? "log_softmax" : "softmax";
    if (!(temperature >= min_temperature && temperature <= max_temperature))
        return status::error(errc::invalid_argument, "%s: temperature must be in [%s, %s], got %s", name,
                             format_number(min_temperature).c_str(), format_number(max_temperature).c_str(),
                             format_number(temperature).c_str());
    matrix_view<const T> in;
    matrix_view<T> o;
    if (status s = make_view<false>(logits, "logits", in); !s) return s;
    if (status s = make_view<true>(out, "output", o); !s) return s;
    if (in.cols == 0)
        return status::error(errc::invalid_argument, "%s: logits have 0 classes (shape %td x 0); at least 1 is needed",
                             name, in.rows);
    if (!same_shape(o, in))
        return status::error(errc::invalid_argument, "%s: output is %s but logits are %s; they must match", name,
                             format_shape(o).c_str(), format_shape(in).c_str());
    // In place is each output row over its own input row; anything else that shares an element
    // would read logits already overwritten.
    const bool in_place = o.data == in.data && (in.rows <= 1 || o.row_stride == in.row_stride);
    if (!in_place && views_overlap(o, in))
        return status::error(errc::invalid_argument,
                             "%s: the output partly overlaps the logits; it must be the logits themselves (in place) "
                             "or a separate buffer",
                             name);
    std::array<std::ptrdiff_t, softmax_pieces> bad_row;
    bad_row.fill(-1);
    const double inv_t = 1.0 / temperature;
    const std::ptrdiff_t together = backend<Isa>::template softmax_group_rows<T>(in.cols);
    std::ptrdiff_t pieces = std::min(in.rows, softmax_pieces);
    if (together > 1 && in.rows >= together) {
        pieces = std::min((in.rows + together - 1) / together, softmax_pieces);
        exec(std::ptrdiff_t{0}, pieces, [&](std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
            softmax_row_groups<Isa>(in, o, inv_t, log, together, pieces, first, last, bad_row.data());
        });
    } else if (pieces > 0) {
        exec(std::ptrdiff_t{0}, pieces, [&](std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
            softmax_rows<Isa>(in, o, inv_t, log, pieces, first, last, bad_row.data());
        });
    }
    for (std::ptrdiff_t p = 0; p < pieces; ++p)
        if (bad_row[static_cast<std::size_t>(p)] >= 0)
            return status::error(errc::invalid_argument,
                                 "%s: row %td of the logits is entirely -inf (every class masked), so its softmax "
                                 "is undefined",
                                 name, bad_row[static_cast<std::size_t>(p)]);
    return {};
}

// The scalar types first, each refusal its own branch: a wrong type gets the static_assert alone.
template <class Isa, class Exec, class X, class Out>
status softmax_into(Exec& exec, const X& logits, Out&& out, double temperature, bool log) noexcept {
    using T = logits_scalar_t<X>;
    if constexpr (!(std::is_same_v<T, float> || std::is_same_v<T, double>)) {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "distill: softmax is defined for float and double");
        return {};
    } else if constexpr (!std::is_same_v<logits_scalar_t<Out>, T>) {
        static_assert(std::is_same_v<logits_scalar_t<Out>, T>, "distill: softmax output must have the logits' scalar type");
        return {};
    } else {
        return softmax_checked<Isa>(exec, logits, out, temperature, log);
    }
}

// A fresh output shaped like the input: a row-major matrix, or a row-major tensor of the same rank.
template <class X>
auto output_like(const X& logits) {
    using D = std::remove_cvref_t<X>;
    using T = logits_scalar_t<X>;
    if constexpr (is_eigen_tensor<D> && !is_tensor_storage<D>::value) {
        static_assert(is_tensor_storage<D>::value,
                      "distill: logits must refer to memory (Eigen::Tensor or TensorMap), not an unevaluated "
                      "tensor expression (s * 2.0f, t.chip(0, 0)); evaluate it into a row-major Tensor first");
        return Eigen::Tensor<T, 2, Eigen::RowMajor>();
    } else if constexpr (is_eigen_tensor<D>) {
        return Eigen::Tensor<T, D::NumDimensions, Eigen::RowMajor>(logits.dimensions());
    } else if constexpr (is_matrix_ref<D>) {  // a negative shape is reported by the call that follows
        return Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>(logits.rows < 0 ? 0 : logits.rows,
                                                                                 logits.cols < 0 ? 0 : logits.cols);
    } else {
        return Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>(logits.rows(), logits.cols());
    }
}

}  // namespace detail

// Non-throwing forms: write into `out`, return what went wrong.
template <executor Exec, class X, class Out, class Isa = detail::isa>
    requires detail::is_logits<X> && detail::is_logits<Out>
status try_softmax(Exec&& exec, const X& logits, Out&& out, double temperature = 1.0) noexcept {
    return detail::softmax_into<Isa>(exec, logits, out, temperature, false);
}
template <executor Exec, class X, class Out, class Isa = detail::isa>
    requires detail::is_logits<X> && detail::is_logits<Out>
status try_log_softmax(Exec&& exec, const X& logits, Out&& out, double temperature = 1.0) noexcept {
    return detail::softmax_into<Isa>(exec, logits, out, temperature, true);
}
template <class X, class Out, class Isa = detail::isa>
    requires detail::is_logits<X> && detail::is_logits<Out>
status try_softmax(const X& logits, Out&& out, double temperature = 1.0) noexcept {
    return detail::softmax_into<Isa>(sequential, logits, out, temperature, false);
}
template <class X, class Out, class Isa = detail::isa>
    requires detail::is_logits<X> && detail::is_logits<Out>
status try_log_softmax(const X& logits, Out&& out, double temperature = 1.0) noexcept {
    return detail::softmax_into<Isa>(sequential, logits, out, temperature, true);
}

#if defined(__cpp_exceptions)
template <executor Exec, class X, class Out, class Isa = detail::isa>
    requires detail::is_logits<X> && detail::is_logits<Out>
void softmax(Exec&& exec, const X& logits, Out&& out, double temperature = 1.0) {
    detail::throw_if_error(detail::softmax_into<Isa>(exec, logits, out, temperature, false));
}
template <executor Exec, class X, class Out, class Isa = detail::isa>
    requires detail::is_logits<X> && detail::is_logits<Out>
void log_softmax(Exec&& exec, const X& logits, Out&& out, double temperature = 1.0) {
    detail::throw_if_error(detail::softmax_into<Isa>(exec, logits, out, temperature, true));
}
template <class X, class Out, class Isa = detail::isa>
    requires detail::is_logits<X> && detail::is_logits<Out>
void softmax(const X& logits, Out&& out, double temperature = 1.0) {
    detail::throw_if_error(detail::softmax_into<Isa>(sequential, logits, out, temperature, false));
}
template <class X, class Out, class Isa = detail::isa>
    requires detail::is_logits<X> && detail::is_logits<Out>
void log_softmax(const X& logits, Out&& out, double temperature = 1.0) {
    detail::throw_if_error(detail::softmax_into<Isa>(sequential, logits, out, temperature, true));
}
// Returning forms: a row-major matrix (or tensor of the input's rank). They allocate the result.
template <class X, class Isa = detail::isa>
    requires detail::is_logits<X>
auto softmax(const X& logits, double temperature = 1.0) {
    auto out = detail::output_like(logits);
    softmax<X, decltype(out)&, Isa>(logits, out, temperature);
    return out;
}
template <class X, class Isa = detail::isa>
    requires detail::is_logits<X>
auto log_softmax(const X& logits, double temperature = 1.0) {
    auto out = detail::output_like(logits);
    log_softmax<X, decltype(out)&, Isa>(logits, out, temperature);
    return out;
}
#endif

}  // namespace distill

#include "detail/warnings_pop.hpp"
