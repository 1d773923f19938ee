// The vocabulary-parallel loss (sharded.hpp) in one process: R ranks are simulated by cutting the
// columns of one batch into R shards of unequal widths (some empty), running each rank's phases on
// its own copy of its columns, and combining the records with the library's merges, a left fold in
// rank order. Expected values: the one-process functor (distillation_loss or divergence_loss) on
// the whole batch, the oracle every other test pins against PyTorch.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include <distill/distill.hpp>
#include <distill/sharded.hpp>

#include "test_support.hpp"

using distill_test::matrix;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// The reference kernels keep no forward-KL accumulator: there, every divergence takes two reductions.
#if defined(DISTILL_NO_SIMD)
constexpr bool reference_kernels = true;
#else
constexpr bool reference_kernels = false;
#endif

// The divergences of the family, each with parameters away from its special cases.
std::vector<distill::divergence> every_divergence() {
    return {distill::forward_kl{},      distill::reverse_kl{},         distill::jensen_shannon{.beta = 0.3},
            distill::skew_kl{.skew = 0.2}, distill::skew_reverse_kl{.skew = 0.3}, distill::total_variation{},
            distill::decoupled_kd{.target_weight = 1.5, .non_target_weight = 4.0}};
}

bool is_decoupled(const distill::divergence& d) { return std::holds_alternative<distill::decoupled_kd>(d); }

// The shards' widths for R ranks over V columns: unequal, and with empty shards from R = 3 on.
std::vector<std::int64_t> shard_widths(int ranks, std::int64_t V) {
    switch (ranks) {
        case 1: return {V};
        case 2: return {V / 3, V - V / 3};
        case 3: return {0, V / 2 + 1, V - (V / 2 + 1)};
        default: {
            // 7: two empty shards, the rest of random widths.
            std::vector<std::int64_t> w{V / 10, 0, V / 4, V / 7, 0, V / 5, 0};
            w.back() = V - std::accumulate(w.begin(), w.end() - 1, std::int64_t{0});
            return w;
        }
    }
}

template <class T>
matrix<T> columns_of(const matrix<T>& m, std::int64_t c0, std::int64_t width) {
    matrix<T> out(m.rows(), width);
    for (Eigen::Index i = 0; i < m.rows(); ++i)
        for (std::int64_t c = 0; c < width; ++c) out(i, c) = m(i, c0 + c);
    return out;
}

// What every simulated rank returned.
struct sharded_result {
    std::vector<distill::loss_value> values;  // one per rank
    std::vector<double> row_losses;           // rank 0's per-row losses
    bool took_sums = false;
};

// Runs R ranks over the whole batch (s, t, y) and assembles the ranks' gradient columns into `grad`.
// `Options` is distillation_options or divergence_options; the labels are ignored for the latter.
template <class T, class Options>
sharded_result run_ranks(const Options& options, const std::vector<std::int64_t>& widths, const matrix<T>& s,
                         const matrix<T>& t, const std::vector<std::int64_t>& y, matrix<T>& grad,
                         distill::per_row rows = {}) {
    const auto N = s.rows();
    const std::int64_t V = s.cols();
    const int R = static_cast<int>(widths.size());
    std::vector<std::int64_t> first(widths.size(), 0);
    for (int r = 1; r < R; ++r) first[r] = first[r - 1] + widths[r - 1];
    std::vector<matrix<T>> s_r, t_r;
    std::vector<distill::sharded_loss<T>> loss;
    for (int r = 0; r < R; ++r) {
        s_r.push_back(columns_of(s, first[r], widths[r]));
        t_r.push_back(columns_of(t, first[r], widths[r]));
        loss.emplace_back(options, distill::vocabulary_shard{.first_column = first[r], .vocabulary = V});
    }
    const bool has_labels = std::is_same_v<Options, distill::distillation_options>;
    const std::span<const std::int64_t> labels = has_labels ? std::span<const std::int64_t>(y) : distill::no_labels;
    const std::vector<std::uint8_t> mask(rows.mask.begin(), rows.mask.end());
    const distill::per_row in{.mask = mask};

    // Phase 1 and the first all-reduce: a left fold in rank order.
    std::vector<std::vector<distill::row_statistics>> local(R, std::vector<distill::row_statistics>(N));
    for (int r = 0; r < R; ++r) loss[r].statistics(s_r[r], t_r[r], labels, std::span(local[r]), in);
    std::vector<distill::row_statistics> combined = local[0];
    for (int r = 1; r < R; ++r)
        for (Eigen::Index i = 0; i < N; ++i) combined[i] = distill::merge_row_statistics(combined[i], local[r][i]);

    // Phase 2 where needed; every rank must agree that it is.
    sharded_result result;
    result.took_sums = loss[0].needs_sums(combined);
    for (int r = 1; r < R; ++r) REQUIRE(loss[r].needs_sums(combined) == result.took_sums);
    std::vector<distill::row_sums> sums;
    if (result.took_sums) {
        std::vector<std::vector<distill::row_sums>> part(R, std::vector<distill::row_sums>(N));
        for (int r = 0; r < R; ++r) loss[r].sums(s_r[r], t_r[r], labels, std::span<const distill::row_statistics>(combined), std::span(part[r]), in);
        sums = part[0];
        for (int r = 1; r < R; ++r)
            for (Eigen::Index i = 0; i < N; ++i) sums[i] = distill::merge_row_sums(sums[i], part[r][i]);
    }

    // Phase 3 on every rank.
    result.row_losses.assign(static_cast<std::size_t>(N), 0.0);
    for (int r = 0; r < R; ++r) {
        matrix<T> g(N, widths[r]);
        std::vector<double> row_losses(static_cast<std::size_t>(N));
        result.values.push_back(loss[r].loss_and_grad(s_r[r], t_r[r], labels, std::span<const distill::row_statistics>(combined),
                                                      std::span<const distill::row_sums>(sums), g,
                                                      {.mask = mask, .losses = row_losses}));
        if (r == 0) result.row_losses = row_losses;
        for (Eigen::Index i = 0; i < N; ++i)
            for (std::int64_t c = 0; c < widths[r]; ++c) grad(i, first[r] + c) = g(i, c);
    }
    return result;
}

