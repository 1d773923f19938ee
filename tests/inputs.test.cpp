// The edges of what an argument may be: labels that are not contiguous, tensors whose dimensions
// differ although their flattened shapes agree, outputs that share memory with an input (disjoint
// parts of one matrix are fine, shared elements are not), and the numbers in error messages, which
// must read back as the value that was given.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;
using Catch::Contains;

// --- Labels -------------------------------------------------------------------------------------

TEST_CASE("labels that are not contiguous are refused at run time, naming the stride", "[inputs][labels]") {
    const matrix<float> s = distill_test::random_logits<float>(3, 5, 1);
    distill::cross_entropy<float> ce;
    // Y is column-major: its row 0 holds labels {1, 2, 4}, three ints apart in memory. Read as if
    // contiguous they would be Y(0, 0), Y(1, 0), Y(2, 0) = {1, 0, 0}: wrong labels, silently.
    Eigen::MatrixXi Y(3, 3);
    Y << 1, 2, 4,
         0, 3, 3,
         0, 1, 2;
    CHECK_THROWS_AS(ce.loss(s, Y.row(0)), std::invalid_argument);
    CHECK_THROWS_WITH(ce.loss(s, Y.row(0)),
                      "labels: the entries must be contiguous (inner stride 1), got inner stride 3");
    // A Map with a run-time inner stride: every other int.
    const std::array<int, 6> buf{1, 9, 2, 9, 4, 9};
    const Eigen::Map<const Eigen::VectorXi, 0, Eigen::InnerStride<Eigen::Dynamic>> every_other(
        buf.data(), 3, Eigen::InnerStride<Eigen::Dynamic>(2));
    CHECK_THROWS_WITH(ce.loss(s, every_other), Contains("labels: the entries must be contiguous (inner stride 1), got inner stride 2"));
    // A 1 x 3 block of a column-major matrix: innerStride() is 1 there, the step along the row is not.
    CHECK_THROWS_WITH(ce.loss(s, Y.block(0, 0, 1, 3)), Contains("got inner stride 3"));
    // Through every loss and the status twin.
    distill::distillation_loss<float> kd;
    distill::loss_value v;
    const distill::status st = kd.try_loss(s, s, Y.row(0), v);
    CHECK(st.code() == distill::errc::invalid_argument);
    CHECK(std::string(st.message()) == "labels: the entries must be contiguous (inner stride 1), got inner stride 3");
    // Labels in two dimensions have no order to read them in.
    CHECK_THROWS_WITH(ce.loss(s, Y.topLeftCorner(3, 2)), "labels: must be one row or one column, got 3 x 2");

    // The same labels copied contiguously give the loss of the labels {1, 2, 4}.
    const std::vector<int> y{1, 2, 4};
    const double expected = ce.loss(s, y).total;
    const Eigen::RowVectorXi row0 = Y.row(0);
    CHECK(ce.loss(s, row0).total == expected);
    // One label needs no stride: a strided 1 x 1 is fine.
    CHECK(ce.loss(s.topRows(1), Y.block(0, 0, 1, 1)).total == ce.loss(s.topRows(1), std::vector<int>{1}).total);
}

TEST_CASE("contiguous label containers keep working", "[inputs][labels]") {
    const matrix<float> s = distill_test::random_logits<float>(3, 5, 1);
    distill::cross_entropy<float> ce;
    const std::vector<std::int64_t> y{1, 2, 4};
    const double expected = ce.loss(s, y).total;
    const std::vector<int> y32{1, 2, 4};
    const std::array<long, 3> ya{1, 2, 4};
    Eigen::VectorXi yv(3);
    yv << 1, 2, 4;
    Eigen::Matrix<std::int64_t, 1, Eigen::Dynamic> yr(3);
    yr << 1, 2, 4;
    Eigen::MatrixXi col_major(3, 2);  // a column of a column-major matrix is contiguous
    col_major.col(1) = yv;
    Eigen::Matrix<int, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> row_major(2, 3);  // and a row of a row-major one
    row_major.row(1) = yv.transpose();
    CHECK(ce.loss(s, y32).total == expected);
    CHECK(ce.loss(s, std::span<const int>(y32)).total == expected);
    CHECK(ce.loss(s, ya).total == expected);
    CHECK(ce.loss(s, yv).total == expected);
    CHECK(ce.loss(s, yr).total == expected);
    CHECK(ce.loss(s, col_major.col(1)).total == expected);
    CHECK(ce.loss(s, row_major.row(1)).total == expected);
    CHECK(ce.loss(s, Eigen::Ref<const Eigen::VectorXi>(yv)).total == expected);
    const Eigen::MatrixXi as_matrix = yv;  // 3 x 1 at run time
    CHECK(ce.loss(s, as_matrix).total == expected);
}

