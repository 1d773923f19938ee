// Hostile inputs beyond tests/special_values.test.cpp: the input classes of docs/reliability.md's
// special-values table that file does not pin (subnormals, mixed masks across blocks, +inf, NaN and
// all -inf rows that are ignored, float overflow of logit differences, extreme temperatures with
// the valid options), and regressions for what the sanitizers and the fuzzer found. Expected
// values are closed forms, worked out beside each check. The same file runs with the SIMD kernels
// (dev, sanitize) and with the reference kernels (no-simd).
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

namespace {
template <class T>
using matrix = distill_test::matrix<T>;
constexpr double inf = std::numeric_limits<double>::infinity();

template <class T>
matrix<T> row(std::initializer_list<double> values) {
    matrix<T> m(1, static_cast<Eigen::Index>(values.size()));
    Eigen::Index j = 0;
    for (double v : values) m(0, j++) = static_cast<T>(v);
    return m;
}
}  // namespace

// Found by the sanitize preset: xsimd 8.1's double exp converts round(x / ln2) to int64 one lane at
// a time on AVX2, and the SIMD kernels fed it -inf (masked classes, the fill of a row's tail), NaN
// and -2.9e30 (logits of 1e30): undefined behaviour that UBSan reports as "-inf is outside the
// range of representable values of type 'long'". Under the sanitize preset these checks fail if it
// comes back; everywhere they pin the values.
TEST_CASE("regression: double exponentials of -inf, NaN and huge negative arguments are defined", "[hostile]") {
    using V = xsimd::batch<double, xsimd::default_arch>;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    // 7.9e43 (outside the contract x <= 0) reached it in the fuzzer when a NaN logit hid the row's
    // max from xsimd::max: any value is fine there, undefined behaviour is not.
    const std::vector<double> x = {-inf, nan, -1e300, -2.9e30, -1000.5, -1, 0, -0.0, 7.9e43, inf};
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double e = distill::detail::simd::exp_nonpositive(V(x[i])).get(0);
        INFO("x = " << x[i] << ", e^x = " << e);
        if (std::isnan(x[i]))
            CHECK(std::isnan(e));
        else if (x[i] < -800)
            CHECK(e == 0);
        else if (x[i] <= 0)
            CHECK(e == Approx(std::exp(x[i])).epsilon(1e-15));
    }
    // Through the API: a large logit, then a NaN in the same vector lane (4 doubles apart), which
    // drops the large one from the lane's running max, so that s - max > 0 reaches the exponential.
    // The loss is NaN, as for any NaN logit, and nothing undefined happens on the way.
    {
        matrix<double> s = distill_test::random_logits<double>(1, 3000, 4), t = s, g(1, 3000);
        s(0, 1) = 1e43;
        s(0, 5) = std::numeric_limits<double>::quiet_NaN();
        CHECK(std::isnan(distill::kl_divergence<double>().loss_and_grad(s, t, g).total));
        CHECK(std::isnan(distill::cross_entropy<double>().loss(s, std::vector<std::int64_t>{0}).total));
    }
    // The same through the API: masked classes and a 3-element tail (C = 7, 4 doubles a vector).
    distill::distillation_loss<double> kd({.temperature = 2, .alpha = 0.5});
    matrix<double> g(1, 7);
    const std::vector<std::int64_t> y{0};
    const auto v = kd.loss_and_grad(row<double>({0, 1, -inf, 2, -inf, 1e30, -1e30}),
                                    row<double>({0, -inf, -inf, 1, 0, 1e30, -1e30}), y, g);
    // Both rows put all their mass on class 5 (1e30): KL = 0; -log r_0 = 1e30 - 0 + log 1, finite.
    CHECK(v.soft == Approx(0).margin(1e-12));
    CHECK(v.hard == Approx(0.5e30).epsilon(1e-12));
    CHECK(g.allFinite());
}

// Found by the fuzzer: a student-masked class whose teacher logit is finite makes the KL
// accumulator +inf; when the teacher's running max later rose by more than ~745 T (a later block of
// a long row, or a later segment of a row cut across threads), the accumulator's rescale factor
// exp(-rise / T) underflowed to 0 and 0 * inf gave a NaN loss for NaN-free input. Relative to the
// final max that class's teacher probability is below the smallest double (it underflows to 0 in
// the reference too), so it has no mass: the loss is the finite KL of the rest.
TEMPLATE_TEST_CASE("regression: masked class whose teacher mass underflows after the max rises is not NaN",
                   "[hostile]", float, double) {
    constexpr std::ptrdiff_t C = 3000;
    matrix<TestType> s = matrix<TestType>::Zero(1, C), t = matrix<TestType>::Zero(1, C), g(1, C);
    s(0, 0) = -std::numeric_limits<TestType>::infinity();
    const std::vector<std::int64_t> y{5};
    distill::kl_divergence<TestType> kl({.temperature = 1});
    SECTION("the rise makes the masked class's teacher mass underflow: finite") {
        for (std::ptrdiff_t c = 2048; c < C; ++c) t(0, c) = 2000;  // the last block
        // p is uniform over the 952 classes at 2000 (p_0 = e^-2000 / 952 = 0 in double); q is
        // uniform over the 2999 unmasked classes: KL = sum p log(p / q) = log(2999 / 952).
        const auto v = kl.loss_and_grad(s, t, g);
        CHECK(v.total == Approx(std::log(2999.0 / 952.0)).epsilon(1e-5));
        CHECK(g.allFinite());
        distill::distillation_loss<TestType> kd({.temperature = 1, .alpha = 0.5, .label_smoothing = 0.1});
        CHECK(kd.loss(s, t, y).soft == Approx(0.5 * std::log(2999.0 / 952.0)).epsilon(1e-5));
    }
    SECTION("a small rise leaves the teacher mass there: +inf") {
        for (std::ptrdiff_t c = 2048; c < C; ++c) t(0, c) = 10;  // p_0 = e^-10 / Z > 0
        CHECK(kl.loss_and_grad(s, t, g).total == inf);
        CHECK(g.allFinite());
    }
}

// Found by the fuzzer: with a subnormal label smoothing (valid: eps in [0, 1)) eps / C underflowed
// to 0 and met the -inf sum of log r of a row with a masked class: 0 * -inf = NaN, in both
// kernels. eps * sum / C keeps the exact answer: any eps > 0 puts mass on the masked class, +inf.
TEMPLATE_TEST_CASE("regression: subnormal label smoothing with a masked class gives +inf, not NaN", "[hostile]",
                   float, double) {
    constexpr std::ptrdiff_t C = 779;
    matrix<TestType> s = distill_test::random_logits<TestType>(1, C, 3), g(1, C);
    const std::vector<std::int64_t> y{9};
    const double eps = 4.74303e-322;  // 96 * 2^-1074
    distill::cross_entropy<TestType> ce({.label_smoothing = eps, .reduce = distill::reduction::sum});
    const double unmasked = ce.loss(s, y).total;  // = -log r_9 to within the smoothing's 1e-320
    CHECK(std::isfinite(unmasked));
    s(0, 0) = -std::numeric_limits<TestType>::infinity();
    CHECK(ce.loss_and_grad(s, y, g).total == inf);
    CHECK(g.allFinite());
    distill::distillation_loss<TestType> kd({.temperature = 2, .alpha = 0.5, .label_smoothing = eps});
    CHECK(kd.loss(s, s, y).hard == inf);
}
