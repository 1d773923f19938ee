// Identities every correct implementation satisfies, whatever its inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;

TEMPLATE_TEST_CASE("gradient rows sum to zero", "[identities]", float, double) {
    // Softmax probabilities and targets each sum to 1 per row, so every gradient row sums to 0;
    // in float up to the rounding of C probabilities, about C * 6e-8 relative to the coefficients.
    const Eigen::Index N = 6, C = 1000;
    const auto s = distill_test::random_logits<TestType>(N, C, 1);
    const auto t = distill_test::random_logits<TestType>(N, C, 2);
    const auto y = distill_test::random_labels(N, C, 3);
    matrix<TestType> g(N, C);
    distill::distillation_loss<TestType> kd({.temperature = 2.5, .alpha = 0.4, .label_smoothing = 0.1});
    kd.loss_and_grad(s, t, y, g);
    const double tol = std::is_same_v<TestType, float> ? 1e-5 : 1e-13;
    for (Eigen::Index i = 0; i < N; ++i) CHECK(std::abs(g.row(i).template cast<double>().sum()) <= tol);
}

TEMPLATE_TEST_CASE("KL(p || p) = 0 with a zero gradient", "[identities]", float, double) {
    const auto s = distill_test::random_logits<TestType>(8, 333, 4);
    matrix<TestType> g(8, 333);
    distill::kl_divergence<TestType> kl({.temperature = 3});
    const auto v = kl.loss_and_grad(s, s, g);
    const double tol = std::is_same_v<TestType, float> ? 1e-6 : 1e-14;
    CHECK(std::abs(v.total) <= tol);
    CHECK(g.template cast<double>().cwiseAbs().maxCoeff() <= tol);
}

TEST_CASE("adding 1e4 to a row changes nothing beyond the rounding of the inputs (float)", "[identities]") {
    // softmax is shift invariant. In float, x + 1e4 rounds x to a multiple of 2^-10 (ulp of 1e4 is
    // 9.8e-4), so the shifted loss must equal the double-precision loss of the rounded inputs, and
    // be within the rounding's effect (|dL/ds| * 5e-4 * C) of the unshifted one.
    const Eigen::Index N = 4, C = 257;
    const auto s = distill_test::random_logits<float>(N, C, 5);
    const auto t = distill_test::random_logits<float>(N, C, 6);
    const auto y = distill_test::random_labels(N, C, 7);
    matrix<float> s_shift = s.array() + 1e4f, t_shift = t.array() + 1e4f;
    distill::distillation_loss<float> kd({.temperature = 2, .alpha = 0.5});
    distill::distillation_loss<double> kd_double({.temperature = 2, .alpha = 0.5});
    const double shifted = kd.loss(s_shift, t_shift, y).total;
    const matrix<double> s_rounded = s_shift.cast<double>(), t_rounded = t_shift.cast<double>();
    CHECK(shifted == Approx(kd_double.loss(s_rounded, t_rounded, y).total).epsilon(1e-5));
    CHECK(shifted == Approx(kd.loss(s, t, y).total).margin(1e-2));
}

TEMPLATE_TEST_CASE("the parts add up and the reductions agree with each other", "[identities]", float, double) {
    const Eigen::Index N = 5, C = 40;
    const auto s = distill_test::random_logits<TestType>(N, C, 8);
    const auto t = distill_test::random_logits<TestType>(N, C, 9);
    auto y = distill_test::random_labels(N, C, 10);
    y[3] = -100;
    using distill::reduction;
    auto with = [&](reduction r) {
        return distill::distillation_loss<TestType>({.temperature = 2, .alpha = 0.3, .reduce = r, .normalizer = 8});
    };
    std::vector<double> rows(N);
    const auto none = with(reduction::none).loss(s, t, y, {.losses = rows});
    const auto sum = with(reduction::sum).loss(s, t, y);
    const auto mean = with(reduction::mean).loss(s, t, y);
    const auto by8 = with(reduction::divide_by).loss(s, t, y);
    CHECK(sum.rows_counted == 4);
    CHECK(none.total == Approx(rows[0] + rows[1] + rows[2] + rows[3] + rows[4]));
    CHECK(rows[3] == 0);
    CHECK(sum.total == Approx(none.total));
    CHECK(mean.total == Approx(sum.total / 4));
    CHECK(by8.total == Approx(sum.total / 8));
    CHECK(sum.total == Approx(sum.soft + sum.hard));
    // The parts are the functors' own losses, weighted: soft = alpha T^2 KL (kl_divergence already
    // carries T^2), hard = (1 - alpha) CE.
    const std::vector<std::uint8_t> keep{1, 1, 1, 0, 1};  // the rows the label -100 leaves
    const auto kl = distill::kl_divergence<TestType>({.temperature = 2, .reduce = reduction::sum}).loss(s, t, {.mask = keep});
    const auto ce = distill::cross_entropy<TestType>({.reduce = reduction::sum}).loss(s, y);
    CHECK(sum.soft == Approx(0.3 * kl.total));
    CHECK(sum.hard == Approx(0.7 * ce.total));
}
