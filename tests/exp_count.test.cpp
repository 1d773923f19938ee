// Exponentials per element of each main kernel, counted: this translation unit defines
// DISTILL_COUNT_EXP_CALLS before including distill (it is its own program, so no other unit sees a
// different definition of the kernels), and detail/simd/exp.hpp then adds the lane count of every
// vector exponential it evaluates to `exp_lanes`. Each expected value below is the number of
// exponentials per element that the kernel's sweeps are documented to spend (detail/simd/fused_row.hpp
// and detail/simd/softmax_row.hpp, header comments; docs/design.md, section 5), written as a sum
// over the sweeps.
//
// Shapes are 64 x 4096 (and 64 x 1000 for a row that is not a whole number of vectors nor of
// blocks): 4096 is a multiple of every vector width, so lanes counted = exponentials per element
// exactly; the per-block scalar std::exp rescales are not counted (they are per block, not per
// element). Inputs come from distill_test's deterministic generator: correlated student and teacher,
// no forward KL row close enough to 0 to take the extra sweep of terms (design.md, section 5).
#define DISTILL_COUNT_EXP_CALLS 1

#include <catch2/catch.hpp>

#include <cstdint>
#include <span>
#include <vector>

#include <distill/distill.hpp>
// Also in a DISTILL_NO_SIMD build, where distill.hpp does not reach it: the hook lives here.
#include <distill/detail/simd/exp.hpp>

namespace {

using distill::detail::simd::exp_lanes;

template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr Eigen::Index N = 64, C = 4096;

// Lanes the SIMD path is built with, for labels that fall where the label's own column splits no
// vector (see the decoupled KD case).
constexpr std::int64_t lanes = static_cast<std::int64_t>(xsimd::batch<float>::size);

template <class T>
struct inputs {
    matrix<T> s, t, g;
    std::vector<std::int64_t> labels;
    inputs(Eigen::Index rows, Eigen::Index cols) : s(rows, cols), t(rows, cols), g(rows, cols), labels(rows) {
        std::uint64_t state = 0x2545f4914f6cdd1dull;
        auto uniform = [&] {  // xorshift64*, in [0, 1)
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            return static_cast<double>((state * 0x2545f4914f6cdd1dull) >> 11) * 0x1.0p-53;
        };
        for (Eigen::Index i = 0; i < rows; ++i)
            for (Eigen::Index j = 0; j < cols; ++j) {
                const double x = 16 * uniform() - 8;
                s(i, j) = static_cast<T>(x);
                t(i, j) = static_cast<T>(0.75 * x + 4 * uniform() - 2);
            }
        // Column lanes - 1 + k lanes: the label's own column ends a vector, so decoupled KD's split
        // of the row around it ([begin, label) and [label + 1, end)) adds no partial vector.
        for (Eigen::Index i = 0; i < rows; ++i)
            labels[static_cast<std::size_t>(i)] = (lanes - 1 + lanes * (7 * i)) % cols;
        g.setZero();
    }
    std::span<const std::int64_t> y() const { return labels; }
};

// Exponentials per element that `call` evaluates (lanes counted / N C).
template <class Call>
double exps_per_element(Eigen::Index rows, Eigen::Index cols, Call&& call) {
    const std::uint64_t before = exp_lanes.load();
    call();
    return static_cast<double>(exp_lanes.load() - before) / static_cast<double>(rows * cols);
}

}  // namespace

TEST_CASE("the counting hook counts every lane of a vector exponential, and only those", "[exp_count]") {
    using V = xsimd::batch<float>;
    const std::uint64_t before = exp_lanes.load();
    (void)distill::detail::simd::exp_nonpositive<xsimd::default_arch>(V(-1.0f));
    (void)distill::detail::simd::exp_nonpositive<xsimd::default_arch>(V(-2.0f));
    CHECK(exp_lanes.load() - before == 2 * V::size);  // two calls, V::size lanes each
}

#ifdef DISTILL_NO_SIMD

