// Thread safety: the functors are immutable after construction, so many threads may call one object
// at the same time on different data. Every thread's results must equal, bitwise, what one thread
// computed alone; the tsan preset runs this file under ThreadSanitizer, which also reports any data
// race on the way (shared state in a functor, a static scratch buffer, a racy executor hand-off).
#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include <distill/distill.hpp>

#include "family.hpp"
#include "test_support.hpp"

using distill_test::matrix;

namespace {

constexpr int thread_count = 8;
constexpr int rounds = 3;

template <class T>
bool same_bits(const matrix<T>& a, const matrix<T>& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), sizeof(T) * static_cast<std::size_t>(a.size())) == 0;
}
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// One call's inputs and the answer one thread computed alone.
template <class T>
struct job {
    matrix<T> s, t;
    std::vector<std::int64_t> y;
    std::vector<std::uint8_t> mask;
    distill::loss_value expected;
    matrix<T> expected_grad;
    std::vector<double> expected_rows;
};

// Shapes from one row to a long vocabulary row, ignored rows and a row mask, so that threads run
// through different kernel paths (tails, blocks, ignored rows) at the same time.
template <class T>
std::vector<job<T>> make_jobs() {
    const std::vector<std::pair<Eigen::Index, Eigen::Index>> shapes = {
        {1, 1}, {3, 7}, {17, 33}, {64, 100}, {5, 1500}, {2, 9001}, {130, 17}, {1, 20000}};
    std::vector<job<T>> jobs;
    std::uint32_t seed = 1;
    for (auto [N, C] : shapes) {
        job<T> j;
        j.s = distill_test::random_logits<T>(N, C, seed++);
        j.t = distill_test::random_logits<T>(N, C, seed++);
        j.y = distill_test::random_labels(N, C, seed++);
        j.mask.assign(static_cast<std::size_t>(N), 1);
        for (Eigen::Index i = 0; i < N; i += 4) j.y[static_cast<std::size_t>(i)] = -100;
        for (Eigen::Index i = 2; i < N; i += 5) j.mask[static_cast<std::size_t>(i)] = 0;
        jobs.push_back(std::move(j));
    }
    return jobs;
}

// Runs `work(thread, job index)` from thread_count threads at once, each over every job several
// times in its own order, and returns how many calls disagreed with the one-thread answer.
template <class Work>
int hammer(std::size_t job_count, Work work, int rounds = ::rounds) {
    std::atomic<int> mismatches{0};
    std::atomic<int> ready{0};
    std::vector<std::thread> pool;
    for (int th = 0; th < thread_count; ++th)
        pool.emplace_back([&, th] {
            ++ready;
            while (ready.load() < thread_count) std::this_thread::yield();  // start together
            for (int r = 0; r < rounds; ++r)
                for (std::size_t k = 0; k < job_count; ++k)
                    if (!work(th, (k + static_cast<std::size_t>(th)) % job_count)) ++mismatches;
        });
    for (auto& t : pool) t.join();
    return mismatches.load();
}

// The callers' own pools (nested parallelism, as when several trainer threads each hand rows to
// their own pool).
using distill_test::thread_executor;

}  // namespace

TEMPLATE_TEST_CASE("one functor called from many threads at once gives the one-thread results", "[threads]",
                   float, double) {
    const distill::distillation_loss<TestType> kd(
        {.temperature = 2.5, .alpha = 0.6, .label_smoothing = 0.1, .reduce = distill::reduction::none});
    auto jobs = make_jobs<TestType>();
    for (auto& j : jobs) {
        j.expected_grad.resize(j.s.rows(), j.s.cols());
        j.expected_rows.resize(static_cast<std::size_t>(j.s.rows()));
        j.expected = kd.loss_and_grad(j.s, j.t, j.y, j.expected_grad, {.mask = j.mask, .losses = j.expected_rows});
    }
    // Every thread owns its outputs; the inputs and the functor are shared.
    std::vector<std::vector<matrix<TestType>>> grads(thread_count);
    std::vector<std::vector<std::vector<double>>> row_losses(thread_count);
    for (int th = 0; th < thread_count; ++th)
        for (const auto& j : jobs) {
            grads[th].emplace_back(j.s.rows(), j.s.cols());
            row_losses[th].emplace_back(static_cast<std::size_t>(j.s.rows()));
        }

    SECTION("sequential executor in each thread") {
        const int bad = hammer(jobs.size(), [&](int th, std::size_t k) {
            const auto& j = jobs[k];
            auto& g = grads[th][k];
            auto& rows = row_losses[th][k];
            const auto v = kd.loss_and_grad(j.s, j.t, j.y, g, {.mask = j.mask, .losses = rows});
            return same_bits(v.total, j.expected.total) && same_bits(v.soft, j.expected.soft) &&
                   v.rows_counted == j.expected.rows_counted && same_bits(g, j.expected_grad) &&
                   std::memcmp(rows.data(), j.expected_rows.data(), rows.size() * sizeof(double)) == 0;
        });
        CHECK(bad == 0);
    }
    SECTION("each thread hands rows to its own thread pool") {
        const int bad = hammer(jobs.size(), [&](int th, std::size_t k) {
            const auto& j = jobs[k];
            auto& g = grads[th][k];
            auto& rows = row_losses[th][k];
            const auto v = kd.loss_and_grad(thread_executor{3}, j.s, j.t, j.y, g, {.mask = j.mask, .losses = rows});
            return same_bits(v.total, j.expected.total) && same_bits(g, j.expected_grad);
        });
        CHECK(bad == 0);
    }
}

