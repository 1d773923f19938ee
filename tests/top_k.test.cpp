// top_k_distillation_loss: a teacher given as its top k classes per row.
//
// Oracles: (1) renormalize equals the dense loss with the teacher's other classes at p = 0 (their
// logits -inf), and with k = V the dense loss itself; the dense loss is checked against PyTorch
// (tests/golden*). (2) tail_bucket equals each divergence read off its definition
// (tests/family.hpp) over the k + 1 categories, with q over the whole vocabulary formed here in
// double. (3) Central finite differences of the loss in double. (4) The SIMD kernels against the
// reference kernels (DISTILL_NO_SIMD's) over every small V and many k.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <catch2/catch.hpp>
#include <xsimd/xsimd.hpp>

#include <distill/distill.hpp>
#include <distill/top_k_distillation_loss.hpp>

#include "family.hpp"
#include "test_support.hpp"

using distill_test::matrix;
using index_matrix = Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Catch::Matchers::Contains;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// The divergence the API runs (JSD at beta 1 and the skews at 0 are the plain KLs).
distill::detail::divergence_kind kind_of(const distill::divergence& d) { return distill::detail::choose(d).kind; }

// A row's teacher: the k largest of `t` (ties broken by column), in a shuffled order.
template <class T>
struct top_k_data {
    index_matrix indices;
    matrix<T> values;
};

// log_softmax(t / T) of each row: the teacher's log-probabilities over the whole vocabulary.
inline matrix<double> log_softmax_rows(const matrix<double>& t, double T) {
    matrix<double> out(t.rows(), t.cols());
    for (Eigen::Index i = 0; i < t.rows(); ++i) {
        const double m = t.row(i).maxCoeff();
        double z = 0;
        for (Eigen::Index j = 0; j < t.cols(); ++j) z += std::exp((t(i, j) - m) / T);
        for (Eigen::Index j = 0; j < t.cols(); ++j) out(i, j) = (t(i, j) - m) / T - std::log(z);
    }
    return out;
}

// The k largest entries of each row of `full` (their columns and values), shuffled; entries of
// rows in `short_rows` beyond their first k - 2 are padding (-1).
template <class T>
top_k_data<T> top_k_of(const matrix<double>& full, std::ptrdiff_t k, std::uint32_t seed,
                       const std::vector<Eigen::Index>& short_rows = {}) {
    std::mt19937 gen(seed);
    top_k_data<T> d{index_matrix(full.rows(), k), matrix<T>(full.rows(), k)};
    for (Eigen::Index i = 0; i < full.rows(); ++i) {
        std::vector<Eigen::Index> order(static_cast<std::size_t>(full.cols()));
        std::iota(order.begin(), order.end(), Eigen::Index{0});
        std::stable_sort(order.begin(), order.end(), [&](Eigen::Index a, Eigen::Index b) { return full(i, a) > full(i, b); });
        order.resize(static_cast<std::size_t>(k));
        std::shuffle(order.begin(), order.end(), gen);
        const bool is_short = std::find(short_rows.begin(), short_rows.end(), i) != short_rows.end();
        for (std::ptrdiff_t j = 0; j < k; ++j) {
            const auto c = order[static_cast<std::size_t>(j)];
            const bool pad = is_short && j >= k - 2;
            d.indices(i, j) = pad ? -1 : c;
            d.values(i, j) = pad ? T(7) : static_cast<T>(full(i, c));  // padding's value is never read
        }
    }
    return d;
}

// The dense teacher of a renormalised top-k one: its logits where it has them, -inf elsewhere.
template <class T>
matrix<T> dense_teacher(const top_k_data<T>& d, std::ptrdiff_t C) {
    matrix<T> t = matrix<T>::Constant(d.indices.rows(), C, -std::numeric_limits<T>::infinity());
    for (Eigen::Index i = 0; i < d.indices.rows(); ++i)
        for (Eigen::Index j = 0; j < d.indices.cols(); ++j)
            if (d.indices(i, j) >= 0) t(i, d.indices(i, j)) = d.values(i, j);
    return t;
}