// The reference kernels (the only path of this build) take std::exp per element, which the hook does
// not count: a loss call must leave the counter where it was.
TEST_CASE("the reference path evaluates no vector exponential", "[exp_count]") {
    inputs<float> in(N, C);
    const distill::distillation_loss<float> loss({.temperature = 2.5, .alpha = 0.5});
    CHECK(exps_per_element(N, C, [&] { loss.loss_and_grad(in.s, in.t, in.y(), in.g); }) == 0);
    CHECK(exps_per_element(N, C, [&] { distill::softmax(in.s, in.g, 1.0); }) == 0);
}

#else  // the SIMD kernels

TEST_CASE("forward KL (distillation loss, statistics-first) exponentials per element", "[exp_count]") {
    inputs<float> in(N, C);
    // With the cross-entropy term (alpha = 0.5): sweep 1 e_q, e_p (+ e_r); gradient sweep e_q
    // again (+ e_r). A whole T in [1, 16] takes e_r = e_q^T (multiplies, no exponential); a
    // fractional T one exponential in each sweep. loss() is sweep 1 alone.
    for (const double T : {1.0, 4.0}) {
        const distill::distillation_loss<float> loss({.temperature = T, .alpha = 0.5});
        INFO("T = " << T);
        CHECK(exps_per_element(N, C, [&] { loss.loss_and_grad(in.s, in.t, in.y(), in.g); }) == 2 + 1);
        CHECK(exps_per_element(N, C, [&] { loss.loss(in.s, in.t, in.y()); }) == 2);
    }
    {
        const distill::distillation_loss<float> loss({.temperature = 2.5, .alpha = 0.5});
        CHECK(exps_per_element(N, C, [&] { loss.loss_and_grad(in.s, in.t, in.y(), in.g); }) == 3 + 2);
        CHECK(exps_per_element(N, C, [&] { loss.loss(in.s, in.t, in.y()); }) == 3);
    }
    // Without the cross-entropy term (kl_divergence, and alpha = 1): e_q, e_p; then e_q again.
    for (const double T : {2.5, 4.0}) {
        INFO("T = " << T);
        const distill::kl_divergence<float> kl({.temperature = T});
        CHECK(exps_per_element(N, C, [&] { kl.loss_and_grad(in.s, in.t, in.g); }) == 2 + 1);
        CHECK(exps_per_element(N, C, [&] { kl.loss(in.s, in.t); }) == 2);
        const distill::distillation_loss<float> soft_only({.temperature = T, .alpha = 1.0});
        CHECK(exps_per_element(N, C, [&] { soft_only.loss_and_grad(in.s, in.t, in.y(), in.g); }) == 2 + 1);
    }
}

TEST_CASE("forward KL in double and on a row that is not a whole number of vectors", "[exp_count]") {
    // Double: the same sweeps (detail/simd/exp.hpp counts its double exponential the same way).
    inputs<double> d(N, C);
    const distill::kl_divergence<double> kl_d({.temperature = 4.0});
    CHECK(exps_per_element(N, C, [&] { kl_d.loss_and_grad(d.s, d.t, d.g); }) == 2 + 1);
    // C = 5003 (AVX-512: 312 vectors of 16 and a tail of 11; AVX2: 625 of 8 and 3): a tail runs
    // through a whole vector, so the lanes per element are 3 ceil(C / W) W / C.
    const distill::kl_divergence<float> kl_f({.temperature = 4.0});
    constexpr Eigen::Index C_odd = 5003;
    inputs<float> f(N, C_odd);
    const double vectors_per_row = static_cast<double>((C_odd + lanes - 1) / lanes);
    CHECK(exps_per_element(N, C_odd, [&] { kl_f.loss_and_grad(f.s, f.t, f.g); }) ==
          3 * vectors_per_row * static_cast<double>(lanes) / static_cast<double>(C_odd));
}

