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

namespace distill::detail {

// Stands for an argument a loss does not take (cross_entropy has no teacher, kl_divergence no
// labels, loss() no gradient).
struct absent {};

template <class X>
inline constexpr bool is_absent = std::is_same_v<std::remove_cvref_t<X>, absent>;

template <class Labels>
struct label_value {
    using type = typename decltype(label_span(std::declval<const Labels&>()))::value_type;
};
template <>
struct label_value<absent> {
    using type = std::int64_t;
};

template <class Scalar, class X>
constexpr void check_scalar() {
    static_assert(std::is_same_v<logits_scalar_t<X>, Scalar>,
                  "distill: the logits' scalar type must be the functor's (e.g. float logits with "
                  "distill::kl_divergence<float>)");
}

template <class Scalar, class Isa, class Exec, class Student, class Teacher, class Labels, class Grad>
status evaluate(Exec& exec, const loss_config& o, const Student& student, const Teacher& teacher,
                const Labels& labels, Grad&& grad, per_row rows, loss_value& out) noexcept {
    out = {};
    loss_call<Scalar, typename label_value<std::remove_cvref_t<Labels>>::type> call;
    check_scalar<Scalar, Student>();
    if (status s = make_view<false>(student, "student logits", call.student); !s) return s;
    if constexpr (!is_absent<Teacher>) {
        check_scalar<Scalar, Teacher>();
        if (status s = make_view<false>(teacher, "teacher logits", call.teacher); !s) return s;
        call.has_teacher = true;
    }
    if constexpr (!is_absent<Labels>) call.labels = label_span(labels);
    if constexpr (!is_absent<Grad>) {
        check_scalar<Scalar, Grad>();
        if (status s = make_view<true>(grad, "gradient buffer", call.grad); !s) return s;
        call.has_grad = true;
    }
    call.rows = rows;
    return run_loss<Isa>(exec, o, call, out);
}

}  // namespace distill::detail
