// The SIMD row kernels against the scalar oracle (detail::reference), for every divergence of the
// family, every row length from 1 to 4 x lanes + 3 (every tail length, with and without full
// vectors), block boundaries, long rows, and rows that start at every offset inside a buffer
// (misaligned starts); decoupled KD with its label at the start, the middle, the end and in the tail;
// and the row function a call chooses once (row_kernel) against fused_row, bit for bit.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <distill/distill.hpp>
// Named explicitly: DISTILL_NO_SIMD leaves them out of distill.hpp, and they are tested in every build.
#include <distill/detail/simd/fused_row.hpp>
#include <distill/detail/simd/softmax_row.hpp>

#include "differential.hpp"
#include "family.hpp"
#include "test_support.hpp"

// The SIMD kernels are tested in every build, DISTILL_NO_SIMD too: that macro only routes the API.
namespace {

using distill::teacher_input;
using distill::detail::row_terms;
namespace reference = distill::detail::reference;
namespace simd = distill::detail::simd;
using arch = xsimd::default_arch;

row_terms make_terms(const distill::divergence& d, teacher_input input, bool soft, bool hard, double T, double alpha,
                     double eps) {
    row_terms k;
    k.soft = soft;
    k.hard = hard;
    k.temperature = soft ? T : 1.0;
    k.inv_temperature = 1.0 / k.temperature;
    k.integer_temperature = distill::detail::whole_temperature(k.temperature);
    k.smoothing = hard ? eps : 0.0;
    k.soft_grad = soft ? alpha * T : 0.0;
    k.hard_grad = hard ? 1 - alpha : 0.0;
    distill_test::set_divergence(k, d);
    distill_test::set_teacher_input(k, input);
    return k;
}

// The teacher's values of a row of random logits in the form `input` names: the logits, their
// log_softmax, or their softmax (each renormalised by the kernels anyway).
template <class T>
void to_teacher_input(T* t, std::ptrdiff_t n, teacher_input input) {
    if (input == teacher_input::logits) return;
    double m = -INFINITY, z = 0;
    for (std::ptrdiff_t c = 0; c < n; ++c) m = std::max(m, static_cast<double>(t[c]));
    for (std::ptrdiff_t c = 0; c < n; ++c) z += std::exp(static_cast<double>(t[c]) - m);
    for (std::ptrdiff_t c = 0; c < n; ++c) {
        const double lp = static_cast<double>(t[c]) - m - std::log(z);
        t[c] = static_cast<T>(input == teacher_input::probabilities ? std::exp(lp) : lp);
    }
}

// The errors of both kernels against each other, as fractions of the size of the terms, within
// the bound the differential sweep asserts (tests/differential.hpp says how both are derived). The
// rows here are moderate (normal logits of spread 3, T in [0.5, 4]): none falls in a range where
// the sweep leaves a row out.
template <class T>
void compare_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k) {
    std::vector<T> g_ref(static_cast<std::size_t>(C)), g_simd(static_cast<std::size_t>(C));
    INFO("C = " << C << ", soft = " << k.soft << ", hard = " << k.hard << ", "
                << distill::detail::divergence_name(k.divergence) << " (beta " << k.params.beta << ", skew "
                << k.params.skew << ", weights " << k.params.target_weight << ", " << k.params.non_target_weight
                << "), teacher inverse temperature " << k.teacher_inv_temperature << ", probabilities "
                << k.teacher_probabilities << ", T = " << k.temperature << ", eps = " << k.smoothing << ", label "
                << label);
    const auto e = distill_test::compare_kernels(s, t, label, C, k, g_ref.data(), g_simd.data());
    REQUIRE(e.left == distill_test::left_out::no);
    REQUIRE(e.gradient_compared);
    using bound = distill_test::kernel_bound<T>;
    CHECK(e.divergence <= bound::loss(C));
    CHECK(e.ce <= bound::loss(C));
    CHECK(e.grad <= bound::grad(C));
    // The loss-only call must give the same loss without a gradient buffer.
    const auto v = simd::fused_row<arch>(s, t, label, C, k, g_simd.data());
    const auto w = simd::fused_row<arch>(s, t, label, C, k, static_cast<T*>(nullptr));
    CHECK(w.divergence == v.divergence);
    CHECK(w.ce == v.ce);
    // The function a call takes once for all its rows (row_kernel: for short and one-block rows the
    // shape's kernel itself) must give fused_row's bits, loss and gradient.
    std::vector<T> g_call(static_cast<std::size_t>(C));
    const auto u = simd::row_kernel<arch, T, T>(C, k)(s, t, label, C, k, g_call.data());
    CHECK(std::memcmp(&u.divergence, &v.divergence, sizeof(double)) == 0);
    CHECK(std::memcmp(&u.ce, &v.ce, sizeof(double)) == 0);
    CHECK(std::memcmp(g_call.data(), g_simd.data(), g_call.size() * sizeof(T)) == 0);
}

