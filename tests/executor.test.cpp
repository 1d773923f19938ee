// Results do not depend on the executor: the same input gives bitwise the same loss and gradient
// on 1, 2 and 7 threads, because the library fixes the partition and the order of the sums.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;

using distill_test::thread_executor;
static_assert(distill::executor<thread_executor>);

TEMPLATE_TEST_CASE("1, 2 and 7 threads give bitwise identical results", "[executor]", float, double) {
    for (auto [N, C] : {std::pair<Eigen::Index, Eigen::Index>{200, 1000}, {3, 40000}, {130, 17}}) {
        const auto s = distill_test::random_logits<TestType>(N, C, 1);
        const auto t = distill_test::random_logits<TestType>(N, C, 2);
        const auto y = distill_test::random_labels(N, C, 3);
        distill::distillation_loss<TestType> kd({.temperature = 2.5, .alpha = 0.5});
        matrix<TestType> g1(N, C);
        const double l1 = kd.loss_and_grad(thread_executor{1}, s, t, y, g1).total;
        const double l_seq = kd.loss_and_grad(s, t, y, g1).total;
        INFO(N << " x " << C << ": " << l1 << " vs " << l_seq);
        CHECK(std::memcmp(&l1, &l_seq, sizeof l1) == 0);
        for (int threads : {2, 7}) {
            matrix<TestType> g(N, C);
            const double l = kd.loss_and_grad(thread_executor{threads}, s, t, y, g).total;
            INFO(N << " x " << C << " on " << threads << " threads");
            CHECK(std::memcmp(&l, &l1, sizeof l) == 0);
            CHECK(std::memcmp(g.data(), g1.data(), sizeof(TestType) * static_cast<std::size_t>(g.size())) == 0);
        }
    }
}

TEMPLATE_TEST_CASE("few long rows are cut into column segments that merge to the reference's result", "[executor]",
                   float, double) {
    // 3 rows of 70001 classes: fewer rows than pieces, so each row runs as 21 column segments whose
    // statistics merge (detail/schedule.hpp). Expected: the scalar reference kernel on whole rows,
    // within the SIMD-vs-reference tolerances of tests/kernels.test.cpp.
    const Eigen::Index N = 3, C = 70001;
    auto s = distill_test::random_logits<TestType>(N, C, 4);
    auto t = distill_test::random_logits<TestType>(N, C, 5);
    for (Eigen::Index c = 0; c < C; ++c) t(1, c) += static_cast<TestType>(20.0 * c / C);  // maxima rise along the row
    s(2, 5) = -std::numeric_limits<TestType>::infinity();                                 // a masked class
    const std::vector<std::int64_t> y{0, C - 1, 35000};
    distill::distillation_loss<TestType> kd({.temperature = 2.5, .alpha = 0.5, .label_smoothing = 0.1,
                                             .reduce = distill::reduction::sum});
    matrix<TestType> g(N, C);
    std::vector<double> rows(N);
    kd.loss_and_grad(thread_executor{2}, s, t, y, g, {.losses = rows});

    distill::detail::row_terms k;
    k.soft = k.hard = true;
    k.temperature = 2.5;
    k.inv_temperature = 1 / 2.5;
    k.teacher_inv_temperature = k.inv_temperature;
    k.smoothing = 0.1;
    k.soft_grad = 0.5 * 2.5;  // alpha T^2 / T
    k.hard_grad = 0.5;
    const bool is_float = std::is_same_v<TestType, float>;
    for (Eigen::Index i = 0; i < N; ++i) {
        std::vector<TestType> g_ref(C);
        const auto r = distill::detail::reference::fused_row(s.row(i).data(), t.row(i).data(), y[i], C, k, g_ref.data());
        const double expected = 0.5 * 2.5 * 2.5 * r.divergence + 0.5 * r.ce;
        INFO("row " << i);
        CHECK(rows[i] == Approx(expected).epsilon(is_float ? 2e-5 : 1e-12));
        double worst = 0;
        for (Eigen::Index c = 0; c < C; ++c) worst = std::max(worst, std::abs(double(g(i, c)) - double(g_ref[c])));
        CHECK(worst <= (is_float ? 1e-6 : 1e-13) * (k.soft_grad + k.hard_grad));
    }
}
