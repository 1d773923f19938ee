// distill::matrix_ref: a pointer, a shape and a row stride in place of an Eigen object. Every call
// gives bitwise the same loss and gradient as with Eigen Maps over the same memory, strided rows are
// read and written in place, and bad fields are errors that name the argument.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <stdexcept>
#include <string>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;

namespace {

template <class T>
using map = Eigen::Map<matrix<T>>;
template <class T>
using const_map = Eigen::Map<const matrix<T>>;

void check_same(const distill::loss_value& a, const distill::loss_value& b) {
    CHECK(a.total == b.total);
    CHECK(a.soft == b.soft);
    CHECK(a.hard == b.hard);
    CHECK(a.rows_counted == b.rows_counted);
}

// Bitwise equality of two gradient buffers, NaN included.
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <class T>
std::vector<T> buffer(std::ptrdiff_t rows, std::ptrdiff_t cols, std::uint32_t seed) {
    const matrix<T> m = distill_test::random_logits<T>(rows, cols, seed);
    return std::vector<T>(m.data(), m.data() + m.size());
}

template <class F>
std::string message_of(F&& call) {
    try {
        call();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "(no std::invalid_argument)";
}

}  // namespace

TEMPLATE_TEST_CASE("matrix_ref gives bitwise the loss and gradient of Eigen Maps over the same memory",
                   "[plain_buffer]", float, double) {
    using T = TestType;
    // 3 rows of 1500 classes: more than one block per row, so the SIMD path cuts rows into segments.
    using shape = std::pair<std::ptrdiff_t, std::ptrdiff_t>;
    const shape nc = GENERATE(shape{5, 37}, shape{3, 1500}, shape{0, 7});
    const std::ptrdiff_t N = nc.first, C = nc.second;
    CAPTURE(N, C);
    const std::vector<T> s = buffer<T>(N, C, 1), t = buffer<T>(N, C, 2);
    const auto y = distill_test::random_labels(N, C, 3);
    std::vector<T> g_eigen(static_cast<std::size_t>(N * C), T(-1)), g_ref = g_eigen;
    std::vector<double> rows_eigen(static_cast<std::size_t>(N)), rows_ref = rows_eigen;
    const const_map<T> sm(s.data(), N, C), tm(t.data(), N, C);
    map<T> gm(g_eigen.data(), N, C);
    const distill::matrix_ref<const T> sr{s.data(), N, C}, tr{t.data(), N, C};
    const distill::matrix_ref<T> gr{g_ref.data(), N, C};
    distill::loss_value a, b;

    SECTION("distillation_loss") {
        const distill::distillation_loss<T> kd({.temperature = 3, .alpha = 0.6, .label_smoothing = 0.1});
        check_same(kd.loss_and_grad(sr, tr, y, gr, {.losses = rows_ref}),
                   kd.loss_and_grad(sm, tm, y, gm, {.losses = rows_eigen}));
        check_same(kd.loss(sr, tr, y), kd.loss(sm, tm, y));
        REQUIRE(kd.try_loss_and_grad(distill::sequential, sr, tr, y, gr, a).ok());
        REQUIRE(kd.try_loss_and_grad(distill::sequential, sm, tm, y, gm, b).ok());
        check_same(a, b);
        REQUIRE(kd.try_loss(sr, tr, y, a).ok());
        REQUIRE(kd.try_loss(sm, tm, y, b).ok());
        check_same(a, b);
    }
    SECTION("kl_divergence") {
        const distill::kl_divergence<T> kl({.temperature = 2});
        check_same(kl.loss_and_grad(sr, tr, gr, {.losses = rows_ref}),
                   kl.loss_and_grad(sm, tm, gm, {.losses = rows_eigen}));
        check_same(kl.loss(sr, tr), kl.loss(sm, tm));
        REQUIRE(kl.try_loss_and_grad(sr, tr, gr, a).ok());
        REQUIRE(kl.try_loss_and_grad(sm, tm, gm, b).ok());
        check_same(a, b);
    }
    SECTION("cross_entropy") {
        const distill::cross_entropy<T> ce({.label_smoothing = 0.05});
        check_same(ce.loss_and_grad(sr, y, gr, {.losses = rows_ref}),
                   ce.loss_and_grad(sm, y, gm, {.losses = rows_eigen}));
        check_same(ce.loss(sr, y), ce.loss(sm, y));
        REQUIRE(ce.try_loss(sr, y, a).ok());
        REQUIRE(ce.try_loss(sm, y, b).ok());
        check_same(a, b);
    }
    SECTION("a writable matrix_ref is read as logits too, and may be a temporary") {
        std::vector<T> s_mut = s;
        const distill::kl_divergence<T> kl;
        check_same(kl.loss_and_grad(distill::matrix_ref<T>{s_mut.data(), N, C}, tr,
                                    distill::matrix_ref{g_ref.data(), N, C}),
                   kl.loss_and_grad(sm, tm, gm));
    }
    SECTION("softmax and log_softmax") {
        for (const bool log : {false, true}) {
            CAPTURE(log);
            if (log) {
                distill::log_softmax(sr, gr, 1.5);
                distill::log_softmax(sm, gm, 1.5);
            } else {
                distill::softmax(sr, gr, 1.5);
                distill::softmax(sm, gm, 1.5);
            }
            CHECK(same_bits(g_ref, g_eigen));
            const matrix<T> returned = log ? distill::log_softmax(sr, 0.5) : distill::softmax(sr, 0.5);
            const matrix<T> expected = log ? distill::log_softmax(sm, 0.5) : distill::softmax(sm, 0.5);
            CHECK(returned.rows() == N);
            CHECK(returned.cols() == C);
            CHECK(returned.cwiseEqual(expected).all());
        }
        REQUIRE(distill::try_softmax(sr, gr).ok());
        REQUIRE(distill::try_softmax(sm, gm).ok());
        CHECK(same_bits(g_ref, g_eigen));
        // In place, as with Eigen.
        std::vector<T> in_place = s;
        const distill::matrix_ref<T> both{in_place.data(), N, C};
        distill::log_softmax(both, both);
        distill::log_softmax(sm, gm);
        CHECK(same_bits(in_place, g_eigen));
        distill::log_softmax(sr, gr);
    }
    CHECK(same_bits(g_ref, g_eigen));
    CHECK(rows_ref == rows_eigen);
}

TEMPLATE_TEST_CASE("matrix_ref rows with a stride are read and written in place", "[plain_buffer]", float, double) {
    using T = TestType;
    const std::ptrdiff_t N = 4, C = 1100, ld = C + 13;
    const matrix<T> s = distill_test::random_logits<T>(N, C, 4), t = distill_test::random_logits<T>(N, C, 5);
    const auto y = distill_test::random_labels(N, C, 6);
    // The logits inside wider rows whose padding is NaN: read, it would poison the loss.
    const T nan = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> s_wide(static_cast<std::size_t>(N * ld), nan), t_wide = s_wide, g_wide(s_wide.size(), T(7));
    for (std::ptrdiff_t i = 0; i < N; ++i)
        for (std::ptrdiff_t j = 0; j < C; ++j) {
            s_wide[static_cast<std::size_t>(i * ld + j)] = s(i, j);
            t_wide[static_cast<std::size_t>(i * ld + j)] = t(i, j);
        }
    const distill::matrix_ref<const T> sr{s_wide.data(), N, C, ld};
    const distill::matrix_ref<const T> tr{.data = t_wide.data(), .rows = N, .cols = C, .row_stride = ld};
    const distill::matrix_ref<T> gr{g_wide.data(), N, C, ld};

    const distill::distillation_loss<T> kd({.temperature = 4, .alpha = 0.5});
    matrix<T> g(N, C);
    check_same(kd.loss_and_grad(sr, tr, y, gr), kd.loss_and_grad(s, t, y, g));
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        CHECK(std::memcmp(&g_wide[static_cast<std::size_t>(i * ld)], g.row(i).data(), sizeof(T) * C) == 0);
        for (std::ptrdiff_t j = C; j < ld; ++j) CHECK(g_wide[static_cast<std::size_t>(i * ld + j)] == T(7));
    }
    // The same strides through an Eigen Map with an outer stride.
    using strided = Eigen::Map<const matrix<T>, 0, Eigen::OuterStride<>>;
    check_same(kd.loss(sr, tr, y), kd.loss(strided(s_wide.data(), N, C, Eigen::OuterStride<>(ld)),
                                           strided(t_wide.data(), N, C, Eigen::OuterStride<>(ld)), y));