// The labels a row of C elements is tried with: for decoupled KD (which leaves the label's column
// out of its vector sweeps) and the hard term, at the start, in the middle, at the end, and at the
// first and middle element of the tail (the elements after the last full vector); else one.
std::vector<std::int64_t> labels_for(std::ptrdiff_t C, std::ptrdiff_t lanes, const row_terms& k) {
    if (!k.needs_label()) return {0};
    const std::ptrdiff_t tail = C % lanes, tail_start = C - tail;
    std::vector<std::int64_t> y{0, C / 2, C - 1};
    if (tail > 0) y.insert(y.end(), {tail_start, tail_start + tail / 2});
    std::sort(y.begin(), y.end());
    y.erase(std::unique(y.begin(), y.end()), y.end());
    return y;
}

// Four term sets per divergence, so that each teacher input, a whole and a fractional temperature,
// T < 1 and the hard term with and without smoothing meet every divergence.
template <class T>
std::vector<row_terms> term_sets(const distill::divergence& d) {
    return {
        make_terms(d, teacher_input::logits, true, false, 1.0, 1.0, 0.0),             // divergence alone, T = 1
        make_terms(d, teacher_input::log_probabilities, true, false, 0.5, 1.0, 0.0),  // T < 1
        make_terms(d, teacher_input::probabilities, true, true, 4.0, 0.5, 0.0),       // whole T: r = q^T
        make_terms(d, teacher_input::logits, true, true, 2.5, 0.3, 0.1),              // fractional T, smoothing
    };
}

template <class T>
void sweep_lengths() {
    constexpr std::ptrdiff_t lanes = xsimd::batch<T, arch>::size;
    for (std::ptrdiff_t C = 1; C <= 4 * lanes + 3; ++C) {
        const auto s = distill_test::random_logits<T>(1, C + lanes, 11u + C);
        const auto t = distill_test::random_logits<T>(1, C + lanes, 97u + C);
        for (std::ptrdiff_t offset = 0; offset < lanes; ++offset) {  // every misalignment
            // The cross-entropy alone, which has no divergence, with label smoothing (the general
            // kernels) and without (the short-row kernel up to 2W), whichever divergence the call
            // names (every one runs forward KL's kernels there); and forward KL with the hard term
            // at T = 1 and T = 3, the two kernel shapes (r = q, r = q^T for a T known at run time)
            // the divergence's term sets below leave out.
            for (const distill::divergence& d : distill_test::all_divergences())
                for (double eps : {0.2, 0.0})
                    compare_row(s.data() + offset, t.data() + offset, C / 2, C,
                                make_terms(d, teacher_input::logits, false, true, 1.0, 0.0, eps));
            for (double temperature : {1.0, 3.0})
                compare_row(s.data() + offset, t.data() + offset, C / 2, C,
                            make_terms(distill::forward_kl{}, teacher_input::logits, true, true, temperature, 0.5, 0.0));
            for (const distill::divergence& d : distill_test::all_divergences())
                for (const row_terms& k : term_sets<T>(d)) {
                    std::vector<T> teacher(t.data() + offset, t.data() + offset + C);
                    to_teacher_input(teacher.data(), C,
                                     k.teacher_probabilities ? teacher_input::probabilities
                                     : k.teacher_inv_temperature == k.inv_temperature ? teacher_input::logits
                                                                                      : teacher_input::log_probabilities);
                    for (std::int64_t label : labels_for(C, lanes, k))
                        compare_row(s.data() + offset, teacher.data(), label, C, k);
                }
        }
    }
}

}  // namespace