// The one-process loss the shards must reproduce.
template <class T>
distill::loss_value one_process(const distill::distillation_options& o, const matrix<T>& s, const matrix<T>& t,
                                const std::vector<std::int64_t>& y, matrix<T>& grad, distill::per_row rows) {
    return distill::distillation_loss<T>(o).loss_and_grad(s, t, y, grad, rows);
}
template <class T>
distill::loss_value one_process(const distill::divergence_options& o, const matrix<T>& s, const matrix<T>& t,
                                const std::vector<std::int64_t>&, matrix<T>& grad, distill::per_row rows) {
    return distill::divergence_loss<T>(o).loss_and_grad(s, t, grad, rows);
}

// How far the sharded result may be from the one-process one. The shards cut each row into blocks
// of their own, so the float kernels' partial sums (up to 32 vectors in float before they reach
// double) round differently, and the teacher's exponentials are parked per block rather than per
// running max; decoupled KD's shards sum in double where the one-process SIMD kernel sums in the
// input type. Measured worst cases over this file's cases (loss relative to max(1, |loss|), gradient
// relative to its scale alpha T + (1 - alpha) times the reduction's weight): 1.2e-6 and 4.0e-7 in
// float, 5.9e-15 and 7.7e-15 in double. The bounds leave a factor of 5 to 9.
template <class T>
double loss_tolerance() {
    return std::is_same_v<T, float> ? 1e-5 : 3e-14;
}
template <class T>
double grad_tolerance() {
    return std::is_same_v<T, float> ? 2e-6 : 4e-14;
}

template <class T>
void check_equal_to_one_process(const sharded_result& r, const distill::loss_value& expected,
                                const std::vector<double>& expected_rows, const matrix<T>& g, const matrix<T>& g_expected,
                                double grad_scale) {
    for (const distill::loss_value& v : r.values) {
        // Every rank computes the whole loss from the same combined records: the same bits.
        CHECK(std::memcmp(&v.total, &r.values[0].total, sizeof(double)) == 0);
        CHECK(v.rows_counted == expected.rows_counted);
    }
    const distill::loss_value& v = r.values[0];
    const double tol = loss_tolerance<T>();
    CHECK(v.total == Approx(expected.total).epsilon(tol).margin(tol));
    CHECK(v.soft == Approx(expected.soft).epsilon(tol).margin(tol));
    CHECK(v.hard == Approx(expected.hard).epsilon(tol).margin(tol));
    for (std::size_t i = 0; i < expected_rows.size(); ++i) {
        INFO("row " << i);
        CHECK(r.row_losses[i] == Approx(expected_rows[i]).epsilon(tol).margin(tol));
    }
    double worst = 0;
    for (Eigen::Index i = 0; i < g.size(); ++i) {
        const double a = g.data()[i], b = g_expected.data()[i];
        if (std::isnan(a) || std::isnan(b)) {
            CHECK(std::isnan(a) == std::isnan(b));
            continue;
        }
        worst = std::max(worst, std::abs(a - b));
    }
    INFO("worst gradient difference " << worst << " against a gradient scale of " << grad_scale);
    CHECK(worst <= grad_tolerance<T>() * grad_scale);
}

// Logits of a spread like a trained model's, with a teacher the student half agrees with.
template <class T>
void make_batch(Eigen::Index N, Eigen::Index V, std::uint32_t seed, matrix<T>& s, matrix<T>& t,
                std::vector<std::int64_t>& y) {
    t = distill_test::random_logits<T>(N, V, seed, 3.0);
    const matrix<T> noise = distill_test::random_logits<T>(N, V, seed + 1, 2.0);
    s = (T(0.6) * t + noise).eval();
    y = distill_test::random_labels(N, V, seed + 2);
}

}  // namespace

