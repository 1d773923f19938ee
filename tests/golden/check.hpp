// tests/golden/check.hpp - runs a loss functor on a golden case and compares every value the case
// records (tests/golden.test.cpp, tests/golden_family.test.cpp, tests/golden_top_k.test.cpp). The
// cases come from golden.hpp's loader; the tolerances and the scales they are relative to are
// explained at `tolerance`.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <distill/distill.hpp>

#include "golden.hpp"

namespace golden {

template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Tolerances, relative to the scales stored with each case (tests/golden/README.md): `loss_scale`,
// the reduced sum of the loss's terms measured as T^2 sum p (|log p| + |log q| + 2) for KL and
// (1 - eps)(|log r_y| + 1) + eps/C sum (|log r| + 1) for CE (each other divergence has its own
// measure of the same kind, README.md), and per row `grad_scale`, the row's reduction weight times
// the largest alpha T (q + p) + (1 - alpha)(r + target) over its classes (likewise per divergence).
// Every log-probability is x - log Z with Z in [1, C], so it carries a few ulps of max(1, |log p|),
// and every probability a few ulps of the row's largest; these scales turn that into a bound on the
// result however close to 0 the result is (KL of nearly equal rows, q - p where both are large).
// The expected values are float64 evaluations of the very inputs the library gets, so only the
// library's own rounding is measured.
//
// float (ulp 6e-8; the library computes probabilities in float and accumulates partial sums in
// double):
//   loss 1e-6 of loss_scale, gradient and softmax 2e-6 of their scales, log_softmax 1e-6 of
//   |s/T| + |log_softmax|: 15 to 30 float ulps. Scaling logits by 1/T in float already costs
//   eps*|s/T| in an exponent (a few ulps here, up to ~100 ulps in the large-offset cases at T = 0.5
//   before the max is subtracted); the SIMD exp adds ~1 ulp; q - p, r - target one more. On x86-64
//   with AVX2 the library stays below 0.1 of each tolerance. For scale: float32 PyTorch's error
//   reaches 2.6e-5 of grad_scale at C = 32000 (it sums exp in float); the generator prints it.
// double (ulp 1.1e-16):
//   1e-13 of the same scales for everything (~900 ulps): row sums over up to C = 32000 terms, whose
//   rounding grows like sqrt(C) eps in a plain loop (the DISTILL_NO_SIMD reference path) and C eps
//   at worst (3.6e-12); observed below 0.03 of the tolerance.
// Where a scale is 0 the value must be exact: ignored and masked-out rows (loss 0, gradient row 0),
// every row ignored under mean (0, not nan), C = 1 (every loss and gradient is exactly 0). An
// expected +inf (a masked class the definition divides by) must be +inf exactly.
template <class T>
struct tolerance;
template <>
struct tolerance<float> {
    static constexpr double loss = 1e-6, grad = 2e-6, softmax = 2e-6, log_softmax = 1e-6;
};
template <>
struct tolerance<double> {
    static constexpr double loss = 1e-13, grad = 1e-13, softmax = 1e-13, log_softmax = 1e-13;
};

template <class T>
constexpr const char* dtype_name() {
    return std::is_same_v<T, float> ? "float" : "double";
}

inline const std::vector<golden_case>& all_cases() {
    static const std::vector<golden_case> cases = load(DISTILL_GOLDEN_DIR);
    return cases;
}

// The cases of one kind and dtype; `family` selects those that name a divergence (the divergence
// family: divergence_loss, and distillation_loss with its divergence option) or those that do not.
template <class T>
std::vector<const golden_case*> cases_of(const std::string& kind, bool family = false) {
    std::vector<const golden_case*> out;
    for (const auto& c : all_cases())
        if (c.text("kind") == kind && c.text("dtype") == dtype_name<T>() && c.has("divergence") == family)
            out.push_back(&c);
    return out;
}

template <class T>
matrix<T> logits(const golden_case& c, const std::string& key) {
    const auto values = c.array<T>(key);
    const auto n = c.integer("rows"), cols = c.integer("cols");
    REQUIRE(values.size() == static_cast<std::size_t>(n * cols));
    return Eigen::Map<const matrix<T>>(values.data(), n, cols);
}

inline distill::reduction reduction_of(const golden_case& c) {
    const std::string& r = c.text("reduce");
    if (r == "none") return distill::reduction::none;
    if (r == "sum") return distill::reduction::sum;
    if (r == "mean") return distill::reduction::mean;
    if (r == "divide_by") return distill::reduction::divide_by;
    FAIL("unknown reduction '" << r << "'");
    return distill::reduction::mean;
}

// The case's divergence with its parameters, as the options take it.
inline distill::divergence divergence_of(const golden_case& c) {
    const std::string& name = c.text("divergence");
    if (name == "forward_kl") return distill::forward_kl{};
    if (name == "reverse_kl") return distill::reverse_kl{};
    if (name == "jensen_shannon") return distill::jensen_shannon{.beta = c.number("beta")};
    if (name == "skew_kl") return distill::skew_kl{.skew = c.number("skew")};
    if (name == "skew_reverse_kl") return distill::skew_reverse_kl{.skew = c.number("skew")};
    if (name == "total_variation") return distill::total_variation{};
    if (name == "decoupled_kd")
        return distill::decoupled_kd{.target_weight = c.number("target_weight"),
                                     .non_target_weight = c.number("non_target_weight")};
    FAIL("unknown divergence '" << name << "'");
    return distill::forward_kl{};
}

inline distill::teacher_input teacher_input_of(const golden_case& c) {
    const std::string& t = c.text("teacher_input");
    if (t == "logits") return distill::teacher_input::logits;
    if (t == "log_probabilities") return distill::teacher_input::log_probabilities;
    if (t == "probabilities") return distill::teacher_input::probabilities;
    FAIL("unknown teacher_input '" << t << "'");
    return distill::teacher_input::logits;
}

// Worst |got - expected| / tolerance over one quantity (1 = at the tolerance), for the headroom report.
struct headroom {
    std::map<std::string, double> worst;  // by quantity
    void note(double ratio, const std::string& what) {
        double& w = worst[what];
        if (!(ratio <= w)) w = ratio;
    }
    void merge(const headroom& other) {
        for (const auto& [what, ratio] : other.worst) note(ratio, what);
    }
};

// One CHECK per compared array: finds the element furthest outside (or closest to) its tolerance
// and reports it, so a failure names the element, expected, got and allowed difference.
struct comparison {
    std::size_t index = 0;
    double expected = 0, got = 0, allowed = 0, ratio = 0;
    std::size_t compared = 0;  // elements with a reference (NaN = none, README.md)
};

template <class Got, class Allowed>
comparison compare(const std::vector<double>& expected, const Got& got, Allowed allowed) {
    comparison worst;
    worst.ratio = -1;
    std::size_t compared = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        if (std::isnan(expected[i])) continue;  // PyTorch's value is not finite there: no reference
        ++compared;
        const double g = static_cast<double>(got(i));
        const double diff = std::abs(g - expected[i]);
        const double tol = allowed(i);
        double ratio;
        if (g == expected[i]) ratio = 0;  // includes equal infinities
        else if (std::isnan(diff) || std::isinf(diff)) ratio = std::numeric_limits<double>::infinity();
        else ratio = tol > 0 ? diff / tol : std::numeric_limits<double>::infinity();
        if (ratio > worst.ratio) worst = {i, expected[i], g, tol, ratio};
    }
    worst.compared = compared;
    return worst;
}

