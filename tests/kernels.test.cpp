// The SIMD row kernels against the scalar oracle (detail::reference), for every row length from 1
// to 4 x lanes + 3 (every tail length, with and without full vectors), block boundaries, long rows,
// and rows that start at every offset inside a buffer (misaligned starts).
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <distill/distill.hpp>
// Named explicitly: DISTILL_NO_SIMD leaves them out of distill.hpp, and they are tested in every build.
#include <distill/detail/simd/fused_row.hpp>
#include <distill/detail/simd/softmax_row.hpp>

#include "test_support.hpp"

// The SIMD kernels are tested in every build, DISTILL_NO_SIMD too: that macro only routes the API.
namespace {

using distill::detail::row_terms;
namespace reference = distill::detail::reference;
namespace simd = distill::detail::simd;
using arch = xsimd::default_arch;

row_terms make_terms(bool soft, bool hard, double T, double alpha, double eps) {
    row_terms k;
    k.soft = soft;
    k.hard = hard;
    k.temperature = soft ? T : 1.0;
    k.inv_temperature = 1.0 / k.temperature;
    k.teacher_inv_temperature = k.inv_temperature;
    k.integer_temperature = distill::detail::whole_temperature(k.temperature);
    k.smoothing = hard ? eps : 0.0;
    k.soft_grad = soft ? alpha * T : 0.0;
    k.hard_grad = hard ? 1 - alpha : 0.0;
    return k;
}

// Float kernels compute exponentials in float (about 1 ulp each) and sum 32-term float partials
// (docs/math.md, "accuracy"): loss within 2e-5 relative (+1e-6 absolute for losses near 0), gradient
// within 1e-6 of the gradient's scale (its entries are differences of probabilities times the
// coefficients). Double kernels: 1e-12 and 1e-13.
template <class T>
void compare_row(const T* s, const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k) {
    constexpr bool is_float = std::is_same_v<T, float>;
    const double loss_tol = is_float ? 2e-5 : 1e-12;
    const double grad_tol = is_float ? 1e-6 : 1e-13;
    std::vector<T> g_ref(static_cast<std::size_t>(C)), g_simd(static_cast<std::size_t>(C));
    const auto r = reference::fused_row(s, t, label, C, k, g_ref.data());
    const auto v = simd::fused_row<arch>(s, t, label, C, k, g_simd.data());
    INFO("C = " << C << ", soft = " << k.soft << ", hard = " << k.hard << ", T = " << k.temperature
                << ", eps = " << k.smoothing);
    REQUIRE(v.student_defined == r.student_defined);
    REQUIRE(v.teacher_defined == r.teacher_defined);
    CHECK(std::abs(v.divergence - r.divergence) <= loss_tol * (1e-1 + std::abs(r.divergence)));
    CHECK(std::abs(v.ce - r.ce) <= loss_tol * (1e-1 + std::abs(r.ce)));
    const double scale = std::abs(k.soft_grad) + std::abs(k.hard_grad);
    double worst = 0;
    for (std::ptrdiff_t c = 0; c < C; ++c)
        worst = std::max(worst, std::abs(static_cast<double>(g_simd[c]) - g_ref[c]));
    CHECK(worst <= grad_tol * scale);
    // The loss-only call must give the same loss without a gradient buffer.
    const auto w = simd::fused_row<arch>(s, t, label, C, k, static_cast<T*>(nullptr));
    CHECK(w.divergence == v.divergence);
    CHECK(w.ce == v.ce);
}

template <class T>
void sweep_lengths() {
    constexpr std::ptrdiff_t lanes = xsimd::batch<T, arch>::size;
    const std::vector<row_terms> term_sets = {
        make_terms(true, true, 4.0, 0.5, 0.0),   // Hinton loss, whole T: r = q^T
        make_terms(true, true, 2.5, 0.3, 0.1),   // fractional T: r by its own exp; label smoothing
        make_terms(true, false, 1.0, 1.0, 0.0),  // pure KL at T = 1
        make_terms(true, false, 0.5, 1.0, 0.0),  // T < 1
        make_terms(false, true, 1.0, 0.0, 0.2),  // cross-entropy alone
    };
    for (std::ptrdiff_t C = 1; C <= 4 * lanes + 3; ++C) {
        const auto s = distill_test::random_logits<T>(1, C + lanes, 11u + C);
        const auto t = distill_test::random_logits<T>(1, C + lanes, 97u + C);
        for (const auto& k : term_sets)
            for (std::ptrdiff_t offset = 0; offset < lanes; ++offset)  // every misalignment
                compare_row(s.data() + offset, t.data() + offset, (C * 7) % C, C, k);
    }
}

}  // namespace

TEST_CASE("SIMD fused row matches the reference for every length 1..4W+3 and every start offset", "[kernels]") {
    sweep_lengths<float>();
    sweep_lengths<double>();
}

TEST_CASE("SIMD fused row matches the reference across block boundaries and long rows", "[kernels]") {
    // 1023..1025 and 2047..2049 straddle the 1024-element blocks; 70001 has 64 blocks of 1096 with
    // a short last block; 32000 and 128256 are the vocabularies of BENCHMARKING.md.
    for (std::ptrdiff_t C : {1023, 1024, 1025, 2047, 2049, 32000, 70001, 128256}) {
        // Rising logits make the running max change in every block, exercising the rescale path.
        auto s = distill_test::random_logits<float>(1, C, 5u);
        auto t = distill_test::random_logits<float>(1, C, 6u);
        for (std::ptrdiff_t c = 0; c < C; ++c) t(0, c) += static_cast<float>(10.0 * c / C);
        compare_row(s.data(), t.data(), C / 3, C, make_terms(true, true, 4.0, 0.5, 0.1));
        compare_row(t.data(), s.data(), C - 1, C, make_terms(true, true, 2.5, 0.5, 0.0));
        auto sd = s.cast<double>().eval();
        auto td = t.cast<double>().eval();
        compare_row(sd.data(), td.data(), 0, C, make_terms(true, true, 2.0, 0.7, 0.1));
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