TEMPLATE_TEST_CASE("R ranks of unequal (and empty) shards equal one process, every divergence and reduction",
                   "[sharded]", float, double) {
    using T = TestType;
    const Eigen::Index N = 9, V = 2600;  // rows of 3 blocks, cut into column segments by the one-process call
    matrix<T> s, t;
    std::vector<std::int64_t> y;
    make_batch<T>(N, V, 11, s, t, y);
    y[2] = -100;  // ignore_index: takes no part
    y[4] = 0;     // labels at both ends of the vocabulary
    y[5] = V - 1;
    const std::vector<std::uint8_t> mask{1, 1, 1, 0, 1, 1, 1, 1, 1};  // row 3 masked out

    for (const distill::divergence& d : every_divergence()) {
        for (distill::reduction reduce :
             {distill::reduction::none, distill::reduction::sum, distill::reduction::mean, distill::reduction::divide_by}) {
            for (int R : {1, 2, 3, 7}) {
                const auto widths = shard_widths(R, V);
                INFO("divergence " << d.index() << ", reduction " << static_cast<int>(reduce) << ", " << R << " ranks");
                std::vector<double> rows(N), expected_rows(N);
                matrix<T> g(N, V), g_expected(N, V);
                {
                    INFO("distillation_options");
                    const distill::distillation_options o{.temperature = 2.0, .alpha = 0.6, .label_smoothing = 0.1,
                                                          .reduce = reduce, .normalizer = 7.0, .divergence = d};
                    const distill::loss_value expected =
                        one_process<T>(o, s, t, y, g_expected, {.mask = mask, .losses = expected_rows});
                    const sharded_result r = run_ranks<T>(o, widths, s, t, y, g, {.mask = mask});
                    const double weight = reduce == distill::reduction::mean ? 1.0 / static_cast<double>(expected.rows_counted)
                                          : reduce == distill::reduction::divide_by ? 1.0 / 7.0 : 1.0;
                    check_equal_to_one_process<T>(r, expected, expected_rows, g, g_expected, weight * (0.6 * 2 + 0.4));
                    CHECK(r.took_sums == (d.index() != 0 || reference_kernels));
                }
                if (!is_decoupled(d)) {
                    INFO("divergence_options");
                    const distill::divergence_options o{.divergence = d, .temperature = 0.7, .reduce = reduce,
                                                        .normalizer = 3.0};
                    const distill::loss_value expected =
                        one_process<T>(o, s, t, y, g_expected, {.mask = mask, .losses = expected_rows});
                    const sharded_result r = run_ranks<T>(o, widths, s, t, y, g, {.mask = mask});
                    const double weight = reduce == distill::reduction::mean ? 1.0 / static_cast<double>(expected.rows_counted)
                                          : reduce == distill::reduction::divide_by ? 1.0 / 3.0 : 1.0;
                    check_equal_to_one_process<T>(r, expected, expected_rows, g, g_expected, weight * 0.7);
                }
            }
        }
    }
}

TEMPLATE_TEST_CASE("shards of several blocks, many rows, and every teacher input equal one process", "[sharded]",
                   float, double) {
    using T = TestType;
    // (rows, vocabulary): few rows of shards that span several blocks each (the gradient re-parks the
    // teacher block by block), and more rows than the one-process scheduler's 64 pieces.
    for (auto [N, V] : {std::pair<Eigen::Index, Eigen::Index>{3, 30001}, {70, 1500}}) {
        matrix<T> s, t;
        std::vector<std::int64_t> y;
        make_batch<T>(N, V, 21, s, t, y);
        for (distill::teacher_input input :
             {distill::teacher_input::logits, distill::teacher_input::log_probabilities, distill::teacher_input::probabilities}) {
            matrix<T> teacher = t;
            if (input != distill::teacher_input::logits) {  // log_softmax(t), or its exponential
                for (Eigen::Index i = 0; i < N; ++i) {
                    const double m = t.row(i).maxCoeff();
                    double z = 0;
                    for (Eigen::Index c = 0; c < V; ++c) z += std::exp(double(t(i, c)) - m);
                    for (Eigen::Index c = 0; c < V; ++c) {
                        const double lp = double(t(i, c)) - m - std::log(z);
                        teacher(i, c) = static_cast<T>(input == distill::teacher_input::probabilities ? std::exp(lp) : lp);
                    }
                }
            }
            for (const distill::divergence& d : every_divergence()) {
                for (int R : {3, 7}) {
                    INFO(N << " x " << V << ", teacher input " << static_cast<int>(input) << ", divergence "
                           << d.index() << ", " << R << " ranks");
                    const distill::distillation_options o{.temperature = 3.0, .alpha = 0.7, .label_smoothing = 0.05,
                                                          .reduce = distill::reduction::sum, .divergence = d,
                                                          .teacher = input};
                    std::vector<double> expected_rows(N);
                    matrix<T> g(N, V), g_expected(N, V);
                    const distill::loss_value expected = one_process<T>(o, s, teacher, y, g_expected, {.losses = expected_rows});
                    const sharded_result r = run_ranks<T>(o, shard_widths(R, V), s, teacher, y, g);
                    check_equal_to_one_process<T>(r, expected, expected_rows, g, g_expected, 0.7 * 3 + 0.3);
                }
            }
        }
    }
}

