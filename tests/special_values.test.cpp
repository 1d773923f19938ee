// Special values as docs/design.md defines them. Expected values are closed forms worked out in
// the comment beside each check.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <distill/distill.hpp>

#include "family.hpp"
#include "test_support.hpp"

namespace {
template <class T>
using matrix = distill_test::matrix<T>;
constexpr double inf = std::numeric_limits<double>::infinity();
using distill_test::row;
}  // namespace

TEMPLATE_TEST_CASE("minus-infinity logits are masked classes", "[special]", float, double) {
    distill::kl_divergence<TestType> kl({.temperature = 1});
    matrix<TestType> g(1, 2);

    SECTION("a class the teacher masks contributes nothing") {
        // p = [1, 0], q = [1/2, 1/2]: KL = 1 * (log 1 - log 1/2) = log 2.
        const auto v = kl.loss_and_grad(row<TestType>({0, 0}), row<TestType>({0, -inf}), g);
        CHECK(v.total == Approx(std::log(2.0)).epsilon(1e-6));
        // dKL/ds = q - p = [-1/2, 1/2]
        CHECK(g(0, 0) == Approx(-0.5).epsilon(1e-6));
        CHECK(g(0, 1) == Approx(0.5).epsilon(1e-6));
    }
    SECTION("a class the student masks but the teacher gives mass makes the loss +inf, gradient finite") {
        // p = [1/2, 1/2], q = [1, 0]: the term p_1 (log p_1 - log 0) is +inf, the true KL.
        const auto v = kl.loss_and_grad(row<TestType>({0, -inf}), row<TestType>({0, 0}), g);
        CHECK(v.total == inf);
        // q - p = [1/2, -1/2]
        CHECK(g(0, 0) == Approx(0.5).epsilon(1e-6));
        CHECK(g(0, 1) == Approx(-0.5).epsilon(1e-6));
    }
    SECTION("a class both mask is as if absent") {
        // The 2-class problem s = [0, 1], t = [1, 0]: log p - log q = [1, -1], KL = p0 - p1 = tanh(1/2).
        matrix<TestType> g3(1, 3);
        const auto v = kl.loss_and_grad(row<TestType>({0, 1, -inf}), row<TestType>({1, 0, -inf}), g3);
        CHECK(v.total == Approx(std::tanh(0.5)).epsilon(1e-6));
        CHECK(g3(0, 2) == 0);
    }
    SECTION("the label's class masked in the student makes the cross-entropy +inf") {
        // r_1 = 0: -log r_1 = +inf.
        distill::cross_entropy<TestType> ce;
        const std::vector<std::int64_t> y{1};
        CHECK(ce.loss(row<TestType>({0, -inf}), y).total == inf);
    }
    SECTION("a row whose logits are all -inf is an error naming the row") {
        matrix<TestType> s = distill_test::random_logits<TestType>(3, 4, 1), t = s;
        s.row(2).setConstant(-std::numeric_limits<TestType>::infinity());
        matrix<TestType> g3(3, 4);
        CHECK_THROWS_WITH(kl.loss_and_grad(s, t, g3), Catch::Contains("row 2 of the student logits is entirely -inf"));
        CHECK_THROWS_WITH(kl.loss_and_grad(t, s, g3), Catch::Contains("row 2 of the teacher logits is entirely -inf"));
        CHECK_THROWS_WITH(distill::softmax(s), Catch::Contains("row 2"));
    }
}