template <class T>
double close_tolerance() { return std::is_same_v<T, float> ? 2e-5 : 1e-12; }

template <class T>
void require_close_matrices(const matrix<T>& a, const matrix<T>& b, double tolerance) {
    const double scale = std::max(1.0, static_cast<double>(b.cwiseAbs().maxCoeff()));
    const double diff = static_cast<double>((a - b).cwiseAbs().maxCoeff());
    INFO("max |difference| " << diff << " against scale " << scale);
    REQUIRE(diff <= tolerance * scale);
}

template <class T>
void renormalize_equals_dense(std::ptrdiff_t N, std::ptrdiff_t C, std::ptrdiff_t k) {
    const matrix<double> t = distill_test::random_logits<double>(N, C, 11, 3.0);
    const matrix<T> s = distill_test::random_logits<T>(N, C, 12, 2.0);
    const top_k_data<T> top = top_k_of<T>(t, k, 13, {1});
    const matrix<T> teacher = dense_teacher(top, C);
    const std::vector<std::int64_t> y = distill_test::random_labels(N, C, 14);
    for (const distill::divergence& d : distill_test::label_free_divergences()) {
        if (kind_of(d) == distill::detail::divergence_kind::reverse_kl) continue;  // refused (+inf): its own test
        for (double T_ : {1.0, 2.5, 4.0}) {
            INFO(distill_test::describe(d) << " T " << T_ << " k " << k << " C " << C);
            distill::distillation_options o{.temperature = T_, .alpha = 0.7, .label_smoothing = 0.1, .divergence = d};
            o.class_weights.resize(static_cast<std::size_t>(C));
            for (std::ptrdiff_t c = 0; c < C; ++c) o.class_weights[static_cast<std::size_t>(c)] = 0.5 + 0.01 * static_cast<double>(c % 50);
            matrix<T> g_dense(N, C), g_top(N, C);
            const distill::loss_value a = distill::distillation_loss<T>(o).loss_and_grad(s, teacher, y, g_dense);
            const distill::loss_value b = distill::top_k_distillation_loss<T>(o, {.mode = distill::top_k_mode::renormalize})
                                              .loss_and_grad(s, distill::top_k(top.indices, top.values), y, g_top);
            REQUIRE(std::abs(a.soft - b.soft) <= close_tolerance<T>() * (1 + std::abs(a.soft)));
            REQUIRE(std::abs(a.hard - b.hard) <= close_tolerance<T>() * (1 + std::abs(a.hard)));
            require_close_matrices(g_top, g_dense, close_tolerance<T>());
        }
    }
}

// Row i of a tail-bucket loss read off the definitions, in double: q = softmax(s / T) over the
// whole row, categories = the row's classes + the tail, D from tests/family.hpp.
double tail_bucket_by_definition(const distill::divergence& d, const matrix<double>& s, const index_matrix& idx,
                                 const matrix<double>& log_p, Eigen::Index i, double T) {
    const auto C = s.cols();
    std::vector<double> q(static_cast<std::size_t>(C));
    double z = 0;
    const double m = s.row(i).maxCoeff();
    for (Eigen::Index c = 0; c < C; ++c) z += (q[static_cast<std::size_t>(c)] = std::exp((s(i, c) - m) / T));
    for (double& v : q) v /= z;
    std::vector<double> pk, qk;
    double p_top = 0, q_top = 0;
    std::vector<bool> in_top(static_cast<std::size_t>(C), false);
    for (Eigen::Index j = 0; j < idx.cols(); ++j) {
        if (idx(i, j) < 0) continue;
        const auto c = static_cast<std::size_t>(idx(i, j));
        in_top[c] = true;
        pk.push_back(std::exp(log_p(i, j)));
        qk.push_back(q[c]);
        p_top += pk.back();
    }
    double q_tail = 0;  // summed directly, as the definition reads
    for (Eigen::Index c = 0; c < C; ++c)
        if (!in_top[static_cast<std::size_t>(c)]) q_tail += q[static_cast<std::size_t>(c)];
    (void)q_top;
    pk.push_back(std::max(0.0, 1 - p_top));
    qk.push_back(q_tail);
    return distill_test::divergence_by_definition(d, pk, qk, -1);
}

