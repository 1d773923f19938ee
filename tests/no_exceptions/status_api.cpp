// The non-throwing API under -fno-exceptions: every loss, softmax and log_softmax through its try_
// twin, results against closed forms, and each class of error reported as a status with its code
// and message. A plain main(): prints one line per failed check and a closing "P passed, F failed".
#if defined(__cpp_exceptions)
#error "this test must be compiled with -fno-exceptions"
#endif

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include <distill/distill.hpp>

namespace {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using labels = std::vector<std::int64_t>;
constexpr float inf = std::numeric_limits<float>::infinity();

// Without exceptions the throwing calls do not exist; code that needs them fails to compile rather
// than calling std::terminate at run time. (distill::softmax and log_softmax are not declared at all:
// this file would not compile if it named them.)
template <class Loss>
constexpr bool has_throwing_loss = requires(const Loss& l, const matrix& s, const labels& y) { l.loss(s, s, y); };
template <class Loss>
constexpr bool has_throwing_ce = requires(const Loss& l, const matrix& s, const labels& y) { l.loss(s, y); };
static_assert(!has_throwing_loss<distill::distillation_loss<float>>);
static_assert(!has_throwing_loss<distill::kl_divergence<float>>);
static_assert(!has_throwing_ce<distill::cross_entropy<float>>);
template <class Loss>
constexpr bool has_throwing_sharded_loss =
    requires(const Loss& l, const matrix& s, const labels& y, std::span<const distill::row_statistics> r,
             std::span<const distill::row_sums> u) { l.loss(s, s, y, r, u); };

int passed = 0, failed = 0;

void check(bool ok, const char* what, int line) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        std::printf("FAILED (line %d): %s\n", line, what);
    }
}
#define CHECK(cond) check((cond), #cond, __LINE__)

bool near(double a, double b, double tol = 1e-6) { return std::abs(a - b) <= tol * (1 + std::abs(b)); }
bool contains(const distill::status& s, const char* text) { return std::strstr(s.message(), text) != nullptr; }

matrix rows(std::initializer_list<std::initializer_list<float>> values) {
    matrix m(static_cast<Eigen::Index>(values.size()), static_cast<Eigen::Index>(values.begin()->size()));
    Eigen::Index i = 0;
    for (auto r : values) {
        Eigen::Index j = 0;
        for (float v : r) m(i, j++) = v;
        ++i;
    }
    return m;
}

// A parallel_for-shaped executor that runs the pieces in reverse order on this thread: the result
// must not depend on the order.
struct reverse_executor {
    template <class Fn>
    void operator()(std::ptrdiff_t begin, std::ptrdiff_t end, Fn&& fn) const {
        for (std::ptrdiff_t i = end; i > begin; --i) fn(i - 1, i);
    }
};

void values_match_closed_forms() {
    const double log2 = std::log(2.0);
    distill::loss_value v;
    matrix g(1, 2);

    // p = [1, 0], q = [1/2, 1/2]: KL = log 2; dKL/ds = q - p = [-1/2, 1/2].
    const distill::kl_divergence<float> kl({.temperature = 1});
    CHECK(kl.try_loss_and_grad(rows({{0, 0}}), rows({{0, -inf}}), g, v).ok());
    CHECK(near(v.total, log2) && near(g(0, 0), -0.5) && near(g(0, 1), 0.5));
    CHECK(v.rows_counted == 1);

    // r = [1/2, 1/2], y = 0: CE = log 2; dCE/ds = r - onehot = [-1/2, 1/2].
    const distill::cross_entropy<float> ce;
    CHECK(ce.try_loss_and_grad(rows({{0, 0}}), labels{0}, g, v).ok());
    CHECK(near(v.total, log2) && near(g(0, 0), -0.5) && near(g(0, 1), 0.5));

    // Hinton loss at T = 2, alpha = 1/2 on s = [0, 0], t = [0, -inf], y = 0:
    // soft = 1/2 * 4 * log 2, hard = 1/2 * log 2; gradient 1/2 * 2 (q - p) + 1/2 (r - onehot) = [-3/4, 3/4].
    const distill::distillation_loss<float> kd({.temperature = 2, .alpha = 0.5});
    CHECK(kd.try_loss_and_grad(rows({{0, 0}}), rows({{0, -inf}}), labels{0}, g, v).ok());
    CHECK(near(v.soft, 2 * log2) && near(v.hard, 0.5 * log2) && near(v.total, 2.5 * log2));
    CHECK(near(g(0, 0), -0.75) && near(g(0, 1), 0.75));
    distill::loss_value only;
    CHECK(kd.try_loss(rows({{0, 0}}), rows({{0, -inf}}), labels{0}, only).ok());
    CHECK(only.total == v.total);
}

