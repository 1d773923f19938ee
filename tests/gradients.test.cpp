// Gradients against central finite differences of the loss itself, in double, for every loss and
// option combination. The expected value of each gradient entry is
//     (L(s + h e_ij) - L(s - h e_ij)) / 2h,
// whose truncation error is O(h^2 L''') ~ 1e-10 and rounding error ~ 1e-16 |L| / h ~ 1e-11 at h = 1e-5.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

namespace {

using matrix = distill_test::matrix<double>;

void check_against_finite_differences(const matrix& s, const std::function<double(const matrix&)>& loss,
                                      const matrix& grad) {
    const double h = 1e-5;
    matrix x = s;
    for (Eigen::Index i = 0; i < s.rows(); ++i)
        for (Eigen::Index j = 0; j < s.cols(); ++j) {
            x(i, j) = s(i, j) + h;
            const double up = loss(x);
            x(i, j) = s(i, j) - h;
            const double down = loss(x);
            x(i, j) = s(i, j);
            INFO("gradient entry (" << i << ", " << j << ")");
            CHECK(grad(i, j) == Approx((up - down) / (2 * h)).margin(1e-7).epsilon(1e-6));
        }
}

}  // namespace

TEST_CASE("distillation_loss gradient equals finite differences for every option combination", "[gradients]") {
    const Eigen::Index N = 5, C = 7;
    const matrix s = distill_test::random_logits<double>(N, C, 1);
    const matrix t = distill_test::random_logits<double>(N, C, 2);
    std::vector<std::int64_t> y = distill_test::random_labels(N, C, 3);
    y[2] = -100;  // one ignored row
    const std::vector<std::uint8_t> mask{1, 1, 1, 0, 1};

    for (double T : {0.5, 1.0, 2.5, 4.0})
        for (double alpha : {0.0, 0.3, 1.0})
            for (double eps : {0.0, 0.1})
                for (bool t2 : {true, false})
                    for (auto red : {distill::reduction::sum, distill::reduction::mean, distill::reduction::divide_by})
                        for (bool masked : {false, true}) {
                            distill::distillation_loss<double> kd({.temperature = T,
                                                                   .alpha = alpha,
                                                                   .scale_by_t_squared = t2,
                                                                   .label_smoothing = eps,
                                                                   .reduce = red,
                                                                   .normalizer = 3.0});
                            const distill::per_row rows{.mask = masked ? std::span<const std::uint8_t>(mask)
                                                                       : std::span<const std::uint8_t>()};
                            INFO("T=" << T << " alpha=" << alpha << " eps=" << eps << " t2=" << t2
                                      << " reduction=" << int(red) << " masked=" << masked);
                            matrix g(N, C);
                            kd.loss_and_grad(s, t, y, g, rows);
                            check_against_finite_differences(
                                s, [&](const matrix& x) { return kd.loss(x, t, y, rows).total; }, g);
                        }
}

TEST_CASE("kl_divergence and cross_entropy gradients equal finite differences", "[gradients]") {
    const Eigen::Index N = 4, C = 9;
    const matrix s = distill_test::random_logits<double>(N, C, 4);
    const matrix t = distill_test::random_logits<double>(N, C, 5);
    std::vector<std::int64_t> y = distill_test::random_labels(N, C, 6);
    y[1] = -1;  // a custom ignore_index below
    for (double T : {0.5, 1.0, 3.0})
        for (bool t2 : {true, false}) {
            distill::kl_divergence<double> kl({.temperature = T, .scale_by_t_squared = t2});
            matrix g(N, C);
            kl.loss_and_grad(s, t, g);
            check_against_finite_differences(s, [&](const matrix& x) { return kl.loss(x, t).total; }, g);
        }
    for (double eps : {0.0, 0.25}) {
        distill::cross_entropy<double> ce({.label_smoothing = eps, .ignore_index = -1, .reduce = distill::reduction::sum});
        matrix g(N, C);
        ce.loss_and_grad(s, y, g);
        check_against_finite_differences(s, [&](const matrix& x) { return ce.loss(x, y).total; }, g);
    }
}

TEST_CASE("reduction::none writes per-row losses whose gradients are the per-row gradients", "[gradients]") {
    const Eigen::Index N = 3, C = 5;
    const matrix s = distill_test::random_logits<double>(N, C, 7);
    const matrix t = distill_test::random_logits<double>(N, C, 8);
    const std::vector<std::int64_t> y{0, -100, 4};
    distill::distillation_loss<double> kd({.temperature = 2, .alpha = 0.5, .reduce = distill::reduction::none});
    std::vector<double> losses(N);
    matrix g(N, C);
    const auto v = kd.loss_and_grad(s, t, y, g, {.losses = losses});
    // Expected: the total is the sum of the rows (api.md), the ignored row is 0.
    CHECK(v.total == Approx(losses[0] + losses[1] + losses[2]));
    CHECK(losses[1] == 0.0);
    CHECK(g.row(1).isZero());
    // Under none, row i's gradient is dL_i/ds_i: the finite difference of the sum, since rows are independent.
    check_against_finite_differences(
        s,
        [&](const matrix& x) {
            std::vector<double> l(N);
            return kd.loss(x, t, y, {.losses = l}).total;
        },
        g);
}
