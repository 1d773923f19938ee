// The fused calls do no heap allocation: every operator new in this program is counted, and the
// count must not move across a loss_and_grad call.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <new>
#include <span>
#include <string>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

namespace {
std::atomic<long> allocations{0};
}

void* operator new(std::size_t size) {
    ++allocations;
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
// The nothrow forms too: left to the runtime they allocate with its own new (ASan's, under the
// sanitize preset), and the replaced delete above would free that with free().
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    ++allocations;
    return std::malloc(size ? size : 1);
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

using distill_test::matrix;

TEMPLATE_TEST_CASE("loss_and_grad allocates nothing", "[allocation]", float, double) {
    for (Eigen::Index C : {10, 1000, 70001}) {
        const Eigen::Index N = 8;
        const auto s = distill_test::random_logits<TestType>(N, C, 1);
        const auto t = distill_test::random_logits<TestType>(N, C, 2);
        auto y = distill_test::random_labels(N, C, 3);
        y[1] = -100;
        matrix<TestType> g(N, C);
        std::vector<double> rows(N);
        const std::vector<std::uint8_t> mask(N, 1);
        distill::distillation_loss<TestType> kd({.temperature = 2.5, .alpha = 0.5, .label_smoothing = 0.1});
        distill::kl_divergence<TestType> kl({.temperature = 4});
        distill::cross_entropy<TestType> ce;
        Eigen::TensorMap<Eigen::Tensor<const TestType, 3, Eigen::RowMajor>> s3(s.data(), 2, 4, C), t3(t.data(), 2, 4, C);

        const long before = allocations.load();
        kd.loss_and_grad(s, t, y, g, {.mask = mask, .losses = rows});
        kd.loss_and_grad(s3, t3, y, g);
        kl.loss_and_grad(s, t, g);
        ce.loss_and_grad(s, y, g);
        distill::loss_value v;
        (void)kd.try_loss_and_grad(s, t, y, g, v);
        const long after = allocations.load();
        INFO("C = " << C);
        CHECK(after - before == 0);
        CHECK(v.rows_counted == N - 1);  // the calls above really ran
    }
}

TEMPLATE_TEST_CASE("a top-k teacher's calls allocate nothing", "[allocation][top_k]", float, double) {
    const Eigen::Index N = 8, C = 5000, k = 30;
    const auto s = distill_test::random_logits<TestType>(N, C, 7);
    auto y = distill_test::random_labels(N, C, 8);
    y[3] = -100;
    Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> indices(N, k);
    matrix<TestType> values(N, k), g(N, C);
    for (Eigen::Index i = 0; i < N; ++i)
        for (Eigen::Index j = 0; j < k; ++j) indices(i, j) = (i * 131 + j * 97) % C, values(i, j) = TestType(-4);
    for (const distill::top_k_mode mode : {distill::top_k_mode::tail_bucket, distill::top_k_mode::renormalize}) {
        const distill::top_k_distillation_loss<TestType> kd(
            {.temperature = 2.0, .alpha = 0.5, .label_smoothing = 0.1, .teacher = distill::teacher_input::log_probabilities},
            {.mode = mode});
        const long before = allocations.load();
        const distill::loss_value v = kd.loss_and_grad(s, distill::top_k(indices, values), y, g);
        kd.loss(s, distill::top_k(indices, values), y);
        const long after = allocations.load();
        CHECK(after - before == 0);
        CHECK(v.rows_counted == N - 1);  // the calls above really ran
    }
}

TEMPLATE_TEST_CASE("the sharded calls and the merges allocate nothing", "[allocation]", float, double) {
    // One rank of two over a vocabulary of 2C, its records merged with the other's (here the same
    // columns again, standing in for them); every divergence shape: forward KL, normalise-first,
    // decoupled KD on the reference kernels.
    const Eigen::Index N = 8, C = 3000;
    const auto s = distill_test::random_logits<TestType>(N, C, 4);
    const auto t = distill_test::random_logits<TestType>(N, C, 5);
    auto y = distill_test::random_labels(N, 2 * C, 6);
    y[2] = -100;
    matrix<TestType> g(N, C);
    std::vector<distill::row_statistics> mine(N), theirs(N), combined(N);
    std::vector<distill::row_sums> sums(N), their_sums(N);
    for (const distill::divergence& d :
         {distill::divergence{distill::forward_kl{}}, distill::divergence{distill::jensen_shannon{}},
          distill::divergence{distill::decoupled_kd{}}}) {
        const distill::distillation_options o{.temperature = 2.0, .alpha = 0.5, .divergence = d};
        const distill::sharded_loss<TestType> left(o, {.first_column = 0, .vocabulary = 2 * C});
        const distill::sharded_loss<TestType> right(o, {.first_column = C, .vocabulary = 2 * C});
        const long before = allocations.load();
        left.statistics(s, t, y, std::span(mine));
        right.statistics(s, t, y, std::span(theirs));
        for (Eigen::Index i = 0; i < N; ++i) combined[i] = distill::merge_row_statistics(mine[i], theirs[i]);
        const bool two = left.needs_sums(combined);
        if (two) {
            left.sums(s, t, y, std::span<const distill::row_statistics>(combined), std::span(sums));
            right.sums(s, t, y, std::span<const distill::row_statistics>(combined), std::span(their_sums));
            for (Eigen::Index i = 0; i < N; ++i) sums[i] = distill::merge_row_sums(sums[i], their_sums[i]);
        }
        const distill::loss_value v = left.loss_and_grad(s, t, y, std::span<const distill::row_statistics>(combined),
                                                         std::span<const distill::row_sums>(sums), g);
        const long after = allocations.load();
        INFO("divergence " << d.index());
        CHECK(after - before == 0);
        CHECK(two == (d.index() != 0 || std::string(distill::simd_architecture).rfind("none", 0) == 0));
        CHECK(v.rows_counted == N - 1);  // the calls above really ran
    }
}