TEMPLATE_TEST_CASE("masked classes: a shard that is all -inf, a masked label, +inf losses", "[sharded]", float, double) {
    using T = TestType;
    const Eigen::Index N = 6, V = 1800;
    const auto widths = shard_widths(3, V);  // {0, 901, 899}
    matrix<T> s, t;
    std::vector<std::int64_t> y;
    make_batch<T>(N, V, 31, s, t, y);
    const T minus_inf = -std::numeric_limits<T>::infinity();
    for (Eigen::Index c = 0; c < 901; ++c) t(0, c) = minus_inf;  // row 0: rank 1's teacher columns all masked
    for (Eigen::Index c = 901; c < V; ++c) s(1, c) = minus_inf;  // row 1: rank 2's student columns all masked
    for (Eigen::Index c = 0; c < V; c += 3) s(2, c) = t(2, c) = minus_inf;  // row 2: both mask the same classes
    y[2] = 3;  // ... its label among them: the cross-entropy is +inf
    for (Eigen::Index c = 1000; c < 1100; ++c) s(3, c) = minus_inf;  // row 3: student masks classes the teacher keeps
    y[1] = 1200;  // row 1's label is in rank 2's masked columns
    for (const distill::divergence& d : every_divergence()) {
        INFO("divergence " << d.index());
        const distill::distillation_options o{.temperature = 2.0, .alpha = 0.5, .label_smoothing = 0.0,
                                              .reduce = distill::reduction::none, .divergence = d};
        std::vector<double> expected_rows(N);
        matrix<T> g(N, V), g_expected(N, V);
        const distill::loss_value expected = one_process<T>(o, s, t, y, g_expected, {.losses = expected_rows});
        const sharded_result r = run_ranks<T>(o, widths, s, t, y, g);
        REQUIRE(expected.total == inf);  // row 2's cross-entropy
        CHECK(r.values[0].total == inf);
        for (Eigen::Index i = 0; i < N; ++i) {
            INFO("row " << i << ": " << r.row_losses[i] << " against " << expected_rows[i]);
            if (std::isinf(expected_rows[i]) || std::isnan(expected_rows[i])) {
                CHECK(std::isinf(r.row_losses[i]) == std::isinf(expected_rows[i]));
                CHECK(std::isnan(r.row_losses[i]) == std::isnan(expected_rows[i]));
            } else {
                CHECK(r.row_losses[i] == Approx(expected_rows[i]).epsilon(loss_tolerance<T>()).margin(loss_tolerance<T>()));
            }
            for (Eigen::Index c = 0; c < V; ++c) {
                const double a = g(i, c), b = g_expected(i, c);
                if (std::isfinite(a) && std::isfinite(b))
                    CHECK(std::abs(a - b) <= grad_tolerance<T>() * 2);
                else if (!(std::isnan(a) && std::isnan(b)))
                    CHECK(a == b);
            }
        }
    }
}

TEMPLATE_TEST_CASE("NaN logits reach the loss, and an all -inf row is refused as one process refuses it", "[sharded]",
                   float, double) {
    using T = TestType;
    const Eigen::Index N = 3, V = 500;
    const auto widths = shard_widths(2, V);
    matrix<T> s, t;
    std::vector<std::int64_t> y;
    make_batch<T>(N, V, 41, s, t, y);
    s(1, 400) = std::numeric_limits<T>::quiet_NaN();  // on rank 1
    const distill::distillation_options o{.temperature = 2.0, .reduce = distill::reduction::none};
    std::vector<double> expected_rows(N);
    matrix<T> g(N, V), g_expected(N, V);
    one_process<T>(o, s, t, y, g_expected, {.losses = expected_rows});
    const sharded_result r = run_ranks<T>(o, widths, s, t, y, g);
    REQUIRE(std::isnan(expected_rows[1]));
    CHECK(std::isnan(r.row_losses[1]));
    CHECK(std::isfinite(r.row_losses[0]));
    CHECK(std::isnan(g(1, 0)) == std::isnan(g_expected(1, 0)));

    // Every student column of row 2 masked, on both ranks: the softmax does not exist.
    s(1, 400) = 0;
    for (Eigen::Index c = 0; c < V; ++c) s(2, c) = -std::numeric_limits<T>::infinity();
    matrix<T> whole(N, V);
    distill::loss_value v;
    const distill::status expected = distill::distillation_loss<T>(o).try_loss_and_grad(s, t, y, whole, v, {.losses = expected_rows});
    REQUIRE_FALSE(expected.ok());
    CHECK_THROWS_WITH(run_ranks<T>(o, widths, s, t, y, g),
                      Catch::Contains("row 2 of the student logits is entirely -inf (every class masked, on every rank)"));
}