void executors_reductions_and_per_row() {
    Eigen::Index N = 70, C = 33;
    matrix s(N, C), t(N, C), g1(N, C), g2(N, C);
    labels y(static_cast<std::size_t>(N));
    for (Eigen::Index i = 0; i < N; ++i) {
        y[static_cast<std::size_t>(i)] = (i % 5 == 0) ? -100 : (i * 7) % C;  // every 5th row ignored
        for (Eigen::Index j = 0; j < C; ++j) {
            s(i, j) = std::sin(0.37f * float(i * C + j));
            t(i, j) = std::cos(0.11f * float(i * C + j));
        }
    }
    const distill::distillation_loss<float> kd({.temperature = 3, .alpha = 0.4, .label_smoothing = 0.1});
    distill::loss_value a, b;
    CHECK(kd.try_loss_and_grad(s, t, y, g1, a).ok());
    CHECK(kd.try_loss_and_grad(reverse_executor{}, s, t, y, g2, b).ok());
    CHECK(std::memcmp(&a.total, &b.total, sizeof(double)) == 0);  // bitwise, whatever the order
    CHECK(g1 == g2);
    CHECK(a.rows_counted == 56);
    CHECK(g1.row(5).isZero() && g1.row(10).isZero());  // ignored rows: zero gradient

    // reduction::none: the per-row losses add up to the sum; mean = sum / rows counted.
    std::vector<double> per(static_cast<std::size_t>(N));
    const distill::distillation_loss<float> none({.temperature = 3, .alpha = 0.4, .label_smoothing = 0.1,
                                                  .reduce = distill::reduction::none});
    distill::loss_value n;
    CHECK(none.try_loss(s, t, y, n, {.losses = per}).ok());
    double sum = 0;
    for (double l : per) sum += l;
    CHECK(near(n.total, sum, 1e-12));
    CHECK(near(a.total, sum / 56, 1e-9));
    CHECK(per[0] == 0 && per[5] == 0);

    // A row mask excludes rows as ignore_index does.
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(N), 1);
    mask[1] = 0;
    distill::loss_value m;
    CHECK(kd.try_loss(s, t, y, m, {.mask = mask}).ok());
    CHECK(m.rows_counted == 55);
}

void errors_are_statuses() {
    const matrix s = rows({{0, 1, 2}, {2, 1, 0}});
    matrix g(2, 3);
    distill::loss_value v;
    v.total = 42;

    // Without exceptions a constructor cannot refuse its options: the first call reports them.
    const distill::distillation_loss<float> bad_t({.temperature = -1});
    distill::status st = bad_t.try_loss(s, s, labels{0, 1}, v);
    CHECK(st.code() == distill::errc::invalid_argument);
    CHECK(contains(st, "distillation_loss: temperature must be in [0.001, 1000], got -1"));
    CHECK(v.total == 0);  // the result is reset, never left stale
    CHECK(!distill::kl_divergence<float>({.temperature = std::nan("")}).try_loss(s, s, v).ok());
    st = distill::cross_entropy<float>({.label_smoothing = 1}).try_loss(s, labels{0, 1}, v);
    CHECK(contains(st, "cross_entropy: label_smoothing must be in [0, 1), got 1"));

    const distill::distillation_loss<float> kd({.temperature = 2});
    st = kd.try_loss(s, s, labels{0, 3}, v);
    CHECK(st.code() == distill::errc::out_of_range);
    CHECK(contains(st, "label 3 at row 1 is out of range: classes are [0, 3) and ignore_index is -100"));

    matrix g_bad(3, 3);
    st = kd.try_loss_and_grad(s, s, labels{0, 1}, g_bad, v);
    CHECK(st.code() == distill::errc::invalid_argument);
    CHECK(contains(st, "gradient buffer is 3 x 3 but student logits are 2 x 3"));

    const matrix masked = rows({{0, 1, 2}, {-inf, -inf, -inf}});
    st = kd.try_loss_and_grad(masked, s, labels{0, 1}, g, v);
    CHECK(contains(st, "row 1 of the student logits is entirely -inf"));

    matrix with_nan = s;
    with_nan(1, 2) = std::numeric_limits<float>::quiet_NaN();
    CHECK(std::isnan(kd.try_loss(with_nan, s, labels{0, 1}, v).ok() ? v.total : 0.0));  // NaN propagates
    const distill::distillation_loss<float> checked({.temperature = 2, .check_finite = true});
    st = checked.try_loss(with_nan, s, labels{0, 1}, v);
    CHECK(contains(st, "student logits: element (1, 2) is NaN"));

    distill::status ok;
    CHECK(ok.ok() && ok.code() == distill::errc::ok && std::strcmp(ok.message(), "") == 0);
}

