// Every accepted input kind gives the same result as a plain row-major matrix; Eigen objects are
// read in place, whatever their row stride.
#include <catch2/catch.hpp>

#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;

TEST_CASE("Map, Ref, row blocks, column blocks and tensors are read in place", "[inputs]") {
    const Eigen::Index N = 6, C = 37;
    const matrix<float> s = distill_test::random_logits<float>(N, C, 1);
    const matrix<float> t = distill_test::random_logits<float>(N, C, 2);
    const auto y = distill_test::random_labels(N, C, 3);
    distill::distillation_loss<float> kd({.temperature = 3, .alpha = 0.6});
    matrix<float> g_expected(N, C);
    const double expected = kd.loss_and_grad(s, t, y, g_expected).total;  // the plain-matrix result

    SECTION("Map and Ref") {
        Eigen::Map<const matrix<float>> sm(s.data(), N, C), tm(t.data(), N, C);
        matrix<float> g(N, C);
        Eigen::Ref<matrix<float>> gr(g);
        const Eigen::Ref<const matrix<float>> sr(s);
        CHECK(kd.loss_and_grad(sm, tm, y, gr).total == expected);
        CHECK(kd.loss(sr, tm, y).total == expected);
        CHECK(g == g_expected);
    }
    SECTION("a block of rows, into a block of a larger gradient buffer") {
        matrix<float> g = matrix<float>::Zero(N + 2, C);
        const std::vector<std::int64_t> y_mid(y.begin() + 1, y.begin() + 4);
        matrix<float> g_part(3, C);
        const double part = kd.loss_and_grad(s.middleRows(1, 3).eval(), t.middleRows(1, 3).eval(), y_mid, g_part).total;
        CHECK(kd.loss_and_grad(s.middleRows(1, 3), t.middleRows(1, 3), y_mid, g.middleRows(2, 3)).total == part);
        CHECK(g.middleRows(2, 3) == g_part);
        CHECK(g.topRows(2).isZero());
    }
    SECTION("a block of columns keeps its row stride") {
        matrix<float> wide = matrix<float>::Constant(N, C + 5, 1e3f), wide_t = wide, wide_g(N, C + 5);
        wide.leftCols(C) = s;
        wide_t.leftCols(C) = t;
        CHECK(kd.loss_and_grad(wide.leftCols(C), wide_t.leftCols(C), y, wide_g.leftCols(C)).total == expected);
        CHECK(wide_g.leftCols(C) == g_expected);
    }
    SECTION("rank-2 and rank-3 row-major tensors, last dimension the classes") {
        Eigen::TensorMap<Eigen::Tensor<const float, 2, Eigen::RowMajor>> s2(s.data(), N, C), t2(t.data(), N, C);
        Eigen::Tensor<float, 3, Eigen::RowMajor> g3(2, 3, C);
        Eigen::TensorMap<Eigen::Tensor<const float, 3, Eigen::RowMajor>> s3(s.data(), 2, 3, C), t3(t.data(), 2, 3, C);
        CHECK(kd.loss(s2, t2, y).total == expected);
        CHECK(kd.loss_and_grad(s3, t3, y, g3).total == expected);
        CHECK(Eigen::Map<matrix<float>>(g3.data(), N, C) == g_expected);
        Eigen::Tensor<float, 3, Eigen::RowMajor> p = distill::softmax(s3, 2.0);
        CHECK(p.dimension(0) == 2);
        CHECK(Eigen::Map<matrix<float>>(p.data(), N, C).isApprox(distill::softmax(s, 2.0)));
    }
    SECTION("a column vector is one class per row") {
        const Eigen::VectorXf one = s.col(0);
        Eigen::VectorXf g1(N);
        distill::kl_divergence<float> kl;
        CHECK(kl.loss_and_grad(one, one, g1).total == 0);  // one class: p = q = 1
    }
    SECTION("labels of any signed integer type, and Eigen integer vectors") {
        std::vector<int> y32(y.begin(), y.end());
        Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> ye(N);
        for (Eigen::Index i = 0; i < N; ++i) ye(i) = y[static_cast<std::size_t>(i)];
        CHECK(kd.loss(s, t, y32).total == expected);
        CHECK(kd.loss(s, t, ye).total == expected);
    }
}

TEST_CASE("softmax and log_softmax agree with each other and sum to one", "[inputs]") {
    const matrix<double> s = distill_test::random_logits<double>(3, 50, 4);
    const matrix<double> p = distill::softmax(s, 2.0);
    const matrix<double> lp = distill::log_softmax(s, 2.0);
    // Each row of softmax(s/T) sums to 1; log_softmax is its log.
    for (Eigen::Index i = 0; i < 3; ++i) CHECK(p.row(i).sum() == Approx(1.0).epsilon(1e-14));
    CHECK(lp.array().exp().matrix().isApprox(p, 1e-14));
    // In place.
    matrix<double> q = s;
    distill::softmax(q, q, 2.0);
    CHECK(q.isApprox(p, 1e-15));
}
