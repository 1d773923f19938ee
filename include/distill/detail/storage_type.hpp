// distill/detail/storage_type.hpp - the type logits are stored in and the type the kernels compute
// in. float and double compute in themselves; the 16-bit types (Eigen::bfloat16, Eigen::half) are
// storage only: the kernels widen them to float as they load, compute in float (the loss still
// accumulates in double) and narrow the gradient as they store it, so no float copy of an N x V
// matrix is ever made.
#pragma once

#include <type_traits>

#include <Eigen/Core>

namespace distill::detail {

template <class T>
inline constexpr bool is_16bit_float = std::is_same_v<T, Eigen::bfloat16> || std::is_same_v<T, Eigen::half>;

// The scalar types the loss functors are defined for.
template <class T>
inline constexpr bool is_loss_scalar = std::is_same_v<T, float> || std::is_same_v<T, double> || is_16bit_float<T>;

template <class T>
struct compute_type {
    using type = T;
};
template <>
struct compute_type<Eigen::bfloat16> {
    using type = float;
};
template <>
struct compute_type<Eigen::half> {
    using type = float;
};
// The type the kernels compute in for logits stored as T (and that a 16-bit functor keeps its
// class weights in).
template <class T>
using compute_t = typename compute_type<T>::type;

// The gradient buffer of a functor of scalar type Scalar holds Scalar, or float when Scalar is a
// 16-bit type: the caller's buffer decides.
template <class Scalar, class G>
inline constexpr bool is_gradient_scalar =
    std::is_same_v<G, Scalar> || (is_16bit_float<Scalar> && std::is_same_v<G, float>);

// Whether the SIMD kernels may park the teacher's exponentials in a gradient buffer of type G:
// a 16-bit buffer would round them to 8 (bfloat16) or 11 (half) bits, so for it they are recomputed.
template <class G>
inline constexpr bool can_park_in = !is_16bit_float<G>;

// A single element read as double (the 16-bit types through their exact float value), and a double
// written to a storage type (through float for the 16-bit types, rounding to nearest even).
template <class T>
inline double to_double(const T& x) noexcept {
    return static_cast<double>(x);
}
template <class T>
inline T from_double(double x) noexcept {
    if constexpr (is_16bit_float<T>)
        return T(static_cast<float>(x));
    else
        return static_cast<T>(x);
}

}  // namespace distill::detail