TEST_CASE("with a workspace, longer rows park their student exponentials too", "[exp_count]") {
    // C = 4096 (4 blocks), the shapes above: sweep 1 parks e_q in the workspace's slot and the
    // gradient sweep reads it there, so loss_and_grad spends what loss() does, plus a fractional
    // T's second e_r. With 4 rows the rows' segments run as separate work items, a slot per row;
    // with 64 in pieces, one slot for them all. The cross-entropy alone: e_q (= r at T = 1) once.
    distill::workspace ws(4, C);
    for (const Eigen::Index rows : {Eigen::Index{4}, N}) {
        INFO(rows << " rows");
        inputs<float> in(rows, C);
        const distill::kl_divergence<float> kl({.temperature = 4.0, .workspace = &ws});
        CHECK(exps_per_element(rows, C, [&] { kl.loss_and_grad(in.s, in.t, in.g); }) == 2);
        const distill::distillation_loss<float> whole({.temperature = 4.0, .alpha = 0.5, .workspace = &ws});
        CHECK(exps_per_element(rows, C, [&] { whole.loss_and_grad(in.s, in.t, in.y(), in.g); }) == 2);
        const distill::distillation_loss<float> fractional({.temperature = 2.5, .alpha = 0.5, .workspace = &ws});
        CHECK(exps_per_element(rows, C, [&] { fractional.loss_and_grad(in.s, in.t, in.y(), in.g); }) == 3 + 1);
        const distill::cross_entropy<float> ce({.workspace = &ws});
        CHECK(exps_per_element(rows, C, [&] { ce.loss_and_grad(in.s, in.y(), in.g); }) == 1);
        inputs<double> d(rows, C);
        const distill::kl_divergence<double> kl_d({.temperature = 4.0, .workspace = &ws});
        CHECK(exps_per_element(rows, C, [&] { kl_d.loss_and_grad(d.s, d.t, d.g); }) == 2);
    }
}

TEST_CASE("a row of one block parks its student exponentials: two an element", "[exp_count]") {
    // C = 1000 <= 1024, one block (detail/simd/row_blocks.hpp): sweep 1 keeps e_q on the stack and
    // the gradient sweep reads it, so loss_and_grad spends e_q and e_p once each, as loss() does.
    // A whole T's r = q^T adds none; a fractional T's r one in each sweep. Each sweep evaluates
    // ceil(C / W) whole vectors: `per_sweep` exponentials per element, as exps_per_element divides.
    constexpr Eigen::Index C_one = 1000;
    const auto per_sweep = [](std::int64_t sweeps, std::int64_t width) {
        return static_cast<double>(N * sweeps * ((C_one + width - 1) / width) * width) / static_cast<double>(N * C_one);
    };
    inputs<float> f(N, C_one);
    const distill::kl_divergence<float> kl({.temperature = 4.0});
    CHECK(exps_per_element(N, C_one, [&] { kl.loss_and_grad(f.s, f.t, f.g); }) == per_sweep(2, lanes));
    CHECK(exps_per_element(N, C_one, [&] { kl.loss(f.s, f.t); }) == per_sweep(2, lanes));
    const distill::distillation_loss<float> whole({.temperature = 4.0, .alpha = 0.5});
    CHECK(exps_per_element(N, C_one, [&] { whole.loss_and_grad(f.s, f.t, f.y(), f.g); }) == per_sweep(2, lanes));
    const distill::distillation_loss<float> fractional({.temperature = 2.5, .alpha = 0.5});
    CHECK(exps_per_element(N, C_one, [&] { fractional.loss_and_grad(f.s, f.t, f.y(), f.g); }) == per_sweep(4, lanes));
    // Double: the same.
    inputs<double> d(N, C_one);
    const distill::kl_divergence<double> kl_d({.temperature = 4.0});
    const auto lanes_d = static_cast<std::int64_t>(xsimd::batch<double>::size);
    CHECK(exps_per_element(N, C_one, [&] { kl_d.loss_and_grad(d.s, d.t, d.g); }) == per_sweep(2, lanes_d));
}

