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
                      "kl_divergence: temperature must be finite and > 0, got -0.30000000000000004");
    const matrix<float> s = distill_test::random_logits<float>(2, 3, 1);
    CHECK_THROWS_WITH(kd({.alpha = 0.9999999}).loss(s, s, std::vector<std::int64_t>{}),
                      Contains("no labels given but alpha = 0.9999999;"));
    CHECK_THROWS_WITH(distill::softmax(s, 0.1 - 0.3), "softmax: temperature must be finite and > 0, got -0.19999999999999998");
}
