// A new divergence is one policy: the squared Hellinger distance, defined here and nowhere in the
// library, runs through both row kernels (detail::reference::fused_row_with and
// detail::simd::fused_row_with) unchanged, and both match a direct double computation of its value
// and of its gradient.
//
//     H^2(p, q) = 1/2 sum_c (sqrt p_c - sqrt q_c)^2 = 1 - B,   B = sum_c sqrt(p_c q_c)
//
// (the Bhattacharyya coefficient B). The sum of squares is accumulated rather than 1 - B, which
// would cancel to nothing when p is close to q. Through the student's softmax (detail/divergences.hpp:
// dD/dx = q (g - sum_k q_k g_k) with g = dD/dq = -1/2 sqrt(p / q)):
//     dH^2/dx_c = 1/2 (q_c B - sqrt(p_c q_c)).
// sqrt(p) sqrt(q) rather than sqrt(p q), so that two small probabilities do not underflow their product.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <distill/distill.hpp>
// Named explicitly: DISTILL_NO_SIMD leaves it out of distill.hpp, and the SIMD kernels are tested in every build.
#include <distill/detail/simd/fused_row.hpp>

#include "test_support.hpp"

namespace {

namespace detail = distill::detail;

// "No label" (the rows here have no hard term), read through a volatile: given the constant -1,
// GCC 12 warns (-Warray-bounds) about the kernels' s[label] on the hard-term path these rows never take.
const volatile std::int64_t no_label = -1;

// One expression for a double and for an xsimd batch: std::sqrt, or xsimd::sqrt found by
// argument-dependent lookup.
template <class V>
V square_root(const V& x) {
    using std::sqrt;
    return sqrt(x);
}

// The policy, in the shape of those in detail/divergences.hpp.
struct squared_hellinger_policy {
    static constexpr int sum_count = 2;
    static constexpr bool excludes_label = false;