// --- Tensor shapes ------------------------------------------------------------------------------

TEST_CASE("tensors are compared dimension by dimension, not flattened", "[inputs][shapes]") {
    constexpr Eigen::Index C = 5;
    const matrix<float> flat_s = distill_test::random_logits<float>(6, C, 1), flat_t = distill_test::random_logits<float>(6, C, 2);
    using tensor3 = Eigen::TensorMap<Eigen::Tensor<const float, 3, Eigen::RowMajor>>;
    using tensor2 = Eigen::TensorMap<Eigen::Tensor<const float, 2, Eigen::RowMajor>>;
    const tensor3 s(flat_s.data(), 2, 3, C);
    const tensor3 t_swapped(flat_t.data(), 3, 2, C);  // [time, batch, vocab]: the rows would pair wrongly
    const tensor2 t_flat(flat_t.data(), 6, C);
    const tensor3 t(flat_t.data(), 2, 3, C);
    const auto y = distill_test::random_labels(6, C, 3);
    distill::distillation_loss<float> kd({.temperature = 2});

    CHECK_THROWS_WITH(kd.loss(s, t_swapped, y),
                      "distillation_loss: teacher logits are [3, 2, 5] but student logits are [2, 3, 5]; they must match");
    CHECK_THROWS_WITH(kd.loss(s, t_flat, y),
                      "distillation_loss: teacher logits are [6, 5] but student logits are [2, 3, 5]; they must match");
    Eigen::Tensor<float, 3, Eigen::RowMajor> g_swapped(3, 2, C);
    CHECK_THROWS_WITH(kd.loss_and_grad(s, t, y, g_swapped),
                      "distillation_loss: gradient buffer is [3, 2, 5] but student logits are [2, 3, 5]; they must match");
    Eigen::Tensor<float, 2, Eigen::RowMajor> g_flat(6, C);
    CHECK_THROWS_WITH(kd.loss_and_grad(s, t, y, g_flat), Contains("gradient buffer is [6, 5] but student logits are [2, 3, 5]"));
    // The softmax output likewise.
    Eigen::Tensor<float, 3, Eigen::RowMajor> p_swapped(3, 2, C);
    CHECK_THROWS_WITH(distill::softmax(s, p_swapped), "softmax: output is [3, 2, 5] but logits are [2, 3, 5]; they must match");

    // The same dimensions agree; a matrix is compared with a rank-3 tensor flattened (N = batch * time),
    // and with a rank-2 tensor as its rows and columns.
    const double expected = kd.loss(flat_s, flat_t, y).total;
    CHECK(kd.loss(s, t, y).total == expected);
    CHECK(kd.loss(s, flat_t, y).total == expected);
    matrix<float> g(6, C);
    CHECK(kd.loss_and_grad(s, t, y, g).total == expected);
    CHECK(kd.loss(tensor2(flat_s.data(), 6, C), flat_t, y).total == expected);
    CHECK_THROWS_WITH(kd.loss(tensor2(flat_s.data(), 6, C), flat_t.topRows(5), y),
                      Contains("teacher logits are 5 x 5 but student logits are [6, 5]"));
}

TEST_CASE("same_shape and format_shape, the helpers behind the shape messages", "[inputs][shapes]") {
    using distill::detail::matrix_view;
    matrix_view<const float> m{nullptr, 6, 5, 5, {}}, a{nullptr, 6, 5, 5, {3, {2, 3, 5}}}, b{nullptr, 6, 5, 5, {3, {3, 2, 5}}},
        r2{nullptr, 6, 5, 5, {2, {6, 5}}};
    CHECK(distill::detail::same_shape(a, a));
    CHECK_FALSE(distill::detail::same_shape(a, b));
    CHECK_FALSE(distill::detail::same_shape(a, r2));
    CHECK(distill::detail::same_shape(a, m));
    CHECK(distill::detail::same_shape(m, r2));
    CHECK(std::string(distill::detail::format_shape(m).c_str()) == "6 x 5");
    CHECK(std::string(distill::detail::format_shape(a).c_str()) == "[2, 3, 5]");
    CHECK(std::string(distill::detail::format_shape(r2).c_str()) == "[6, 5]");
}

