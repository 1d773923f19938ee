// distill/logits.hpp - what the library accepts as an N x C block of logits, and how it reads it.
//
// Every input is turned into a `matrix_view`: a pointer, a shape and a row stride, with unit inner
// stride. Accepted: row-major Eigen dense objects with direct memory access (Matrix, Map, Ref, row
// or column blocks), row-major Eigen::Tensor / TensorMap of rank 2 or 3 whose last dimension is
// the classes, and `distill::matrix_ref`, a plain pointer, shape and row stride for callers with
// tensors of their own. Anything whose classes are not contiguous is refused, at compile time when
// the type says so and at run time (a status naming the argument) when only the value does: a
// silent copy in the hot path would hide an N x C allocation from the caller. Labels likewise must
// be contiguous.
//
// The validation helpers shared by the losses and softmax live here too: the shape comparison
// (`same_shape`, `format_shape`), the overlap test (`views_overlap`) and the number formatting of
// messages (`format_number`).
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

// The labels of a call without a cross-entropy term: a loss built from divergence_options, or
// pure distillation (alpha = 1) against a teacher with no labels.
inline constexpr std::span<const std::int64_t> no_labels{};

template <class T>
matrix_ref(T*, std::ptrdiff_t, std::ptrdiff_t) -> matrix_ref<T>;
template <class T>
matrix_ref(T*, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t) -> matrix_ref<T>;

}  // namespace distill

namespace distill::detail {

// The dimensions of a tensor argument as the caller gave them. rank 0: an Eigen dense object,
// whose shape is just rows x cols.
struct view_shape {
    int rank = 0;
    std::array<std::ptrdiff_t, 3> extents{};
};

template <class T>
struct matrix_view {
    T* data = nullptr;
    std::ptrdiff_t rows = 0;
    std::ptrdiff_t cols = 0;
    std::ptrdiff_t row_stride = 0;  // elements between the starts of consecutive rows
    view_shape shape{};             // a tensor's own dimensions (rows is their product but the last)

