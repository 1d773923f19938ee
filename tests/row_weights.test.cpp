// Per-row weights (per_row::weights) and the gradient written over the student logits (in place).
//
// Expected values come from the library's own unweighted per-row results (reduction::none), combined
// by hand as the contract states: sum = sum_i w_i L_i, mean = sum_i w_i L_i / sum_i w_i over the
// counted rows, gradient row i = w_i times its unweighted gradient row (under reduction::sum). That
// is PyTorch's per-sample weighting, (loss(reduction='none') * w).sum() / w.sum().
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;
using distill_test::same_bits;

namespace {

const distill::divergence family[] = {distill::forward_kl{},      distill::reverse_kl{},
                                      distill::jensen_shannon{},  distill::skew_kl{},
                                      distill::skew_reverse_kl{}, distill::total_variation{},
                                      distill::decoupled_kd{}};

}  // namespace

TEMPLATE_TEST_CASE("row weights scale each row's loss and gradient, and mean divides by their sum", "[weights]", float,
                   double) {
    const Eigen::Index N = 6, C = 37;
    const auto s = distill_test::random_logits<TestType>(N, C, 1);
    const auto t = distill_test::random_logits<TestType>(N, C, 2);
    std::vector<std::int64_t> y = distill_test::random_labels(N, C, 3);
    y[4] = -100;                                                  // an ignored row: its weight plays no part
    const std::vector<float> w = {0.5f, 2.0f, 0.0f, 1.0f, 3.0f, 0.25f};  // row 2: weight 0 ignores it
    for (const distill::divergence& d : family) {
        const distill::distillation_loss<TestType> plain(
            {.temperature = 2.0, .alpha = 0.6, .reduce = distill::reduction::none, .divergence = d});
        std::vector<double> rows(N);
        matrix<TestType> g_plain(N, C);
        plain.loss_and_grad(s, t, y, g_plain, {.losses = rows});
        double weighted = 0, weight_sum = 0;
        for (Eigen::Index i = 0; i < N; ++i)
            if (i != 2 && i != 4) weighted += w[i] * rows[i], weight_sum += w[i];

        const distill::distillation_loss<TestType> sum(
            {.temperature = 2.0, .alpha = 0.6, .reduce = distill::reduction::sum, .divergence = d});
        matrix<TestType> g(N, C);
        const auto v = sum.loss_and_grad(s, t, y, g, {.weights = w});
        CHECK(v.total == Approx(weighted).epsilon(1e-12));
        CHECK(v.rows_counted == 4);
        CHECK(v.weight_sum == weight_sum);
        for (Eigen::Index i = 0; i < N; ++i)
            for (Eigen::Index c = 0; c < C; ++c)
                CHECK(g(i, c) == Approx(w[i] * g_plain(i, c)).margin(std::is_same_v<TestType, float> ? 1e-6 : 1e-14));

        const distill::distillation_loss<TestType> mean(
            {.temperature = 2.0, .alpha = 0.6, .reduce = distill::reduction::mean, .divergence = d});
        CHECK(mean.loss(s, t, y, {.weights = w}).total == Approx(weighted / weight_sum).epsilon(1e-12));
    }
}

TEST_CASE("row weights: every weight 1 is bitwise the call without weights, and bad weights are refused", "[weights]") {
    const auto s = distill_test::random_logits<float>(5, 33, 4);
    const auto t = distill_test::random_logits<float>(5, 33, 5);
    const std::vector<float> ones(5, 1.0f);
    const distill::kl_divergence<float> kl({.temperature = 3.0});
    matrix<float> g1(5, 33), g2(5, 33);
    const auto a = kl.loss_and_grad(s, t, g1);
    const auto b = kl.loss_and_grad(s, t, g2, {.weights = ones});
    CHECK(std::memcmp(&a.total, &b.total, sizeof a.total) == 0);
    CHECK(same_bits(g1, g2));

    const std::vector<float> negative = {1, 1, -0.5f, 1, 1}, nan = {1, 1, 1, std::nanf(""), 1}, short_ = {1, 1};
    CHECK_THROWS_WITH(kl.loss(s, t, {.weights = negative}),
                      "kl_divergence: per_row.weights[2] is -0.5; row weights must be finite and >= 0");
    CHECK_THROWS_WITH(kl.loss(s, t, {.weights = nan}),
                      "kl_divergence: per_row.weights[3] is nan; row weights must be finite and >= 0");
    CHECK_THROWS_WITH(kl.loss(s, t, {.weights = short_}),
                      "kl_divergence: per_row.weights has 2 entries but the logits have 5 rows");
}

