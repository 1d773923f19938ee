// distill/logits.hpp - what the library accepts as an N x C block of logits, and how it reads it.
//
// Every input is turned into a `matrix_view`: a pointer, a shape and a row stride, with unit inner
// stride. Accepted: row-major Eigen dense objects with direct memory access (Matrix, Map, Ref, row
// or column blocks), row-major Eigen::Tensor / TensorMap of rank 2 or 3 whose last dimension is
// the classes, and `distill::matrix_ref`, a plain pointer, shape and row stride for callers with
// tensors of their own. Anything whose classes are not contiguous is refused, at compile time when
// the type says so and at run time (a status naming the argument) when only the value does: a
// silent copy in the hot path would hide an N x C allocation from the caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>
#include <type_traits>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include "status.hpp"

namespace distill {

// N x C logits (or an output) in memory the caller owns: row i starts at data + i * row_stride and
// holds cols contiguous elements. T = const float / const double for inputs only; T = float / double
// for anything, outputs included. row_stride defaults to cols (rows packed end to end):
//     distill::matrix_ref<const float>{student_ptr, rows, cols}
//     distill::matrix_ref<float>{.data = grad_ptr, .rows = n, .cols = c, .row_stride = ld}
// Checked on every call: rows, cols >= 0, row_stride >= cols, data non-null unless rows * cols == 0.
template <class T>
struct matrix_ref {
    using Scalar = std::remove_const_t<T>;
    using element_type = T;

    T* data = nullptr;
    std::ptrdiff_t rows = 0;
    std::ptrdiff_t cols = 0;
    std::ptrdiff_t row_stride = cols;  // elements between the starts of consecutive rows
};

template <class T>
matrix_ref(T*, std::ptrdiff_t, std::ptrdiff_t) -> matrix_ref<T>;
template <class T>
matrix_ref(T*, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t) -> matrix_ref<T>;

}  // namespace distill

namespace distill::detail {

template <class T>
struct matrix_view {
    T* data = nullptr;
    std::ptrdiff_t rows = 0;
    std::ptrdiff_t cols = 0;
    std::ptrdiff_t row_stride = 0;  // elements between the starts of consecutive rows

    T* row(std::ptrdiff_t i) const noexcept { return data + i * row_stride; }
};

template <class X>
inline constexpr bool is_eigen_dense = std::is_base_of_v<Eigen::DenseBase<X>, X>;
template <class X>
inline constexpr bool is_eigen_tensor =
    std::is_base_of_v<Eigen::TensorBase<X, Eigen::ReadOnlyAccessors>, X>;

template <class X>
inline constexpr bool is_matrix_ref = false;
template <class T>
inline constexpr bool is_matrix_ref<matrix_ref<T>> = true;

template <class X>
using logits_scalar_t = std::remove_const_t<typename std::remove_cvref_t<X>::Scalar>;

// Builds the view of `x`; `name` is the argument's name for error messages.
// Writable == true asks for an output (a gradient or softmax buffer).
template <bool Writable, class X>
status make_view(X& x, const char* name,
                 matrix_view<std::conditional_t<Writable, logits_scalar_t<X>, const logits_scalar_t<X>>>& out) noexcept {
    using D = std::remove_cvref_t<X>;
    if constexpr (is_eigen_dense<D>) {
        static_assert(bool(D::Flags & Eigen::DirectAccessBit),
                      "distill: logits must refer to memory (Matrix, Map, Ref or a block of one), "
                      "not an unevaluated expression; evaluate it into a row-major matrix first");
        static_assert(bool(D::IsRowMajor) || D::ColsAtCompileTime == 1,
                      "distill: logits must be row-major (rows = samples, columns = classes); use "
                      "Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> or a row-major Map/Ref");
        if constexpr (Writable) {
            static_assert(!std::is_const_v<std::remove_reference_t<X>> && bool(D::Flags & Eigen::LvalueBit),
                          "distill: the output must be writable");
        }
        out.data = x.data();
        out.rows = x.rows();
        out.cols = x.cols();
        if (x.cols() > 1 && x.innerStride() != 1)
            return status::error(errc::invalid_argument,
                                 "%s: the class dimension must be contiguous (inner stride 1), got inner stride %td",
                                 name, static_cast<std::ptrdiff_t>(x.innerStride()));
        if constexpr (D::IsRowMajor)
            out.row_stride = x.rows() > 1 ? x.outerStride() : x.cols();
        else
            out.row_stride = x.innerStride();  // a single column: consecutive rows are one stride apart
        return {};
    } else if constexpr (is_eigen_tensor<D>) {
        constexpr int rank = D::NumDimensions;
        static_assert(rank == 2 || rank == 3,
                      "distill: tensors must have rank 2 [rows, classes] or 3 [batch, time, classes]");
        static_assert(static_cast<int>(D::Layout) == static_cast<int>(Eigen::RowMajor),
                      "distill: tensors must use Eigen::RowMajor layout so that the last dimension "
                      "(classes) is contiguous");
        const auto& dims = x.dimensions();
        std::ptrdiff_t rows = 1;
        for (int d = 0; d + 1 < rank; ++d) rows *= static_cast<std::ptrdiff_t>(dims[d]);
        out.data = x.data();
        out.rows = rows;
        out.cols = static_cast<std::ptrdiff_t>(dims[rank - 1]);
        out.row_stride = out.cols;
        return {};
    } else if constexpr (is_matrix_ref<D>) {
        if constexpr (Writable) {
            // The view itself may be const (like std::span); its elements must not be.
            static_assert(!std::is_const_v<typename D::element_type>,
                          "distill: matrix_ref<const T> is read-only; an output needs matrix_ref<T>");
        }
        if constexpr (!Writable || !std::is_const_v<typename D::element_type>) {
            if (x.rows < 0 || x.cols < 0)
                return status::error(errc::invalid_argument, "%s: the shape must not be negative, got %td x %td",
                                     name, x.rows, x.cols);
            if (x.row_stride < x.cols)
                return status::error(errc::invalid_argument,
                                     "%s: row_stride must be at least cols (%td), got row_stride %td", name, x.cols,
                                     x.row_stride);
            if (!x.data && x.rows > 0 && x.cols > 0)
                return status::error(errc::invalid_argument, "%s: data is a null pointer but the shape is %td x %td",
                                     name, x.rows, x.cols);
            out.data = x.data;
            out.rows = x.rows;
            out.cols = x.cols;
            out.row_stride = x.row_stride;
        }
        return {};
    } else {
        static_assert(is_eigen_dense<D> || is_eigen_tensor<D> || is_matrix_ref<D>,
                      "distill: logits must be an Eigen dense object (row-major), an Eigen::Tensor/TensorMap "
                      "or a distill::matrix_ref");
        return {};
    }
}

// Labels: any contiguous sequence of integers with data() and size() (std::vector, std::span,
// std::array, Eigen integer vectors).
template <class L>
auto label_span(const L& labels) noexcept {
    using value = std::remove_cv_t<std::remove_pointer_t<decltype(std::data(labels))>>;
    static_assert(std::is_integral_v<value> && std::is_signed_v<value>,
                  "distill: labels must be signed integers (ignore_index is negative)");
    return std::span<const value>(std::data(labels), static_cast<std::size_t>(std::size(labels)));
}

}  // namespace distill::detail