    T* row(std::ptrdiff_t i) const noexcept { return data + i * row_stride; }
};

template <class X>
inline constexpr bool is_eigen_dense = std::is_base_of_v<Eigen::DenseBase<X>, X>;
template <class X>
inline constexpr bool is_eigen_tensor =
    std::is_base_of_v<Eigen::TensorBase<X, Eigen::ReadOnlyAccessors>, X>;

// Tensors that own or map memory; every other TensorBase (s * 2.0f, t.chip(0, 0), a TensorRef that
// may wrap an expression) is an unevaluated expression.
template <class X>
struct is_tensor_storage : std::false_type {};
template <class S, int R, int O, class I>
struct is_tensor_storage<Eigen::Tensor<S, R, O, I>> : std::true_type {};
template <class S, class Dims, int O, class I>
struct is_tensor_storage<Eigen::TensorFixedSize<S, Dims, O, I>> : std::true_type {};
template <class P, int O, template <class> class MP>
struct is_tensor_storage<Eigen::TensorMap<P, O, MP>> : std::true_type {};

template <class X>
inline constexpr bool is_matrix_ref = false;
template <class T>
inline constexpr bool is_matrix_ref<matrix_ref<T>> = true;

template <class X>
using logits_scalar_t = std::remove_const_t<typename std::remove_cvref_t<X>::Scalar>;

// Builds the view of `x`; `name` is the argument's name for error messages.
// Writable == true asks for an output (a gradient or softmax buffer).
// Each refusal is its own branch, so that a refused type gets the static_assert and nothing else.
template <bool Writable, class X>
status make_view(X& x, const char* name,
                 matrix_view<std::conditional_t<Writable, logits_scalar_t<X>, const logits_scalar_t<X>>>& out) noexcept {
    using D = std::remove_cvref_t<X>;
    if constexpr (is_eigen_dense<D>) {
        if constexpr (!bool(D::Flags & Eigen::DirectAccessBit)) {
            static_assert(bool(D::Flags & Eigen::DirectAccessBit),
                          "distill: logits must refer to memory (Matrix, Map, Ref or a block of one), "
                          "not an unevaluated expression; evaluate it into a row-major matrix first");
            return {};
        } else if constexpr (!(bool(D::IsRowMajor) || D::ColsAtCompileTime == 1)) {
            static_assert(bool(D::IsRowMajor) || D::ColsAtCompileTime == 1,
                          "distill: logits must be row-major (rows = samples, columns = classes); use "
                          "Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> or a row-major Map/Ref");
            return {};
        } else if constexpr (Writable && (std::is_const_v<std::remove_reference_t<X>> || !bool(D::Flags & Eigen::LvalueBit))) {
            static_assert(!Writable, "distill: the output must be writable");
            return {};
        } else {
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
        }
    } else if constexpr (is_eigen_tensor<D>) {
        if constexpr (!is_tensor_storage<D>::value) {
            static_assert(is_tensor_storage<D>::value,
                          "distill: logits must refer to memory (Eigen::Tensor or TensorMap), not an unevaluated "
                          "tensor expression (s * 2.0f, t.chip(0, 0)); evaluate it into a row-major Tensor first");
            return {};
        } else if constexpr (D::NumDimensions != 2 && D::NumDimensions != 3) {
            static_assert(D::NumDimensions == 2 || D::NumDimensions == 3,
                          "distill: tensors must have rank 2 [rows, classes] or 3 [batch, time, classes]");
            return {};
        } else if constexpr (static_cast<int>(D::Layout) != static_cast<int>(Eigen::RowMajor)) {
            static_assert(static_cast<int>(D::Layout) == static_cast<int>(Eigen::RowMajor),
                          "distill: tensors must use Eigen::RowMajor layout so that the last dimension "
                          "(classes) is contiguous");
            return {};
        } else if constexpr (Writable && std::is_const_v<std::remove_pointer_t<decltype(x.data())>>) {
            static_assert(!Writable, "distill: the output must be writable");
            return {};
        } else {
            constexpr int rank = D::NumDimensions;
            const auto& dims = x.dimensions();
            std::ptrdiff_t rows = 1;
            for (int d = 0; d + 1 < rank; ++d) rows *= static_cast<std::ptrdiff_t>(dims[d]);
            out.data = x.data();
            out.rows = rows;
            out.cols = static_cast<std::ptrdiff_t>(dims[rank - 1]);
            out.row_stride = out.cols;
            out.shape.rank = rank;
            for (int d = 0; d < rank; ++d) out.shape.extents[static_cast<std::size_t>(d)] = static_cast<std::ptrdiff_t>(dims[d]);
            return {};
        }
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

// A message fragment in fixed storage (a number, a shape): formatting one never allocates.
struct short_text {
    std::array<char, 80> chars{};
    const char* c_str() const noexcept { return chars.data(); }
};

// `x` in printf's %g style with the fewest significant digits (at most 17) that read back as
// exactly `x`: 0.5 -> "0.5", 0.9999999 -> "0.9999999" (plain %g would print "1"), 1e-20 -> "1e-20",
// inf -> "inf", NaN -> "nan"; a whole number below 1e16 keeps its digits (1000, not "1e+03").
// Every double in an error message goes through this.
inline short_text format_number(double x) noexcept {
    short_text t;
    if (!std::isfinite(x)) {
        std::snprintf(t.chars.data(), t.chars.size(), "%g", x);
        return t;
    }
    const int saved_errno = errno;  // strtod reports subnormals through errno; the caller's stays
    for (int digits = 1; digits <= 17; ++digits) {  // 17 significant digits always read back exactly
        std::snprintf(t.chars.data(), t.chars.size(), "%.*g", digits, x);
        const bool exponent_of_whole = std::abs(x) >= 1 && std::abs(x) < 1e16 &&
                                       std::strchr(t.chars.data(), 'e') != nullptr;
        if (!exponent_of_whole && std::strtod(t.chars.data(), nullptr) == x) break;
    }
    errno = saved_errno;
    return t;
}

// Whether two views have the same shape. Two tensors: the same rank and every extent equal (a
// [2, 3, C] student and a [3, 2, C] teacher differ although both are 6 x C). Otherwise (a matrix,
// or a tensor against a matrix) rows and columns, the tensor's leading dimensions flattened.
template <class A, class B>
bool same_shape(const matrix_view<A>& a, const matrix_view<B>& b) noexcept {
    if (a.shape.rank != 0 && b.shape.rank != 0) {
        if (a.shape.rank != b.shape.rank) return false;
        for (std::size_t d = 0; d < static_cast<std::size_t>(a.shape.rank); ++d)
            if (a.shape.extents[d] != b.shape.extents[d]) return false;
        return true;
    }
    return a.rows == b.rows && a.cols == b.cols;
}

// A view's shape as a message names it: "2 x 3" for a matrix, "[2, 3, 5]" for a tensor.
template <class T>
short_text format_shape(const matrix_view<T>& v) noexcept {
    short_text t;
    if (v.shape.rank == 2)
        std::snprintf(t.chars.data(), t.chars.size(), "[%td, %td]", v.shape.extents[0], v.shape.extents[1]);
    else if (v.shape.rank == 3)
        std::snprintf(t.chars.data(), t.chars.size(), "[%td, %td, %td]", v.shape.extents[0], v.shape.extents[1],
                      v.shape.extents[2]);
    else
        std::snprintf(t.chars.data(), t.chars.size(), "%td x %td", v.rows, v.cols);
    return t;
}

namespace overlap {

// A view's rows as byte intervals [start + i * step, start + i * step + width), i in [0, count),
// with step >= 0 (a negative row stride is the same rows listed backwards).
struct byte_rows {
    std::uintptr_t start = 0;
    std::ptrdiff_t step = 0, width = 0, count = 0;
};

template <class T>
byte_rows of(const matrix_view<T>& v) noexcept {
    constexpr auto size = static_cast<std::ptrdiff_t>(sizeof(T));
    byte_rows r{reinterpret_cast<std::uintptr_t>(v.data), v.row_stride * size, v.cols * size, v.rows};
    if (r.step < 0) {
        r.start -= static_cast<std::uintptr_t>(-r.step * (r.count - 1));
        r.step = -r.step;
    }
    if (r.step == 0) r.count = 1;  // every row is the same elements
    return r;
}

// floor(a / b) for b > 0.
inline std::ptrdiff_t floor_div(std::ptrdiff_t a, std::ptrdiff_t b) noexcept {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// Whether some row of `a` intersects some row of `b`. For each row of `a` (the view with fewer
// rows), the rows of `b` that can meet it form a range of indices, found by one division: O(rows).
inline bool intersect(const byte_rows& a, const byte_rows& b) noexcept {
    for (std::ptrdiff_t i = 0; i < a.count; ++i) {
        // Row i of a, relative to b's first row: [x, x + a.width).
        const auto x = static_cast<std::ptrdiff_t>(a.start + static_cast<std::uintptr_t>(i * a.step) - b.start);
        // Row j of b, [j step, j step + b.width), meets it iff x - b.width < j step < x + a.width.
        if (b.count == 1) {
            if (x - b.width < 0 && 0 < x + a.width) return true;
            continue;
        }
        const std::ptrdiff_t j = std::max<std::ptrdiff_t>(0, floor_div(x - b.width, b.step) + 1);
        if (j < b.count && j * b.step < x + a.width) return true;
    }
    return false;
}

}  // namespace overlap

// Whether two views share an element: the elements they actually touch, row by row, not the
// address ranges from first to last element, so two disjoint column blocks of one matrix
// (m.leftCols(k) and m.rightCols(C - k)) do not overlap, and interleaved rows do. O(min(rows)).
template <class A, class B>
bool views_overlap(const matrix_view<A>& a, const matrix_view<B>& b) noexcept {
    if (!a.data || !b.data || a.rows <= 0 || b.rows <= 0 || a.cols <= 0 || b.cols <= 0) return false;
    const overlap::byte_rows ra = overlap::of(a), rb = overlap::of(b);
    // Disjoint hulls (the common case: separate buffers) need no row-by-row look.
    const auto a_end = ra.start + static_cast<std::uintptr_t>((ra.count - 1) * ra.step + ra.width);
    const auto b_end = rb.start + static_cast<std::uintptr_t>((rb.count - 1) * rb.step + rb.width);
    if (!(ra.start < b_end && rb.start < a_end)) return false;
    return ra.count <= rb.count ? overlap::intersect(ra, rb) : overlap::intersect(rb, ra);
}

// Labels: any contiguous sequence of signed integers with data() and size() (std::vector,
// std::span, std::array, Eigen integer vectors).
template <class L>
struct label_element {
    using type = std::remove_cv_t<std::remove_pointer_t<decltype(std::data(std::declval<const L&>()))>>;
};
template <class L>
    requires is_eigen_dense<L>
struct label_element<L> {
    using type = std::remove_cv_t<typename L::Scalar>;
};
template <class L>
using label_value_t = typename label_element<std::remove_cvref_t<L>>::type;

// Points `out` at the labels. Eigen objects must be vectors whose consecutive entries are adjacent
// in memory: a row of a column-major matrix or a Map with an inner stride would otherwise be read
// as if they were, giving wrong labels silently. Refused at compile time when the type says so,
// else with a status naming "labels".
template <class L>
status label_span(const L& labels, std::span<const label_value_t<L>>& out) noexcept {
    using D = std::remove_cvref_t<L>;
    using value = label_value_t<L>;
    out = {};
    if constexpr (!(std::is_integral_v<value> && std::is_signed_v<value>)) {
        static_assert(std::is_integral_v<value> && std::is_signed_v<value>,
                      "distill: labels must be signed integers (ignore_index is negative)");
        return {};
    } else if constexpr (is_eigen_dense<D>) {
        constexpr bool strided_type = D::IsVectorAtCompileTime && D::SizeAtCompileTime != 1 &&
                                      D::InnerStrideAtCompileTime != 1 && D::InnerStrideAtCompileTime != Eigen::Dynamic;
        if constexpr (!bool(D::Flags & Eigen::DirectAccessBit)) {
            static_assert(bool(D::Flags & Eigen::DirectAccessBit),
                          "distill: labels must refer to memory (a vector, Map or Ref), not an unevaluated expression");
            return {};
        } else if constexpr (strided_type) {
            static_assert(!strided_type,
                          "distill: labels must be contiguous (consecutive labels adjacent in memory); a row of a "
                          "column-major matrix or a Map with an inner stride is not: copy the labels into a vector");
            return {};
        } else {
            if (labels.rows() > 1 && labels.cols() > 1)
                return status::error(errc::invalid_argument, "labels: must be one row or one column, got %td x %td",
                                     static_cast<std::ptrdiff_t>(labels.rows()),
                                     static_cast<std::ptrdiff_t>(labels.cols()));
            // The distance between consecutive labels: along the row of a 1 x n, down the column otherwise.
            const auto step = static_cast<std::ptrdiff_t>(labels.rows() == 1 ? labels.colStride() : labels.rowStride());
            if (labels.size() > 1 && step != 1)
                return status::error(errc::invalid_argument,
                                     "labels: the entries must be contiguous (inner stride 1), got inner stride %td", step);
            out = std::span<const value>(labels.data(), static_cast<std::size_t>(labels.size()));
            return {};
        }
    } else {
        out = std::span<const value>(std::data(labels), static_cast<std::size_t>(std::size(labels)));
        return {};
    }
}

}  // namespace distill::detail