TEMPLATE_TEST_CASE("forward KL takes the second reduction only for rows whose KL the statistics cannot resolve",
                   "[sharded]", float, double) {
    using T = TestType;
    const Eigen::Index N = 4, V = 3000;
    matrix<T> s, t;
    std::vector<std::int64_t> y;
    make_batch<T>(N, V, 51, s, t, y);
    const distill::divergence_options o{.temperature = 1.0, .reduce = distill::reduction::none};
    std::vector<double> expected_rows(N);
    matrix<T> g(N, V), g_expected(N, V);
    one_process<T>(o, s, t, y, g_expected, {.losses = expected_rows});
    sharded_result r = run_ranks<T>(o, shard_widths(3, V), s, t, y, g);
    CHECK(r.took_sums == reference_kernels);  // student and teacher differ: KL of order 1

    // Row 2: the student is the teacher plus a constant (the same softmax): KL is 0, and its value
    // from the statistics, a difference of terms of the size of log Z, would be rounding noise.
    for (Eigen::Index c = 0; c < V; ++c) s(2, c) = t(2, c) + T(0.5);
    one_process<T>(o, s, t, y, g_expected, {.losses = expected_rows});
    r = run_ranks<T>(o, shard_widths(3, V), s, t, y, g);
    CHECK(r.took_sums);
    CHECK(r.row_losses[2] >= 0);
    CHECK(r.row_losses[2] == Approx(expected_rows[2]).margin(std::is_same_v<T, float> ? 1e-6 : 1e-15));
    CHECK(r.row_losses[0] == Approx(expected_rows[0]).epsilon(loss_tolerance<T>()));
}

TEST_CASE("merge_row_statistics: commutative to the bit, associative up to rounding, the empty record its identity",
          "[sharded]") {
    using T = double;
    const Eigen::Index V = 3000;
    matrix<T> s, t;
    std::vector<std::int64_t> y;
    make_batch<T>(1, V, 61, s, t, y);
    const distill::distillation_options o{.temperature = 1.5, .alpha = 0.5, .label_smoothing = 0.1};
    const std::vector<std::int64_t> widths{700, 1500, 800};
    std::vector<distill::row_statistics> r(3);
    std::int64_t c0 = 0;
    for (int k = 0; k < 3; ++k) {
        const distill::sharded_loss<T> loss(o, {.first_column = c0, .vocabulary = V});
        loss.statistics(columns_of(s, c0, widths[k]), columns_of(t, c0, widths[k]), y, std::span(&r[k], 1));
        c0 += widths[k];
    }
    const auto bits_equal = [](const distill::row_statistics& a, const distill::row_statistics& b) {
        return std::memcmp(&a, &b, sizeof a) == 0;
    };
    using distill::merge_row_statistics;
    CHECK(bits_equal(merge_row_statistics(r[0], r[1]), merge_row_statistics(r[1], r[0])));
    CHECK(bits_equal(merge_row_statistics(r[2], r[1]), merge_row_statistics(r[1], r[2])));
    const auto left = merge_row_statistics(merge_row_statistics(r[0], r[1]), r[2]);
    const auto right = merge_row_statistics(r[0], merge_row_statistics(r[1], r[2]));
    CHECK(left.z_q == Approx(right.z_q).epsilon(1e-15));
    CHECK(left.z_p == Approx(right.z_p).epsilon(1e-15));
    CHECK(left.kl_accumulator == Approx(right.kl_accumulator).epsilon(1e-14));
    CHECK(left.smoothing_sum == Approx(right.smoothing_sum).epsilon(1e-14));
    CHECK(left.columns == V);
    CHECK(left.label_columns == 1);

    distill::row_statistics empty;
    empty.inv_temperature = empty.teacher_inv_temperature = 1 / 1.5;
    CHECK(bits_equal(merge_row_statistics(left, empty), left));
    CHECK(bits_equal(merge_row_statistics(empty, left), left));

    // The gathered form folds in rank order: the same bits as the loop.
    std::vector<distill::row_statistics> gathered{r[0], r[1], r[2]}, combined(1);
    REQUIRE(distill::merge_gathered_statistics(gathered, combined).ok());
    CHECK(bits_equal(combined[0], left));
    // Three records are no whole number of blocks of two rows.
    std::vector<distill::row_statistics> two(2);
    CHECK_THAT(std::string(distill::merge_gathered_statistics(gathered, two).message()),
               Catch::Contains("3 gathered records are not a whole number of blocks of 2 rows"));
}

