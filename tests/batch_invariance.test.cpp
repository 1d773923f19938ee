// A row's loss and gradient are bitwise the same whatever other rows share the call: the row alone,
// in micro-batches of 1, 7 and 32 rows, or in one batch of 64. A long row is cut into segments by its
// length alone; with few rows the segments run as separate work items, with many one after another,
// and both merge them in the same order. Gradient accumulation over micro-batches therefore equals
// one big batch exactly (under reduction::none or sum; mean divides by each call's own count).
// softmax and log_softmax likewise: short rows run several at a time, side by side, and a row gets
// the same bits there as alone, whatever the batch, the thread count and the row's place in it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;
using distill_test::thread_executor;

namespace {

template <class T>
void check_rows_match(const distill::divergence& d, Eigen::Index C) {
    const Eigen::Index N = 64;
    const auto s = distill_test::random_logits<T>(N, C, 21);
    const auto t = distill_test::random_logits<T>(N, C, 22);
    const auto y = distill_test::random_labels(N, C, 23);
    const distill::distillation_loss<T> kd(
        {.temperature = 2.5, .alpha = 0.6, .reduce = distill::reduction::none, .divergence = d});
    matrix<T> g_all(N, C);
    std::vector<double> l_all(N);
    kd.loss_and_grad(s, t, y, g_all, {.losses = l_all});
    for (Eigen::Index batch : {1, 7, 32}) {
        INFO("C = " << C << ", micro-batches of " << batch << ", divergence " << d.index());
        for (Eigen::Index first = 0; first < N; first += batch) {
            const Eigen::Index n = std::min(batch, N - first);
            matrix<T> g(n, C);
            std::vector<double> l(static_cast<std::size_t>(n));
            const std::vector<std::int64_t> yb(y.begin() + first, y.begin() + first + n);
            kd.loss_and_grad(s.middleRows(first, n), t.middleRows(first, n), yb, g, {.losses = l});
            CHECK(std::memcmp(l.data(), l_all.data() + first, sizeof(double) * static_cast<std::size_t>(n)) == 0);
            CHECK(std::memcmp(g.data(), g_all.data() + first * C, sizeof(T) * static_cast<std::size_t>(n * C)) == 0);
        }
    }
}

}  // namespace

TEMPLATE_TEST_CASE("every row is bitwise the same alone, in micro-batches of 1, 7 and 32, and in a batch of 64",
                   "[batch]", float, double) {
    // 32000 classes: 32 blocks, 8 segments per row; one and seven rows split their segments over
    // work items, 32 and 64 rows run them in turn. 1000 classes: one block, rows whole. 100 classes:
    // held in registers (float on AVX-512) or one block.
    for (Eigen::Index C : {32000, 1000, 100})
        for (const distill::divergence& d : {distill::divergence{distill::forward_kl{}}, distill::divergence{distill::jensen_shannon{}}})
            check_rows_match<TestType>(d, C);
}

// 37 rows: two whole groups of 16 lanes (AVX-512 float) and five left, four of 8 and five left
// (AVX2 float), and so on; classes from 1 to past the longest row that runs side by side (12 floats).
TEMPLATE_TEST_CASE("softmax and log_softmax: every row bitwise the same alone, in micro-batches and on threads",
                   "[batch][softmax]", float, double) {
    const Eigen::Index N = 37;
    for (Eigen::Index C : {1, 3, 6, 10, 12, 13, 16, 40})
        for (bool log : {false, true})
            for (double T : {1.0, 2.5}) {
                INFO("C = " << C << ", T = " << T << (log ? ", log_softmax" : ", softmax"));
                auto s = distill_test::random_logits<TestType>(N, C, 31);
                if (C > 1) s(5, 0) = -std::numeric_limits<TestType>::infinity();  // a masked class
                const auto run = [&](auto&& exec, const auto& in, matrix<TestType>& out) {
                    if (log)
                        distill::log_softmax(exec, in, out, T);
                    else
                        distill::softmax(exec, in, out, T);
                };
                matrix<TestType> all(N, C);
                run(distill::sequential, s, all);
                for (int threads : {2, 7}) {
                    matrix<TestType> on_threads(N, C);
                    run(thread_executor{threads}, s, on_threads);
                    CHECK(std::memcmp(on_threads.data(), all.data(), sizeof(TestType) * static_cast<std::size_t>(N * C)) == 0);
                }
                for (Eigen::Index batch : {1, 7, 32}) {
                    INFO("micro-batches of " << batch);
                    for (Eigen::Index first = 0; first < N; first += batch) {
                        const Eigen::Index n = std::min(batch, N - first);
                        matrix<TestType> out(n, C);
                        run(distill::sequential, s.middleRows(first, n), out);
                        CHECK(std::memcmp(out.data(), all.data() + first * C, sizeof(TestType) * static_cast<std::size_t>(n * C)) == 0);
                    }
                }
            }
}