TEMPLATE_TEST_CASE("the gradient written over the student logits is bitwise the out-of-place gradient", "[in_place]",
                   float, double) {
    // Shapes through every path: short rows, rows of several blocks, and few long rows cut into
    // column segments (2 x 70001); whole and fractional T (r = q^T or its own exponential).
    for (auto [N, C] : {std::pair<Eigen::Index, Eigen::Index>{9, 7}, {4, 3000}, {2, 70001}}) {
        const auto s = distill_test::random_logits<TestType>(N, C, 6);
        const auto t = distill_test::random_logits<TestType>(N, C, 7);
        const auto y = distill_test::random_labels(N, C, 8);
        for (const distill::divergence& d : family)
            for (double T : {1.0, 2.5}) {
                INFO("N = " << N << ", C = " << C << ", divergence " << d.index() << ", T = " << T);
                const distill::distillation_loss<TestType> kd(
                    {.temperature = T, .alpha = 0.7, .label_smoothing = 0.1, .divergence = d});
                matrix<TestType> g(N, C);
                const auto out_of_place = kd.loss_and_grad(s, t, y, g);
                matrix<TestType> s_then_g = s;
                const auto in_place = kd.loss_and_grad(s_then_g, t, y, s_then_g);
                CHECK(std::memcmp(&out_of_place.total, &in_place.total, sizeof(double)) == 0);
                CHECK(same_bits(g, s_then_g));
            }
    }
}

TEST_CASE("in place means the very same view: a shifted or partial overlap with the student is refused", "[in_place]") {
    matrix<float> m = distill_test::random_logits<float>(4, 10, 9);
    const auto t = distill_test::random_logits<float>(3, 10, 10);
    const distill::kl_divergence<float> kl;
    // Rows 0..2 as student, rows 1..3 as gradient: they share two rows.
    CHECK_THROWS_WITH(kl.loss_and_grad(m.topRows(3), t, m.bottomRows(3)),
                      Catch::Matchers::Contains("the gradient buffer overlaps the student logits"));
    matrix<float> tt = t;
    CHECK_THROWS_WITH(kl.loss_and_grad(m.topRows(3), tt, tt),
                      Catch::Matchers::Contains("the gradient buffer overlaps the teacher logits"));
}

TEMPLATE_TEST_CASE("class weights follow PyTorch's cross_entropy(weight=w, label_smoothing=eps)", "[weights]", float,
                   double) {
    // Expected: PyTorch 1.13, float64,
    //   s = [[1,2,3,4],[0.5,-1,2,0],[3,3,-2,1]], y = [0,3,1], w = [1,2,0.5,3]
    //   F.cross_entropy(s, y, weight=w, label_smoothing=0.1)   (mean: divided by w[y].sum() = 6)
    // and its autograd gradient with respect to s.
    matrix<TestType> s(3, 4);
    s << 1, 2, 3, 4, 0.5, -1, 2, 0, 3, 3, -2, 1;
    const std::vector<std::int64_t> y = {0, 3, 1};
    const distill::cross_entropy<TestType> ce({.label_smoothing = 0.1, .class_weights = {1.0, 2.0, 0.5, 3.0}});
    matrix<TestType> g(3, 4);
    const double tol = std::is_same_v<TestType, float> ? 1e-6 : 1e-12;
    CHECK(ce.loss_and_grad(s, y, g).total == Approx(1.963359836966).epsilon(tol));
    CHECK(g(0, 0) == Approx(-0.148489622).margin(1e-8));
    CHECK(g(0, 1) == Approx(0.007098473).margin(1e-8));
    CHECK(g(1, 3) == Approx(-0.416651541).margin(1e-7));
    CHECK(g(2, 1) == Approx(-0.155638585).margin(1e-7));

    // In distillation_loss the soft term keeps its own mean (over rows) and the hard term divides by
    // the targets' class weights: the total is the two functors' means mixed by alpha.
    const auto t = distill_test::random_logits<TestType>(3, 4, 11);
    const distill::distillation_loss<TestType> kd(
        {.temperature = 2.0, .alpha = 0.25, .label_smoothing = 0.1, .class_weights = {1.0, 2.0, 0.5, 3.0}});
    const double soft = distill::kl_divergence<TestType>({.temperature = 2.0}).loss(s, t).total;
    const double hard = ce.loss(s, y).total;
    CHECK(kd.loss(s, t, y).total == Approx(0.25 * soft + 0.75 * hard).epsilon(tol));

    CHECK_THROWS_WITH(distill::cross_entropy<TestType>({.class_weights = {1.0, 2.0}}).loss(s, y),
                      "cross_entropy: class_weights has 2 entries but the logits have 4 classes");
    CHECK_THROWS_WITH(distill::cross_entropy<TestType>({.class_weights = {1.0, -2.0, 1.0, 1.0}}).loss(s, y),
                      "cross_entropy: class_weights[1] is -2; class weights must be finite and >= 0");
}