TEMPLATE_TEST_CASE("1 and 3 threads give the same bits in every phase", "[sharded]", float, double) {
    using T = TestType;
    const Eigen::Index N = 70, V = 2000;
    matrix<T> s, t;
    std::vector<std::int64_t> y;
    make_batch<T>(N, V, 71, s, t, y);
    const distill::distillation_options o{.temperature = 2.0, .alpha = 0.5, .divergence = distill::jensen_shannon{}};
    const distill::sharded_loss<T> loss(o, {.first_column = 0, .vocabulary = V});
    std::vector<distill::row_statistics> st1(N), st3(N);
    loss.statistics(s, t, y, std::span(st1));
    loss.statistics(distill_test::thread_executor{3}, s, t, y, std::span(st3));
    CHECK(std::memcmp(st1.data(), st3.data(), sizeof(distill::row_statistics) * N) == 0);
    std::vector<distill::row_sums> su1(N), su3(N);
    loss.sums(s, t, y, std::span<const distill::row_statistics>(st1), std::span(su1));
    loss.sums(distill_test::thread_executor{3}, s, t, y, std::span<const distill::row_statistics>(st1), std::span(su3));
    CHECK(std::memcmp(su1.data(), su3.data(), sizeof(distill::row_sums) * N) == 0);
    matrix<T> g1(N, V), g3(N, V);
    const double l1 = loss.loss_and_grad(s, t, y, std::span<const distill::row_statistics>(st1),
                                         std::span<const distill::row_sums>(su1), g1).total;
    const double l3 = loss.loss_and_grad(distill_test::thread_executor{3}, s, t, y,
                                         std::span<const distill::row_statistics>(st1),
                                         std::span<const distill::row_sums>(su1), g3).total;
    CHECK(std::memcmp(&l1, &l3, sizeof l1) == 0);
    CHECK(std::memcmp(g1.data(), g3.data(), sizeof(T) * static_cast<std::size_t>(g1.size())) == 0);
    // loss() without a gradient gives the loss_and_grad() bits.
    const double l = loss.loss(s, t, y, std::span<const distill::row_statistics>(st1),
                               std::span<const distill::row_sums>(su1)).total;
    CHECK(std::memcmp(&l, &l1, sizeof l) == 0);
}

namespace {

// One rank's call sequence up to the loss with the given combined records, for the refusal tests:
// a single rank holding the whole vocabulary.
struct single_rank {
    distill::distillation_options options{.temperature = 2.0, .alpha = 0.5, .divergence = distill::reverse_kl{}};
    Eigen::Index N = 4, V = 300;
    matrix<double> s, t;
    std::vector<std::int64_t> y;
    std::vector<distill::row_statistics> stats;
    std::vector<distill::row_sums> sums;
    distill::sharded_loss<double> loss{options, {.first_column = 0, .vocabulary = 300}};

    single_rank() : stats(4), sums(4) {
        make_batch<double>(N, V, 81, s, t, y);
        loss.statistics(s, t, y, std::span(stats));
        loss.sums(s, t, y, std::span<const distill::row_statistics>(stats), std::span(sums));
    }
    distill::status finish() {
        matrix<double> g(N, V);
        distill::loss_value v;
        return loss.try_loss_and_grad(s, t, y, std::span<const distill::row_statistics>(stats),
                                      std::span<const distill::row_sums>(sums), g, v);
    }
};

}  // namespace

TEST_CASE("malformed records are refused with a message that says what is wrong", "[sharded]") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    {
        single_rank r;
        REQUIRE(r.finish().ok());
    }
    struct damage {
        const char* what;
        void (*apply)(single_rank&);
        const char* message;
    };
    const damage cases[] = {
        {"NaN column count", [](single_rank& r) { r.stats[1].columns = std::numeric_limits<double>::quiet_NaN(); },
         "row 1: the combined statistics have columns = nan, not a whole number >= 0"},
        {"negative column count", [](single_rank& r) { r.stats[1].columns = -300; },
         "row 1: the combined statistics have columns = -300, not a whole number >= 0"},
        {"fractional column count", [](single_rank& r) { r.stats[0].columns = 299.5; },
         "row 0: the combined statistics have columns = 299.5"},
        {"a shard missing", [](single_rank& r) { r.stats[2].columns = 200; },
         "row 2: the combined statistics cover 200 columns but the vocabulary has 300"},
        {"a shard merged twice",
         [](single_rank& r) { r.stats[2] = distill::merge_row_statistics(r.stats[2], r.stats[2]); },
         "row 2: the combined statistics cover 600 columns"},
        {"a finite max with z_q < 1", [](single_rank& r) { r.stats[3].z_q = 0.5; },
         "row 3: inconsistent combined statistics: student_max"},
        {"a max of -inf with z_p > 0",
         [](single_rank& r) { r.stats[0].teacher_max = -std::numeric_limits<double>::infinity(); },
         "row 0: inconsistent combined statistics: teacher_max = -inf"},
        {"a max of +inf with a finite sum",
         [](single_rank& r) { r.stats[0].student_max = std::numeric_limits<double>::infinity(); },
         "row 0: inconsistent combined statistics: student_max = inf"},
        {"another temperature", [](single_rank& r) { r.stats[1].inv_temperature = 1.0; },
         "row 1: the combined statistics were made with 1/T = 1"},
        {"temperatures merged that differ",
         [](single_rank& r) {
             distill::row_statistics other = r.stats[1];
             other.inv_temperature = 1.0;
             other.columns = 0;
             r.stats[1] = distill::merge_row_statistics(r.stats[1], other);
         },
         "(NaN: records of different temperatures were merged)"},
        {"the label claimed twice", [](single_rank& r) { r.stats[2].label_columns = 2; },
         "row 2: its label"},
        {"the label claimed by no rank", [](single_rank& r) { r.stats[2].label_columns = 0; },
         "was found in 0 shards, expected exactly 1"},
        {"sums missing a shard", [](single_rank& r) { r.sums[1].columns = 100; },
         "row 1: the combined sums cover 100 columns but the vocabulary has 300"},
        {"no sums where needed", [](single_rank& r) { r.sums.clear(); },
         "needs_sums is true) but no combined sums were given"},
        {"too few records", [](single_rank& r) { r.stats.pop_back(); },
         "the combined statistics span has 3 records but the logits have 4 rows"},
    };
    for (const damage& d : cases) {
        INFO(d.what);
        single_rank r;
        d.apply(r);
        const distill::status s = r.finish();
        CHECK_FALSE(s.ok());
        CHECK_THAT(std::string(s.message()), Catch::Contains(d.message));
    }
    // Merging a damaged record is arithmetic on doubles, never undefined behaviour: NaN and huge
    // counts poison the result's count, which the loss then refuses.
    single_rank r;
    distill::row_statistics huge = r.stats[0];
    huge.columns = 1e300;
    CHECK(std::isnan(distill::merge_row_statistics(huge, r.stats[1]).columns));
    huge.columns = nan;
    CHECK(std::isnan(distill::merge_row_statistics(r.stats[1], huge).columns));
}