template <class Isa, class T>
distill::loss_value top_k_call(const distill::top_k_distillation_loss<T>& loss, const matrix<T>& s,
                               const top_k_data<T>& top, const std::vector<std::int64_t>& y, matrix<T>& g) {
    distill::loss_value v;
    const auto teacher = distill::top_k(top.indices, top.values);
    const distill::status st =
        loss.template try_loss_and_grad<const distill::sequential_executor&, matrix<T>, decltype(teacher),
                                        std::vector<std::int64_t>, matrix<T>&, Isa>(distill::sequential, s, teacher, y, g, v);
    REQUIRE(st.ok());
    return v;
}

}  // namespace

TEST_CASE("renormalize over all V classes is the dense loss", "[top_k]") {
    renormalize_equals_dense<double>(4, 37, 37);
    renormalize_equals_dense<float>(4, 37, 37);
}

TEST_CASE("renormalize equals the dense loss with the teacher's other classes at p = 0", "[top_k]") {
    renormalize_equals_dense<double>(5, 300, 20);
    renormalize_equals_dense<float>(5, 300, 20);
    renormalize_equals_dense<float>(3, 2500, 7);  // several blocks of the dense kernels
}

TEST_CASE("tail_bucket is each divergence over the k + 1 categories", "[top_k]") {
    const std::ptrdiff_t N = 4, C = 60, k = 9;
    const matrix<double> s = distill_test::random_logits<double>(N, C, 21, 2.0);
    const matrix<double> t = distill_test::random_logits<double>(N, C, 22, 3.0);
    const std::vector<std::int64_t> y = distill_test::random_labels(N, C, 23);
    for (double T : {1.0, 2.5}) {
        const matrix<double> log_p = log_softmax_rows(t, T);  // the teacher's soft targets, stored as log-probabilities
        const top_k_data<double> top = top_k_of<double>(log_p, k, 24, {2});
        for (const distill::divergence& d : distill_test::label_free_divergences()) {
            INFO(distill_test::describe(d) << " T " << T);
            const double alpha = 0.6;
            distill::distillation_options o{.temperature = T, .alpha = alpha, .reduce = distill::reduction::sum,
                                            .divergence = d, .teacher = distill::teacher_input::log_probabilities};
            const distill::loss_value v =
                distill::top_k_distillation_loss<double>(o).loss(s, distill::top_k(top.indices, top.values), y);
            double soft = 0, hard = 0;
            for (Eigen::Index i = 0; i < N; ++i) {
                soft += alpha * T * T * tail_bucket_by_definition(d, s, top.indices, top.values, i, T);
                const double m = s.row(i).maxCoeff();
                double z = 0;
                for (Eigen::Index c = 0; c < C; ++c) z += std::exp(s(i, c) - m);
                hard += (1 - alpha) * (std::log(z) + m - s(i, y[static_cast<std::size_t>(i)]));  // -log softmax(s)_y
            }
            REQUIRE(v.soft == Approx(soft).epsilon(1e-12).margin(1e-14));
            REQUIRE(v.hard == Approx(hard).epsilon(1e-12));
        }
    }
}

