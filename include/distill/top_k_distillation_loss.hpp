// distill/top_k_distillation_loss.hpp - distillation from a teacher stored as its top k classes per
// row, the way language-model pipelines keep a teacher offline (k of a vocabulary of 32K to 256K):
//
//     L_i = alpha * T^2 * D(p_i, q_i) + (1 - alpha) * CE(s_i, y_i)
//
// as distillation_loss, with D over k + 1 categories: the row's k teacher classes and the tail (all
// other classes). The student is the full N x V logits; the teacher two N x k inputs, the classes'
// indices (any signed integer type; the padding index, -1 by default, fills a row that has fewer)
// and their values. The teacher costs O(N k) memory, never O(N V).
//
//     distill::top_k_distillation_loss<float> kd({.temperature = 1, .alpha = 1,
//                                                 .teacher = distill::teacher_input::log_probabilities});
//     kd.loss_and_grad(student, distill::top_k(indices, values), distill::no_labels, grad);
//
// Modes (docs/math.md derives each):
// - tail_bucket (the default): the values are the teacher's log-probabilities (or probabilities)
//   over the whole vocabulary; its tail is 1 - sum_k p, the student's the softmax mass outside the k
//   classes. A true divergence between two distributions on k + 1 categories, so KL is never
//   negative. A teacher tail of 0 adds nothing; a student tail of 0 with teacher tail > 0 is +inf.
// - renormalize: p renormalised over the k classes (softmax of the values, of logits / T or of
//   log-probabilities as they are); the tail's teacher mass is 0. Equal, for every divergence of the
//   family, to the divergence over the whole vocabulary with the other classes at p = 0.
// The temperature is that of the values' kind (teacher_input): logits are divided by T,
// log-probabilities and probabilities are the soft targets already, as in the dense losses.
// The gradient covers the student's whole row: every class gets its softmax term.
#pragma once

#include "detail/warnings_push.hpp"  // GCC 12 AVX-512 false positives; pairs with warnings_pop.hpp below

#include <cstdint>
#include <type_traits>
#include <vector>

#include "detail/evaluate.hpp"
#include "detail/loss_functor.hpp"
#include "detail/top_k_loss.hpp"
#include "distillation_loss.hpp"
#include "reduction.hpp"

namespace distill {

enum class top_k_mode { tail_bucket, renormalize };

struct top_k_options {
    top_k_mode mode = top_k_mode::tail_bucket;
    std::int64_t padding_index = -1;  // an index with this value is no class: the row has fewer than k
    // The teacher's top-k mass may exceed 1 by this much (rounding of stored log-probabilities);
    // more is refused. Within it, the k values are scaled to sum to 1 and the tail is 0.
    double mass_tolerance = 1e-4;
};

// The teacher's k classes per row: indices and values, each N x k (or [batch, time, k] tensors),
// Eigen row-major objects or matrix_refs. Holds references: build it in the call's expression.
template <class Indices, class Values>
struct top_k_teacher {
    const Indices& indices;
    const Values& values;
};

template <class Indices, class Values>
top_k_teacher<Indices, Values> top_k(const Indices& indices, const Values& values) noexcept {
    return {indices, values};
}

namespace detail {
template <class X>
inline constexpr bool is_top_k_teacher = false;
template <class I, class V>
inline constexpr bool is_top_k_teacher<top_k_teacher<I, V>> = true;
}  // namespace detail

// Calls: loss(student, top_k(indices, values), labels[, rows]) and loss_and_grad(student,
// top_k(indices, values), labels, grad[, rows]), each optionally with an executor first, and their
// non-throwing try_ twins (detail/loss_functor.hpp). Without labels (distill::no_labels) alpha must
// be 1, as for distillation_loss. Every option of distillation_options applies, except
// decoupled_kd; tail_bucket needs values that are log-probabilities or probabilities.
template <class Scalar>
class top_k_distillation_loss : public detail::loss_functor<top_k_distillation_loss<Scalar>, Scalar, 3> {
public:
    top_k_distillation_loss() = default;
    explicit top_k_distillation_loss(const distillation_options& options, const top_k_options& top = {})
        : options_(options), top_(top), class_weights_(options.class_weights.begin(), options.class_weights.end()) {
        this->check_options_or_throw();
#if defined(__cpp_exceptions)
        detail::throw_if_error(detail::check_top_k_options(config(), top_terms()));
#endif
    }
    const distillation_options& options() const noexcept { return options_; }
    const top_k_options& top_options() const noexcept { return top_; }

private:
    friend class detail::loss_functor<top_k_distillation_loss, Scalar, 3>;

    template <class Isa, class Exec, class Student, class Teacher, class Labels, class Grad>
    status run(Exec& exec, const Student& student, const Teacher& teacher, const Labels& labels, Grad&& grad,
               loss_value& out, per_row rows) const noexcept {
        using D = std::remove_cvref_t<Teacher>;
        static_assert(detail::is_top_k_teacher<D>, "distill: the teacher of top_k_distillation_loss is distill::top_k(indices, values)");
        out = {};
        if constexpr (detail::is_top_k_teacher<D>) {
            using I = detail::logits_scalar_t<decltype(teacher.indices)>;
            static_assert(std::is_integral_v<I> && std::is_signed_v<I>, "distill: teacher indices must be signed integers");
            using G = detail::gradient_scalar_t<Scalar, Grad>;
            detail::top_k_call<Scalar, I, typename detail::label_value<std::remove_cvref_t<Labels>>::type, G> call;
            if (status s = detail::view_of<Scalar, false>(student, "student logits", call.dense.student); !s) return s;
            if (status s = detail::make_view<false>(teacher.indices, "teacher indices", call.indices); !s) return s;
            if (status s = detail::view_of<Scalar, false>(teacher.values, "teacher values", call.values); !s) return s;
            if (status s = detail::label_span(labels, call.dense.labels); !s) return s;
            if constexpr (!detail::is_absent<Grad>) {
                if (status s = detail::view_of<G, true>(grad, "gradient buffer", call.dense.grad); !s) return s;
                call.dense.has_grad = true;
            }
            call.dense.rows = rows;
            return detail::run_top_k_loss<Isa>(exec, config(), top_terms(), call, out);
        }
        return {};
    }

    detail::top_k_terms top_terms() const noexcept {
        return {top_.mode == top_k_mode::renormalize ? detail::tail_treatment::renormalize : detail::tail_treatment::bucket,
                top_.padding_index, top_.mass_tolerance};
    }
    detail::loss_config config() const noexcept {
        return detail::distillation_config(options_, "top_k_distillation_loss", class_weights_);
    }

    distillation_options options_{};
    top_k_options top_{};
    std::vector<detail::compute_t<Scalar>> class_weights_;  // in the kernels' compute type
};

}  // namespace distill

#include "detail/warnings_pop.hpp"