TEST_CASE("SIMD fused row matches the reference for every divergence, length 1..4W+3 and start offset", "[kernels]") {
    sweep_lengths<float>();
    sweep_lengths<double>();
}

TEST_CASE("SIMD fused row matches the reference across block boundaries and long rows, for every divergence",
          "[kernels]") {
    // 1023..1025 and 2047..2049 straddle the 1024-element blocks; 70001 has 64 blocks of 1096 with
    // a short last block; 32000 and 128256 are the vocabularies of BENCHMARKING.md.
    for (std::ptrdiff_t C : {1023, 1024, 1025, 2047, 2049, 32000, 70001, 128256}) {
        // Rising logits make the running max change in every block, exercising the rescale path.
        auto s = distill_test::random_logits<float>(1, C, 5u);
        auto t = distill_test::random_logits<float>(1, C, 6u);
        for (std::ptrdiff_t c = 0; c < C; ++c) t(0, c) += static_cast<float>(10.0 * c / C);
        auto sd = s.cast<double>().eval();
        auto td = t.cast<double>().eval();
        // Decoupled KD's label: at the start, in the middle, at the end, at the first column of the
        // second block, and at the first element of the last vector (the tail, where C is not a
        // whole number of vectors).
        constexpr std::ptrdiff_t lanes = xsimd::batch<float, arch>::size;
        const std::ptrdiff_t block = simd::block_length(C, lanes);
        const std::ptrdiff_t tail_start = C % lanes ? C - C % lanes : C - lanes;
        for (const distill::divergence& d : distill_test::all_divergences()) {
            const bool dkd = distill_test::is_decoupled_kd(d);
            std::vector<std::int64_t> labels{C / 3};
            if (dkd) labels = {0, C / 2, C - 1, tail_start};
            if (dkd && block < C) labels.push_back(block);  // rows of one block have no second
            for (std::int64_t y : labels) {
                compare_row(s.data(), t.data(), y, C, make_terms(d, teacher_input::logits, true, true, 4.0, 0.5, 0.1));
                compare_row(t.data(), s.data(), dkd ? y : C - 1, C,
                            make_terms(d, teacher_input::logits, true, !dkd, 2.5, 0.5, 0.0));
                compare_row(sd.data(), td.data(), dkd ? y : 0, C,
                            make_terms(d, teacher_input::logits, true, true, 2.0, 0.7, 0.1));
            }
        }
    }
}

TEMPLATE_TEST_CASE("a NaN logit makes every divergence's loss NaN in both kernels", "[kernels]", float, double) {
    // NaN propagates (docs/reliability.md): a NaN student logit makes Z_q and so every q NaN, a NaN
    // teacher value every p; each divergence then reads a NaN. Regression: the SIMD kernels' "0 where
    // the probability is 0" test was an ordered compare in xsimd 8.1, false for NaN, and turned the
    // NaN terms of reverse KL, skew reverse KL (student) and skew KL (teacher) into 0, a loss of 0.
    constexpr std::ptrdiff_t C = 37;  // full vectors and a tail
    const auto s = distill_test::random_logits<TestType>(1, C, 41);
    const auto t = distill_test::random_logits<TestType>(1, C, 42);
    for (const distill::divergence& d : distill_test::all_divergences())
        for (bool in_teacher : {false, true})
            for (std::ptrdiff_t at : {std::ptrdiff_t{0}, std::ptrdiff_t{20}, C - 1}) {
                auto student = s, teacher = t;
                (in_teacher ? teacher : student)(0, at) = std::numeric_limits<TestType>::quiet_NaN();
                const row_terms k = make_terms(d, teacher_input::logits, true, false, 2.0, 1.0, 0.0);
                std::vector<TestType> g(C);
                INFO(distill_test::describe(d) << ", NaN in the " << (in_teacher ? "teacher" : "student") << " at " << at);
                CHECK(std::isnan(reference::fused_row(student.data(), teacher.data(), 5, C, k, g.data()).divergence));
                CHECK(std::isnan(simd::fused_row<arch>(student.data(), teacher.data(), 5, C, k, g.data()).divergence));
            }
}

