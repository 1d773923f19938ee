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
    const std::vector<double> x = {-inf, nan, -1e300, -2.9e30, -1000.5, -1, 0, -0.0};
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double e = distill::detail::simd::exp_nonpositive(V(x[i])).get(0);
        INFO("x = " << x[i] << ", e^x = " << e);
        if (std::isnan(x[i]))
            CHECK(std::isnan(e));
        else if (x[i] < -800)
            CHECK(e == 0);
        else
            CHECK(e == Approx(std::exp(x[i])).epsilon(1e-15));
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
