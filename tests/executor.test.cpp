// Results do not depend on the executor: the same input gives bitwise the same loss and gradient
// on 1, 2 and 7 threads, because the library fixes the partition and the order of the sums.
#include <catch2/catch.hpp>

#include <cstring>
#include <thread>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;

namespace {
// A parallel_for(begin, end, fn) that splits [begin, end) over `threads` std::threads.
struct thread_executor {
    int threads;
    template <class Fn>
    void operator()(std::ptrdiff_t begin, std::ptrdiff_t end, Fn&& fn) const {
        std::vector<std::thread> pool;
        const std::ptrdiff_t n = end - begin;
        for (int k = 0; k < threads; ++k) {
            const std::ptrdiff_t b = begin + n * k / threads, e = begin + n * (k + 1) / threads;
            if (b < e) pool.emplace_back([&fn, b, e] { fn(b, e); });
        }
        for (auto& th : pool) th.join();
    }
};
static_assert(distill::executor<thread_executor>);
}  // namespace

TEMPLATE_TEST_CASE("1, 2 and 7 threads give bitwise identical results", "[executor]", float, double) {
    for (auto [N, C] : {std::pair<Eigen::Index, Eigen::Index>{200, 1000}, {3, 40000}, {130, 17}}) {
        const auto s = distill_test::random_logits<TestType>(N, C, 1);
        const auto t = distill_test::random_logits<TestType>(N, C, 2);
        const auto y = distill_test::random_labels(N, C, 3);
        distill::distillation_loss<TestType> kd({.temperature = 2.5, .alpha = 0.5});
        matrix<TestType> g1(N, C);
        const double l1 = kd.loss_and_grad(thread_executor{1}, s, t, y, g1).total;
        const double l_seq = kd.loss_and_grad(s, t, y, g1).total;
        INFO(N << " x " << C << ": " << l1 << " vs " << l_seq);
        CHECK(std::memcmp(&l1, &l_seq, sizeof l1) == 0);
        for (int threads : {2, 7}) {
            matrix<TestType> g(N, C);
            const double l = kd.loss_and_grad(thread_executor{threads}, s, t, y, g).total;
            INFO(N << " x " << C << " on " << threads << " threads");
            CHECK(std::memcmp(&l, &l1, sizeof l) == 0);
            CHECK(std::memcmp(g.data(), g1.data(), sizeof(TestType) * static_cast<std::size_t>(g.size())) == 0);
        }
    }
}