    const matrix<T> p = distill::softmax(s, 2.0);
    distill::softmax(sr, gr, 2.0);
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        CHECK(std::memcmp(&g_wide[static_cast<std::size_t>(i * ld)], p.row(i).data(), sizeof(T) * C) == 0);
        CHECK(g_wide[static_cast<std::size_t>(i * ld + C)] == T(7));
    }
}

TEST_CASE("matrix_ref errors name the argument", "[plain_buffer][errors]") {
    const std::ptrdiff_t N = 2, C = 3;
    std::vector<float> s(N * C, 0.f), t(N * C, 0.f), g(N * C);
    const std::vector<std::int64_t> y = {0, 2};
    const distill::distillation_loss<float> kd;
    const distill::matrix_ref<const float> sr{s.data(), N, C}, tr{t.data(), N, C};
    const distill::matrix_ref<float> gr{g.data(), N, C};

    SECTION("row_stride < cols") {
        const distill::matrix_ref<const float> short_rows{s.data(), N, C, C - 1};
        CHECK(message_of([&] { kd.loss(short_rows, tr, y); }) ==
              "student logits: row_stride must be at least cols (3), got row_stride 2");
        CHECK(message_of([&] { kd.loss(sr, distill::matrix_ref<const float>{t.data(), N, C, 0}, y); }) ==
              "teacher logits: row_stride must be at least cols (3), got row_stride 0");
        CHECK(message_of([&] { kd.loss_and_grad(sr, tr, y, distill::matrix_ref<float>{g.data(), N, C, -1}); }) ==
              "gradient buffer: row_stride must be at least cols (3), got row_stride -1");
        CHECK(message_of([&] { distill::softmax(short_rows, gr); }) ==
              "logits: row_stride must be at least cols (3), got row_stride 2");
        CHECK(message_of([&] { distill::log_softmax(sr, distill::matrix_ref<float>{g.data(), N, C, 1}); }) ==
              "output: row_stride must be at least cols (3), got row_stride 1");
        distill::loss_value v;
        const distill::status st = kd.try_loss(short_rows, tr, y, v);
        CHECK(st.code() == distill::errc::invalid_argument);
        CHECK(std::string(st.message()) == "student logits: row_stride must be at least cols (3), got row_stride 2");
    }
    SECTION("a null pointer with elements") {
        CHECK(message_of([&] { kd.loss(distill::matrix_ref<const float>{nullptr, N, C}, tr, y); }) ==
              "student logits: data is a null pointer but the shape is 2 x 3");
        CHECK(message_of([&] { kd.loss(sr, distill::matrix_ref<const float>{nullptr, N, C}, y); }) ==
              "teacher logits: data is a null pointer but the shape is 2 x 3");
        CHECK(message_of([&] { kd.loss_and_grad(sr, tr, y, distill::matrix_ref<float>{nullptr, N, C}); }) ==
              "gradient buffer: data is a null pointer but the shape is 2 x 3");
        CHECK(message_of([&] { distill::softmax(distill::matrix_ref<const float>{nullptr, N, C}, gr); }) ==
              "logits: data is a null pointer but the shape is 2 x 3");
        distill::loss_value v;
        CHECK(kd.try_loss(distill::matrix_ref<const float>{nullptr, N, C}, tr, y, v).code() ==
              distill::errc::invalid_argument);
    }
    SECTION("a negative shape") {
        CHECK(message_of([&] { kd.loss(distill::matrix_ref<const float>{s.data(), -1, C}, tr, y); }) ==
              "student logits: the shape must not be negative, got -1 x 3");
        CHECK(message_of([&] { distill::softmax(distill::matrix_ref<const float>{s.data(), N, -3}); }) ==
              "logits: the shape must not be negative, got 2 x -3");
    }
    SECTION("an empty batch may have a null pointer") {
        const std::vector<std::int64_t> none;
        const distill::matrix_ref<const float> empty{nullptr, 0, C};
        const distill::loss_value v = kd.loss_and_grad(empty, empty, none, distill::matrix_ref<float>{nullptr, 0, C});
        CHECK(v.total == 0);
        CHECK(v.rows_counted == 0);
        distill::softmax(empty, distill::matrix_ref<float>{nullptr, 0, C});
    }
    SECTION("the checks the Eigen inputs get still apply") {
        CHECK(message_of([&] { kd.loss(sr, distill::matrix_ref<const float>{t.data(), N, C - 1}, y); }) ==
              "distillation_loss: teacher logits are 2 x 2 but student logits are 2 x 3; they must match");
        CHECK(message_of([&] {
                  kd.loss_and_grad(sr, tr, y, distill::matrix_ref<float>{s.data() + 1, 1, C});
              }) == "distillation_loss: gradient buffer is 1 x 3 but student logits are 2 x 3; they must match");
        CHECK(message_of([&] { kd.loss_and_grad(sr, tr, y, distill::matrix_ref<float>{s.data() + 1, N, C}); }) ==
              "distillation_loss: the gradient buffer overlaps the student logits; it must be a separate buffer or "
                                                                                "the student logits themselves");
    }
}
