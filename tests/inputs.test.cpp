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
