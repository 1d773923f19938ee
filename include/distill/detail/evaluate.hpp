// distill/detail/evaluate.hpp - the glue every loss functor shares: turn the caller's objects into
// views (refusing what cannot be read without a copy) and run the fused loss.
#pragma once

#include <cstdint>
#include <span>
#include <type_traits>

#include "../logits.hpp"
#include "../reduction.hpp"
#include "../status.hpp"
#include "loss_call.hpp"
#include "schedule.hpp"
#include "storage_type.hpp"

namespace distill::detail {

// Stands for an argument a loss does not take (cross_entropy has no teacher, kl_divergence no
// labels, loss() no gradient).
struct absent {};

template <class X>
inline constexpr bool is_absent = std::is_same_v<std::remove_cvref_t<X>, absent>;

template <class Labels>
struct label_value {
    using type = label_value_t<Labels>;
};
template <>
struct label_value<absent> {
    using type = std::int64_t;
};

// The scalar type of the gradient buffer `Grad` of a functor of scalar type Scalar: the buffer's own
// when the functor takes it (Scalar, or float for a 16-bit Scalar), else Scalar (and view_of then
// refuses the buffer with its message).
template <class Scalar, class Grad, class = void>
struct gradient_scalar {
    using type = Scalar;
};
template <class Scalar, class Grad>
struct gradient_scalar<Scalar, Grad, std::enable_if_t<is_eigen_dense<Grad> || is_eigen_tensor<Grad> || is_matrix_ref<Grad>>> {
    using type = std::conditional_t<is_gradient_scalar<Scalar, logits_scalar_t<Grad>>, logits_scalar_t<Grad>, Scalar>;
};
template <class Scalar, class Grad>
using gradient_scalar_t = typename gradient_scalar<Scalar, std::remove_cvref_t<Grad>>::type;

// The view of a logits argument, which must be an Eigen object or a matrix_ref of the functor's scalar type: anything
// else is one of these static_asserts alone (make_view is not even instantiated with it).
template <class Scalar, bool Writable, class X, class V>
status view_of(X& x, const char* name, V& out) noexcept {
    using D = std::remove_cvref_t<X>;
    if constexpr (!(is_eigen_dense<D> || is_eigen_tensor<D> || is_matrix_ref<D>)) {
        static_assert(is_eigen_dense<D> || is_eigen_tensor<D> || is_matrix_ref<D>,
                      "distill: logits must be an Eigen dense object (row-major), an Eigen::Tensor/TensorMap or a "
                      "distill::matrix_ref");
        return {};
    } else if constexpr (!std::is_same_v<logits_scalar_t<X>, Scalar>) {
        static_assert(std::is_same_v<logits_scalar_t<X>, Scalar>,
                      "distill: the logits' scalar type must be the functor's (e.g. float logits with "
                      "distill::kl_divergence<float>); a gradient buffer may also be float when the functor's "
                      "scalar type is Eigen::bfloat16 or Eigen::half");
        return {};
    } else {
        return make_view<Writable>(x, name, out);
    }
}

template <class Scalar, class Isa, class Exec, class Student, class Teacher, class Labels, class Grad>
status evaluate(Exec& exec, const loss_config& o, const Student& student, const Teacher& teacher,
                const Labels& labels, Grad&& grad, per_row rows, loss_value& out) noexcept {
    out = {};
    using G = gradient_scalar_t<Scalar, Grad>;
    loss_call<Scalar, typename label_value<std::remove_cvref_t<Labels>>::type, G> call;
    if (status s = view_of<Scalar, false>(student, "student logits", call.student); !s) return s;
    if constexpr (!is_absent<Teacher>) {
        if (status s = view_of<Scalar, false>(teacher, "teacher logits", call.teacher); !s) return s;
        call.has_teacher = true;
    }
    if constexpr (!is_absent<Labels>)
        if (status s = label_span(labels, call.labels); !s) return s;
    if constexpr (!is_absent<Grad>) {
        if (status s = view_of<G, true>(grad, "gradient buffer", call.grad); !s) return s;
        call.has_grad = true;
    }
    call.rows = rows;
    return run_loss<Isa>(exec, o, call, out);
}

}  // namespace distill::detail