TEST_CASE("a call that does not fit its shard or vocabulary is refused before any record is written", "[sharded]") {
    const matrix<float> s = distill_test::random_logits<float>(2, 100, 1), t = distill_test::random_logits<float>(2, 100, 2);
    const std::vector<std::int64_t> y{5, 250};
    std::vector<distill::row_statistics> stats(2);
    const distill::distillation_options o{};
    const auto message = [&](const distill::sharded_loss<float>& loss, const std::vector<std::int64_t>& labels,
                             std::span<distill::row_statistics> out) {
        return std::string(loss.try_statistics(s, t, labels, out).message());
    };
    CHECK_THAT(message(distill::sharded_loss<float>(o, {.first_column = 250, .vocabulary = 300}), y, stats),
               Catch::Contains("the shard's 100 columns from first_column 250 must lie within the vocabulary [0, 300)"));
    CHECK_THAT(message(distill::sharded_loss<float>(o, {.first_column = 0, .vocabulary = 0}), y, stats),
               Catch::Contains("must lie within the vocabulary [0, 0)"));
    // Extreme values are refused without overflowing anything.
    CHECK_THAT(message(distill::sharded_loss<float>(o, {.first_column = std::numeric_limits<std::int64_t>::max(),
                                                        .vocabulary = 300}),
                       y, stats),
               Catch::Contains("from first_column 9223372036854775807 must lie within"));
    CHECK_THAT(message(distill::sharded_loss<float>(o, {.first_column = 250, .vocabulary = std::numeric_limits<std::int64_t>::max()}),
                       y, stats),
               Catch::Contains("the vocabulary (9223372036854775807 classes) must be at most 2^53"));
    // Labels index the whole vocabulary: 250 lies on another rank, 300 nowhere.
    CHECK(message(distill::sharded_loss<float>(o, {.first_column = 0, .vocabulary = 300}), y, stats).empty());
    CHECK_THAT(message(distill::sharded_loss<float>(o, {.first_column = 0, .vocabulary = 300}), {5, 300}, stats),
               Catch::Contains("label 300 at row 1 is out of range: classes are [0, 300)"));
    CHECK_THAT(message(distill::sharded_loss<float>(o, {.first_column = 0, .vocabulary = 300}), y,
                       std::span(stats).first(1)),
               Catch::Contains("the statistics span has 1 records but the logits have 2 rows"));
    const distill::sharded_loss<float> divergence_only(distill::divergence_options{}, {.first_column = 0, .vocabulary = 300});
    CHECK_THAT(std::string(divergence_only.try_statistics(s, t, y, std::span(stats)).message()),
               Catch::Contains("built from divergence_options, which take no labels; pass distill::no_labels"));
    CHECK(divergence_only.try_statistics(s, t, distill::no_labels, std::span(stats)).ok());
    CHECK_THROWS_WITH((distill::sharded_loss<float>(distill::distillation_options{.temperature = 0}, {0, 300})),
                      Catch::Contains("temperature must be in"));
    // Weights are refused, not dropped: a sharded loss that ignored them would differ from one process.
    distill::distillation_options weighted{};
    weighted.class_weights.assign(300, 1.0);
    CHECK_THAT(message(distill::sharded_loss<float>(weighted, {.first_column = 0, .vocabulary = 300}), y, stats),
               Catch::Contains("sharded_loss takes no row weights and no class weights yet"));
}