TEMPLATE_TEST_CASE("huge logits and extreme temperatures stay finite and exact", "[special]", float, double) {
    const std::vector<std::int64_t> y{0};
    SECTION("logits of magnitude 1e30") {
        // Both softmaxes are [1, 0, 0]: KL = 0 and CE = -log 1 = 0.
        distill::distillation_loss<TestType> kd({.temperature = 1, .alpha = 0.5});
        matrix<TestType> g(1, 3);
        const auto v = kd.loss_and_grad(row<TestType>({1e30, -1e30, 0}), row<TestType>({1e30, 0, -1e30}), y, g);
        CHECK(v.total == Approx(0).margin(1e-12));
        CHECK(g.allFinite());
    }
    SECTION("T = 1e-3 is the hard max") {
        // s/T = [1000, 0], t/T = [0, 1000]: p = [0, 1] and log q_1 = -1000 (to 1e-434), so KL = 1000 and
        // T^2 KL = 1e-3.
        distill::kl_divergence<TestType> kl({.temperature = 1e-3});
        CHECK(kl.loss(row<TestType>({1, 0}), row<TestType>({0, 1})).total == Approx(1e-3).epsilon(1e-5));
    }
    SECTION("T = 1e3 tends to half the variance of t - s") {
        // As T -> inf, T^2 KL(p || q) -> Var_uniform(t - s) / 2; here t - s = [1, -1], so 1/2, with a
        // relative correction O(1/T) = 1e-3.
        distill::kl_divergence<TestType> kl({.temperature = 1e3});
        CHECK(kl.loss(row<TestType>({0, 1}), row<TestType>({1, 0})).total == Approx(0.5).epsilon(3e-3));
    }
}

TEMPLATE_TEST_CASE("ignored rows, empty batches and a single class", "[special]", float, double) {
    const matrix<TestType> s = distill_test::random_logits<TestType>(3, 5, 1);
    const matrix<TestType> t = distill_test::random_logits<TestType>(3, 5, 2);
    SECTION("all rows ignored under mean: loss 0 and a zero gradient, not NaN") {
        distill::distillation_loss<TestType> kd({.temperature = 2});
        const std::vector<std::int64_t> y{-100, -100, -100};
        matrix<TestType> g = matrix<TestType>::Constant(3, 5, 7);
        const auto v = kd.loss_and_grad(s, t, y, g);
        CHECK(v.total == 0);
        CHECK(v.rows_counted == 0);
        CHECK(g.isZero());
    }
    SECTION("N = 0 gives 0") {
        distill::distillation_loss<TestType> kd;
        matrix<TestType> e(0, 5), g(0, 5);
        const std::vector<std::int64_t> y;
        CHECK(kd.loss_and_grad(e, e, y, g).total == 0);
    }
    SECTION("C = 1: one class has probability 1, so KL = CE = 0 and the gradient is 0") {
        distill::distillation_loss<TestType> kd({.temperature = 3, .alpha = 0.3, .label_smoothing = 0.1});
        matrix<TestType> s1 = s.leftCols(1), t1 = t.leftCols(1), g(3, 1);
        const std::vector<std::int64_t> y{0, 0, 0};
        CHECK(kd.loss_and_grad(s1, t1, y, g).total == Approx(0).margin(1e-6));
        CHECK(g.cwiseAbs().maxCoeff() <= 1e-6);
    }
}

TEMPLATE_TEST_CASE("NaN propagates and check_finite names the first NaN or +inf", "[special]", float, double) {
    matrix<TestType> s = distill_test::random_logits<TestType>(4, 19, 1);
    const matrix<TestType> t = distill_test::random_logits<TestType>(4, 19, 2);
    s(2, 11) = std::numeric_limits<TestType>::quiet_NaN();
    const std::vector<std::int64_t> y{1, 2, 3, 4};
    matrix<TestType> g(4, 19);
    distill::distillation_loss<TestType> kd({.temperature = 2});
    CHECK(std::isnan(kd.loss_and_grad(s, t, y, g).total));
    CHECK(std::isnan(kd.loss(t, s, y).total));  // NaN in the teacher
    distill::distillation_loss<TestType> checked({.temperature = 2, .check_finite = true});
    CHECK_THROWS_WITH(checked.loss(s, t, y), Catch::Contains("student logits: element (2, 11) is NaN"));
    s(2, 11) = 0;
    s(3, 0) = std::numeric_limits<TestType>::infinity();
    CHECK_THROWS_WITH(checked.loss(t, s, y), Catch::Contains("teacher logits: element (3, 0) is +inf"));
    s(3, 0) = -std::numeric_limits<TestType>::infinity();  // -inf is a mask, legal
    CHECK_NOTHROW(checked.loss(s, t, y));
}