void softmax_and_tensors() {
    const matrix s = rows({{0, 1, 2, 3}, {5, 5, -inf, 5}});
    matrix p(2, 4), lp(2, 4);
    CHECK(distill::try_softmax(s, p, 2.0).ok());
    CHECK(near(p.row(0).sum(), 1) && near(p.row(1).sum(), 1) && p(1, 2) == 0 && near(p(1, 0), 1 / 3.0));
    CHECK(distill::try_log_softmax(s, lp, 2.0).ok());
    CHECK(near(lp(1, 0), -std::log(3.0)) && lp(1, 2) == -inf);
    CHECK(distill::try_softmax(s, p, 0.0).code() == distill::errc::invalid_argument);
    const matrix all_masked = rows({{-inf, -inf}});
    matrix o(1, 2);
    CHECK(contains(distill::try_softmax(all_masked, o), "softmax: row 0 of the logits is entirely -inf"));

    // A [batch, time, vocab] tensor is (batch * time) x vocab rows.
    Eigen::Tensor<float, 3, Eigen::RowMajor> st(2, 3, 5), tt(2, 3, 5), gt(2, 3, 5);
    st.setConstant(0.5f);
    tt.setConstant(0.5f);
    const distill::kl_divergence<float> kl({.temperature = 4});
    distill::loss_value v;
    CHECK(kl.try_loss_and_grad(st, tt, gt, v).ok());
    CHECK(v.rows_counted == 6 && near(v.total + 1, 1));
}

// The vocabulary over two "ranks" in this process: the row {0, ln 3 | ln 2, -inf} of 4 classes,
// rank 0 holding columns 0-1, rank 1 columns 2-3, the teacher uniform over the 3 classes the student
// keeps. Expected, from the closed form: softmax(s) = {1, 3, 2, 0} / 6, so the cross-entropy at
// label 2 is ln 3 (alpha = 0: the hard term alone, no temperature) and forward KL (alpha = 1, T = 1)
// is sum_c (1/3) ln((1/3) / r_c) = (1/3)(ln 2 + ln(2/3) + ln 1) = (1/3) ln(4/3).
void sharded_statuses() {
    static_assert(!has_throwing_sharded_loss<distill::sharded_loss<float>>);
    const float ninf = -inf;
    const matrix s0 = rows({{0.0f, std::log(3.0f)}}), s1 = rows({{std::log(2.0f), ninf}});
    const matrix t0 = rows({{0.0f, 0.0f}}), t1 = rows({{0.0f, ninf}});
    const labels y{2};
    for (double alpha : {0.0, 1.0}) {
        const distill::distillation_options o{.temperature = 1.0, .alpha = alpha};
        const distill::sharded_loss<float> rank0(o, {.first_column = 0, .vocabulary = 4});
        const distill::sharded_loss<float> rank1(o, {.first_column = 2, .vocabulary = 4});
        std::vector<distill::row_statistics> a(1), b(1);
        CHECK(rank0.try_statistics(s0, t0, y, std::span(a)).ok());
        CHECK(rank1.try_statistics(distill::sequential, s1, t1, y, std::span(b)).ok());
        const std::vector<distill::row_statistics> combined{distill::merge_row_statistics(a[0], b[0])};
        std::vector<distill::row_sums> sums;
        if (rank0.needs_sums(combined)) {  // the reference kernels: forward KL takes the second reduction
            std::vector<distill::row_sums> u0(1), u1(1);
            CHECK(rank0.try_sums(s0, t0, y, std::span<const distill::row_statistics>(combined), std::span(u0)).ok());
            CHECK(rank1.try_sums(s1, t1, y, std::span<const distill::row_statistics>(combined), std::span(u1)).ok());
            sums = {distill::merge_row_sums(u0[0], u1[0])};
        }
        matrix g0(1, 2), g1(1, 2);
        distill::loss_value v0, v1;
        CHECK(rank0.try_loss_and_grad(s0, t0, y, std::span<const distill::row_statistics>(combined),
                                      std::span<const distill::row_sums>(sums), g0, v0).ok());
        CHECK(rank1.try_loss(s1, t1, y, std::span<const distill::row_statistics>(combined),
                             std::span<const distill::row_sums>(sums), v1).ok());
        CHECK(v0.total == v1.total);
        CHECK(near(v0.total, alpha == 0 ? std::log(3.0) : std::log(4.0 / 3.0) / 3));
        // Half the records: refused with a status, not an exception.
        distill::loss_value v;
        const distill::status half = rank0.try_loss(s0, t0, y, std::span<const distill::row_statistics>(a),
                                                    std::span<const distill::row_sums>(sums), v);
        CHECK(half.code() == distill::errc::invalid_argument && contains(half, "cover 2 columns but the vocabulary has 4"));
    }
    std::int64_t n = -1;
    CHECK(distill::try_counted_rows(labels{1, -100, 3}, {}, -100, n).ok() && n == 2);
}

}  // namespace

int main() {
    values_match_closed_forms();
    executors_reductions_and_per_row();
    errors_are_statuses();
    softmax_and_tensors();
    sharded_statuses();
#if defined(DISTILL_NO_SIMD)
    const char* kernels = "reference";
#else
    const char* kernels = "SIMD";
#endif
    std::printf("no_exceptions (%s kernels): %d passed, %d failed\n", kernels, passed, failed);
    return failed == 0 ? 0 : 1;
}