TEST_CASE("kl_divergence, cross_entropy, softmax and the status twins are safe to call concurrently", "[threads]") {
    const distill::kl_divergence<float> kl({.temperature = 4});
    const distill::cross_entropy<float> ce({.label_smoothing = 0.2});
    auto jobs = make_jobs<float>();
    std::vector<double> kl_expected, ce_expected;
    std::vector<matrix<float>> softmax_expected;
    for (const auto& j : jobs) {
        kl_expected.push_back(kl.loss(j.s, j.t).total);
        ce_expected.push_back(ce.loss(j.s, j.y).total);
        softmax_expected.push_back(distill::softmax(j.s, 3.0));
    }
    const int bad = hammer(jobs.size(), [&](int, std::size_t k) {
        const auto& j = jobs[k];
        distill::loss_value v;
        bool ok = kl.try_loss(j.s, j.t, v).ok() && same_bits(v.total, kl_expected[k]);
        ok = ok && ce.try_loss(j.s, j.y, v).ok() && same_bits(v.total, ce_expected[k]);
        matrix<float> p(j.s.rows(), j.s.cols());
        ok = ok && distill::try_softmax(j.s, p, 3.0).ok() && same_bits(p, softmax_expected[k]);
        // An error path too: its message is built in the returned status, never in shared storage.
        const std::vector<std::int64_t> bad_labels(static_cast<std::size_t>(j.s.rows()), j.s.cols());
        const distill::status st = ce.try_loss(j.s, bad_labels, v);
        return ok && st.code() == distill::errc::out_of_range && std::strstr(st.message(), "at row 0") != nullptr;
    });
    CHECK(bad == 0);
}

TEMPLATE_TEST_CASE("every divergence: one functor called from many threads at once gives the one-thread results",
                   "[threads]", float, double) {
    // Each divergence once (decoupled KD in distillation_loss, the others in divergence_loss, the
    // teacher input rotating), every thread running every job: the normalise-first kernels' sweeps
    // and their segment sums share nothing between calls.
    auto jobs = make_jobs<TestType>();
    const auto family = distill_test::all_divergences();
    constexpr distill::teacher_input inputs[3] = {distill::teacher_input::logits,
                                                  distill::teacher_input::log_probabilities,
                                                  distill::teacher_input::probabilities};
    for (std::size_t which = 0; which < family.size(); ++which) {
        const distill::divergence& d = family[which];
        const distill::teacher_input input = inputs[which % 3];
        INFO(distill_test::describe(d) << ", " << distill_test::describe(input));
        // Teacher values in the form the functor reads: probabilities must be >= 0.
        std::vector<matrix<TestType>> teachers;
        for (const auto& j : jobs)
            teachers.push_back(input == distill::teacher_input::probabilities ? distill::softmax(j.t, 2.0)
                                                                               : matrix<TestType>(j.t));
        const distill::distillation_loss<TestType> kd(
            {.temperature = 2.0, .alpha = 0.6, .reduce = distill::reduction::none, .divergence = d, .teacher = input});
        const distill::divergence_loss<TestType> soft(
            {.divergence = distill_test::is_decoupled_kd(d) ? distill::divergence{} : d,
             .temperature = 2.0,
             .reduce = distill::reduction::none,
             .teacher = input});
        const bool with_labels = distill_test::is_decoupled_kd(d);
        const auto run = [&](std::size_t k, matrix<TestType>& g, std::vector<double>& rows) {
            const auto& j = jobs[k];
            return with_labels ? kd.loss_and_grad(j.s, teachers[k], j.y, g, {.mask = j.mask, .losses = rows})
                               : soft.loss_and_grad(j.s, teachers[k], g, {.mask = j.mask, .losses = rows});
        };
        for (std::size_t k = 0; k < jobs.size(); ++k) {
            auto& j = jobs[k];
            j.expected_grad.resize(j.s.rows(), j.s.cols());
            j.expected_rows.assign(static_cast<std::size_t>(j.s.rows()), 0.0);
            j.expected = run(k, j.expected_grad, j.expected_rows);
        }
        std::vector<std::vector<matrix<TestType>>> grads(thread_count);
        std::vector<std::vector<std::vector<double>>> row_losses(thread_count);
        for (int th = 0; th < thread_count; ++th)
            for (const auto& j : jobs) {
                grads[th].emplace_back(j.s.rows(), j.s.cols());
                row_losses[th].emplace_back(static_cast<std::size_t>(j.s.rows()));
            }
        const int bad = hammer(
            jobs.size(),
            [&](int th, std::size_t k) {
                const auto& j = jobs[k];
                auto& g = grads[th][k];
                auto& rows = row_losses[th][k];
                const auto v = run(k, g, rows);
                return same_bits(v.total, j.expected.total) && v.rows_counted == j.expected.rows_counted &&
                       same_bits(g, j.expected_grad) &&
                       std::memcmp(rows.data(), j.expected_rows.data(), rows.size() * sizeof(double)) == 0;
            },
            1);
        CHECK(bad == 0);
    }
}
