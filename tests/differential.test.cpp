// Differential sweep: the SIMD row kernel (detail::simd::fused_row at xsimd::default_arch) against
// the reference row kernel over more than 10,000 random row shapes: C from 1 to 70,000 (log-uniform,
// so that short rows and every tail length are as common as long multi-block rows), every start
// offset inside a vector, random temperature, alpha and label smoothing, each of the three term
// sets (Hinton, divergence alone, cross-entropy alone), every divergence of the family with random
// parameters (spread over the shapes, not multiplying them: each shape draws one) and each kind of
// teacher input, and logits drawn in several styles: independent rows, near-equal teacher and
// student (divergence near 0), large offsets, rising rows (the running max moves in every block), a
// dominant class, and -inf class masks. Errors are measured against the size of the terms
// (tests/differential.hpp) and asserted against the bound docs/reliability.md states; the worst
// figures are printed per divergence.
#include <catch2/catch.hpp>

#include <array>
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
#include "family.hpp"

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
    distill::divergence divergence;
    distill::teacher_input teacher = distill::teacher_input::logits;
    std::int64_t label = 0;
    std::uint32_t seed = 0;
};

// A divergence of the family with random parameters: beta and skew uniform in [0, 1] with their ends
// (which the API maps or which zero a term) one draw in eight; decoupled KD's weights uniform in
// [0, 2] and [0, 10] (the paper uses 1 and 8), one of them 0 one draw in eight.
distill::divergence random_divergence(std::mt19937& gen) {
    std::uniform_real_distribution<double> u(0, 1);
    const auto unit = [&] { return gen() % 8 == 0 ? static_cast<double>(gen() % 2) : u(gen); };
    switch (gen() % 7) {
        case 0: return distill::forward_kl{};
        case 1: return distill::reverse_kl{};
        case 2: return distill::jensen_shannon{unit()};
        case 3: return distill::skew_kl{unit()};
        case 4: return distill::skew_reverse_kl{unit()};
        case 5: return distill::total_variation{};
        default: {
            distill::decoupled_kd d{2 * u(gen), 10 * u(gen)};
            if (gen() % 8 == 0) (gen() % 2 ? d.target_weight : d.non_target_weight) = 0;
            return d;
        }
    }
}

row_terms random_terms(std::mt19937& gen, distill::divergence& divergence, distill::teacher_input& input) {
    std::uniform_real_distribution<double> u(0, 1);
    row_terms k;
    const int which = static_cast<int>(gen() % 4);  // 0, 1: Hinton; 2: divergence alone; 3: CE alone
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
    k.soft_grad = alpha * T;  // d(alpha T^2 D)/ds = alpha T dD/dx
    k.hard_grad = 1 - alpha;
    // Teacher logits half the time, log-probabilities and probabilities a quarter each.
    divergence = random_divergence(gen);
    const unsigned teacher = gen() % 4;
    input = teacher < 2 ? distill::teacher_input::logits
                        : (teacher == 2 ? distill::teacher_input::log_probabilities : distill::teacher_input::probabilities);
    distill_test::set_divergence(k, divergence);
    distill_test::set_teacher_input(k, input);
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
    // Teacher log-probabilities or probabilities: log_softmax(t / T) or softmax(t / T), so that the
    // styles keep their meaning (p = q for equal rows); computed in double, then rounded to T.
    if (sh.teacher != distill::teacher_input::logits) {
        double mt = -std::numeric_limits<double>::infinity(), z = 0;
        for (std::ptrdiff_t c = 0; c < C; ++c) mt = std::max(mt, static_cast<double>(t[c]));
        const double inv_t = sh.terms.inv_temperature;
        if (mt == -std::numeric_limits<double>::infinity()) {  // an all-masked teacher stays one
            if (sh.teacher == distill::teacher_input::probabilities) std::fill(t, t + C, T(0));
            return;
        }
        for (std::ptrdiff_t c = 0; c < C; ++c) z += std::exp((static_cast<double>(t[c]) - mt) * inv_t);
        for (std::ptrdiff_t c = 0; c < C; ++c) {
            const double lp = (static_cast<double>(t[c]) - mt) * inv_t - std::log(z);
            t[c] = static_cast<T>(sh.teacher == distill::teacher_input::probabilities ? std::exp(lp) : lp);
        }
    }
}

struct worst_case {
    double error = 0;     // error / scale
    double of_bound = 0;  // error / scale / bound(C): above 1 fails
    std::string where;
};

// The rows of one divergence (or, last, of the cross-entropy alone), with their worst errors: of
// the divergence (of the cross-entropy for the last group) and of the gradient.
constexpr std::size_t group_count = 8;
struct group {
    long rows = 0;
    long decoupled_kd_underflow = 0, infinite_in_one_kernel = 0, gradient_undefined = 0;  // differential.hpp
    worst_case loss, grad;
};
const char* group_name(std::size_t g) {
    return g + 1 < group_count ? distill::detail::divergence_name(static_cast<distill::detail::divergence_kind>(g))
                               : "cross-entropy alone";
}