// Loss rows of up to 12 float (6 double) classes run side by side, a row per lane, when a share of
// the rows fills a group (detail/simd/lane_loss.hpp), and alone otherwise: the 36 counted rows of 37
// (row 20 is ignored) make two whole groups of 16 lanes and four left alone (AVX-512 float), four
// of 8 and four left (AVX2 float), and so on; micro-batches of one row run every row alone, and
// threads cut the groups elsewhere. A row's loss and gradient must be the same bits every way, with
// the label's target, a class masked on both sides, an ignored row, the teacher given as logits or
// as probabilities, whole temperatures that take r = q^T (1, 2, 3, 4) and fractional ones; C = 13 and
// 16 run alone always (the boundary).
TEMPLATE_TEST_CASE("short loss rows: every row bitwise the same in a group of lanes, alone and on threads",
                   "[batch][short]", float, double) {
    using T = TestType;
    const Eigen::Index N = 37;
    struct setup {
        const char* name;
        double temperature, alpha;
        bool hard, probabilities, in_place;
    };
    const setup setups[] = {
        {"KL, T = 4", 4.0, 1.0, false, false, false},
        {"distillation, T = 1", 1.0, 0.5, true, false, false},
        {"distillation, T = 2.5", 2.5, 0.3, true, false, false},
        {"distillation, T = 4, teacher probabilities", 4.0, 0.7, true, true, false},
        {"cross-entropy alone (alpha = 0)", 1.0, 0.0, true, false, false},
        {"distillation, T = 2, gradient over the student logits", 2.0, 0.5, true, false, true},
        {"distillation, T = 3 (r = q^T, T known at run time only)", 3.0, 0.5, true, false, false},
    };
    for (Eigen::Index C : {1, 3, 6, 8, 10, 12, 13, 16})
        for (const setup& u : setups) {
            INFO("C = " << C << ", " << u.name);
            auto s = distill_test::random_logits<T>(N, C, 41);
            matrix<T> t = distill_test::random_logits<T>(N, C, 42);
            auto y = distill_test::random_labels(N, C, 43);
            if (C > 2) {  // a class both sides mask: it contributes nothing
                s(9, 1) = t(9, 1) = -std::numeric_limits<T>::infinity();
                y[9] = 0;
            }
            y[20] = -100;  // ignored: zero loss and gradient, and the rows after it shift lanes
            if (u.probabilities)
                for (Eigen::Index i = 0; i < N; ++i) {
                    const T m = t.row(i).maxCoeff();
                    t.row(i) = (t.row(i).array() - m).exp();
                    t.row(i) /= t.row(i).sum();
                }
            const distill::distillation_loss<T> kd(
                {.temperature = u.temperature,
                 .alpha = u.alpha,
                 .reduce = distill::reduction::none,
                 .teacher = u.probabilities ? distill::teacher_input::probabilities : distill::teacher_input::logits});
            // Runs rows [first, first + n) in one call; returns their gradient (written in place or not).
            const auto run = [&](auto&& exec, Eigen::Index first, Eigen::Index n, std::vector<double>& l) {
                const std::vector<std::int64_t> yb(y.begin() + first, y.begin() + first + n);
                l.assign(static_cast<std::size_t>(n), 0.0);
                matrix<T> g = s.middleRows(first, n);
                if (u.in_place)
                    kd.loss_and_grad(exec, g, t.middleRows(first, n), yb, g, {.losses = l});
                else
                    kd.loss_and_grad(exec, s.middleRows(first, n), t.middleRows(first, n), yb, g, {.losses = l});
                return g;
            };
            std::vector<double> l_all;
            const matrix<T> g_all = run(distill::sequential, 0, N, l_all);
            CHECK(l_all[20] == 0);
            CHECK((g_all.row(20).array() == 0).all());
            const auto bytes = [&](Eigen::Index rows) { return sizeof(T) * static_cast<std::size_t>(rows * C); };
            for (int threads : {2, 7}) {
                INFO(threads << " threads");
                std::vector<double> l;
                const matrix<T> g = run(thread_executor{threads}, 0, N, l);
                CHECK(std::memcmp(l.data(), l_all.data(), sizeof(double) * static_cast<std::size_t>(N)) == 0);
                CHECK(std::memcmp(g.data(), g_all.data(), bytes(N)) == 0);
            }
            for (Eigen::Index batch : {1, 7, 32}) {
                INFO("micro-batches of " << batch);
                for (Eigen::Index first = 0; first < N; first += batch) {
                    const Eigen::Index n = std::min(batch, N - first);
                    std::vector<double> l;
                    const matrix<T> g = run(distill::sequential, first, n, l);
                    CHECK(std::memcmp(l.data(), l_all.data() + first, sizeof(double) * static_cast<std::size_t>(n)) == 0);
                    CHECK(std::memcmp(g.data(), g_all.data() + first * C, bytes(n)) == 0);
                }
            }
        }
}