TEMPLATE_TEST_CASE("data-parallel: shards of the batch dividing by the global count add up to the whole batch's mean",
                   "[sharded][data_parallel]", float, double) {
    using T = TestType;
    // 4 ranks of 80 rows (each above the 64 pieces, so every row runs on the same kernel path as in
    // the whole batch), uneven padding, and two micro-batches per rank for gradient accumulation.
    const Eigen::Index ranks = 4, per_rank = 80, N = ranks * per_rank, V = 700;
    matrix<T> s, t;
    std::vector<std::int64_t> y;
    make_batch<T>(N, V, 91, s, t, y);
    for (Eigen::Index i = 0; i < N; ++i)
        if ((i % per_rank) > 80 - 10 * (i / per_rank + 1)) y[static_cast<std::size_t>(i)] = -100;  // padding
    const distill::distillation_options recipe{.temperature = 2.0, .alpha = 0.5};
    matrix<T> g_whole(N, V);
    const distill::loss_value whole = distill::distillation_loss<T>(recipe).loss_and_grad(s, t, y, g_whole);

    // Every rank counts its rows; the sum is the all-reduce.
    std::int64_t global = 0;
    for (Eigen::Index r = 0; r < ranks; ++r)
        global += distill::counted_rows(std::span(y).subspan(static_cast<std::size_t>(r * per_rank), per_rank));
    REQUIRE(global == whole.rows_counted);
    distill::distillation_options shard = recipe;
    shard.reduce = distill::reduction::divide_by;
    shard.normalizer = static_cast<double>(global);
    const distill::distillation_loss<T> kd(shard);
    matrix<T> g(N, V);
    double total = 0;
    for (Eigen::Index r = 0; r < ranks; ++r) {
        const Eigen::Index first = r * per_rank;
        auto rows = std::span(y).subspan(static_cast<std::size_t>(first), per_rank);
        Eigen::Ref<const matrix<T>> s_r = s.middleRows(first, per_rank), t_r = t.middleRows(first, per_rank);
        Eigen::Ref<matrix<T>> g_r = g.middleRows(first, per_rank);
        total += kd.loss_and_grad(s_r, t_r, rows, g_r).total;
    }
    CHECK(total == Approx(whole.total).epsilon(1e-12));
    // The same rows through the same kernels with the same weight: the same bits.
    CHECK(std::memcmp(g.data(), g_whole.data(), sizeof(T) * static_cast<std::size_t>(g.size())) == 0);

    // The mistake the global count prevents: each rank's own mean, averaged.
    double mean_of_means = 0;
    for (Eigen::Index r = 0; r < ranks; ++r) {
        const Eigen::Index first = r * per_rank;
        Eigen::Ref<const matrix<T>> s_r = s.middleRows(first, per_rank), t_r = t.middleRows(first, per_rank);
        mean_of_means += distill::distillation_loss<T>(recipe)
                             .loss(s_r, t_r, std::span(y).subspan(static_cast<std::size_t>(first), per_rank))
                             .total /
                         ranks;
    }
    CHECK(std::abs(mean_of_means - whole.total) > 1e-3 * whole.total);

    // counted_rows agrees with the loss on the mask, and refuses a mask of the wrong length.
    const std::vector<std::uint8_t> mask(static_cast<std::size_t>(N), 1);
    CHECK(distill::counted_rows(y, mask) == whole.rows_counted);
    CHECK_THROWS_WITH(distill::counted_rows(y, std::span(mask).first(3)),
                      Catch::Contains("the mask has 3 entries but there are 320 labels"));
    CHECK(distill::counted_rows(N, mask) == N);
}

TEMPLATE_TEST_CASE("random layouts: any number of ranks, any widths, empty shards anywhere", "[sharded]", float,
                   double) {
    using T = TestType;
    const Eigen::Index N = 5, V = 2100;
    matrix<T> s, t;
    std::vector<std::int64_t> y;
    make_batch<T>(N, V, 101, s, t, y);
    std::mt19937 gen(102);
    for (int layout = 0; layout < 24; ++layout) {
        // R in [1, 9]; cut points drawn with repeats, so that some shards are empty.
        const int R = std::uniform_int_distribution<int>(1, 9)(gen);
        std::vector<std::int64_t> cuts{0, V};
        for (int k = 1; k < R; ++k) cuts.push_back(std::uniform_int_distribution<std::int64_t>(0, V)(gen));
        std::sort(cuts.begin(), cuts.end());
        std::vector<std::int64_t> widths;
        for (std::size_t k = 1; k < cuts.size(); ++k) widths.push_back(cuts[k] - cuts[k - 1]);
        const distill::divergence d = every_divergence()[static_cast<std::size_t>(layout) % every_divergence().size()];
        INFO("layout " << layout << ": " << R << " ranks, divergence " << d.index());
        const distill::distillation_options o{.temperature = 1.5, .alpha = 0.4, .label_smoothing = 0.2,
                                              .reduce = distill::reduction::sum, .divergence = d};
        std::vector<double> expected_rows(N);
        matrix<T> g(N, V), g_expected(N, V);
        const distill::loss_value expected = one_process<T>(o, s, t, y, g_expected, {.losses = expected_rows});
        const sharded_result r = run_ranks<T>(o, widths, s, t, y, g);
        check_equal_to_one_process<T>(r, expected, expected_rows, g, g_expected, 0.4 * 1.5 + 0.6);
    }
}
