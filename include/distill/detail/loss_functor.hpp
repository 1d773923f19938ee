// distill/detail/loss_functor.hpp - every call form of a loss functor, written once.
//
// A functor derives from loss_functor<Derived, Scalar, InputCount> with the number of inputs it
// takes before the gradient (two: student and teacher, or student and labels; three: student,
// teacher and labels) and says how to run one call (`run`). This base gives it the forms users call: `try_loss` and
// `try_loss_and_grad`, which return a status and never throw, and `loss` and `loss_and_grad`, which
// throw the status's error; each with or without an executor first. Every form takes a last,
// defaulted template argument, the kernels' instruction set, so that units built with different
// flags never share an instantiation (detail/backend.hpp).
#pragma once

#include <type_traits>
#include <utility>

#include "../executor.hpp"
#include "../reduction.hpp"
#include "../status.hpp"
#include "backend.hpp"
#include "evaluate.hpp"
#include "storage_type.hpp"

namespace distill::detail {

template <class Derived, class Scalar, int InputCount>
class loss_functor {
    static_assert(is_loss_scalar<Scalar>,
                  "distill: the loss functors are defined for float, double, Eigen::bfloat16 and Eigen::half");

public:
    using scalar_type = Scalar;
    static constexpr int input_count = InputCount;  // inputs before the gradient

    // ---- two inputs ----
    template <executor Exec, class A, class B, class Isa = isa>
        requires(InputCount == 2)
    status try_loss(Exec&& exec, const A& a, const B& b, loss_value& out, per_row rows = {}) const noexcept {
        return self().template run<Isa>(exec, a, b, absent{}, out, rows);
    }
    template <executor Exec, class A, class B, class Grad, class Isa = isa>
        requires(InputCount == 2)
    status try_loss_and_grad(Exec&& exec, const A& a, const B& b, Grad&& grad, loss_value& out,
                             per_row rows = {}) const noexcept {
        return self().template run<Isa>(exec, a, b, std::forward<Grad>(grad), out, rows);
    }
    template <class A, class B, class Isa = isa>
        requires(InputCount == 2 && !executor<A>)
    status try_loss(const A& a, const B& b, loss_value& out, per_row rows = {}) const noexcept {
        return try_loss<const sequential_executor&, A, B, Isa>(sequential, a, b, out, rows);
    }
    template <class A, class B, class Grad, class Isa = isa>
        requires(InputCount == 2 && !executor<A>)
    status try_loss_and_grad(const A& a, const B& b, Grad&& grad, loss_value& out, per_row rows = {}) const noexcept {
        return try_loss_and_grad<const sequential_executor&, A, B, Grad, Isa>(sequential, a, b, std::forward<Grad>(grad), out, rows);
    }

