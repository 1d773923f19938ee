// Differential sweep: the SIMD row kernel (detail::simd::fused_row at xsimd::default_arch) against
// the reference row kernel over more than 10,000 random row shapes: C from 1 to 70,000 (log-uniform,
// so that short rows and every tail length are as common as long multi-block rows), every start
// offset inside a vector, random temperature, alpha and label smoothing, each of the three term
// sets (Hinton, KL alone, cross-entropy alone), and logits drawn in several styles: independent
// rows, near-equal teacher and student (KL near 0), large offsets, rising rows (the running max
// moves in every block), a dominant class, and -inf class masks. Errors are measured against the
// size of the terms (tests/differential.hpp) and asserted against the bound docs/reliability.md
// states; the worst figures are printed.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include <distill/distill.hpp>

#include "differential.hpp"

namespace {

using distill::detail::row_terms;
using arch = xsimd::default_arch;

constexpr std::ptrdiff_t max_classes = 70000;

enum class style { independent, near_equal, equal, offset, rising, dominant, masked, count };
const char* style_name(style s) {
    constexpr const char* names[] = {"independent", "near-equal", "equal", "offset", "rising", "dominant", "masked"};
    return names[static_cast<int>(s)];
}

struct shape {
    std::ptrdiff_t C = 1, offset = 0;
    style kind = style::independent;
    row_terms terms;
    std::int64_t label = 0;
    std::uint32_t seed = 0;
};

row_terms random_terms(std::mt19937& gen) {
    std::uniform_real_distribution<double> u(0, 1);
    row_terms k;
    const int which = static_cast<int>(gen() % 4);  // 0, 1: Hinton; 2: KL alone; 3: CE alone
    k.soft = which != 3;
    k.hard = which != 2;
    double T = 1;
    switch (gen() % 3) {
        case 0: T = std::exp(std::log(0.05) + u(gen) * std::log(20 / 0.05)); break;  // log-uniform [0.05, 20]
        case 1: T = static_cast<double>(1 + gen() % 16); break;                     // whole: r = q^T
        default: T = 1; break;
    }
    const double alpha = k.soft && k.hard ? u(gen) : (k.soft ? 1.0 : 0.0);
    k.temperature = k.soft ? T : 1.0;
    k.inv_temperature = 1 / k.temperature;
    k.teacher_inv_temperature = k.inv_temperature;
    k.integer_temperature = distill::detail::whole_temperature(k.temperature);
    k.smoothing = k.hard && gen() % 2 ? 0.5 * u(gen) : 0.0;
    k.soft_grad = alpha * T;  // d(alpha T^2 KL)/ds = alpha T (q - p)
    k.hard_grad = 1 - alpha;
    return k;
}

// Fills the row pair of one shape (student in s, teacher in t, C entries each).
template <class T>
void fill_rows(const shape& sh, T* s, T* t) {
    std::mt19937 gen(sh.seed);
    std::normal_distribution<double> normal(0, 1);
    std::uniform_real_distribution<double> u(0, 1);
    const double sigma = std::exp(std::log(0.01) + u(gen) * std::log(30 / 0.01));  // log-uniform [0.01, 30]
    const auto C = sh.C;
    for (std::ptrdiff_t c = 0; c < C; ++c) {
        const double a = sigma * normal(gen), b = sigma * normal(gen);
        double sv = a, tv = b;
        switch (sh.kind) {
            case style::near_equal: tv = a + 1e-3 * sigma * normal(gen); break;
            case style::equal: tv = a; break;
            case style::offset: sv += 1e4, tv -= 3e3; break;
            case style::rising: sv += 20.0 * c / C, tv += 30.0 * c / C; break;
            default: break;
        }
        s[c] = static_cast<T>(sv);
        t[c] = static_cast<T>(tv);
    }
    if (sh.kind == style::dominant) {
        s[gen() % C] += static_cast<T>(20 * sigma + 5);
        t[gen() % C] += static_cast<T>(20 * sigma + 5);
    }
    if (sh.kind == style::masked) {
        // Masks in the teacher, the student, or both, in different classes; one row in a hundred is
        // left with a single class, so that a fully masked remainder and +inf losses occur too.
        const double rate = u(gen) * 0.9;
        const int where = static_cast<int>(gen() % 3);
        for (std::ptrdiff_t c = 0; c < C; ++c) {
            if (u(gen) >= rate) continue;
            if (where != 1) t[c] = -std::numeric_limits<T>::infinity();
            if (where != 0) s[(c * 7 + 3) % C] = -std::numeric_limits<T>::infinity();
        }
    }
}

struct worst_case {
    double error = 0;     // error / scale
    double of_bound = 0;  // error / scale / bound(C): above 1 fails
    std::string where;
};

struct sweep_stats {
    long shapes = 0, elements = 0, infinite_losses = 0;
    worst_case kl, ce, grad;
    double loss_relative = 0, grad_relative = 0;
    std::vector<bool> tail_seen, offset_seen;
};

template <class T>
void run_shape(const shape& sh, std::vector<T>& s, std::vector<T>& t, std::vector<T>& g_ref, std::vector<T>& g_simd,
               sweep_stats& st) {
    T* sp = s.data() + sh.offset;
    T* tp = t.data() + sh.offset;
    fill_rows(sh, sp, tp);
    const auto e = distill_test::compare_kernels(sp, tp, sh.label, sh.C, sh.terms, g_ref.data() + sh.offset,
                                                 g_simd.data() + sh.offset);
    const auto describe = [&] {
        char text[200];
        std::snprintf(text, sizeof text, "C = %td, offset %td, %s, soft %d hard %d, T = %.4g, eps = %.3g, seed %u", sh.C,
                      sh.offset, style_name(sh.kind), sh.terms.soft, sh.terms.hard, sh.terms.temperature,
                      sh.terms.smoothing, sh.seed);
        return std::string(text);
    };
    using bound = distill_test::kernel_bound<T>;
    for (auto [err, b, worst] : {std::tuple{e.kl, bound::loss(sh.C), &st.kl}, std::tuple{e.ce, bound::loss(sh.C), &st.ce},
                                 std::tuple{e.grad, bound::grad(sh.C), &st.grad}}) {
        worst->error = std::max(worst->error, err);
        if (!(err / b <= worst->of_bound)) {
            worst->of_bound = err / b;
            worst->where = describe();
        }
    }
    st.loss_relative = std::max(st.loss_relative, e.loss_relative);
    st.grad_relative = std::max(st.grad_relative, e.grad_relative);
    ++st.shapes;
    st.elements += sh.C;
    constexpr std::ptrdiff_t W = xsimd::batch<T, arch>::size;
    st.tail_seen[static_cast<std::size_t>(sh.C % W)] = true;
    st.offset_seen[static_cast<std::size_t>(sh.offset)] = true;
}

template <class T>
sweep_stats sweep(long random_shapes, std::uint32_t seed) {
    constexpr std::ptrdiff_t W = xsimd::batch<T, arch>::size;
    std::vector<T> s(max_classes + W), t(max_classes + W), g_ref(max_classes + W), g_simd(max_classes + W);
    sweep_stats st;
    st.tail_seen.assign(W, false);
    st.offset_seen.assign(W, false);
    std::mt19937 gen(seed);
    std::uniform_real_distribution<double> u(0, 1);
    const auto make = [&](std::ptrdiff_t C, std::ptrdiff_t offset) {
        shape sh;
        sh.C = C;
        sh.offset = offset;
        sh.kind = static_cast<style>(gen() % static_cast<unsigned>(style::count));
        sh.terms = random_terms(gen);
        sh.label = static_cast<std::int64_t>(gen() % static_cast<unsigned>(C));
        sh.seed = static_cast<std::uint32_t>(gen());
        return sh;
    };
    // Every length up to 8 vectors at every offset, and the lengths around block boundaries: 1024
    // (the first block), 65,536 (64 blocks of 1024: above it blocks grow) and the largest row.
    for (std::ptrdiff_t C = 1; C <= 8 * W; ++C)
        for (std::ptrdiff_t offset = 0; offset < W; ++offset) run_shape(make(C, offset), s, t, g_ref, g_simd, st);
    for (std::ptrdiff_t centre : {std::ptrdiff_t{1024}, std::ptrdiff_t{2048}, std::ptrdiff_t{65536}, max_classes - 3})
        for (std::ptrdiff_t C = centre - 3; C <= centre + 3; ++C)
            run_shape(make(C, static_cast<std::ptrdiff_t>(gen() % W)), s, t, g_ref, g_simd, st);
    // Random shapes: C log-uniform in [1, 70,000].
    for (long n = 0; n < random_shapes; ++n) {
        const auto C = std::min<std::ptrdiff_t>(
            max_classes, static_cast<std::ptrdiff_t>(std::exp(u(gen) * std::log(static_cast<double>(max_classes)))));
        run_shape(make(std::max<std::ptrdiff_t>(1, C), static_cast<std::ptrdiff_t>(gen() % W)), s, t, g_ref, g_simd,
                  st);
    }
    return st;
}

template <class T>
void report_and_check(const char* type, const sweep_stats& st, double seconds) {
    std::printf(
        "differential sweep, %s (%s): %ld shapes, %ld elements, %.1f s\n"
        "  max error / scale: KL %.3g, CE %.3g, gradient %.3g (bound %s)\n"
        "  max error / bound: KL %.3f, CE %.3f, gradient %.3f\n"
        "  max plain relative error: loss %.3g (losses >= 0.01), gradient %.3g (entries >= 1%% of the scale)\n"
        "  worst KL: %s\n  worst CE: %s\n  worst gradient: %s\n",
        type, xsimd::default_arch::name(), st.shapes, st.elements, seconds, st.kl.error, st.ce.error, st.grad.error,
        std::is_same_v<T, float> ? "4e-6" : "1e-13 + 2.3e-16 C", st.kl.of_bound, st.ce.of_bound, st.grad.of_bound,
        st.loss_relative, st.grad_relative, st.kl.where.c_str(), st.ce.where.c_str(), st.grad.where.c_str());
    std::fflush(stdout);
    INFO("worst KL at " << st.kl.where);
    CHECK(st.kl.of_bound <= 1);
    INFO("worst CE at " << st.ce.where);
    CHECK(st.ce.of_bound <= 1);
    INFO("worst gradient at " << st.grad.where);
    CHECK(st.grad.of_bound <= 1);
    for (bool seen : st.tail_seen) CHECK(seen);
    for (bool seen : st.offset_seen) CHECK(seen);
}

template <class T>
void timed_sweep(const char* type, long random_shapes, std::uint32_t seed) {
    const auto start = std::chrono::steady_clock::now();
    const sweep_stats st = sweep<T>(random_shapes, seed);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(st.shapes >= random_shapes);
    report_and_check<T>(type, st, seconds);
}

}  // namespace

TEST_CASE("differential sweep, float: SIMD kernel vs reference over 10,000 random shapes", "[differential]") {
    timed_sweep<float>("float", 10000, 20240601u);
}

TEST_CASE("differential sweep, double: SIMD kernel vs reference over 1,000 random shapes", "[differential]") {
    timed_sweep<double>("double", 1000, 20240602u);
}
