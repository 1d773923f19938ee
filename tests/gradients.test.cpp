// Gradients against central finite differences of the loss itself, in double, for every loss, every
// divergence of the family and the option combinations. The expected value of each gradient entry is
//     (L(s + h e_ij) - L(s - h e_ij)) / 2h,
// whose truncation error is h^2 L''' / 6 and rounding error about 1e-16 |L| / h. At h = 1e-5, with
// logits of spread 3 and T >= 0.5, L''' is at most a few hundred (each derivative through the
// softmax brings a factor 1 / T and a weight of at most 8, decoupled KD's), so the truncation error
// is below 1e-8 and the rounding error about 1e-11 |L|: the checks allow 1e-7 absolute plus 1e-6
// relative, which a wrong term (an error of the size of a probability) exceeds by orders of magnitude.
// A larger h would let the truncation error grow as h^2, a smaller one the rounding as 1 / h.
//
// Finite differences check the gradient against the loss, not the loss itself: so the divergence
// tests below also compare each loss with the divergence computed directly from its definition in
// double (tests/family.hpp).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include <distill/distill.hpp>

#include "family.hpp"
#include "test_support.hpp"

namespace {

using matrix = distill_test::matrix<double>;

constexpr double h = 1e-5;  // the finite-difference step (the header says why)

void check_against_finite_differences(const matrix& s, const std::function<double(const matrix&)>& loss,
                                      const matrix& grad) {
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

namespace {

using distill::teacher_input;
constexpr double minus_inf = -std::numeric_limits<double>::infinity();

// The same teacher distribution p = softmax(t / T) in each of the three forms the API accepts:
// the logits themselves (at T), log_softmax(t / T) and softmax(t / T) (T does not apply to either).
matrix teacher_values(const matrix& t, teacher_input input, double T) {
    if (input == teacher_input::logits) return t;
    matrix out(t.rows(), t.cols());
    for (Eigen::Index i = 0; i < t.rows(); ++i) {
        const std::vector<double> row(t.row(i).data(), t.row(i).data() + t.cols());
        const std::vector<double> p = distill_test::softmax_of(row, 1 / T);
        for (Eigen::Index j = 0; j < t.cols(); ++j)
            out(i, j) = input == teacher_input::probabilities ? p[static_cast<std::size_t>(j)]
                                                              : std::log(p[static_cast<std::size_t>(j)]);
    }
    return out;
}

// Class masks: the teacher masks (1, 2), (3, 0) and (3, 4); the student masks (3, 4) as well (both
// sides masked: a term 0 in every divergence). A reverse-type divergence is +inf where only the
// teacher masks, so there the student masks every teacher-masked class too. With label smoothing
// the cross-entropy reads every student logit (+inf at a mask), so then the student masks nothing,
// and a reverse-type divergence gets no masks at all.
struct masks {
    bool student_may_mask = true;
    bool reverse_type = false;
    void apply(matrix& s, matrix& t) const {
        if (reverse_type && !student_may_mask) return;
        for (auto [i, j] : {std::pair{1, 2}, std::pair{3, 0}, std::pair{3, 4}}) {
            t(i, j) = minus_inf;
            if (student_may_mask && (reverse_type || (i == 3 && j == 4))) s(i, j) = minus_inf;
        }
    }
};

std::vector<double> row_of(const matrix& m, Eigen::Index i) { return {m.row(i).data(), m.row(i).data() + m.cols()}; }

// The loss by the definitions: mean over the counted rows of alpha T^2 D(p, q) + (1 - alpha) CE,
// CE = -(1 - eps) log r_y - eps / C sum_c log r_c with r = softmax(s) (y empty: no hard term).
double loss_by_definition(const distill::divergence& d, const matrix& s, const matrix& t_logits,
                          const std::vector<std::int64_t>& y, double T, double alpha, double eps) {
    double total = 0;
    int counted = 0;
    for (Eigen::Index i = 0; i < s.rows(); ++i) {
        const std::int64_t label = y.empty() ? -1 : y[static_cast<std::size_t>(i)];
        if (!y.empty() && label == -100) continue;
        ++counted;
        const auto p = distill_test::softmax_of(row_of(t_logits, i), 1 / T);
        const auto q = distill_test::softmax_of(row_of(s, i), 1 / T);
        total += alpha * T * T * distill_test::divergence_by_definition(d, p, q, label);
        if (alpha < 1) {
            const auto r = distill_test::softmax_of(row_of(s, i), 1.0);
            double ce = -(1 - eps) * std::log(r[static_cast<std::size_t>(label)]);
            if (eps > 0)
                for (double rc : r) ce -= eps / static_cast<double>(s.cols()) * std::log(rc);
            total += (1 - alpha) * ce;
        }
    }
    return total / counted;
}

// Total variation has a kink where p_c = q_c; a central difference straddling it would measure a
// one-sided mix. A step h in one logit moves q_c by at most h q_c / T (dq_c/ds_j = q_c (d_cj - q_j) / T),
// so |p_c - q_c| > 10 h q_c / T keeps every kink out of reach (the data are fixed: this guards the
// test's own premise).
void require_no_kink_within_step(const matrix& s, const matrix& t_logits, double T) {
    for (Eigen::Index i = 0; i < s.rows(); ++i) {
        const auto p = distill_test::softmax_of(row_of(t_logits, i), 1 / T);
        const auto q = distill_test::softmax_of(row_of(s, i), 1 / T);
        for (std::size_t c = 0; c < p.size(); ++c)
            if (p[c] != 0 || q[c] != 0) REQUIRE(std::abs(p[c] - q[c]) > 10 * h * q[c] / T);
    }
}

}  // namespace

TEST_CASE("divergence_loss: every divergence's gradient equals finite differences, for each temperature and "
          "teacher input, with masked teacher classes",
          "[gradients][family]") {
    const Eigen::Index N = 4, C = 6;
    for (const distill::divergence& d : distill_test::label_free_divergences()) {
        const masks m{.student_may_mask = true, .reverse_type = distill_test::infinite_where_teacher_masks(d)};
        matrix s = distill_test::random_logits<double>(N, C, 21);
        matrix t = distill_test::random_logits<double>(N, C, 22);
        m.apply(s, t);
        for (double T : {0.5, 1.0, 2.5})
            for (teacher_input input : {teacher_input::logits, teacher_input::log_probabilities, teacher_input::probabilities})
                for (bool t2 : {true, false}) {
                    const matrix teacher = teacher_values(t, input, T);
                    distill::divergence_loss<double> loss(
                        {.divergence = d, .temperature = T, .scale_by_t_squared = t2, .teacher = input});
                    INFO(distill_test::describe(d) << ", T = " << T << ", " << distill_test::describe(input)
                                                   << ", T^2 " << t2);
                    if (std::holds_alternative<distill::total_variation>(d)) require_no_kink_within_step(s, t, T);
                    matrix g(N, C);
                    const double value = loss.loss_and_grad(s, teacher, g).total;
                    // Expected: the mean of T^2 D(p, q) over the rows, from the definitions (family.hpp).
                    const double expected = loss_by_definition(d, s, t, {}, T, 1.0, 0.0) / (t2 ? 1.0 : T * T);
                    CHECK(value == Approx(expected).epsilon(1e-12).margin(1e-13));
                    check_against_finite_differences(s, [&](const matrix& x) { return loss.loss(x, teacher).total; }, g);
                }
    }
}

TEST_CASE("distillation_loss: every divergence's gradient, decoupled KD included, equals finite differences, with "
          "labels, alpha, label smoothing and masked teacher classes",
          "[gradients][family]") {
    const Eigen::Index N = 5, C = 7;
    for (const distill::divergence& d : distill_test::all_divergences())
        for (double eps : {0.0, 0.1}) {
            const masks m{.student_may_mask = eps == 0, .reverse_type = distill_test::infinite_where_teacher_masks(d)};
            matrix s = distill_test::random_logits<double>(N, C, 31);
            matrix t = distill_test::random_logits<double>(N, C, 32);
            m.apply(s, t);
            // Row 1's label is the class the teacher masks (decoupled KD with p_y = 0), unless the
            // student masks it too; row 2 is ignored; row 4's label is the last class.
            const bool student_masks_row_1 = m.reverse_type && m.student_may_mask;
            const std::vector<std::int64_t> y{3, student_masks_row_1 ? 5 : 2, -100, 1, C - 1};
            for (double T : {0.5, 2.5})
                for (double alpha : {0.3, 1.0})
                    for (teacher_input input : {teacher_input::logits, teacher_input::log_probabilities,
                                                teacher_input::probabilities}) {
                        const matrix teacher = teacher_values(t, input, T);
                        distill::distillation_loss<double> loss({.temperature = T,
                                                                 .alpha = alpha,
                                                                 .label_smoothing = eps,
                                                                 .divergence = d,
                                                                 .teacher = input});
                        INFO(distill_test::describe(d) << ", T = " << T << ", alpha = " << alpha << ", eps = " << eps
                                                       << ", " << distill_test::describe(input));
                        if (std::holds_alternative<distill::total_variation>(d)) require_no_kink_within_step(s, t, T);
                        matrix g(N, C);
                        const double value = loss.loss_and_grad(s, teacher, y, g).total;
                        CHECK(value == Approx(loss_by_definition(d, s, t, y, T, alpha, eps)).epsilon(1e-12).margin(1e-13));
                        check_against_finite_differences(s, [&](const matrix& x) { return loss.loss(x, teacher, y).total; },
                                                         g);
                        CHECK(g.row(2).isZero());  // the ignored row
                    }
        }
}