TEST_CASE("a row of three to eight vectors held in registers: the formula's minimum", "[exp_count]") {
    // C = 5W + 3 (six vectors, the last of 3 lanes): the short-row kernel (detail/simd/fused_row.hpp)
    // keeps e_q, e_p and r in registers from sweep 1 to the gradient: e_q and e_p once each, r = q^T
    // at a whole T, r's own exponential once at a fractional T (the formula's k: 2 and 3), with or
    // without a gradient. Six whole vectors an exponential: `per_row` exponentials per element.
    const Eigen::Index C_reg = 5 * lanes + 3;
    const auto per_row = [&](std::int64_t exps) { return static_cast<double>(exps * 6 * lanes) / static_cast<double>(C_reg); };
    inputs<float> f(N, C_reg);
    const distill::kl_divergence<float> kl({.temperature = 4.0});
    CHECK(exps_per_element(N, C_reg, [&] { kl.loss_and_grad(f.s, f.t, f.g); }) == per_row(2));
    CHECK(exps_per_element(N, C_reg, [&] { kl.loss(f.s, f.t); }) == per_row(2));
    const distill::distillation_loss<float> whole({.temperature = 4.0, .alpha = 0.5});
    CHECK(exps_per_element(N, C_reg, [&] { whole.loss_and_grad(f.s, f.t, f.y(), f.g); }) == per_row(2));
    const distill::distillation_loss<float> fractional({.temperature = 2.5, .alpha = 0.5});
    CHECK(exps_per_element(N, C_reg, [&] { fractional.loss_and_grad(f.s, f.t, f.y(), f.g); }) == per_row(3));
    CHECK(exps_per_element(N, C_reg, [&] { fractional.loss(f.s, f.t, f.y()); }) == per_row(3));
    // Ten classes, one row alone: one or two vectors, the same kernel with the count known at
    // compile time, its tail lanes evaluated too.
    const Eigen::Index C_ten = 10, ten_lanes = (C_ten + lanes - 1) / lanes * lanes;
    inputs<float> ten(N, C_ten);
    const Eigen::Ref<const matrix<float>> s1 = ten.s.topRows(1), t1 = ten.t.topRows(1);
    matrix<float> g1(1, C_ten);
    const std::vector<std::int64_t> y1{ten.labels[0]};
    CHECK(exps_per_element(1, C_ten, [&] { fractional.loss_and_grad(s1, t1, y1, g1); }) ==
          static_cast<double>(3 * ten_lanes) / static_cast<double>(C_ten));
}

TEST_CASE("short loss rows side by side: no lane idle", "[exp_count]") {
    // 64 rows of ten classes fill whole groups at every vector width (4, 8 or 16 lanes): a row a
    // lane (detail/simd/lane_loss.hpp), so exactly the formula's k exponentials an element: 2 for
    // KL and for the distillation loss at a whole T (r = q^T), 3 at a fractional T; 1 for the
    // cross-entropy alone. loss() without a gradient spends the same.
    const Eigen::Index C_ten = 10;
    inputs<float> f(N, C_ten);
    const distill::kl_divergence<float> kl({.temperature = 4.0});
    CHECK(exps_per_element(N, C_ten, [&] { kl.loss_and_grad(f.s, f.t, f.g); }) == 2);
    CHECK(exps_per_element(N, C_ten, [&] { kl.loss(f.s, f.t); }) == 2);
    const distill::distillation_loss<float> whole({.temperature = 4.0, .alpha = 0.5});
    CHECK(exps_per_element(N, C_ten, [&] { whole.loss_and_grad(f.s, f.t, f.y(), f.g); }) == 2);
    const distill::distillation_loss<float> fractional({.temperature = 2.5, .alpha = 0.5});
    CHECK(exps_per_element(N, C_ten, [&] { fractional.loss_and_grad(f.s, f.t, f.y(), f.g); }) == 3);
    const distill::cross_entropy<float> ce;
    CHECK(exps_per_element(N, C_ten, [&] { ce.loss_and_grad(f.s, f.y(), f.g); }) == 1);
    inputs<double> d(N, 6);  // 6 doubles: the longest double row that runs side by side
    const distill::kl_divergence<double> kl_d({.temperature = 4.0});
    CHECK(exps_per_element(N, 6, [&] { kl_d.loss_and_grad(d.s, d.t, d.g); }) == 2);
}