TEST_CASE("top-k gradients are the loss's finite differences", "[top_k]") {
    const std::ptrdiff_t N = 2, C = 13, k = 4;
    const matrix<double> s = distill_test::random_logits<double>(N, C, 31, 2.0);
    const matrix<double> t = distill_test::random_logits<double>(N, C, 32, 3.0);
    const std::vector<std::int64_t> y = {3, 11};
    for (const distill::top_k_mode mode : {distill::top_k_mode::tail_bucket, distill::top_k_mode::renormalize}) {
        const double T = 2.5;
        const matrix<double> log_p = log_softmax_rows(t, T);
        const top_k_data<double> top = top_k_of<double>(log_p, k, 33);
        for (const distill::divergence& d : distill_test::label_free_divergences()) {
            if (mode == distill::top_k_mode::renormalize && kind_of(d) == distill::detail::divergence_kind::reverse_kl) continue;
            INFO(distill_test::describe(d) << (mode == distill::top_k_mode::renormalize ? " renormalize" : " tail_bucket"));
            const distill::top_k_distillation_loss<double> loss(
                {.temperature = T, .alpha = 0.8, .label_smoothing = 0.05, .divergence = d,
                 .teacher = distill::teacher_input::log_probabilities},
                {.mode = mode});
            matrix<double> g(N, C);
            loss.loss_and_grad(s, distill::top_k(top.indices, top.values), y, g);
            const double h = 1e-6;
            for (Eigen::Index i = 0; i < N; ++i)
                for (Eigen::Index c = 0; c < C; ++c) {
                    matrix<double> up = s, down = s;
                    up(i, c) += h;
                    down(i, c) -= h;
                    const double numeric = (loss.loss(up, distill::top_k(top.indices, top.values), y).total -
                                            loss.loss(down, distill::top_k(top.indices, top.values), y).total) / (2 * h);
                    INFO("element (" << i << ", " << c << ")");
                    REQUIRE(g(i, c) == Approx(numeric).margin(2e-7));
                }
        }
    }
}

// (Under DISTILL_NO_SIMD the default instruction set is the reference itself.)
TEMPLATE_TEST_CASE("SIMD top-k kernels match the reference kernels", "[top_k]", float, double) {
    using T = TestType;
    constexpr std::ptrdiff_t W = static_cast<std::ptrdiff_t>(xsimd::batch<T>::size);
    std::vector<std::ptrdiff_t> widths;
    for (std::ptrdiff_t C = 1; C <= 4 * W + 3; ++C) widths.push_back(C);
    for (std::ptrdiff_t C : {1000, 5003, 40000}) widths.push_back(C);
    double worst_loss = 0, worst_grad = 0;
    for (std::ptrdiff_t C : widths) {
        for (std::ptrdiff_t k : {1, 2, 3, 7, 16, 100, 300}) {
            if (k > C) continue;
            const std::ptrdiff_t N = 3;
            const matrix<double> t = distill_test::random_logits<double>(N, C, static_cast<std::uint32_t>(C * 7 + k), 3.0);
            const matrix<T> s = distill_test::random_logits<T>(N, C, static_cast<std::uint32_t>(C * 5 + k), 3.0);
            const std::vector<std::int64_t> y = distill_test::random_labels(N, C, static_cast<std::uint32_t>(C + k));
            for (const double T_ : {1.0, 2.0, 2.5}) {
                const top_k_data<T> top = top_k_of<T>(log_softmax_rows(t, T_), k, static_cast<std::uint32_t>(k), {0});
                for (const distill::divergence& d : {distill::divergence{distill::forward_kl{}}, distill::divergence{distill::jensen_shannon{0.5}},
                                                     distill::divergence{distill::total_variation{}}}) {
                    for (const double alpha : {1.0, 0.5}) {
                        INFO("C " << C << " k " << k << " T " << T_ << " " << distill_test::describe(d) << " alpha " << alpha);
                        const distill::top_k_distillation_loss<T> loss(
                            {.temperature = T_, .alpha = alpha, .label_smoothing = alpha < 1 ? 0.1 : 0.0,
                             .reduce = distill::reduction::sum, .divergence = d,
                             .teacher = distill::teacher_input::log_probabilities});
                        matrix<T> g_simd(N, C), g_ref(N, C);
                        const distill::loss_value a = top_k_call<distill::detail::isa>(loss, s, top, y, g_simd);
                        const distill::loss_value b = top_k_call<distill::detail::no_simd>(loss, s, top, y, g_ref);
                        const double loss_error = std::abs(a.total - b.total) / (1 + std::abs(b.total));
                        const double grad_error = static_cast<double>((g_simd - g_ref).cwiseAbs().maxCoeff());
                        worst_loss = std::max(worst_loss, loss_error);
                        worst_grad = std::max(worst_grad, grad_error);
                        // float: the SIMD kernels' 32-term float partial sums (tests/differential.hpp: 4e-6 of the
                        // scale); double: sums of up to C terms in a different order.
                        REQUIRE(loss_error <= (std::is_same_v<T, float> ? 4e-6 : 1e-13 + 2.3e-16 * static_cast<double>(C)));
                        REQUIRE(grad_error <= (std::is_same_v<T, float> ? 4e-6 : 1e-13));
                    }
                }
            }
        }
    }
    WARN("worst loss error " << worst_loss << ", worst gradient error " << worst_grad);
}

