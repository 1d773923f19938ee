// distill/detail/loss_call.hpp - one loss call as the layers below the API see it: the options of
// any functor in one shape, and the caller's data as views.
#pragma once

#include <cstdint>
#include <span>

#include "../divergence.hpp"
#include "../logits.hpp"
#include "../reduction.hpp"
#include "../workspace.hpp"
#include "row_terms.hpp"

namespace distill::detail {

// The options of any loss functor, with the terms it has named explicitly.
struct loss_config {
    const char* loss_name = "";  // for messages: "kl_divergence", "cross_entropy", ...
    bool soft_term = false;      // the functor has a divergence term (teacher values needed)
    bool hard_term = false;      // the functor has a cross-entropy term (labels needed)
    double temperature = 1;
    double alpha = 1;            // weight of the divergence when the functor has both terms
    bool scale_by_t_squared = true;
    divergence_kind divergence = divergence_kind::forward_kl;
    divergence_params params;
    teacher_input teacher = teacher_input::logits;
    double label_smoothing = 0;
    // The hard term's class weights (PyTorch's `weight`): class_weight_count values of the functor's
    // compute type (compute_t: float for 16-bit logits), or none.
    const void* class_weights = nullptr;
    std::ptrdiff_t class_weight_count = 0;
    std::int64_t ignore_index = -100;
    reduction reduce = reduction::mean;
    double normalizer = 1;
    bool check_finite = false;
    workspace* exps_workspace = nullptr;  // the caller's room for e_q (workspace.hpp), or none
};

// T is the logits' storage type, G the gradient buffer's (T, or float for 16-bit logits).
template <class T, class Label, class G = T>
struct loss_call {
    matrix_view<const T> student;
    matrix_view<const T> teacher;  // read only when has_teacher
    std::span<const Label> labels; // empty: no labels
    per_row rows;
    matrix_view<G> grad;           // written only when has_grad
    bool has_teacher = false;      // false: the loss has no teacher (cross_entropy)
    bool has_grad = false;         // false: loss only
};

// The option structs' divergence as the kernels know it. Generalised JSD at beta = 0 and 1 is
// forward and reverse KL, as TRL defines its ends; the skews at 0 are the plain KLs.
struct divergence_choice {
    divergence_kind kind = divergence_kind::forward_kl;
    divergence_params params;
};

inline divergence_choice choose(const divergence& d) noexcept {
    divergence_choice c;
    struct visitor {
        divergence_choice& c;
        void operator()(const forward_kl&) const noexcept { c.kind = divergence_kind::forward_kl; }
        void operator()(const reverse_kl&) const noexcept { c.kind = divergence_kind::reverse_kl; }
        void operator()(const jensen_shannon& j) const noexcept {
            c.params.beta = j.beta;
            c.kind = j.beta == 0   ? divergence_kind::forward_kl
                     : j.beta == 1 ? divergence_kind::reverse_kl
                                   : divergence_kind::jensen_shannon;
        }
        // Skew 0 is exactly the plain KL (m = q, or m = p): computed as such, from the logits, rather
        // than through a mixture of probabilities that can underflow to 0 where the KL is finite.
        void operator()(const skew_kl& s) const noexcept {
            c.kind = s.skew == 0 ? divergence_kind::forward_kl : divergence_kind::skew_kl;
            c.params.skew = s.skew;
        }
        void operator()(const skew_reverse_kl& s) const noexcept {
            c.kind = s.skew == 0 ? divergence_kind::reverse_kl : divergence_kind::skew_reverse_kl;
            c.params.skew = s.skew;
        }
        void operator()(const total_variation&) const noexcept { c.kind = divergence_kind::total_variation; }
        void operator()(const decoupled_kd& d) const noexcept {
            c.kind = divergence_kind::decoupled_kd;
            c.params.target_weight = d.target_weight;
            c.params.non_target_weight = d.non_target_weight;
        }
    };
    std::visit(visitor{c}, d);
    return c;
}

inline const char* divergence_name(divergence_kind k) noexcept {
    switch (k) {
        case divergence_kind::forward_kl: return "forward_kl";
        case divergence_kind::reverse_kl: return "reverse_kl";
        case divergence_kind::jensen_shannon: return "jensen_shannon";
        case divergence_kind::skew_kl: return "skew_kl";
        case divergence_kind::skew_reverse_kl: return "skew_reverse_kl";
        case divergence_kind::total_variation: return "total_variation";
        case divergence_kind::decoupled_kd: return "decoupled_kd";
    }
    return "?";
}

}  // namespace distill::detail