// Loss rows of three to eight vectors run the short-row kernel with a vector count known at run time
// (fused_row.hpp, short_statistics): the reference's values, loss() as loss_and_grad(), the row
// function as fused_row, at the shortest, middle and longest such lengths and the first past them
// (8W + 1, the one-block kernel), misaligned, with every kernel shape: the cross-entropy alone, forward
// KL alone (logits, log-probabilities, probabilities), both at a whole T (r = q^T: T = 1, 2, 3, 4) and
// a fractional one (r by its own exponential); with masked classes, and with a row all -inf.
TEMPLATE_TEST_CASE("SIMD fused row of three to eight vectors: reference, masked classes, undefined rows",
                   "[kernels][special]", float, double) {
    constexpr std::ptrdiff_t W = xsimd::batch<TestType, arch>::size;
    constexpr TestType minus_inf = -std::numeric_limits<TestType>::infinity();
    const distill::divergence kl{distill::forward_kl{}};
    std::vector<row_terms> shapes{make_terms(kl, teacher_input::logits, false, true, 1.0, 0.0, 0.0)};
    for (teacher_input input : {teacher_input::logits, teacher_input::log_probabilities, teacher_input::probabilities})
        shapes.push_back(make_terms(kl, input, true, false, 2.5, 1.0, 0.0));
    for (double T : {1.0, 2.0, 3.0, 4.0, 2.5}) shapes.push_back(make_terms(kl, teacher_input::logits, true, true, T, 0.6, 0.0));
    for (std::ptrdiff_t C : {2 * W + 1, 3 * W, 5 * W + 3, 8 * W - 1, 8 * W, 8 * W + 1}) {
        const auto s = distill_test::random_logits<TestType>(1, C + 1, static_cast<unsigned>(70 + C));
        const auto t = distill_test::random_logits<TestType>(1, C + 1, static_cast<unsigned>(170 + C));
        for (std::ptrdiff_t offset : {0, 1})
            for (const row_terms& k : shapes) {
                std::vector<TestType> student(s.data() + offset, s.data() + offset + C);
                std::vector<TestType> teacher(t.data() + offset, t.data() + offset + C);
                to_teacher_input(teacher.data(), C,
                                 k.teacher_probabilities ? teacher_input::probabilities
                                 : k.teacher_inv_temperature == k.inv_temperature ? teacher_input::logits
                                                                                  : teacher_input::log_probabilities);
                for (std::int64_t label : labels_for(C, W, k)) compare_row(student.data(), teacher.data(), label, C, k);
                // Masked classes: in both (first, in the last vector), and in the student alone.
                const TestType teacher_mask = k.teacher_probabilities ? TestType(0) : minus_inf;
                for (std::ptrdiff_t c : {std::ptrdiff_t{0}, C - 1}) student[c] = minus_inf, teacher[c] = teacher_mask;
                student[C / 2] = minus_inf;
                compare_row(student.data(), teacher.data(), 1, C, k);
                // A student row all -inf has no softmax: undefined. The register rows write no gradient
                // (the one-block kernel, at 8W + 1, has parked the teacher's exponentials there first).
                std::vector<TestType> masked(static_cast<std::size_t>(C), minus_inf), g(masked.size(), TestType(7));
                const auto r = simd::fused_row<arch>(masked.data(), teacher.data(), 1, C, k, g.data());
                CHECK_FALSE(r.student_defined);
                if (C <= 8 * W) CHECK(std::all_of(g.begin(), g.end(), [](TestType x) { return x == 7; }));
            }
    }
}