struct sweep_stats {
    long shapes = 0, elements = 0;
    std::array<group, group_count> groups;
    worst_case ce;  // the cross-entropy term of every row that has one
    double loss_relative = 0, grad_relative = 0;
    std::vector<bool> tail_seen, offset_seen;
};

void record(worst_case& worst, double err, double bound, const std::string& where) {
    worst.error = std::max(worst.error, err);
    if (!(err / bound <= worst.of_bound)) {
        worst.of_bound = err / bound;
        worst.where = where;
    }
}

template <class T>
void run_shape(const shape& sh, std::vector<T>& s, std::vector<T>& t, std::vector<T>& g_ref, std::vector<T>& g_simd,
               sweep_stats& st) {
    T* sp = s.data() + sh.offset;
    T* tp = t.data() + sh.offset;
    fill_rows(sh, sp, tp);
    const auto e = distill_test::compare_kernels(sp, tp, sh.label, sh.C, sh.terms, g_ref.data() + sh.offset,
                                                 g_simd.data() + sh.offset);
    char text[300];
    std::snprintf(text, sizeof text, "C = %td, offset %td, %s, soft %d hard %d, %s, %s, T = %.4g, eps = %.3g, label %lld, seed %u",
                  sh.C, sh.offset, style_name(sh.kind), sh.terms.soft, sh.terms.hard,
                  sh.terms.soft ? distill_test::describe(sh.divergence).c_str() : "-",
                  sh.terms.soft ? distill_test::describe(sh.teacher) : "-", sh.terms.temperature, sh.terms.smoothing,
                  static_cast<long long>(sh.label), sh.seed);
    const std::string where = text;
    using bound = distill_test::kernel_bound<T>;
    group& g = st.groups[sh.terms.soft ? static_cast<std::size_t>(sh.terms.divergence) : group_count - 1];
    ++g.rows;
    g.decoupled_kd_underflow += e.left == distill_test::left_out::decoupled_kd_underflow;
    g.infinite_in_one_kernel += e.left == distill_test::left_out::infinite_in_one_kernel;
    g.gradient_undefined += !e.gradient_compared;
    record(g.loss, sh.terms.soft ? e.divergence : e.ce, bound::loss(sh.C), where);
    record(g.grad, e.grad, bound::grad(sh.C), where);
    record(st.ce, e.ce, bound::loss(sh.C), where);
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
        sh.terms = random_terms(gen, sh.divergence, sh.teacher);
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
    std::printf("differential sweep, %s (%s): %ld shapes, %ld elements, %.1f s; bound %s of the scale\n"
                "  %-20s %5s  %-26s %-26s %s\n",
                type, xsimd::default_arch::name(), st.shapes, st.elements, seconds,
                std::is_same_v<T, float> ? "4e-6" : "1e-13 + 2.3e-16 C", "rows of", "rows",
                "loss: error/scale (/bound)", "gradient: same", "not compared: DKD underflow, inf in one, no gradient");
    for (std::size_t i = 0; i < group_count; ++i) {
        const group& g = st.groups[i];
        std::printf("  %-20s %5ld  %10.3g (%.3f)         %10.3g (%.3f)         %ld, %ld, %ld\n", group_name(i), g.rows,
                    g.loss.error, g.loss.of_bound, g.grad.error, g.grad.of_bound, g.decoupled_kd_underflow,
                    g.infinite_in_one_kernel, g.gradient_undefined);
    }
    std::printf("  cross-entropy term of every row: %.3g (%.3f)\n"
                "  max plain relative error: loss %.3g (losses >= 0.01), gradient %.3g (entries >= 1%% of the scale)\n",
                st.ce.error, st.ce.of_bound, st.loss_relative, st.grad_relative);
    for (std::size_t i = 0; i < group_count; ++i)
        std::printf("  worst %s: loss at %s\n    gradient at %s\n", group_name(i), st.groups[i].loss.where.c_str(),
                    st.groups[i].grad.where.c_str());
    std::fflush(stdout);
    for (std::size_t i = 0; i < group_count; ++i) {
        const group& g = st.groups[i];
        INFO(group_name(i) << ": worst loss at " << g.loss.where << "; worst gradient at " << g.grad.where);
        CHECK(g.loss.of_bound <= 1);
        CHECK(g.grad.of_bound <= 1);
        // The rows left out (differential.hpp says why) must not hollow out the sweep: at least
        // 3/4 of each divergence's rows are compared, and the rows of the cross-entropy alone all.
        const long left_out = g.decoupled_kd_underflow + g.infinite_in_one_kernel;
        CHECK(g.rows > 0);
        CHECK(4 * (left_out + g.gradient_undefined) <= g.rows);
        if (i + 1 == group_count) CHECK(left_out + g.gradient_undefined == 0);
    }
    INFO("worst cross-entropy at " << st.ce.where);
    CHECK(st.ce.of_bound <= 1);
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