TEST_CASE("top-k results are bitwise the same for any thread count, and in place", "[top_k]") {
    const std::ptrdiff_t N = 70, C = 3001, k = 20;
    const matrix<float> s = distill_test::random_logits<float>(N, C, 41);
    const top_k_data<float> top = top_k_of<float>(log_softmax_rows(distill_test::random_logits<double>(N, C, 42), 1.0), k, 43, {5, 6});
    const std::vector<std::int64_t> y = distill_test::random_labels(N, C, 44);
    const distill::top_k_distillation_loss<float> loss({.alpha = 0.5, .teacher = distill::teacher_input::log_probabilities});
    matrix<float> g1(N, C);
    const distill::loss_value one = loss.loss_and_grad(s, distill::top_k(top.indices, top.values), y, g1);
    for (int threads : {2, 7}) {
        matrix<float> g(N, C);
        const distill::loss_value v = loss.loss_and_grad(distill_test::thread_executor{threads}, s,
                                                         distill::top_k(top.indices, top.values), y, g);
        REQUIRE(v.total == one.total);
        REQUIRE(g == g1);
    }
    matrix<float> in_place = s;
    const distill::loss_value v = loss.loss_and_grad(in_place, distill::top_k(top.indices, top.values), y, in_place);
    REQUIRE(v.total == one.total);
    REQUIRE(in_place == g1);
    REQUIRE(loss.loss(s, distill::top_k(top.indices, top.values), y).total == one.total);
}

TEST_CASE("top-k teachers as tensors, matrix_refs and 32-bit indices", "[top_k]") {
    const std::ptrdiff_t B = 2, L = 3, C = 50, k = 5;
    const matrix<float> s = distill_test::random_logits<float>(B * L, C, 51);
    const top_k_data<float> top = top_k_of<float>(log_softmax_rows(distill_test::random_logits<double>(B * L, C, 52), 1.0), k, 53);
    const distill::top_k_distillation_loss<float> loss({.alpha = 1, .teacher = distill::teacher_input::log_probabilities});
    matrix<float> g(B * L, C);
    const distill::loss_value m = loss.loss_and_grad(s, distill::top_k(top.indices, top.values), distill::no_labels, g);

    Eigen::TensorMap<const Eigen::Tensor<float, 3, Eigen::RowMajor>> st(s.data(), B, L, C);
    Eigen::Tensor<std::int32_t, 3, Eigen::RowMajor> it(B, L, k);
    for (std::ptrdiff_t r = 0; r < B * L; ++r)
        for (std::ptrdiff_t j = 0; j < k; ++j) it.data()[r * k + j] = static_cast<std::int32_t>(top.indices(r, j));
    Eigen::TensorMap<const Eigen::Tensor<float, 3, Eigen::RowMajor>> vt(top.values.data(), B, L, k);
    Eigen::Tensor<float, 3, Eigen::RowMajor> gt(B, L, C);
    const distill::loss_value t = loss.loss_and_grad(st, distill::top_k(it, vt), distill::no_labels, gt);
    REQUIRE(t.total == m.total);
    REQUIRE(std::equal(gt.data(), gt.data() + gt.size(), g.data()));
    // [batch, time] must agree, not only their product.
    Eigen::TensorMap<const Eigen::Tensor<std::int32_t, 3, Eigen::RowMajor>> it_swapped(it.data(), L, B, k);
    Eigen::TensorMap<const Eigen::Tensor<float, 3, Eigen::RowMajor>> vt_swapped(top.values.data(), L, B, k);
    REQUIRE_THROWS_WITH(loss.loss_and_grad(st, distill::top_k(it_swapped, vt_swapped), distill::no_labels, gt),
                        Contains("teacher indices are [3, 2, 5] and values [3, 2, 5]; both must be 6 x k"));

    matrix<float> g2(B * L, C);
    const distill::loss_value r = loss.loss_and_grad(
        distill::matrix_ref<const float>{s.data(), B * L, C},
        distill::top_k(distill::matrix_ref<const std::int64_t>{top.indices.data(), B * L, k},
                       distill::matrix_ref<const float>{top.values.data(), B * L, k}),
        distill::no_labels, distill::matrix_ref<float>{g2.data(), B * L, C});
    REQUIRE(r.total == m.total);
    REQUIRE(g2 == g);
}

