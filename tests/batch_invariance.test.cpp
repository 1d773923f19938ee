// A row's loss and gradient are bitwise the same whatever other rows share the call: the row alone,
// in micro-batches of 1, 7 and 32 rows, or in one batch of 64. A long row is cut into segments by its
// length alone; with few rows the segments run as separate work items, with many one after another,
// and both merge them in the same order. Gradient accumulation over micro-batches therefore equals
// one big batch exactly (under reduction::none or sum; mean divides by each call's own count).
// softmax and log_softmax likewise: short rows run several at a time, side by side, and a row gets
// the same bits there as alone, whatever the batch, the thread count and the row's place in it.
#include <catch2/catch.hpp>

#include <cstring>
#include <limits>
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