    template <class V>
    static void accumulate(const detail::element<V>& e, const detail::divergence_params&,
                           detail::divergence_sums<V>& sum) noexcept {
        const V root_p = square_root(e.p), root_q = square_root(e.q);
        const V difference = root_p - root_q;
        sum[0] += difference * difference;
        sum[1] += root_p * root_q;
    }
    static detail::divergence_value finish(const detail::divergence_sums<double>& sum, const detail::divergence_params&,
                                           const detail::target_element&) noexcept {
        return {0.5 * sum[0], sum[1]};  // the value, and B for the gradient
    }
    template <class V>
    static V gradient(const detail::element<V>& e, const detail::divergence_value& r,
                      const detail::divergence_params&) noexcept {
        return V(0.5) * (e.q * V(r.a) - square_root(e.p) * square_root(e.q));
    }
};

// ---- the direct computation, in double ----

std::vector<double> softmax(const std::vector<double>& x) {
    double m = -std::numeric_limits<double>::infinity(), z = 0;
    for (double v : x) m = std::max(m, v);
    std::vector<double> p(x.size());
    for (std::size_t c = 0; c < x.size(); ++c) z += p[c] = std::exp(x[c] - m);
    for (double& v : p) v /= z;
    return p;
}

// H^2 from its definition, with q = softmax(x).
double squared_hellinger(const std::vector<double>& p, const std::vector<double>& x) {
    const std::vector<double> q = softmax(x);
    double sum = 0;
    for (std::size_t c = 0; c < p.size(); ++c) sum += (std::sqrt(p[c]) - std::sqrt(q[c])) * (std::sqrt(p[c]) - std::sqrt(q[c]));
    return 0.5 * sum;
}

// dH^2/dx by central differences of the definition (independent of the closed form the policy
// uses): step 1e-6, truncation error h^2 |D'''| / 6 below 1e-12 (D''' is a few units for
// probabilities), rounding error about 1e-16 / h = 1e-10. Each entry costs two evaluations of O(C),
// so rows longer than 128 classes have every stride-th entry (and the last) differentiated; the
// others are NaN (not checked).
std::vector<double> gradient_by_finite_differences(const std::vector<double>& p, std::vector<double> x) {
    const double h = 1e-6;
    const std::size_t stride = std::max<std::size_t>(1, x.size() / 128);
    std::vector<double> g(x.size(), std::numeric_limits<double>::quiet_NaN());
    std::vector<std::size_t> entries;
    for (std::size_t c = 0; c < x.size(); c += stride) entries.push_back(c);
    if (entries.back() + 1 != x.size()) entries.push_back(x.size() - 1);
    for (std::size_t c : entries) {
        g[c] = 0;
        if (x[c] == -std::numeric_limits<double>::infinity()) continue;  // a masked class: q_c = 0 whatever x does
        const double keep = x[c];
        x[c] = keep + h;
        const double up = squared_hellinger(p, x);
        x[c] = keep - h;
        const double down = squared_hellinger(p, x);
        x[c] = keep;
        g[c] = (up - down) / (2 * h);
    }
    return g;
}

// The kernels' constants: the divergence term alone, its gradient unscaled (soft_grad = 1: the
// kernels write dD/dx). `divergence` is left at forward KL: the policy given to fused_row_with is
// what runs, and anything but forward KL's own policy runs normalise-first.
detail::row_terms hellinger_terms(double T, distill::teacher_input input) {
    detail::row_terms k;
    k.soft = true;
    k.temperature = T;
    k.inv_temperature = 1 / T;
    k.teacher_inv_temperature = input == distill::teacher_input::logits ? 1 / T : 1.0;
    k.teacher_probabilities = input == distill::teacher_input::probabilities;
    k.integer_temperature = detail::whole_temperature(T);
    k.soft_grad = 1;
    return k;
}

struct case_data {
    std::vector<double> s, t;  // student logits and the teacher's values (in the form `input` names)
    std::vector<double> p;     // the teacher's distribution, in double
    double T;
    distill::teacher_input input;
};

// One row of random logits; the teacher masks class 1 (when there is one) and its values are given
// as logits, or as probabilities p = softmax(t / T).
case_data make_case(std::ptrdiff_t C, double T, distill::teacher_input input, std::uint32_t seed) {
    const auto s = distill_test::random_logits<double>(1, C, seed);
    auto t = distill_test::random_logits<double>(1, C, seed + 1);
    if (C > 1) t(0, 1) = -std::numeric_limits<double>::infinity();
    case_data d{{s.data(), s.data() + C}, {t.data(), t.data() + C}, {}, T, input};
    std::vector<double> scaled(d.t);
    for (double& v : scaled) v /= T;
    d.p = softmax(scaled);
    if (input == distill::teacher_input::probabilities) d.t = d.p;
    return d;
}

// The kernel of scalar type Scalar (the reference, or the SIMD kernel at the default architecture)
// against the direct computation. Bound: tests/differential.hpp's reasoning, with H^2's terms
// (sqrt p - sqrt q)^2 and sqrt(p q) of total size at most 2, and gradient entries made of q_c and
// p_c: float 4e-6, double 1e-13 + 2.3e-16 C; finite differences add their own 1e-8 absolute.
template <class Scalar, bool Simd>
void check_kernel(const case_data& d) {
    const auto C = static_cast<std::ptrdiff_t>(d.s.size());
    const detail::row_terms k = hellinger_terms(d.T, d.input);
    const std::vector<Scalar> s(d.s.begin(), d.s.end()), t(d.t.begin(), d.t.end());
    std::vector<Scalar> g(static_cast<std::size_t>(C));
    detail::row_result r;
    if constexpr (Simd)
        r = detail::simd::fused_row_with<xsimd::default_arch, squared_hellinger_policy>(s.data(), t.data(), no_label, C, k, g.data());
    else
        r = detail::reference::fused_row_with<squared_hellinger_policy>(s.data(), t.data(), no_label, C, k, g.data());

    // The student's logits as the kernel sees them (rounded to Scalar), scaled: x = s / T.
    std::vector<double> x(s.begin(), s.end());
    for (double& v : x) v /= d.T;
    const double bound = std::is_same_v<Scalar, float> ? 4e-6 : 1e-13 + 2.3e-16 * static_cast<double>(C);
    INFO((Simd ? "SIMD" : "reference") << " kernel, " << (std::is_same_v<Scalar, float> ? "float" : "double")
                                       << ", C = " << C << ", T = " << d.T << ", teacher "
                                       << (d.input == distill::teacher_input::logits ? "logits" : "probabilities"));
    REQUIRE(r.student_defined);
    REQUIRE(r.teacher_defined);
    // Expected value: the definition, on the teacher's distribution rounded as the kernel received it.
    std::vector<double> p = d.p;
    if (std::is_same_v<Scalar, float>) {  // the teacher's float values define a slightly different p
        std::vector<double> teacher(t.begin(), t.end());
        if (d.input == distill::teacher_input::logits) {
            for (double& v : teacher) v /= d.T;
            p = softmax(teacher);
        } else {
            double sum = 0;
            for (double v : teacher) sum += v;
            for (std::size_t c = 0; c < p.size(); ++c) p[c] = teacher[c] / sum;
        }
    }
    const double expected = squared_hellinger(p, x);
    CHECK(std::abs(r.divergence - expected) <= 2 * bound);
    CHECK(r.divergence >= -2 * bound);
    const std::vector<double> fd = gradient_by_finite_differences(p, x);
    const std::vector<double> q = softmax(x);
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        if (std::isnan(fd[c])) continue;  // not differentiated (long rows: a stride of the entries)
        INFO("gradient entry " << c << ": " << g[c] << " vs finite differences " << fd[c]);
        CHECK(std::abs(static_cast<double>(g[c]) - fd[c]) <= bound * (q[c] + p[c]) + 1e-8);
    }
}

}  // namespace

