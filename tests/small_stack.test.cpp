// A loss call keeps its bookkeeping on the calling thread's stack (about 44 KiB, docs/api.md) and
// allocates nothing: it must run on a thread whose whole stack is 64 KiB, as trainers' worker pools
// sometimes give. Both ways of running long rows are exercised (segments as separate items for few
// rows, in turn for many) and the results must equal the same call on the main thread bitwise.
#include <catch2/catch.hpp>

#include <pthread.h>

#include <cstring>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;

namespace {

// Under AddressSanitizer every frame carries redzones (and the fake stack of use-after-return
// detection), so the sanitizer build gets more room; the bound is checked by the plain builds.
#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t stack_bytes = 1 << 20;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr std::size_t stack_bytes = 1 << 20;
#else
constexpr std::size_t stack_bytes = 64 << 10;
#endif
#else
constexpr std::size_t stack_bytes = 64 << 10;
#endif

struct job {
    const matrix<float>* s;
    const matrix<float>* t;
    const std::vector<std::int64_t>* y;
    matrix<float>* g;
    distill::loss_value v;
    bool ok = false;
};

void* run(void* arg) {
    auto* j = static_cast<job*>(arg);
    const distill::distillation_loss<float> kd({.temperature = 2.0, .alpha = 0.6, .divergence = distill::jensen_shannon{}});
    j->ok = kd.try_loss_and_grad(*j->s, *j->t, *j->y, *j->g, j->v).ok();
    return nullptr;
}

// Runs call() on a thread whose stack is stack_bytes.
template <class Call>
void on_small_stack(Call& call) {
    pthread_attr_t attr;
    REQUIRE(pthread_attr_init(&attr) == 0);
    REQUIRE(pthread_attr_setstacksize(&attr, stack_bytes) == 0);
    pthread_t thread;
    REQUIRE(pthread_create(&thread, &attr, [](void* c) -> void* { (*static_cast<Call*>(c))(); return nullptr; }, &call) == 0);
    REQUIRE(pthread_join(thread, nullptr) == 0);
    pthread_attr_destroy(&attr);
}

}  // namespace

TEST_CASE("a top-k teacher's call runs on a thread with a 64 KiB stack", "[stack][top_k]") {
    const Eigen::Index N = 4, C = 70001, k = 1024;  // the most classes a row may have: the largest sorted copy
    const auto s = distill_test::random_logits<float>(N, C, 34);
    const auto y = distill_test::random_labels(N, C, 35);
    Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> indices(N, k);
    matrix<float> values = matrix<float>::Constant(N, k, -8.0f), g(N, C), g_main(N, C);
    for (Eigen::Index i = 0; i < N; ++i)
        for (Eigen::Index j = 0; j < k; ++j) indices(i, j) = static_cast<std::int32_t>((j * 67 + i) % C);
    const distill::top_k_distillation_loss<float> kd({.temperature = 2.0, .alpha = 0.6, .teacher = distill::teacher_input::log_probabilities});
    distill::loss_value v;
    bool ok = false;
    auto call = [&] { ok = kd.try_loss_and_grad(s, distill::top_k(indices, values), y, g, v).ok(); };
    on_small_stack(call);
    REQUIRE(ok);
    const auto v_main = kd.loss_and_grad(s, distill::top_k(indices, values), y, g_main);
    CHECK(std::memcmp(&v.total, &v_main.total, sizeof(double)) == 0);
    CHECK(std::memcmp(g.data(), g_main.data(), sizeof(float) * static_cast<std::size_t>(N * C)) == 0);
}

TEST_CASE("a loss call runs on a thread with a 64 KiB stack", "[stack]") {
    for (auto [N, C] : {std::pair<Eigen::Index, Eigen::Index>{3, 70001}, {80, 5000}}) {
        const auto s = distill_test::random_logits<float>(N, C, 31);
        const auto t = distill_test::random_logits<float>(N, C, 32);
        const auto y = distill_test::random_labels(N, C, 33);
        matrix<float> g(N, C), g_main(N, C);
        job j{&s, &t, &y, &g};
        pthread_attr_t attr;
        REQUIRE(pthread_attr_init(&attr) == 0);
        REQUIRE(pthread_attr_setstacksize(&attr, stack_bytes) == 0);
        pthread_t thread;
        REQUIRE(pthread_create(&thread, &attr, run, &j) == 0);
        REQUIRE(pthread_join(thread, nullptr) == 0);
        pthread_attr_destroy(&attr);
        REQUIRE(j.ok);
        const distill::distillation_loss<float> kd({.temperature = 2.0, .alpha = 0.6, .divergence = distill::jensen_shannon{}});
        const auto v = kd.loss_and_grad(s, t, y, g_main);
        CHECK(std::memcmp(&v.total, &j.v.total, sizeof(double)) == 0);
        CHECK(std::memcmp(g.data(), g_main.data(), sizeof(float) * static_cast<std::size_t>(N * C)) == 0);
    }
}

TEST_CASE("short loss rows side by side run on a thread with a 64 KiB stack", "[stack][short]") {
    // 64 x 10: whole groups of rows, a row a lane, with their tiles and vectors on the stack
    // (detail/simd/lane_loss.hpp); 64 x 6 in double likewise.
    const auto check = [](auto zero, Eigen::Index C) {
        using T = decltype(zero);
        const Eigen::Index N = 64;
        const auto s = distill_test::random_logits<T>(N, C, 36);
        const auto t = distill_test::random_logits<T>(N, C, 37);
        const auto y = distill_test::random_labels(N, C, 38);
        matrix<T> g(N, C), g_main(N, C);
        const distill::distillation_loss<T> kd({.temperature = 2.5, .alpha = 0.6});
        distill::loss_value v;
        bool ok = false;
        auto call = [&] { ok = kd.try_loss_and_grad(s, t, y, g, v).ok(); };
        on_small_stack(call);
        REQUIRE(ok);
        const auto v_main = kd.loss_and_grad(s, t, y, g_main);
        CHECK(std::memcmp(&v.total, &v_main.total, sizeof(double)) == 0);
        CHECK(std::memcmp(g.data(), g_main.data(), sizeof(T) * static_cast<std::size_t>(N * C)) == 0);
    };
    check(0.0f, 10);
    check(0.0, 6);
}