TEST_CASE("top-k tails: an all-padding row, a teacher tail of 0, a student tail of 0", "[top_k]") {
    const distill::top_k_distillation_loss<double> loss({.alpha = 1, .teacher = distill::teacher_input::log_probabilities});
    const matrix<double> s = distill_test::row<double>({0.5, -1, 2, 0});
    matrix<double> g(1, 4);
    // Every entry padding: the teacher's whole mass is the tail, as is the student's: KL = 0.
    {
        const index_matrix idx = index_matrix::Constant(1, 2, -1);
        const matrix<double> v = matrix<double>::Zero(1, 2);
        REQUIRE(loss.loss_and_grad(s, distill::top_k(idx, v), distill::no_labels, g).total == 0);
        REQUIRE(g.cwiseAbs().maxCoeff() == 0);
    }
    // A teacher tail of 0 (its two classes hold all its mass): KL = sum_k p log(p / q) + 0, and the
    // other classes get q_j (nothing of the teacher there to match), as under renormalize.
    {
        index_matrix idx(1, 2);
        idx << 2, 0;
        const matrix<double> v = distill_test::row<double>({std::log(0.75), std::log(0.25)});
        const double m = 2, z = std::exp(0.5 - m) + std::exp(-1 - m) + 1 + std::exp(0 - m);
        const double q2 = 1 / z, q0 = std::exp(0.5 - m) / z, q1 = std::exp(-1 - m) / z, q3 = std::exp(-m) / z;
        const double kl = 0.75 * std::log(0.75 / q2) + 0.25 * std::log(0.25 / q0);
        REQUIRE(loss.loss_and_grad(s, distill::top_k(idx, v), distill::no_labels, g).total == Approx(kl).epsilon(1e-14));
        REQUIRE(g(0, 1) == Approx(q1).epsilon(1e-14));
        REQUIRE(g(0, 3) == Approx(q3).epsilon(1e-14));
        REQUIRE(g(0, 2) == Approx(q2 - 0.75).epsilon(1e-14));
    }
    // A student with no mass outside the teacher's classes and a teacher tail > 0: +inf.
    {
        const matrix<double> s2 = distill_test::row<double>({0.5, -inf, 2});
        index_matrix idx(1, 2);
        idx << 0, 2;
        const matrix<double> v = distill_test::row<double>({std::log(0.5), std::log(0.25)});
        REQUIRE(loss.loss(s2, distill::top_k(idx, v), distill::no_labels).total == inf);
    }
}