// A NaN logit makes its row's loss and gradient NaN in a group as alone, and leaves the other rows
// of its group as they are without it.
TEMPLATE_TEST_CASE("a NaN in a group of short rows stays in its own row", "[batch][short]", float, double) {
    using T = TestType;
    const Eigen::Index N = 32, C = 10;
    auto s = distill_test::random_logits<T>(N, C, 51);
    const auto t = distill_test::random_logits<T>(N, C, 52);
    const auto y = distill_test::random_labels(N, C, 53);
    const distill::distillation_loss<T> kd({.temperature = 2.0, .alpha = 0.5, .reduce = distill::reduction::none});
    matrix<T> g_clean(N, C), g(N, C), g_alone(1, C);
    std::vector<double> l_clean(N), l(N), l_alone(1);
    kd.loss_and_grad(s, t, y, g_clean, {.losses = l_clean});
    s(3, 4) = std::numeric_limits<T>::quiet_NaN();
    kd.loss_and_grad(s, t, y, g, {.losses = l});
    const std::vector<std::int64_t> y3{y[3]};
    kd.loss_and_grad(s.middleRows(3, 1), t.middleRows(3, 1), y3, g_alone, {.losses = l_alone});
    CHECK(std::isnan(l[3]));
    CHECK(std::isnan(l_alone[0]));
    CHECK(g.row(3).array().isNaN().all());
    CHECK(g_alone.array().isNaN().all());
    for (Eigen::Index i = 0; i < N; ++i) {
        if (i == 3) continue;
        INFO("row " << i);
        CHECK(std::memcmp(&l[static_cast<std::size_t>(i)], &l_clean[static_cast<std::size_t>(i)], sizeof(double)) == 0);
        CHECK(std::memcmp(g.row(i).data(), g_clean.row(i).data(), sizeof(T) * C) == 0);
    }
}

// A row whose logits are all -inf is the call's error, named by its index, whether it ran in a group
// or alone and on any thread count; the teacher's likewise, and the student's first when both are.
TEST_CASE("an all -inf row in a group of short rows is named as when it runs alone", "[batch][short]") {
    const Eigen::Index N = 40, C = 10;
    const auto t0 = distill_test::random_logits<float>(N, C, 61);
    const auto y = distill_test::random_labels(N, C, 62);
    const distill::distillation_loss<float> kd({.temperature = 2.0, .alpha = 0.5});
    const float minus_inf = -std::numeric_limits<float>::infinity();
    for (const bool teacher_side : {false, true}) {
        auto s = distill_test::random_logits<float>(N, C, 63);
        auto t = t0;
        (teacher_side ? t : s).row(25).setConstant(minus_inf);
        if (!teacher_side) t.row(33).setConstant(minus_inf);  // a later teacher row: the student's is named
        const std::string expected = std::string("distillation_loss: row 25 of the ") +
                                     (teacher_side ? "teacher" : "student") +
                                     " logits is entirely -inf (every class masked), so its softmax is undefined";
        matrix<float> g(N, C);
        distill::loss_value v;
        for (int threads : {1, 2, 7}) {
            INFO((teacher_side ? "teacher" : "student") << ", " << threads << " threads");
            const distill::status st = kd.try_loss_and_grad(thread_executor{threads}, s, t, y, g, v);
            REQUIRE(!st.ok());
            CHECK(std::string(st.message()) == expected);
        }
    }
}