// A NaN teacher value where the student has no mass (q = 0) must still make the row NaN, for every
// divergence: the products 0 * (...) that leave such a class out must not leave its NaN out too.
// It reaches the loss through Z_p; in the kernels also through the teacher's per-block factors,
// whose block (all of its teacher values NaN or no mass) has a max of -inf.
TEMPLATE_TEST_CASE("a NaN teacher value where the student has no mass makes the row NaN", "[special]", float, double) {
    constexpr TestType nan = std::numeric_limits<TestType>::quiet_NaN();
    constexpr TestType minus_inf = -std::numeric_limits<TestType>::infinity();
    for (const distill::teacher_input input : {distill::teacher_input::logits, distill::teacher_input::probabilities})
        for (const std::ptrdiff_t C : {std::ptrdiff_t{7}, std::ptrdiff_t{100}, std::ptrdiff_t{2500}})
            for (const bool teacher_mass_at_student : {false, true})
                for (const distill::divergence& d : distill_test::all_divergences()) {
                    // The student puts all its mass on class 0; the teacher gives class 0 mass or
                    // none, every other class none, and holds a NaN at the last class.
                    const TestType no_mass = input == distill::teacher_input::probabilities ? TestType(0) : minus_inf;
                    const TestType mass = input == distill::teacher_input::probabilities ? TestType(1) : TestType(0);
                    matrix<TestType> s(1, C), t(1, C), g(1, C);
                    s.setConstant(minus_inf);
                    s(0, 0) = 3;
                    t.setConstant(no_mass);
                    if (teacher_mass_at_student) t(0, 0) = mass;
                    t(0, C - 1) = nan;
                    const std::vector<std::int64_t> y{0};  // the student's class: CE = 0, finite
                    distill::distillation_loss<TestType> kd({.temperature = 2.5, .alpha = 0.3, .divergence = d, .teacher = input});
                    INFO(distill_test::describe(d) << ", " << distill_test::describe(input) << ", C = " << C
                                                   << (teacher_mass_at_student ? ", teacher mass at class 0" : ""));
                    CHECK(std::isnan(kd.loss_and_grad(s, t, y, g).soft));
                    CHECK(std::isnan(kd.loss(s, t, y).soft));
                }
}

// NaN propagates to the loss and to every element of the row's gradient, and to no other row
// (docs/math.md, section 4): for every divergence, both teacher inputs, a NaN at the row's last class
// in the student or the teacher, and a teacher whose first half gives no mass (in a row of 2,500
// classes its first block then has a teacher max of -inf, and its gradient once came out finite).
TEMPLATE_TEST_CASE("a NaN makes its row's loss and every gradient element NaN, and no other row's", "[special]",
                   float, double) {
    constexpr TestType nan = std::numeric_limits<TestType>::quiet_NaN();
    for (const distill::teacher_input input : {distill::teacher_input::logits, distill::teacher_input::probabilities})
        for (const std::ptrdiff_t C : {std::ptrdiff_t{7}, std::ptrdiff_t{100}, std::ptrdiff_t{2500}})
            for (const int place : {0, 1, 2})  // the student; the teacher; the teacher, its first half without mass
                for (const distill::divergence& d : distill_test::all_divergences()) {
                    matrix<TestType> s = distill_test::random_logits<TestType>(2, C, 51);
                    matrix<TestType> t = distill_test::random_logits<TestType>(2, C, 52), g(2, C);
                    const bool probabilities = input == distill::teacher_input::probabilities;
                    if (probabilities) t = distill::softmax(t);
                    (place == 0 ? s : t)(0, C - 1) = nan;
                    if (place == 2)
                        for (std::ptrdiff_t c = 0; c < C / 2; ++c)
                            t(0, c) = probabilities ? TestType(0) : -std::numeric_limits<TestType>::infinity();
                    const std::vector<std::int64_t> y{0, 1};
                    distill::distillation_loss<TestType> kd(
                        {.temperature = 2.5, .alpha = 0.5, .divergence = d, .teacher = input});
                    std::vector<double> rows(2);
                    kd.loss_and_grad(s, t, y, g, distill::per_row{.losses = rows});
                    INFO(distill_test::describe(d) << ", " << distill_test::describe(input) << ", C = " << C
                                                   << ", NaN in the " << (place == 0 ? "student" : "teacher")
                                                   << (place == 2 ? ", teacher's first half without mass" : ""));
                    CHECK(std::isnan(rows[0]));
                    CHECK(std::isfinite(rows[1]));
                    CHECK(g.row(0).array().isNaN().all());
                    CHECK(g.row(1).allFinite());
                }
}