TEST_CASE("top-k teachers are refused with the value that is wrong", "[top_k][errors]") {
    const matrix<float> s = distill_test::random_logits<float>(2, 10, 61);
    matrix<float> g(2, 10);
    const std::vector<std::int64_t> y = {1, 2};
    const distill::top_k_distillation_loss<float> loss({.alpha = 0.5, .teacher = distill::teacher_input::log_probabilities});
    const auto call = [&](const index_matrix& idx, const matrix<float>& v) {
        return loss.loss_and_grad(s, distill::top_k(idx, v), y, g);
    };
    index_matrix idx(2, 3);
    idx << 0, 4, 9, 3, -1, 5;
    matrix<float> v(2, 3);
    v << -1, -2, -3, -0.5f, 0, -1.5f;
    REQUIRE_NOTHROW(call(idx, v));
    {
        index_matrix bad = idx;
        bad(1, 2) = 10;
        REQUIRE_THROWS_WITH(call(bad, v), Contains("teacher index 10 at (1, 2) is out of range: classes are [0, 10) and the padding index is -1"));
        bad(1, 2) = -2;
        REQUIRE_THROWS_WITH(call(bad, v), Contains("teacher index -2 at (1, 2) is out of range"));
        bad(1, 2) = 3;
        REQUIRE_THROWS_WITH(call(bad, v), Contains("teacher index 3 appears twice in row 1 (at 0 and 2)"));
    }
    {
        matrix<float> bad = v;
        bad(0, 1) = 0.5f;
        REQUIRE_THROWS_WITH(call(idx, bad), Contains("teacher value at (0, 1) is 0.5; log-probabilities must be <= 0"));
        bad(0, 1) = std::numeric_limits<float>::quiet_NaN();
        REQUIRE_THROWS_WITH(call(idx, bad), Contains("teacher value at (0, 1) is NaN"));
        bad(0, 1) = std::log(0.5f);
        bad(0, 0) = std::log(0.6f);
        REQUIRE_THROWS_WITH(call(idx, bad), Contains("the teacher's top-k mass in row 0 is 1.1"));
    }
    REQUIRE_THROWS_WITH(call(index_matrix(2, 2), v), Contains("teacher indices are 2 x 2 and values 2 x 3; both must be 2 x k"));
    REQUIRE_THROWS_WITH(distill::top_k_distillation_loss<float>({.alpha = 1}),
                        Contains("tail_bucket needs the teacher's values as log-probabilities or probabilities"));
    REQUIRE_THROWS_WITH(distill::top_k_distillation_loss<float>({.alpha = 1, .divergence = distill::reverse_kl{}},
                                                                {.mode = distill::top_k_mode::renormalize}),
                        Contains("reverse_kl with top_k_mode::renormalize is +inf"));
    REQUIRE_THROWS_WITH(distill::top_k_distillation_loss<float>({.divergence = distill::decoupled_kd{},
                                                                 .teacher = distill::teacher_input::log_probabilities}),
                        Contains("decoupled_kd is not defined for a top-k teacher"));
    {
        const distill::top_k_distillation_loss<float> renorm({.alpha = 1}, {.mode = distill::top_k_mode::renormalize});
        index_matrix pad = idx;
        pad.row(1).setConstant(-1);
        REQUIRE_THROWS_WITH(renorm.loss(s, distill::top_k(pad, v), distill::no_labels),
                            Contains("row 1 of the teacher's top-k has no mass"));
    }
    {
        const distill::top_k_distillation_loss<float> probs({.alpha = 1, .teacher = distill::teacher_input::probabilities});
        matrix<float> p(2, 3);
        p << 0.5f, 0.25f, 0.25f, 0.5f, 0.25f, -0.25f;
        REQUIRE_THROWS_WITH(probs.loss(s, distill::top_k(idx, p), distill::no_labels),
                            Contains("teacher value at (1, 2) is -0.25; probabilities must be in [0, 1]"));
    }
    {
        index_matrix many = index_matrix::Constant(2, distill::detail::max_top_k + 1, -1);
        matrix<float> values = matrix<float>::Zero(2, distill::detail::max_top_k + 1);
        REQUIRE_THROWS_WITH(call(many, values), Contains("the teacher has 1025 classes per row; at most 1024 are supported"));
    }
    // A masked or ignored row's teacher is never read, so it is not checked either.
    {
        index_matrix bad = idx;
        bad(1, 0) = 99;
        const std::vector<std::uint8_t> mask = {1, 0};
        REQUIRE_NOTHROW(loss.loss_and_grad(s, distill::top_k(bad, v), y, g, {.mask = mask}));
    }
}