TEST_CASE("SIMD softmax row matches the reference for every length and offset", "[kernels]") {
    constexpr std::ptrdiff_t lanes = xsimd::batch<float, arch>::size;
    for (std::ptrdiff_t C : std::vector<std::ptrdiff_t>{1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 35, 1025, 32000}) {
        const auto s = distill_test::random_logits<float>(1, C + lanes, 3u + C);
        for (bool log : {false, true})
            for (std::ptrdiff_t offset = 0; offset < lanes; ++offset) {
                std::vector<float> a(C), b(C);
                REQUIRE(reference::softmax_row(s.data() + offset, C, 1 / 3.0, log, a.data()));
                REQUIRE(simd::softmax_row<arch>(s.data() + offset, C, 1 / 3.0, log, b.data()));
                // Probabilities: 1e-6 absolute (float rounding of exp and 1/Z);
                // log-probabilities: 2e-6 relative to their size plus 2e-6 (float rounding of x - log Z).
                for (std::ptrdiff_t c = 0; c < C; ++c)
                    CHECK(std::abs(a[c] - b[c]) <= (log ? 2e-6 * (1 + std::abs(a[c])) : 1e-6));
            }
    }
}

// The SIMD softmax stores each block's exponentials relative to the running max of the row so far
// and rescales them at the end; these rows make that max change from block to block (a rising
// ramp), start with blocks that are all -inf, and are done in place, at T = 1 (its own code path)
// and T = 3.
TEMPLATE_TEST_CASE("SIMD softmax row: running max that rises block after block, -inf blocks, in place", "[kernels]",
                   float, double) {
    constexpr TestType minus_inf = -std::numeric_limits<TestType>::infinity();
    constexpr std::ptrdiff_t C = 5000;  // 5 blocks of 1024
    auto ramp = distill_test::random_logits<TestType>(1, C, 11u);
    for (std::ptrdiff_t c = 0; c < C; ++c) ramp(0, c) += static_cast<TestType>(c) * TestType(0.01);  // +50 by the end
    auto masked = distill_test::random_logits<TestType>(1, C, 12u);
    for (std::ptrdiff_t c = 0; c < 2100; ++c) masked(0, c) = minus_inf;  // two whole blocks and part of a third
    for (const auto* row : {&ramp, &masked})
        for (double T : {1.0, 3.0})
            for (bool log : {false, true}) {
                INFO((row == &ramp ? "ramp" : "masked") << ", T = " << T << (log ? ", log_softmax" : ", softmax"));
                std::vector<TestType> a(C), b(C), in_place(row->data(), row->data() + C);
                REQUIRE(reference::softmax_row(row->data(), C, 1 / T, log, a.data()));
                REQUIRE(simd::softmax_row<arch>(row->data(), C, 1 / T, log, b.data()));
                REQUIRE(simd::softmax_row<arch>(in_place.data(), C, 1 / T, log, in_place.data()));
                // As the test above: the float rounding of exp, 1 / Z (and here of the block's
                // rescale factor) is within 1e-6 absolute; log-probabilities within 2e-6 relative.
                for (std::ptrdiff_t c = 0; c < C; ++c) {
                    if (a[c] == minus_inf) {  // masked class: log-probability -inf exactly
                        CHECK(b[c] == minus_inf);
                        CHECK(in_place[c] == minus_inf);
                        continue;
                    }
                    CHECK(std::abs(a[c] - b[c]) <= (log ? 2e-6 * (1 + std::abs(a[c])) : 1e-6));
                    CHECK(in_place[c] == b[c]);
                }
                if (row == &masked && !log) CHECK(std::all_of(b.begin(), b.begin() + 2100, [](TestType p) { return p == 0; }));
            }
}

