// The divergence family as the tests sweep it: representative parameter values of every
// divergence, their names for failure messages, the row-kernel constants a divergence turns into,
// and each divergence computed directly from its definition in double (the oracle of the value
// checks, independent of the engine's policies in detail/divergences.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include <distill/divergence.hpp>
#include <distill/detail/loss_call.hpp>
#include <distill/detail/row_terms.hpp>

namespace distill_test {

// Every divergence that needs no label, at the parameter values where its code takes different
// branches: beta 0 and 1 are mapped to forward and reverse KL by the API (TRL's ends), skew 0 is the
// plain KL and skew 1 makes the divergence 0; the others are interior values.
inline std::vector<distill::divergence> label_free_divergences() {
    return {distill::forward_kl{},
            distill::reverse_kl{},
            distill::jensen_shannon{0.5},
            distill::jensen_shannon{0.1},
            distill::jensen_shannon{0.0},
            distill::jensen_shannon{1.0},
            distill::skew_kl{0.1},
            distill::skew_kl{0.0},
            distill::skew_kl{1.0},
            distill::skew_reverse_kl{0.1},
            distill::skew_reverse_kl{0.7},
            distill::total_variation{}};
}

// The whole family: the label-free divergences and decoupled KD at the paper's weights
// (alpha 1, beta 8), at other weights, and with one of its two parts switched off.
inline std::vector<distill::divergence> all_divergences() {
    std::vector<distill::divergence> all = label_free_divergences();
    all.push_back(distill::decoupled_kd{});
    all.push_back(distill::decoupled_kd{0.5, 2.0});
    all.push_back(distill::decoupled_kd{1.0, 0.0});
    all.push_back(distill::decoupled_kd{0.0, 1.0});
    return all;
}

inline bool is_decoupled_kd(const distill::divergence& d) { return std::holds_alternative<distill::decoupled_kd>(d); }

inline std::string describe(const distill::divergence& d) {
    char text[96];
    struct visitor {
        char* out;
        void operator()(const distill::forward_kl&) const { std::snprintf(out, 96, "forward_kl"); }
        void operator()(const distill::reverse_kl&) const { std::snprintf(out, 96, "reverse_kl"); }
        void operator()(const distill::jensen_shannon& j) const { std::snprintf(out, 96, "jensen_shannon(beta %g)", j.beta); }
        void operator()(const distill::skew_kl& s) const { std::snprintf(out, 96, "skew_kl(skew %g)", s.skew); }
        void operator()(const distill::skew_reverse_kl& s) const { std::snprintf(out, 96, "skew_reverse_kl(skew %g)", s.skew); }
        void operator()(const distill::total_variation&) const { std::snprintf(out, 96, "total_variation"); }
        void operator()(const distill::decoupled_kd& d) const {
            std::snprintf(out, 96, "decoupled_kd(target %g, non-target %g)", d.target_weight, d.non_target_weight);
        }
    };
    std::visit(visitor{text}, d);
    return text;
}

inline const char* describe(distill::teacher_input t) {
    switch (t) {
        case distill::teacher_input::logits: return "teacher logits";
        case distill::teacher_input::log_probabilities: return "teacher log-probabilities";
        case distill::teacher_input::probabilities: return "teacher probabilities";
    }
    return "?";
}

// Where the divergence is +inf because one side masks a class the other gives mass: forward-type
// divergences (forward KL, skew KL at skew 0, decoupled KD) when the student masks one, reverse-type
// (reverse KL, skew reverse KL at skew 0) when the teacher does. The mixtures of the others are
// never 0 where p or q is not.
inline bool infinite_where_student_masks(distill::detail::divergence_kind kind, const distill::detail::divergence_params& k) {
    using distill::detail::divergence_kind;
    return kind == divergence_kind::forward_kl || kind == divergence_kind::decoupled_kd ||
           (kind == divergence_kind::skew_kl && k.skew == 0);
}
inline bool infinite_where_teacher_masks(distill::detail::divergence_kind kind, const distill::detail::divergence_params& k) {
    using distill::detail::divergence_kind;
    return kind == divergence_kind::reverse_kl || (kind == divergence_kind::skew_reverse_kl && k.skew == 0);
}
inline bool infinite_where_teacher_masks(const distill::divergence& d) {
    const auto c = distill::detail::choose(d);
    return infinite_where_teacher_masks(c.kind, c.params);
}

// Sets the divergence of hand-built row constants (kernel-level tests), as the API does.
inline void set_divergence(distill::detail::row_terms& k, const distill::divergence& d) {
    const auto c = distill::detail::choose(d);
    k.divergence = c.kind;
    k.params = c.params;
}

// Sets what the teacher's values are in hand-built row constants, as the API does: the temperature
// applies to teacher logits only.
inline void set_teacher_input(distill::detail::row_terms& k, distill::teacher_input t) {
    k.teacher_inv_temperature = t == distill::teacher_input::logits ? k.inv_temperature : 1.0;
    k.teacher_probabilities = t == distill::teacher_input::probabilities;
}

// ---- the definitions, directly ----

// softmax(x * scale) in double, by the textbook two-pass formula.
inline std::vector<double> softmax_of(const std::vector<double>& x, double scale) {
    double m = -std::numeric_limits<double>::infinity();
    for (double v : x) m = std::max(m, v);
    std::vector<double> p(x.size());
    double z = 0;
    for (std::size_t c = 0; c < x.size(); ++c) z += p[c] = std::exp((x[c] - m) * scale);
    for (double& v : p) v /= z;
    return p;
}

// The teacher's distribution from its values, as family_api.md defines it: softmax(t / T) for
// logits, softmax(t) for log-probabilities, t / sum t for probabilities.
inline std::vector<double> teacher_distribution(const std::vector<double>& t, distill::teacher_input input, double T) {
    if (input == distill::teacher_input::logits) return softmax_of(t, 1 / T);
    if (input == distill::teacher_input::log_probabilities) return softmax_of(t, 1.0);
    double sum = 0;
    for (double v : t) sum += v;
    std::vector<double> p(t.size());
    for (std::size_t c = 0; c < t.size(); ++c) p[c] = t[c] / sum;
    return p;
}

// KL(a || b) = sum a log(a / b) over the given classes, 0 log 0 = 0.
inline double kl_of(const std::vector<double>& a, const std::vector<double>& b) {
    double d = 0;
    for (std::size_t c = 0; c < a.size(); ++c)
        if (a[c] != 0) d += a[c] * std::log(a[c] / b[c]);
    return d;
}

// D(p, q) read off the definitions in distill/divergence.hpp (and family_api.md): mixtures formed
// and logs taken elementwise; decoupled KD from its binary and renormalised non-target
// distributions, the non-target masses summed rather than taken as 1 - p_y.
inline double divergence_by_definition(const distill::divergence& d, const std::vector<double>& p,
                                       const std::vector<double>& q, std::int64_t label) {
    const std::size_t C = p.size();
    const auto mixture = [&](double wp) {
        std::vector<double> m(C);
        for (std::size_t c = 0; c < C; ++c) m[c] = wp * p[c] + (1 - wp) * q[c];
        return m;
    };
    if (std::holds_alternative<distill::forward_kl>(d)) return kl_of(p, q);
    if (std::holds_alternative<distill::reverse_kl>(d)) return kl_of(q, p);
    if (const auto* j = std::get_if<distill::jensen_shannon>(&d)) {
        if (j->beta == 0) return kl_of(p, q);  // TRL's ends
        if (j->beta == 1) return kl_of(q, p);
        const auto m = mixture(j->beta);
        return j->beta * kl_of(p, m) + (1 - j->beta) * kl_of(q, m);
    }
    if (const auto* s = std::get_if<distill::skew_kl>(&d)) return kl_of(p, mixture(s->skew));
    if (const auto* s = std::get_if<distill::skew_reverse_kl>(&d)) return kl_of(q, mixture(1 - s->skew));
    if (std::holds_alternative<distill::total_variation>(d)) {
        double tv = 0;
        for (std::size_t c = 0; c < C; ++c) tv += std::abs(p[c] - q[c]);
        return 0.5 * tv;
    }
    const auto& w = std::get<distill::decoupled_kd>(d);
    const auto y = static_cast<std::size_t>(label);
    double P = 0, Q = 0;
    std::vector<double> p_hat, q_hat;
    for (std::size_t c = 0; c < C; ++c)
        if (c != y) P += p[c], Q += q[c], p_hat.push_back(p[c]), q_hat.push_back(q[c]);
    for (double& v : p_hat) v /= P;
    for (double& v : q_hat) v /= Q;
    const double tckd = kl_of({p[y], P}, {q[y], Q});
    const double nckd = P > 0 ? kl_of(p_hat, q_hat) : 0.0;
    // A part of weight 0 is left out (never 0 * inf), as the library does.
    return (w.target_weight != 0 ? w.target_weight * tckd : 0.0) +
           (w.non_target_weight != 0 ? w.non_target_weight * nckd : 0.0);
}

}  // namespace distill_test
