// Results do not depend on the executor: the same input gives bitwise the same loss and gradient
// on 1, 2 and 7 threads, because the library fixes the partition and the order of the sums.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include <distill/distill.hpp>

#include "differential.hpp"
#include "family.hpp"
#include "test_support.hpp"

using distill_test::matrix;
using distill_test::same_bits;

using distill_test::thread_executor;
static_assert(distill::executor<thread_executor>);

constexpr distill::teacher_input teacher_inputs[3] = {distill::teacher_input::logits,
                                                      distill::teacher_input::log_probabilities,
                                                      distill::teacher_input::probabilities};

namespace {

// Every divergence in the distillation loss (decoupled KD needs its labels), with the teacher's
// values in each of the three forms in turn, spread over the divergences rather than multiplying them.
template <class T>
distill::distillation_loss<T> loss_with(const distill::divergence& d, std::size_t which, double alpha = 0.5) {
    return distill::distillation_loss<T>({.temperature = 2.5,
                                          .alpha = alpha,
                                          .label_smoothing = 0.1,
                                          .reduce = distill::reduction::sum,
                                          .divergence = d,
                                          .teacher = teacher_inputs[which % 3]});
}

// Teacher values for `input`: the logits, or log_softmax / softmax of them at T = 2.5.
template <class T>
matrix<T> teacher_values(const matrix<T>& t, distill::teacher_input input) {
    if (input == distill::teacher_input::logits) return t;
    matrix<T> out(t.rows(), t.cols());
    if (input == distill::teacher_input::probabilities)
        distill::softmax(t, out, 2.5);
    else
        distill::log_softmax(t, out, 2.5);
    return out;
}

// The loss and gradient on 1, 2 and 7 threads, and with the sequential executor, are bitwise the same.
template <class T, class Call>
void check_thread_counts(Eigen::Index N, Eigen::Index C, Call&& call) {
    matrix<T> g1(N, C), g_seq(N, C);
    std::vector<double> rows1(static_cast<std::size_t>(N)), rows_seq(rows1.size());
    const double l1 = call(thread_executor{1}, g1, rows1);
    const double l_seq = call(distill::sequential, g_seq, rows_seq);
    CHECK(std::memcmp(&l1, &l_seq, sizeof l1) == 0);
    CHECK(same_bits(g1, g_seq));
    for (int threads : {2, 7}) {
        matrix<T> g(N, C);
        std::vector<double> rows(rows1.size());
        const double l = call(thread_executor{threads}, g, rows);
        INFO(N << " x " << C << " on " << threads << " threads: " << l << " vs " << l1);
        CHECK(std::memcmp(&l, &l1, sizeof l) == 0);
        CHECK(same_bits(g, g1));
        CHECK(std::memcmp(rows.data(), rows1.data(), rows.size() * sizeof(double)) == 0);
    }
}

}  // namespace

TEMPLATE_TEST_CASE("1, 2 and 7 threads give bitwise identical results for every divergence", "[executor]", float,
                   double) {
    // 200 x 1000: whole rows in 64 pieces; 3 x 40000 and 3 x 70001: few long rows, each cut into
    // column segments whose statistics and sums merge in a fixed order; 130 x 17: short rows.
    for (auto [N, C] : {std::pair<Eigen::Index, Eigen::Index>{200, 1000}, {3, 40000}, {3, 70001}, {130, 17}}) {
        const auto s = distill_test::random_logits<TestType>(N, C, 1);
        const auto t = distill_test::random_logits<TestType>(N, C, 2);
        const auto y = distill_test::random_labels(N, C, 3);
        const auto family = distill_test::all_divergences();
        for (std::size_t i = 0; i < family.size(); ++i) {
            const distill::divergence& d = family[i];
            const auto teacher = teacher_values(t, teacher_inputs[i % 3]);
            INFO(distill_test::describe(d) << ", " << distill_test::describe(teacher_inputs[i % 3]));
            const auto kd = loss_with<TestType>(d, i);
            check_thread_counts<TestType>(N, C, [&](auto&& exec, matrix<TestType>& g, std::vector<double>& rows) {
                return kd.loss_and_grad(exec, s, teacher, y, g, {.losses = rows}).total;
            });
            if (distill_test::is_decoupled_kd(d)) continue;  // the divergence alone, without labels
            const distill::divergence_loss<TestType> soft(
                {.divergence = d, .temperature = 2.5, .teacher = teacher_inputs[i % 3]});
            check_thread_counts<TestType>(N, C, [&](auto&& exec, matrix<TestType>& g, std::vector<double>& rows) {
                return soft.loss_and_grad(exec, s, teacher, g, {.losses = rows}).total;
            });
        }
    }
}