#define GOLDEN_CHECK_COMPARISON(label, cmp, cols, report)                                                   \
    do {                                                                                                    \
        const ::golden::comparison& cmp_ = (cmp);                                                           \
        INFO(std::setprecision(17) << label << ": worst element row " << cmp_.index / (cols) << " column "  \
                                   << cmp_.index % (cols) << ": expected " << cmp_.expected << ", got "     \
                                   << cmp_.got << ", allowed difference " << cmp_.allowed << " ("           \
                                   << cmp_.ratio << " x tolerance)");                                       \
        CHECK(cmp_.compared > 0);                                                                           \
        CHECK(cmp_.ratio <= 1.0);                                                                           \
        (report).note(cmp_.ratio, label);                                                                   \
    } while (0)

inline void check_scalar(const char* label, double expected, double got, double allowed, headroom& report) {
    const std::vector<double> e{expected};
    const auto cmp = compare(e, [&](std::size_t) { return got; }, [&](std::size_t) { return allowed; });
    GOLDEN_CHECK_COMPARISON(label, cmp, 1, report);
}

template <class T>
void print_headroom(const std::string& what, const headroom& h, std::size_t cases) {
    std::printf("golden %-17s %-6s %3zu cases, worst |got - expected| / tolerance:", what.c_str(), dtype_name<T>(),
                cases);
    for (const auto& [quantity, ratio] : h.worst) std::printf(" %s %.2g;", quantity.c_str(), ratio);
    std::printf("\n");
}