TEST_CASE("a divergence defined outside the library (squared Hellinger) runs through both row kernels and matches "
          "its definition",
          "[policy]") {
    // Lengths: one class, shorter than a vector, a vector and a tail, several, a block and a tail
    // (1025), several blocks.
    for (std::ptrdiff_t C : {1, 3, 17, 100, 1025, 5000})
        for (double T : {1.0, 0.5, 3.0})
            for (distill::teacher_input input : {distill::teacher_input::logits, distill::teacher_input::probabilities}) {
                const case_data d = make_case(C, T, input, static_cast<std::uint32_t>(C * 7 + 1));
                check_kernel<double, false>(d);
                check_kernel<double, true>(d);
                check_kernel<float, false>(d);
                check_kernel<float, true>(d);
            }
}

TEST_CASE("squared Hellinger is 0 for equal rows and 1 for disjoint ones, in both kernels", "[policy]") {
    // Closed forms: p = q gives sum (sqrt p - sqrt p)^2 = 0 exactly (both kernels compute p and q
    // alike from equal inputs) and the gradient 1/2 (q B - sqrt(q)^2) = 0 up to the rounding of B
    // and of sqrt(q)^2 (float: a few 1e-8); p and q without common support give B = 0, H^2 = 1, and
    // the gradient 1/2 (q 0 - sqrt(p) sqrt(q)) = 0 exactly.
    const double inf = std::numeric_limits<double>::infinity();
    const auto equal = distill_test::row<float>({0.5, -1, 2, 0.25, 3});
    const auto student = distill_test::row<float>({0, 1, -inf, -inf});
    const auto teacher = distill_test::row<float>({-inf, -inf, 2, 0});
    const detail::row_terms k = hellinger_terms(1.0, distill::teacher_input::logits);
    std::vector<float> g(5);
    for (bool simd : {false, true}) {
        INFO((simd ? "SIMD" : "reference") << " kernel");
        const auto run = [&](const float* s, const float* t, std::ptrdiff_t C) {
            return simd ? detail::simd::fused_row_with<xsimd::default_arch, squared_hellinger_policy>(s, t, no_label, C, k, g.data())
                        : detail::reference::fused_row_with<squared_hellinger_policy>(s, t, no_label, C, k, g.data());
        };
        CHECK(run(equal.data(), equal.data(), 5).divergence == 0);
        for (int c = 0; c < 5; ++c) CHECK(std::abs(g[static_cast<std::size_t>(c)]) <= 1e-6);
        CHECK(run(student.data(), teacher.data(), 4).divergence == Approx(1).epsilon(1e-6));
        for (int c = 0; c < 4; ++c) CHECK(g[static_cast<std::size_t>(c)] == 0);
    }
}
