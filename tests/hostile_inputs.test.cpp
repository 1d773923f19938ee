// Hostile inputs beyond tests/special_values.test.cpp: the input classes of docs/reliability.md's
// special-values table that file does not pin (subnormals, mixed masks across blocks, +inf, NaN and
// all -inf rows that are ignored, float overflow of logit differences, extreme temperatures with
// the valid options), and regressions for what the sanitizers and the fuzzer found. Expected
// values are closed forms, worked out beside each check. The same file runs with the SIMD kernels
// (dev, sanitize) and with the reference kernels (no-simd).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include <distill/distill.hpp>
#include <distill/detail/simd/exp.hpp>  // tested directly, also where DISTILL_NO_SIMD routes the API elsewhere
#include <distill/detail/simd/vector_ops.hpp>  // the same for the vector log

#include "test_support.hpp"

using distill_test::matrix;
using distill_test::row;
static constexpr double inf = std::numeric_limits<double>::infinity();

// Found by the sanitize preset: xsimd 8.1's double exp converts round(x / ln2) to int64 one lane at
// a time on AVX2, and the SIMD kernels fed it -inf (masked classes, the fill of a row's tail), NaN
// and -2.9e30 (logits of 1e30): undefined behaviour that UBSan reports as "-inf is outside the
// range of representable values of type 'long'". Under the sanitize preset these checks fail if it
// comes back; everywhere they pin the values.
TEST_CASE("regression: double exponentials of -inf, NaN and huge negative arguments are defined", "[hostile]") {
    using V = xsimd::batch<double, xsimd::default_arch>;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    // 7.9e43 (outside the contract x <= 0) reached it in the fuzzer when a NaN logit hid the row's
    // max from xsimd::max: any value is fine there, undefined behaviour is not.
    const std::vector<double> x = {-inf, nan, -1e300, -2.9e30, -1000.5, -1, 0, -0.0, 7.9e43, inf};
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double e = distill::detail::simd::exp_nonpositive(V(x[i])).get(0);
        INFO("x = " << x[i] << ", e^x = " << e);
        if (std::isnan(x[i]))
            CHECK(std::isnan(e));
        else if (x[i] < -800)
            CHECK(e == 0);
        else if (x[i] <= 0)
            CHECK(e == Approx(std::exp(x[i])).epsilon(1e-15));
    }
    // Through the API: a large logit, then a NaN in the same vector lane (4 doubles apart), which
    // drops the large one from the lane's running max, so that s - max > 0 reaches the exponential.
    // The loss is NaN, as for any NaN logit, and nothing undefined happens on the way.
    {
        matrix<double> s = distill_test::random_logits<double>(1, 3000, 4), t = s, g(1, 3000);
        s(0, 1) = 1e43;
        s(0, 5) = std::numeric_limits<double>::quiet_NaN();
        CHECK(std::isnan(distill::kl_divergence<double>().loss_and_grad(s, t, g).total));
        CHECK(std::isnan(distill::cross_entropy<double>().loss(s, std::vector<std::int64_t>{0}).total));
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

// Found by the fuzzer: a student-masked class whose teacher logit is finite makes the KL
// accumulator +inf; when the teacher's running max later rose by more than ~745 T (a later block of
// a long row, or a later segment of a row cut across threads), the accumulator's rescale factor
// exp(-rise / T) underflowed to 0 and 0 * inf gave a NaN loss for NaN-free input. Relative to the
// final max that class's teacher probability is below the smallest double (it underflows to 0 in
// the reference too), so it has no mass: the loss is the finite KL of the rest.
TEMPLATE_TEST_CASE("regression: masked class whose teacher mass underflows after the max rises is not NaN",
                   "[hostile]", float, double) {
    constexpr std::ptrdiff_t C = 3000;
    matrix<TestType> s = matrix<TestType>::Zero(1, C), t = matrix<TestType>::Zero(1, C), g(1, C);
    s(0, 0) = -std::numeric_limits<TestType>::infinity();
    const std::vector<std::int64_t> y{5};
    distill::kl_divergence<TestType> kl({.temperature = 1});
    SECTION("the rise makes the masked class's teacher mass underflow: finite") {
        for (std::ptrdiff_t c = 2048; c < C; ++c) t(0, c) = 2000;  // the last block
        // p is uniform over the 952 classes at 2000 (p_0 = e^-2000 / 952 = 0 in double); q is
        // uniform over the 2999 unmasked classes: KL = sum p log(p / q) = log(2999 / 952).
        const auto v = kl.loss_and_grad(s, t, g);
        CHECK(v.total == Approx(std::log(2999.0 / 952.0)).epsilon(1e-5));
        CHECK(g.allFinite());
        distill::distillation_loss<TestType> kd({.temperature = 1, .alpha = 0.5, .label_smoothing = 0.1});
        CHECK(kd.loss(s, t, y).soft == Approx(0.5 * std::log(2999.0 / 952.0)).epsilon(1e-5));
    }
    SECTION("a small rise leaves the teacher mass there: +inf") {
        for (std::ptrdiff_t c = 2048; c < C; ++c) t(0, c) = 10;  // p_0 = e^-10 / Z > 0
        CHECK(kl.loss_and_grad(s, t, g).total == inf);
        CHECK(g.allFinite());
    }
}

// Found by the fuzzer, the other order: the masked class sits in a later segment of a long row
// (3000 classes: three blocks, three segments) whose own teacher max is far below the row's. Against
// its segment's max the class has teacher mass (e^-5), so that segment's accumulator is +inf, and
// the merge's factor exp(-742) is a subnormal double, not 0, so the +inf survived. Against the row's
// max the class's mass is e^-747, 0 in double as in the reference: no mass, the loss is finite. A
// +inf from the statistics is now summed from the row's terms. One row (its segments run as
// separate work items) and 40 rows (segments one after another), with and without a gradient.
TEMPLATE_TEST_CASE("regression: masked class with mass only against its segment's own max is not +inf",
                   "[hostile]", float, double) {
    constexpr std::ptrdiff_t C = 3000, masked = 2500;
    const auto run = [&](double segment_max) {
        matrix<TestType> s = matrix<TestType>::Zero(1, C), t = matrix<TestType>::Zero(1, C);
        for (std::ptrdiff_t c = 2048; c < C; ++c) t(0, c) = static_cast<TestType>(-segment_max);  // the last block
        t(0, masked) = static_cast<TestType>(-segment_max - 5);
        s(0, masked) = -std::numeric_limits<TestType>::infinity();
        const matrix<TestType> s40 = s.replicate(40, 1), t40 = t.replicate(40, 1);
        matrix<TestType> g(1, C), g40(40, C);
        const distill::kl_divergence<TestType> kl({.temperature = 1, .reduce = distill::reduction::mean});
        const double one = kl.loss_and_grad(s, t, g).total, many = kl.loss_and_grad(s40, t40, g40).total;
        CHECK(g.allFinite());
        CHECK(g40.allFinite());
        CHECK(kl.loss(s, t).total == one);
        CHECK(kl.loss(s40, t40).total == many);
        CHECK(many == Approx(one).epsilon(1e-12));  // the mean of 40 equal rows, rounded on the way
        return one;
    };
    SECTION("e^-747 against the row's max: no mass, finite") {
        // p is uniform over the 2048 classes at 0 (the last block's e^-742 / 2048 underflows in
        // double); q is uniform over the 2999 unmasked classes: KL = log(2999 / 2048).
        CHECK(run(742) == Approx(std::log(2999.0 / 2048.0)).epsilon(1e-5));
    }
    SECTION("e^-25 against the row's max: mass, +inf") { CHECK(run(20) == inf); }
}

// Found by the fuzzer: xsimd 8.1's double log read a subnormal's exponent field as a normal
// number's (log(3.3e-313) came out -746.5, not -719.5), so a subnormal teacher probability moved a
// reverse KL by 0.3% on the SIMD path. Expected values: the definitions, summed here in double
// with std::log. Float's log handles subnormals itself; the float rows check the same identity.
TEST_CASE("regression: the vector log of a subnormal double is its logarithm", "[hostile]") {
    using V = xsimd::batch<double, xsimd::default_arch>;
    for (const double x : {4.9406564584124654e-324, 3.34359964235e-313, 1e-310, 2.2250738585072009e-308,
                           2.2250738585072014e-308, 1e-300, 0.5, 3.0}) {
        INFO("x = " << x);
        CHECK(distill::detail::log_of(V(x)).get(0) == Approx(std::log(x)).epsilon(1e-15));
    }
    CHECK(distill::detail::log_of(V(0.0)).get(0) == -inf);
    CHECK(std::isnan(distill::detail::log_of(V(-1e-310)).get(0)));
}

TEMPLATE_TEST_CASE("regression: a subnormal teacher probability counts at its own logarithm", "[hostile]", float,
                   double) {
    const TestType tiny = std::numeric_limits<TestType>::denorm_min() * 1000;
    for (const std::ptrdiff_t C : {10, 2000}) {
        matrix<TestType> s = distill_test::random_logits<TestType>(1, C, 11), t(1, C), g(1, C);
        t.setConstant(TestType(3));  // probabilities renormalised by the library: p = t / sum t
        t(0, 7) = tiny;
        // KL(q || p) = sum_c q_c (log q_c - log p_c), q = softmax(s), in double from the definition.
        double ms = -inf, zq = 0, zt = 0, kl = 0;
        for (std::ptrdiff_t c = 0; c < C; ++c) ms = std::max(ms, static_cast<double>(s(0, c)));
        for (std::ptrdiff_t c = 0; c < C; ++c) zq += std::exp(static_cast<double>(s(0, c)) - ms), zt += t(0, c);
        for (std::ptrdiff_t c = 0; c < C; ++c) {
            const double q = std::exp(static_cast<double>(s(0, c)) - ms) / zq;
            kl += q * (std::log(q) - (std::log(static_cast<double>(t(0, c))) - std::log(zt)));  // t / zt would round
        }
        const distill::divergence_loss<TestType> rkl({.divergence = distill::reverse_kl{},
                                                      .reduce = distill::reduction::sum,
                                                      .teacher = distill::teacher_input::probabilities});
        INFO("C = " << C);
        CHECK(rkl.loss_and_grad(s, t, g).total == Approx(kl).epsilon(std::is_same_v<TestType, float> ? 1e-5 : 1e-12));
        CHECK(rkl.loss(s, t).total == Approx(kl).epsilon(std::is_same_v<TestType, float> ? 1e-5 : 1e-12));
    }
}

// Found by the fuzzer: with a subnormal label smoothing (valid: eps in [0, 1)) eps / C underflowed
// to 0 and met the -inf sum of log r of a row with a masked class: 0 * -inf = NaN, in both
// kernels. eps * sum / C keeps the exact answer: any eps > 0 puts mass on the masked class, +inf.
TEMPLATE_TEST_CASE("regression: subnormal label smoothing with a masked class gives +inf, not NaN", "[hostile]",
                   float, double) {
    constexpr std::ptrdiff_t C = 779;
    matrix<TestType> s = distill_test::random_logits<TestType>(1, C, 3), g(1, C);
    const std::vector<std::int64_t> y{9};
    const double eps = 4.74303e-322;  // 96 * 2^-1074
    distill::cross_entropy<TestType> ce({.label_smoothing = eps, .reduce = distill::reduction::sum});
    const double unmasked = ce.loss(s, y).total;  // = -log r_9 to within the smoothing's 1e-320
    CHECK(std::isfinite(unmasked));
    s(0, 0) = -std::numeric_limits<TestType>::infinity();
    CHECK(ce.loss_and_grad(s, y, g).total == inf);
    CHECK(g.allFinite());
    distill::distillation_loss<TestType> kd({.temperature = 2, .alpha = 0.5, .label_smoothing = eps});
    CHECK(kd.loss(s, s, y).hard == inf);
}

TEMPLATE_TEST_CASE("subnormal logits behave as the zeros they nearly are", "[hostile][special]", float, double) {
    const double dm = std::numeric_limits<TestType>::denorm_min();
    matrix<TestType> g(1, 3);
    // Every shifted logit is within 1e-38 of 0: p = q = [1/3, 1/3, 1/3], KL = 0, q - p = 0.
    distill::kl_divergence<TestType> kl({.temperature = 2});
    const auto v = kl.loss_and_grad(row<TestType>({dm, 0, -dm}), row<TestType>({-dm, 1e-40, 0}), g);
    CHECK(std::abs(v.total) <= 1e-30);
    CHECK(g.cwiseAbs().maxCoeff() <= 1e-30);
    // r = [1/3, 1/3, 1/3]: CE = log 3.
    distill::cross_entropy<TestType> ce;
    CHECK(ce.loss(row<TestType>({dm, 0, -dm}), std::vector<std::int64_t>{1}).total == Approx(std::log(3.0)).epsilon(1e-6));
}

TEMPLATE_TEST_CASE("mixed masks: teacher and student mask different classes", "[hostile][special]", float, double) {
    distill::kl_divergence<TestType> kl({.temperature = 1});
    const double e = std::exp(1.0);
    SECTION("the teacher masks more than the student: finite") {
        // p = [0, 0, 1/2, 1/2], q = [0, 1, 1, e] / (2 + e):
        // KL = 1/2 log((2 + e) / 2) + 1/2 log((2 + e) / (2e)) = log((2 + e) / 2) - 1/2.
        matrix<TestType> g(1, 4);
        const auto v = kl.loss_and_grad(row<TestType>({-inf, 0, 0, 1}), row<TestType>({-inf, -inf, 0, 0}), g);
        CHECK(v.total == Approx(std::log((2 + e) / 2) - 0.5).epsilon(1e-6));
        CHECK(g(0, 0) == 0);  // masked in both: as if absent
        CHECK(g(0, 1) == Approx(1 / (2 + e)).epsilon(1e-6));
        CHECK(g(0, 2) == Approx(1 / (2 + e) - 0.5).epsilon(1e-6));
        CHECK(g(0, 3) == Approx(e / (2 + e) - 0.5).epsilon(1e-6));
    }
    SECTION("each masks a class the other gives mass: +inf, gradient finite") {
        // p = [0, 1/2, 1/2], q = [1/2, 0, 1/2]: p_1 log(p_1 / 0) = +inf; q - p = [1/2, -1/2, 0].
        matrix<TestType> g(1, 3);
        CHECK(kl.loss_and_grad(row<TestType>({0, -inf, 0}), row<TestType>({-inf, 0, 0}), g).total == inf);
        CHECK(g(0, 0) == Approx(0.5).epsilon(1e-6));
        CHECK(g(0, 1) == Approx(-0.5).epsilon(1e-6));
        CHECK(std::abs(g(0, 2)) <= 1e-6);
    }
    SECTION("masks across blocks of long rows, one row finite and one +inf") {
        // C = 3000 (three blocks of 1024). Row 0: the student masks classes < 1000, the teacher
        // classes < 1500: p uniform over 1500 classes, q over 2000, KL = log(2000 / 1500).
        // Row 1: the student also masks class 2999, where the teacher has mass: +inf.
        constexpr Eigen::Index C = 3000;
        matrix<TestType> s = matrix<TestType>::Zero(2, C), t = matrix<TestType>::Zero(2, C), g(2, C);
        s.leftCols(1000).setConstant(-std::numeric_limits<TestType>::infinity());
        t.leftCols(1500).setConstant(-std::numeric_limits<TestType>::infinity());
        s(1, C - 1) = -std::numeric_limits<TestType>::infinity();
        std::vector<double> rows(2);
        distill::kl_divergence<TestType> none({.reduce = distill::reduction::none});
        const auto v = none.loss_and_grad(s, t, g, {.losses = rows});
        CHECK(rows[0] == Approx(std::log(4.0 / 3.0)).epsilon(1e-6));
        CHECK(rows[1] == inf);
        CHECK(v.total == inf);
        CHECK(g.allFinite());
        CHECK(g.row(0).leftCols(1000).isZero());
        CHECK(g(0, 1200) == Approx(1 / 2000.0).epsilon(1e-5));          // q - 0
        CHECK(g(0, 2000) == Approx(1 / 2000.0 - 1 / 1500.0).epsilon(1e-5));  // q - p
    }
}

TEMPLATE_TEST_CASE("+inf logits make the loss NaN, as NaN does, and check_finite names them", "[hostile][special]", float,
                   double) {
    // max s = +inf, so s - max s = inf - inf = NaN: +inf has no softmax, and propagates like NaN.
    distill::distillation_loss<TestType> kd({.temperature = 2, .alpha = 0.5});
    const std::vector<std::int64_t> y{0};
    CHECK(std::isnan(kd.loss(row<TestType>({0, inf, 1}), row<TestType>({0, 0, 0}), y).total));
    CHECK(std::isnan(kd.loss(row<TestType>({0, 0, 1}), row<TestType>({0, inf, 0}), y).total));
    // The teacher is not read when alpha = 0, by the loss or by the scan.
    distill::distillation_loss<TestType> hard_only({.alpha = 0, .check_finite = true});
    CHECK(std::isfinite(hard_only.loss(row<TestType>({0, 0, 1}), row<TestType>({0, inf, 0}), y).total));
    distill::distillation_loss<TestType> checked({.temperature = 2, .check_finite = true});
    CHECK_THROWS_WITH(checked.loss(row<TestType>({0, inf, 1}), row<TestType>({0, 0, 0}), y),
                      Catch::Contains("distillation_loss: student logits: element (0, 1) is +inf"));
}

TEMPLATE_TEST_CASE("ignored and masked rows are not read: NaN or all -inf there changes nothing", "[hostile][special]",
                   float, double) {
    matrix<TestType> s = distill_test::random_logits<TestType>(3, 7, 1), t = distill_test::random_logits<TestType>(3, 7, 2);
    matrix<TestType> g(3, 7);
    distill::distillation_loss<TestType> kd({.temperature = 2});
    const std::vector<std::int64_t> y{1, -100, 2};
    const double clean = kd.loss(s, t, y).total;
    s(1, 3) = std::numeric_limits<TestType>::quiet_NaN();
    t.row(1).setConstant(-std::numeric_limits<TestType>::infinity());
    CHECK(kd.loss_and_grad(s, t, y, g).total == clean);
    CHECK(g.row(1).isZero());
    s.row(1).setConstant(-std::numeric_limits<TestType>::infinity());  // no "entirely -inf" error either
    CHECK(kd.loss(s, t, y).total == clean);
    // The same through the row mask, with pure distillation (no labels).
    distill::distillation_loss<TestType> pure({.temperature = 2, .alpha = 1});
    const std::vector<std::uint8_t> mask{1, 0, 1};
    CHECK(std::isfinite(pure.loss(s, t, std::vector<std::int64_t>{}, {.mask = mask}).total));
    // check_finite scans every row, ignored ones included: garbage in padding is still reported.
    s(1, 3) = std::numeric_limits<TestType>::quiet_NaN();
    distill::distillation_loss<TestType> checked({.temperature = 2, .check_finite = true});
    CHECK_THROWS_WITH(checked.loss(s, t, y), Catch::Contains("student logits: element (1, 3) is NaN"));
}

TEMPLATE_TEST_CASE("every row ignored, and N = 0, under every reduction", "[hostile][special]", float, double) {
    const matrix<TestType> s = distill_test::random_logits<TestType>(3, 5, 1), t = distill_test::random_logits<TestType>(3, 5, 2);
    const std::vector<std::int64_t> y{-100, -100, -100};
    for (auto reduce : {distill::reduction::none, distill::reduction::sum, distill::reduction::mean, distill::reduction::divide_by}) {
        INFO("reduction " << static_cast<int>(reduce));
        distill::distillation_loss<TestType> kd({.temperature = 2, .reduce = reduce, .normalizer = 8});
        std::vector<double> rows(3, 7.0);
        matrix<TestType> g = matrix<TestType>::Constant(3, 5, 7);
        const auto v = kd.loss_and_grad(s, t, y, g, {.losses = rows});
        CHECK(v.total == 0);
        CHECK(v.rows_counted == 0);
        CHECK(g.isZero());
        CHECK(rows == std::vector<double>{0, 0, 0});
        matrix<TestType> e(0, 5), ge(0, 5);
        const auto w = kd.loss_and_grad(e, e, std::vector<std::int64_t>{}, ge);  // N = 0: no row, no losses needed
        CHECK(w.total == 0);
        CHECK(w.rows_counted == 0);
    }
    // Pure distillation with every row masked out.
    distill::distillation_loss<TestType> pure({.alpha = 1});
    const std::vector<std::uint8_t> none_counted{0, 0, 0};
    CHECK(pure.loss(s, t, std::vector<std::int64_t>{}, {.mask = none_counted}).total == 0);
}

TEMPLATE_TEST_CASE("C = 1: the only class masked is an error, NaN propagates", "[hostile][special]", float, double) {
    distill::distillation_loss<TestType> kd({.temperature = 2});
    const std::vector<std::int64_t> y{0, 0};
    matrix<TestType> s = matrix<TestType>::Zero(2, 1), t = matrix<TestType>::Zero(2, 1);
    s(1, 0) = -std::numeric_limits<TestType>::infinity();
    CHECK_THROWS_WITH(kd.loss(s, t, y), Catch::Contains("row 1 of the student logits is entirely -inf"));
    s(1, 0) = std::numeric_limits<TestType>::quiet_NaN();
    CHECK(std::isnan(kd.loss(s, t, y).total));
}

TEMPLATE_TEST_CASE("logit spreads beyond the float range: +inf or the exact value, never NaN", "[hostile][special]", float,
                   double) {
    // s = [M, -M, 0] with M = FLT_MAX, t = 0: p = [1/3, 1/3, 1/3] and log q = [0, -2M, -M], so
    // KL = M - log 3 = 3.4e38, a double. In float the SIMD kernel computes s - max s in float, where
    // -2M overflows to -inf: the class acts as masked and the loss is +inf. The reference kernel
    // (DISTILL_NO_SIMD) and double logits compute in double and return the exact value.
    const double M = std::numeric_limits<float>::max();
    matrix<TestType> g(1, 3);
    distill::kl_divergence<TestType> kl;
    const double v = kl.loss_and_grad(row<TestType>({M, -M, 0}), row<TestType>({0, 0, 0}), g).total;
#if defined(DISTILL_NO_SIMD)
    const bool simd_float = false;
#else
    const bool simd_float = std::is_same_v<TestType, float>;
#endif
    if (simd_float)
        CHECK(v == inf);
    else
        CHECK(v == Approx(M - std::log(3.0)).epsilon(1e-12));
    // q = [1, 0, 0]: q - p = [2/3, -1/3, -1/3], finite either way.
    CHECK(g(0, 0) == Approx(2 / 3.0).epsilon(1e-6));
    CHECK(g(0, 1) == Approx(-1 / 3.0).epsilon(1e-6));
}

TEMPLATE_TEST_CASE("temperatures at the ends of the valid range, and just outside it", "[hostile][special]", float,
                   double) {
    // s = [0, 1, 2], t = [2, 1, 0]: as T -> 0, p -> [1, 0, 0], q -> [0, 0, 1] and log q_0 = -2 / T,
    // so T^2 KL -> 2 T, and d(T^2 KL)/ds = T (q - p) -> T [-1, 0, 1]. Exact to rounding at T = 1e-3
    // (the neglected terms are exp(-1000)).
    {
        const double T = 1e-3;
        distill::kl_divergence<TestType> kl({.temperature = T});
        matrix<TestType> g(1, 3);
        CHECK(kl.loss_and_grad(row<TestType>({0, 1, 2}), row<TestType>({2, 1, 0}), g).total == Approx(2 * T).epsilon(1e-5));
        CHECK(g(0, 0) == Approx(-T).epsilon(1e-5));
        CHECK(g(0, 2) == Approx(T).epsilon(1e-5));
    }
    // At T = 1e3 both distributions are nearly uniform: KL ~ (1/2) Var_p(t/T - s/T) = (1/2)(8/3)/T^2,
    // so T^2 KL -> 4/3 (second-order expansion of KL around the uniform distribution; Var over
    // three equally likely values of (t - s) = [2, 0, -2]).
    {
        distill::kl_divergence<TestType> kl({.temperature = 1e3});
        CHECK(kl.loss(row<TestType>({0, 1, 2}), row<TestType>({2, 1, 0})).total == Approx(4.0 / 3).epsilon(1e-2));
    }
    // Outside [1e-3, 1e3] the call is refused, naming the range and the value.
    for (double T : {1e-4, 2e3, 0.0, -1.0}) {
        INFO("T = " << T);
        CHECK_THROWS_WITH(distill::kl_divergence<TestType>({.temperature = T}),
                          Catch::Matchers::Contains("temperature must be in [0.001, 1000]"));
    }
}