// Runs one loss case through `call(grad_or_null, per_row)` (loss() when grad is null) and compares
// everything the case records.
template <class T, class Call>
void check_loss_case(const golden_case& c, Call&& call, headroom& report) {
    const auto n = c.integer("rows"), cols = c.integer("cols");
    const bool none = c.text("reduce") == "none";
    const double loss_scale = c.has("loss_scale") ? c.number("loss_scale") : 0.0;
    const auto row_loss_scale = c.has("row_loss_scale") ? c.array<double>("row_loss_scale")
                                                        : std::vector<double>(static_cast<std::size_t>(n), 0.0);
    const auto grad_scale = c.has("grad_scale") ? c.array<double>("grad_scale")
                                                : std::vector<double>(static_cast<std::size_t>(n), 0.0);
    const double loss_tol = tolerance<T>::loss * loss_scale;
    std::vector<std::uint8_t> mask;
    if (c.has("mask")) mask = c.array<std::uint8_t>("mask");
    INFO("definitions the expressions use (executed first): "
         << (c.has("expr_defs") ? c.text("expr_defs") : std::string("none")));
    INFO("expected loss (total) = PyTorch float64: " << c.text("expr"));
    INFO("note: " << (c.has("note") ? c.text("note") : std::string("none: every expected value is PyTorch's")));

    for (const bool with_grad : {false, true}) {
        INFO((with_grad ? "loss_and_grad()" : "loss()"));
        matrix<T> grad = matrix<T>::Constant(n, cols, std::numeric_limits<T>::quiet_NaN());
        std::vector<double> rows(static_cast<std::size_t>(n), std::numeric_limits<double>::quiet_NaN());
        distill::per_row extra{.mask = std::span<const std::uint8_t>(mask),
                               .losses = none ? std::span<double>(rows) : std::span<double>()};
        const distill::loss_value v = call(with_grad ? &grad : nullptr, extra);

        check_scalar("loss_value::total", c.number("expect_total"), v.total, loss_tol, report);
        {
            INFO("expected soft = " << (c.has("expr_soft") ? c.text("expr_soft") : std::string("0 (no soft term)")));
            check_scalar("loss_value::soft", c.number("expect_soft"), v.soft, loss_tol, report);
        }
        {
            INFO("expected hard = " << (c.has("expr_hard") ? c.text("expr_hard") : std::string("0 (no CE term)")));
            check_scalar("loss_value::hard", c.number("expect_hard"), v.hard, loss_tol, report);
        }
        {
            INFO("expected rows_counted: rows with mask set and label != ignore_index");
            CHECK(v.rows_counted == c.integer("expect_rows_counted"));
        }
        if (none) {
            INFO("expected per-row losses = PyTorch float64: " << c.text("expr_rows"));
            const auto expected = c.array<double>("expect_rows");
            const auto cmp = compare(
                expected, [&](std::size_t i) { return rows[i]; },
                [&](std::size_t i) { return tolerance<T>::loss * row_loss_scale[i]; });
            GOLDEN_CHECK_COMPARISON("per_row::losses", cmp, 1, report);
        }
        if (with_grad) {
            INFO("expected gradient = PyTorch float64 autograd: " << c.text("expr_grad"));
            const auto expected = c.array<double>("expect_grad");
            REQUIRE(expected.size() == static_cast<std::size_t>(n * cols));
            const auto cmp = compare(
                expected, [&](std::size_t i) { return grad.data()[i]; },
                [&](std::size_t i) { return tolerance<T>::grad * grad_scale[i / static_cast<std::size_t>(cols)]; });
            GOLDEN_CHECK_COMPARISON("gradient", cmp, static_cast<std::size_t>(cols), report);
        }
    }
}

}  // namespace golden