    // ---- three inputs ----
    template <executor Exec, class A, class B, class C, class Isa = isa>
        requires(InputCount == 3)
    status try_loss(Exec&& exec, const A& a, const B& b, const C& c, loss_value& out,
                    per_row rows = {}) const noexcept {
        return self().template run<Isa>(exec, a, b, c, absent{}, out, rows);
    }
    template <executor Exec, class A, class B, class C, class Grad, class Isa = isa>
        requires(InputCount == 3)
    status try_loss_and_grad(Exec&& exec, const A& a, const B& b, const C& c, Grad&& grad, loss_value& out,
                             per_row rows = {}) const noexcept {
        return self().template run<Isa>(exec, a, b, c, std::forward<Grad>(grad), out, rows);
    }
    template <class A, class B, class C, class Isa = isa>
        requires(InputCount == 3 && !executor<A>)
    status try_loss(const A& a, const B& b, const C& c, loss_value& out, per_row rows = {}) const noexcept {
        return try_loss<const sequential_executor&, A, B, C, Isa>(sequential, a, b, c, out, rows);
    }
    template <class A, class B, class C, class Grad, class Isa = isa>
        requires(InputCount == 3 && !executor<A>)
    status try_loss_and_grad(const A& a, const B& b, const C& c, Grad&& grad, loss_value& out,
                             per_row rows = {}) const noexcept {
        return try_loss_and_grad<const sequential_executor&, A, B, C, Grad, Isa>(sequential, a, b, c, std::forward<Grad>(grad), out, rows);
    }

#if defined(__cpp_exceptions)
    // ---- the throwing forms: the result, or std::invalid_argument / std::out_of_range ----
    template <executor Exec, class A, class B, class Isa = isa>
        requires(InputCount == 2)
    loss_value loss(Exec&& exec, const A& a, const B& b, per_row rows = {}) const {
        return value_or_throw([&](loss_value& v) { return try_loss<Exec, A, B, Isa>(std::forward<Exec>(exec), a, b, v, rows); });
    }
    template <executor Exec, class A, class B, class Grad, class Isa = isa>
        requires(InputCount == 2)
    loss_value loss_and_grad(Exec&& exec, const A& a, const B& b, Grad&& grad, per_row rows = {}) const {
        return value_or_throw(
            [&](loss_value& v) { return try_loss_and_grad<Exec, A, B, Grad, Isa>(std::forward<Exec>(exec), a, b, std::forward<Grad>(grad), v, rows); });
    }
    template <class A, class B, class Isa = isa>
        requires(InputCount == 2 && !executor<A>)
    loss_value loss(const A& a, const B& b, per_row rows = {}) const {
        return loss<const sequential_executor&, A, B, Isa>(sequential, a, b, rows);
    }
    template <class A, class B, class Grad, class Isa = isa>
        requires(InputCount == 2 && !executor<A>)
    loss_value loss_and_grad(const A& a, const B& b, Grad&& grad, per_row rows = {}) const {
        return loss_and_grad<const sequential_executor&, A, B, Grad, Isa>(sequential, a, b, std::forward<Grad>(grad), rows);
    }
    template <executor Exec, class A, class B, class C, class Isa = isa>
        requires(InputCount == 3)
    loss_value loss(Exec&& exec, const A& a, const B& b, const C& c, per_row rows = {}) const {
        return value_or_throw([&](loss_value& v) { return try_loss<Exec, A, B, C, Isa>(std::forward<Exec>(exec), a, b, c, v, rows); });
    }
    template <executor Exec, class A, class B, class C, class Grad, class Isa = isa>
        requires(InputCount == 3)
    loss_value loss_and_grad(Exec&& exec, const A& a, const B& b, const C& c, Grad&& grad, per_row rows = {}) const {
        return value_or_throw(
            [&](loss_value& v) { return try_loss_and_grad<Exec, A, B, C, Grad, Isa>(std::forward<Exec>(exec), a, b, c, std::forward<Grad>(grad), v, rows); });
    }
    template <class A, class B, class C, class Isa = isa>
        requires(InputCount == 3 && !executor<A>)
    loss_value loss(const A& a, const B& b, const C& c, per_row rows = {}) const {
        return loss<const sequential_executor&, A, B, C, Isa>(sequential, a, b, c, rows);
    }
    template <class A, class B, class C, class Grad, class Isa = isa>
        requires(InputCount == 3 && !executor<A>)
    loss_value loss_and_grad(const A& a, const B& b, const C& c, Grad&& grad, per_row rows = {}) const {
        return loss_and_grad<const sequential_executor&, A, B, C, Grad, Isa>(sequential, a, b, c, std::forward<Grad>(grad), rows);
    }
#endif

protected:
    // Checks the options once at construction, as the functors promise.
    void check_options_or_throw() const {
#if defined(__cpp_exceptions)
        throw_if_error(check_options(self().config()));
#endif
    }

private:
#if defined(__cpp_exceptions)
    template <class Try>
    static loss_value value_or_throw(Try&& attempt) {
        loss_value v;
        throw_if_error(attempt(v));
        return v;
    }
#endif
    const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

}  // namespace distill::detail