// Rows of three to eight vectors are held in registers (softmax_row.hpp, register_softmax_row): the
// reference's values, in place as out of place, and the special rows, at the shortest, a middle and
// the longest such length, at T = 1 and 2.5.
TEMPLATE_TEST_CASE("SIMD softmax row of up to eight vectors: reference, in place, special rows", "[kernels][special]",
                   float, double) {
    constexpr std::ptrdiff_t W = xsimd::batch<TestType, arch>::size;
    constexpr TestType minus_inf = -std::numeric_limits<TestType>::infinity();
    for (std::ptrdiff_t C : {2 * W + 1, 5 * W + 3, 8 * W})
        for (double T : {1.0, 2.5})
            for (bool log : {false, true}) {
                INFO("C = " << C << ", T = " << T << (log ? ", log_softmax" : ", softmax"));
                auto row = distill_test::random_logits<TestType>(1, C, static_cast<unsigned>(60 + C));
                row(0, 1) = minus_inf;  // a masked class
                std::vector<TestType> a(static_cast<std::size_t>(C)), b(a.size()), in_place(row.data(), row.data() + C);
                REQUIRE(reference::softmax_row(row.data(), C, 1 / T, log, a.data()));
                REQUIRE(simd::softmax_row<arch>(row.data(), C, 1 / T, log, b.data()));
                REQUIRE(simd::softmax_row<arch>(in_place.data(), C, 1 / T, log, in_place.data()));
                CHECK(b[1] == (log ? minus_inf : TestType(0)));
                // As the tests above: 1e-6 absolute for probabilities, 2e-6 relative for log-probabilities.
                for (std::ptrdiff_t c = 0; c < C; ++c) {
                    if (c != 1) CHECK(std::abs(a[c] - b[c]) <= (log ? 2e-6 * (1 + std::abs(a[c])) : 1e-6));
                    CHECK(std::memcmp(&in_place[c], &b[c], sizeof(TestType)) == 0);
                }
                // All -inf: false, nothing written. A NaN or +inf first, in the middle, last: all NaN.
                std::vector<TestType> masked(a.size(), minus_inf), untouched(a.size(), TestType(7));
                CHECK_FALSE(simd::softmax_row<arch>(masked.data(), C, 1 / T, log, untouched.data()));
                CHECK(std::all_of(untouched.begin(), untouched.end(), [](TestType x) { return x == 7; }));
                for (TestType bad : {std::numeric_limits<TestType>::quiet_NaN(), std::numeric_limits<TestType>::infinity()})
                    for (std::ptrdiff_t at : {std::ptrdiff_t{0}, C / 2, C - 1}) {
                        std::vector<TestType> special(row.data(), row.data() + C), got(a.size());
                        special[static_cast<std::size_t>(at)] = bad;
                        CHECK(simd::softmax_row<arch>(special.data(), C, 1 / T, log, got.data()));
                        CHECK(std::all_of(got.begin(), got.end(), [](TestType x) { return std::isnan(x); }));
                    }
            }
}

// Short rows run W at a time, one per lane (lane_softmax.hpp), and must give each row the bits that
// softmax_row gives it alone: the group kernel's every lane against the one-row kernel, for every
// length the group kernel takes, at T = 1 and 2.5, out of place (strides other than C) and in place,
// with special rows among ordinary ones: one all -inf (reported, left untouched), one with a NaN, one
// with +inf (all NaN, as alone), one with masked classes, one far from 0.
TEMPLATE_TEST_CASE("SIMD softmax group: every row's bits as the row alone, special rows among them", "[kernels][special]",
                   float, double) {
    constexpr std::ptrdiff_t W = xsimd::batch<TestType, arch>::size;
    constexpr std::ptrdiff_t max_cols = simd::lane_softmax_max_cols<arch, TestType>;
    constexpr TestType minus_inf = -std::numeric_limits<TestType>::infinity();
    const auto all_nan = [](const TestType* x, std::ptrdiff_t n) {
        return std::all_of(x, x + n, [](TestType v) { return std::isnan(v); });
    };
    for (std::ptrdiff_t C = 1; C <= max_cols; ++C)
        for (double T : {1.0, 2.5})
            for (bool log : {false, true}) {
                INFO("C = " << C << ", T = " << T << (log ? ", log_softmax" : ", softmax"));
                const std::ptrdiff_t in_stride = C + 3, out_stride = C + 1;
                auto logits = distill_test::random_logits<TestType>(W, in_stride, static_cast<unsigned>(40 + C));
                TestType* s = logits.data();
                for (std::ptrdiff_t c = 0; c < C; ++c) s[1 * in_stride + c] = minus_inf;  // row 1: all -inf
                if (C > 1) s[0 * in_stride + C - 1] = minus_inf;                             // row 0: a masked class
                if (W > 2) s[2 * in_stride + C / 2] = std::numeric_limits<TestType>::quiet_NaN();
                if (W > 3) s[3 * in_stride] = std::numeric_limits<TestType>::infinity();
                if (W > 4)
                    for (std::ptrdiff_t c = 0; c < C; ++c) s[4 * in_stride + c] += TestType(1000);

                std::vector<TestType> group(static_cast<std::size_t>(W * out_stride), TestType(7));
                CHECK(simd::softmax_group<arch>(s, in_stride, group.data(), out_stride, C, 1 / T, log) == 1);
                std::vector<TestType> in_place(s, s + W * in_stride);
                CHECK(simd::softmax_group<arch>(in_place.data(), in_stride, in_place.data(), in_stride, C, 1 / T, log) == 1);
                for (std::ptrdiff_t r = 0; r < W; ++r) {
                    INFO("row " << r);
                    const TestType* got = group.data() + r * out_stride;
                    const TestType* got_in_place = in_place.data() + r * in_stride;
                    std::vector<TestType> alone(static_cast<std::size_t>(C), TestType(7));
                    const bool defined = simd::softmax_row<arch>(s + r * in_stride, C, 1 / T, log, alone.data());
                    CHECK(defined == (r != 1));
                    if (!defined) {  // untouched, both ways
                        CHECK(std::all_of(got, got + C, [](TestType x) { return x == 7; }));
                        CHECK(std::all_of(got_in_place, got_in_place + C, [](TestType x) { return x == minus_inf; }));
                    } else if (all_nan(alone.data(), C)) {  // the NaN and +inf rows: NaN alone, NaN here
                        CHECK(all_nan(got, C));
                        CHECK(all_nan(got_in_place, C));
                    } else {
                        CHECK(std::memcmp(got, alone.data(), sizeof(TestType) * static_cast<std::size_t>(C)) == 0);
                        CHECK(std::memcmp(got_in_place, alone.data(), sizeof(TestType) * static_cast<std::size_t>(C)) == 0);
                    }
                    CHECK(got[C] == 7);  // nothing past the row's classes
                }
            }
}