// --- Overlap ------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("disjoint column blocks of one matrix are separate buffers", "[inputs][overlap]", float, double) {
    constexpr Eigen::Index N = 5, C = 37;
    const matrix<TestType> s = distill_test::random_logits<TestType>(N, C, 1), t = distill_test::random_logits<TestType>(N, C, 2);
    const auto y = distill_test::random_labels(N, C, 3);
    distill::distillation_loss<TestType> kd({.temperature = 3, .alpha = 0.6});
    matrix<TestType> g_expected(N, C);
    const double expected = kd.loss_and_grad(s, t, y, g_expected).total;

    SECTION("student on the left, gradient on the right") {
        matrix<TestType> m(N, 2 * C);
        m.leftCols(C) = s;
        auto g = m.rightCols(C);
        CHECK(kd.loss_and_grad(m.leftCols(C), t, y, g).total == expected);
        CHECK(m.rightCols(C) == g_expected);
        CHECK(m.leftCols(C) == s);  // the logits are untouched
    }
    SECTION("student, teacher and gradient side by side, uneven widths around them") {
        matrix<TestType> m = matrix<TestType>::Constant(N, 3 * C + 2, 7);
        m.middleCols(1, C) = s;
        m.middleCols(C + 1, C) = t;
        auto g = m.rightCols(C + 1).leftCols(C);
        CHECK(kd.loss_and_grad(m.middleCols(1, C), m.middleCols(C + 1, C), y, g).total == expected);
        CHECK(m.rightCols(C + 1).leftCols(C) == g_expected);
        CHECK(m.col(0).isConstant(7));
        CHECK(m.col(3 * C + 1).isConstant(7));
    }
    SECTION("blocks that share elements are refused") {
        matrix<TestType> m(N, 2 * C);
        m.leftCols(C) = s;
        auto g = m.middleCols(C - 1, C);  // one column shared with the student in every row
        CHECK_THROWS_WITH(kd.loss_and_grad(m.leftCols(C), t, y, g),
                          Contains("the gradient buffer overlaps the student logits"));
        auto g_t = m.middleCols(1, C);
        CHECK_THROWS_WITH(kd.loss_and_grad(s, m.leftCols(C), y, g_t), Contains("the gradient buffer overlaps the teacher logits"));
    }
    SECTION("interleaved rows of one buffer: odd rows against even rows are disjoint, shifted ones are not") {
        matrix<TestType> m(2 * N, C);
        for (Eigen::Index i = 0; i < N; ++i) m.row(2 * i) = s.row(i);
        using strided_rows = Eigen::Map<matrix<TestType>, 0, Eigen::OuterStride<>>;
        const strided_rows even(m.data(), N, C, Eigen::OuterStride<>(2 * C));
        strided_rows odd(m.data() + C, N, C, Eigen::OuterStride<>(2 * C));
        CHECK(kd.loss_and_grad(even, t, y, odd).total == expected);
        CHECK(matrix<TestType>(odd) == g_expected);
        strided_rows shifted(m.data() + C + 1, N - 1, C, Eigen::OuterStride<>(2 * C));  // straddles each even row
        matrix<TestType> t4 = t.topRows(N - 1);
        const strided_rows even4(m.data(), N - 1, C, Eigen::OuterStride<>(2 * C));
        const std::vector<std::int64_t> y4(y.begin(), y.end() - 1);
        CHECK_THROWS_WITH(kd.loss_and_grad(even4, t4, y4, shifted), Contains("overlaps the student logits"));
    }
}

TEST_CASE("views_overlap agrees with an element-by-element comparison", "[inputs][overlap]") {
    // Random views into one buffer of 160 floats, compared with the set of elements each touches.
    using view = distill::detail::matrix_view<const float>;
    constexpr int size = 160;
    static float buffer[size];
    std::mt19937 gen(11);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); };
    auto random_view = [&] {
        view v;
        v.rows = pick(0, 6);
        v.cols = pick(0, 9);
        v.row_stride = pick(0, 3) == 0 ? v.cols : pick(0, 24);  // often dense, sometimes rows overlapping themselves
        const std::ptrdiff_t span = v.rows > 0 ? (v.rows - 1) * v.row_stride + v.cols : 0;
        v.data = buffer + pick(0, static_cast<int>(size - span));
        return v;
    };
    auto touched = [&](const view& v) {
        std::vector<bool> in(size, false);
        for (std::ptrdiff_t i = 0; i < v.rows; ++i)
            for (std::ptrdiff_t j = 0; j < v.cols; ++j) in[static_cast<std::size_t>(v.row(i) + j - buffer)] = true;
        return in;
    };
    int overlapping = 0;
    for (int trial = 0; trial < 20000; ++trial) {
        const view a = random_view(), b = random_view();
        const auto ia = touched(a), ib = touched(b);
        bool brute = false;
        for (std::size_t k = 0; k < ia.size(); ++k) brute = brute || (ia[k] && ib[k]);
        overlapping += brute;
        INFO("a: " << (a.data - buffer) << " " << a.rows << "x" << a.cols << " stride " << a.row_stride << "; b: "
                   << (b.data - buffer) << " " << b.rows << "x" << b.cols << " stride " << b.row_stride);
        REQUIRE(distill::detail::views_overlap(a, b) == brute);
        REQUIRE(distill::detail::views_overlap(b, a) == brute);
    }
    CHECK(overlapping > 2000);  // both answers well represented
    CHECK(overlapping < 18000);
    // A negative row stride lists the same rows backwards.
    const view down{buffer + 40, 3, 4, -10, {}}, up{buffer + 20, 3, 4, 10, {}}, beside{buffer + 24, 3, 4, 10, {}};
    CHECK(distill::detail::views_overlap(down, up));
    CHECK_FALSE(distill::detail::views_overlap(down, beside));
}