TEMPLATE_TEST_CASE("few long rows are cut into column segments that merge to the reference's result, for every "
                   "divergence",
                   "[executor]", float, double) {
    // 3 rows of 70001 classes: fewer rows than pieces, so each row runs as 21 column segments whose
    // statistics (and, for the normalise-first divergences, sums) merge (detail/schedule.hpp).
    // Expected: the scalar reference kernel on whole rows, within the SIMD-vs-reference bound of
    // tests/differential.hpp (the reference alone runs under DISTILL_NO_SIMD, where the segments
    // still merge).
    const Eigen::Index N = 3, C = 70001;
    auto s = distill_test::random_logits<TestType>(N, C, 4);
    auto t = distill_test::random_logits<TestType>(N, C, 5);
    for (Eigen::Index c = 0; c < C; ++c) t(1, c) += static_cast<TestType>(20.0 * c / C);  // maxima rise along the row
    s(2, 5) = -std::numeric_limits<TestType>::infinity();                                 // a masked class
    const std::vector<std::int64_t> y{0, C - 1, 35000};
    const auto family = distill_test::all_divergences();
    for (std::size_t i = 0; i < family.size(); ++i) {
        const distill::divergence& d = family[i];
        const distill::teacher_input input = teacher_inputs[i % 3];
        const auto teacher = teacher_values(t, input);
        const auto kd = loss_with<TestType>(d, i);
        matrix<TestType> g(N, C);
        std::vector<double> rows(N);
        kd.loss_and_grad(thread_executor{2}, s, teacher, y, g, {.losses = rows});

        distill::detail::row_terms k;
        k.soft = k.hard = true;
        k.temperature = 2.5;
        k.inv_temperature = 1 / 2.5;
        k.integer_temperature = distill::detail::whole_temperature(k.temperature);
        k.smoothing = 0.1;
        k.soft_grad = 0.5 * 2.5;  // alpha T^2 / T
        k.hard_grad = 0.5;
        distill_test::set_divergence(k, d);
        distill_test::set_teacher_input(k, input);
        using bound = distill_test::kernel_bound<TestType>;
        for (Eigen::Index i_row = 0; i_row < N; ++i_row) {
            const TestType* si = s.row(i_row).data();
            const TestType* ti = teacher.row(i_row).data();
            std::vector<TestType> g_ref(C);
            const auto r = distill::detail::reference::fused_row(si, ti, y[i_row], C, k, g_ref.data());
            const double expected = 0.5 * 2.5 * 2.5 * r.divergence + 0.5 * r.ce;
            const auto sc = distill_test::reference_scales(si, ti, y[i_row], C, k);
            INFO(distill_test::describe(d) << ", " << distill_test::describe(input) << ", row " << i_row << ": " << rows[i_row]
                                           << " vs reference " << expected);
            CHECK(distill_test::scaled_error(rows[i_row], expected, 0.5 * 2.5 * 2.5 * sc.divergence + 0.5 * sc.ce) <=
                  bound::loss(C));
            double worst = 0;
            for (Eigen::Index c = 0; c < C; ++c)
                worst = std::max(worst, distill_test::scaled_error(g(i_row, c), g_ref[c], sc.grad, sc.grad_slack));
            CHECK(worst <= bound::grad(C));
        }
    }
}