TEMPLATE_TEST_CASE("SIMD softmax row: all -inf leaves the output untouched, NaN or +inf anywhere make it all NaN",
                   "[kernels][special]", float, double) {
    constexpr TestType minus_inf = -std::numeric_limits<TestType>::infinity();
    constexpr std::ptrdiff_t C = 3000;  // 3 blocks
    for (bool log : {false, true}) {
        // All -inf: no softmax, and nothing written (the reference writes nothing either).
        std::vector<TestType> s(C, minus_inf), out(C, TestType(7));
        CHECK_FALSE(simd::softmax_row<arch>(s.data(), C, 1.0, log, out.data()));
        CHECK(std::all_of(out.begin(), out.end(), [](TestType x) { return x == 7; }));
        // A NaN in the -inf prefix, in the middle of the finite part, at the end; +inf likewise:
        // Z is NaN (exp(NaN), exp(inf - inf)), so every probability and log-probability is.
        for (TestType bad : {std::numeric_limits<TestType>::quiet_NaN(), std::numeric_limits<TestType>::infinity()})
            for (std::ptrdiff_t at : {std::ptrdiff_t{5}, std::ptrdiff_t{1500}, C - 1}) {
                INFO((log ? "log_softmax" : "softmax") << ", " << bad << " at " << at);
                auto row = distill_test::random_logits<TestType>(1, C, 13u);
                for (std::ptrdiff_t c = 0; c < 1100; ++c) row(0, c) = minus_inf;
                row(0, at) = bad;
                std::vector<TestType> ref(C), got(C);
                CHECK(reference::softmax_row(row.data(), C, 0.5, log, ref.data()));
                CHECK(simd::softmax_row<arch>(row.data(), C, 0.5, log, got.data()));
                CHECK(std::all_of(ref.begin(), ref.end(), [](TestType x) { return std::isnan(x); }));
                CHECK(std::all_of(got.begin(), got.end(), [](TestType x) { return std::isnan(x); }));
            }
        // Only -inf and one NaN: not "all -inf" (the reference's max is NaN): NaN throughout.
        s[2500] = std::numeric_limits<TestType>::quiet_NaN();
        CHECK(simd::softmax_row<arch>(s.data(), C, 1.0, log, out.data()));
        CHECK(std::all_of(out.begin(), out.end(), [](TestType x) { return std::isnan(x); }));
    }
}

