// distill/softmax.hpp - temperature softmax and log-softmax of N x C logits, row by row.
//
// softmax(s / T)_c = exp((s_c - max s) / T) / sum_k exp((s_k - max s) / T), computed with the max
// subtracted so that any finite logits work; -inf logits are masked classes (probability 0,
// log-probability -inf). A row whose logits are all -inf has no softmax and is an error naming it.
// `out` may be the input itself (in place); any other overlap with the input is refused.
#pragma once

#include <cmath>
#include <type_traits>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include "detail/reference/fused_row.hpp"
#include "logits.hpp"
#include "status.hpp"
#if !defined(DISTILL_NO_SIMD)
#include "detail/simd/softmax_row.hpp"
#endif

namespace distill {

namespace detail {

template <class X>
inline constexpr bool is_logits = is_eigen_dense<std::remove_cvref_t<X>> || is_eigen_tensor<std::remove_cvref_t<X>>;

template <class X, class Out>
status softmax_rows(const X& logits, Out& out, double temperature, bool log) noexcept {
    using T = logits_scalar_t<X>;
    const char* name = log ? "log_softmax" : "softmax";
    if (!(temperature > 0) || !std::isfinite(temperature))
        return status::error(errc::invalid_argument, "%s: temperature must be finite and > 0, got %s", name,
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
    for (std::ptrdiff_t i = 0; i < in.rows; ++i) {
#if defined(DISTILL_NO_SIMD)
        const bool defined = reference::softmax_row(in.row(i), in.cols, 1.0 / temperature, log, o.row(i));
#else
        const bool defined = simd::softmax_row<xsimd::default_arch>(in.row(i), in.cols, 1.0 / temperature, log, o.row(i));
#endif
        if (!defined)
            return status::error(errc::invalid_argument,
                                 "%s: row %td of the logits is entirely -inf (every class masked), so its softmax "
                                 "is undefined",
                                 name, i);
    }
    return {};
}

// The scalar types first, each refusal its own branch: a wrong type gets the static_assert alone.
template <class X, class Out>
status softmax_into(const X& logits, Out&& out, double temperature, bool log) noexcept {
    using T = logits_scalar_t<X>;
    if constexpr (!(std::is_same_v<T, float> || std::is_same_v<T, double>)) {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "distill: softmax is defined for float and double");
        return {};
    } else if constexpr (!std::is_same_v<logits_scalar_t<Out>, T>) {
        static_assert(std::is_same_v<logits_scalar_t<Out>, T>, "distill: softmax output must have the logits' scalar type");
        return {};
    } else {
        return softmax_rows(logits, out, temperature, log);
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
    } else {
        return Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>(logits.rows(), logits.cols());
    }
}

}  // namespace detail

// Non-throwing forms: write into `out`, return what went wrong.
template <class X, class Out>
    requires detail::is_logits<X> && detail::is_logits<Out>
status try_softmax(const X& logits, Out&& out, double temperature = 1.0) noexcept {
    return detail::softmax_into(logits, out, temperature, false);
}
template <class X, class Out>
    requires detail::is_logits<X> && detail::is_logits<Out>
status try_log_softmax(const X& logits, Out&& out, double temperature = 1.0) noexcept {
    return detail::softmax_into(logits, out, temperature, true);
}

#if defined(__cpp_exceptions)
template <class X, class Out>
    requires detail::is_logits<X> && detail::is_logits<Out>
void softmax(const X& logits, Out&& out, double temperature = 1.0) {
    detail::throw_if_error(try_softmax(logits, out, temperature));
}
template <class X, class Out>
    requires detail::is_logits<X> && detail::is_logits<Out>
void log_softmax(const X& logits, Out&& out, double temperature = 1.0) {
    detail::throw_if_error(try_log_softmax(logits, out, temperature));
}
// Returning forms: a row-major matrix (or tensor of the input's rank). They allocate the result.
template <class X>
    requires detail::is_logits<X>
auto softmax(const X& logits, double temperature = 1.0) {
    auto out = detail::output_like(logits);
    softmax(logits, out, temperature);
    return out;
}
template <class X>
    requires detail::is_logits<X>
auto log_softmax(const X& logits, double temperature = 1.0) {
    auto out = detail::output_like(logits);
    log_softmax(logits, out, temperature);
    return out;
}
#endif

}  // namespace distill