TEST_CASE("softmax and log_softmax exponentials per element", "[exp_count]") {
    inputs<float> in(N, C);
    // softmax_row.hpp: sweep 1 sums e^x into `out` (one exponential); sweep 2 scales `out` by one
    // factor per block (softmax) or writes x - log Z (log_softmax): no exponential an element.
    CHECK(exps_per_element(N, C, [&] { distill::softmax(in.s, in.g, 1.0); }) == 1);
    CHECK(exps_per_element(N, C, [&] { distill::log_softmax(in.s, in.g, 1.0); }) == 1);
    // Rows of ten classes, 64 of them (whole groups at every vector width): side by side, one lane a
    // row, so exactly one exponential an element (lane_softmax.hpp); one row alone fills the vectors of
    // its row instead, 10 classes in ceil(10 / lanes) vectors.
    inputs<float> ten(N, 10);
    CHECK(exps_per_element(N, 10, [&] { distill::softmax(ten.s, ten.g, 2.0); }) == 1);
    CHECK(exps_per_element(N, 10, [&] { distill::log_softmax(ten.s, ten.g, 2.0); }) == 1);
    const Eigen::Ref<const matrix<float>> one_row = ten.s.topRows(1);
    matrix<float> one_out(1, 10);
    CHECK(exps_per_element(1, 10, [&] { distill::softmax(one_row, one_out, 2.0); }) ==
          static_cast<double>((10 + lanes - 1) / lanes * lanes) / 10);
}

TEST_CASE("normalise-first divergences exponentials per element", "[exp_count]") {
    inputs<float> in(N, C);
    // fused_row.hpp, normalise-first: sweep 1 e_q, e_p (e_p parked in the gradient buffer); the
    // sums sweep e_q again, p read back; the gradient sweep e_q again, p read back: 2 + 1 + 1.
    // loss() has no buffer to park in: the sums sweep recomputes e_p by sweep 1's operations:
    // 2 + 2. With the cross-entropy term, r takes its own exponential (at every T) in sweep 1 and
    // in the gradient sweep: 3 + 1 + 2 and, for loss(), 3 + 2.
    const std::pair<const char*, distill::divergence> divergences[] = {
        {"reverse_kl", distill::reverse_kl{}},         {"jensen_shannon", distill::jensen_shannon{0.5}},
        {"skew_kl", distill::skew_kl{0.1}},           {"skew_reverse_kl", distill::skew_reverse_kl{0.1}},
        {"total_variation", distill::total_variation{}}};
    for (const auto& [name, d] : divergences) {
        INFO(name);
        const distill::divergence_loss<float> loss({.divergence = d, .temperature = 2.0});
        CHECK(exps_per_element(N, C, [&] { loss.loss_and_grad(in.s, in.t, in.g); }) == 2 + 1 + 1);
        CHECK(exps_per_element(N, C, [&] { loss.loss(in.s, in.t); }) == 2 + 2);
        const distill::distillation_loss<float> with_ce({.temperature = 2.0, .alpha = 0.5, .divergence = d});
        CHECK(exps_per_element(N, C, [&] { with_ce.loss_and_grad(in.s, in.t, in.y(), in.g); }) == 3 + 1 + 2);
        CHECK(exps_per_element(N, C, [&] { with_ce.loss(in.s, in.t, in.y()); }) == 3 + 2);
    }
    // Decoupled KD (labels, alpha = 1: the divergence alone) runs the same sweeps over the classes
    // other than the label; the label's own element is computed apart in double (no vector
    // exponential), but its column lies inside a vector that is evaluated whole: the labels above
    // end a vector, so the split adds no partial vector and the count is exact.
    const distill::distillation_loss<float> dkd(
        {.temperature = 2.0, .alpha = 1.0, .divergence = distill::decoupled_kd{1.0, 8.0}});
    CHECK(exps_per_element(N, C, [&] { dkd.loss_and_grad(in.s, in.t, in.y(), in.g); }) == 2 + 1 + 1);
    CHECK(exps_per_element(N, C, [&] { dkd.loss(in.s, in.t, in.y()); }) == 2 + 2);
}

#endif  // DISTILL_NO_SIMD