TEST_CASE("softmax: in place is fine, a partial overlap is refused", "[inputs][overlap]") {
    const matrix<double> s = distill_test::random_logits<double>(4, 9, 1);
    const matrix<double> expected = distill::softmax(s, 2.0);
    matrix<double> q = s;
    distill::softmax(q, q, 2.0);  // in place
    CHECK(q.isApprox(expected, 1e-15));
    // Shifted by one row: output row i would be input row i + 1, already overwritten.
    matrix<double> m(5, 9);
    m.topRows(4) = s;
    CHECK_THROWS_WITH(distill::softmax(m.topRows(4), m.bottomRows(4), 2.0),
                      "softmax: the output partly overlaps the logits; it must be the logits themselves (in place) or a "
                      "separate buffer");
    CHECK_THROWS_WITH(distill::log_softmax(m.topRows(4), m.bottomRows(4), 2.0), Contains("log_softmax: the output partly overlaps"));
    distill::status st = distill::try_softmax(m.topRows(4), m.bottomRows(4), 2.0);
    CHECK(st.code() == distill::errc::invalid_argument);
    // Disjoint column blocks of one matrix are separate buffers.
    matrix<double> wide(4, 18);
    wide.leftCols(9) = s;
    auto out = wide.rightCols(9);
    distill::softmax(wide.leftCols(9), out, 2.0);
    CHECK(wide.rightCols(9).isApprox(expected, 1e-15));
    CHECK(wide.leftCols(9) == s);
    // In place through a strided block is in place too.
    auto block = wide.leftCols(9);
    distill::log_softmax(block, block, 2.0);
    CHECK(wide.leftCols(9).array().exp().matrix().isApprox(expected, 1e-14));
}

// --- Numbers in messages ------------------------------------------------------------------------

TEST_CASE("numbers in messages read back as the value given", "[inputs][messages]") {
    auto text = [](double x) { return std::string(distill::detail::format_number(x).c_str()); };
    CHECK(text(0.5) == "0.5");
    CHECK(text(0) == "0");
    CHECK(text(-2) == "-2");
    CHECK(text(1.5) == "1.5");
    CHECK(text(0.9999999) == "0.9999999");  // %g: "1"
    CHECK(text(1.0000000000000002) == "1.0000000000000002");
    CHECK(text(0.1) == "0.1");
    CHECK(text(1e-20) == "1e-20");
    CHECK(text(123456789) == "123456789");
    CHECK(text(std::numeric_limits<double>::infinity()) == "inf");
    CHECK(text(-std::numeric_limits<double>::infinity()) == "-inf");
    CHECK(text(std::numeric_limits<double>::quiet_NaN()) == "nan");
    std::mt19937_64 gen(5);
    for (int i = 0; i < 2000; ++i) {
        const double x = std::ldexp(std::uniform_real_distribution<double>(-1, 1)(gen), static_cast<int>(gen() % 200) - 100);
        INFO(x);
        CHECK(std::strtod(text(x).c_str(), nullptr) == x);
    }
    CHECK(std::strtod(text(std::numeric_limits<double>::denorm_min()).c_str(), nullptr) ==
          std::numeric_limits<double>::denorm_min());

    // Through the options: a value just inside or outside a range is not rounded onto the bound.
    using kd = distill::distillation_loss<float>;
    CHECK_THROWS_WITH(kd({.alpha = 1.0000000000000002}), "distillation_loss: alpha must be in [0, 1], got 1.0000000000000002");
    CHECK_THROWS_WITH(kd({.label_smoothing = -1e-300}), "distillation_loss: label_smoothing must be in [0, 1), got -1e-300");
    CHECK_THROWS_WITH(distill::kl_divergence<float>({.temperature = -0.30000000000000004}),
                      "kl_divergence: temperature must be in [0.001, 1000], got -0.30000000000000004");
    const matrix<float> s = distill_test::random_logits<float>(2, 3, 1);
    CHECK_THROWS_WITH(kd({.alpha = 0.9999999}).loss(s, s, std::vector<std::int64_t>{}),
                      Contains("no labels given but alpha = 0.9999999;"));
    CHECK_THROWS_WITH(distill::softmax(s, 0.1 - 0.3), "softmax: temperature must be in [0.001, 1000], got -0.19999999999999998");
}
