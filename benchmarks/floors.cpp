// The two physical floors of every case, measured in the same binary and run as the kernels
// (BENCHMARKING.md): what our kernel's time is divided by.
//
// memory floor: the least memory traffic of the case as one SIMD streaming loop over the same
//   N x C buffers: g = s + t (read two, write one: the losses) or o = s * c (read one, write one:
//   softmax forward).
// exp floor: k vectorised exponentials per element, k = exps_per_element(kind), over an L1-resident
//   buffer (no memory traffic at all), N * C * k exps per iteration. It uses the exp the kernels use:
//   distill's own vectorised exp (detail/simd/exp.hpp) when the library provides one, otherwise
//   xsimd::exp.
// ops floor (divergence cases only, not part of `floor`): the exponentials and logarithms our kernel
//   actually spends per element (kernel_transcendentals), measured the same way, with the log the
//   policies call (xsimd::log). ours / ops floor says how much of a case's time the rest of the
//   kernel (loads, stores, sweeps, the policy's other arithmetic) adds to its transcendentals.
#include "bench_common.hpp"

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <array>
#include <cmath>

#if __has_include(<distill/detail/simd/exp.hpp>)
#include <distill/detail/simd/exp.hpp>
#define DISTILL_BENCH_HAS_DISTILL_EXP 1
#endif

namespace distill_bench {
namespace {

template <class Scalar>
using batch = xsimd::batch<Scalar>;

// The exp the kernels call on (x - max) / T <= 0.
template <class Scalar>
inline batch<Scalar> kernel_exp(const batch<Scalar>& x) noexcept {
#ifdef DISTILL_BENCH_HAS_DISTILL_EXP
    return distill::detail::simd::exp_nonpositive<xsimd::default_arch>(x);
#else
    return xsimd::exp(x);
#endif
}

// g[i] = s[i] + t[i] over [b, e) of the flattened buffers.
template <class Scalar>
void add_streams(const Scalar* s, const Scalar* t, Scalar* g, std::ptrdiff_t b, std::ptrdiff_t e) noexcept {
    constexpr std::ptrdiff_t w = batch<Scalar>::size;
    std::ptrdiff_t i = b;
    for (; i + 2 * w <= e; i += 2 * w) { // two batches per trip: two loads in flight per stream
        const auto x0 = batch<Scalar>::load_unaligned(s + i) + batch<Scalar>::load_unaligned(t + i);
        const auto x1 = batch<Scalar>::load_unaligned(s + i + w) + batch<Scalar>::load_unaligned(t + i + w);
        x0.store_unaligned(g + i);
        x1.store_unaligned(g + i + w);
    }
    for (; i < e; ++i) g[i] = s[i] + t[i];
}

// o[i] = s[i] * c over [b, e).
template <class Scalar>
void scale_stream(const Scalar* s, Scalar* o, Scalar c, std::ptrdiff_t b, std::ptrdiff_t e) noexcept {
    constexpr std::ptrdiff_t w = batch<Scalar>::size;
    const batch<Scalar> cv(c);
    std::ptrdiff_t i = b;
    for (; i + 2 * w <= e; i += 2 * w) {
        (batch<Scalar>::load_unaligned(s + i) * cv).store_unaligned(o + i);
        (batch<Scalar>::load_unaligned(s + i + w) * cv).store_unaligned(o + i + w);
    }
    for (; i < e; ++i) o[i] = s[i] * c;
}

// The log the divergence policies call (detail/simd/vector_ops.hpp) on the mixture m in (0, 1].
template <class Scalar>
inline batch<Scalar> kernel_log(const batch<Scalar>& x) noexcept {
    return xsimd::log(x);
}

// Which function a pass of the L1 loop evaluates.
enum class transcendental { exp, log };

// `count` evaluations of `f` (rounded up to whole batches) over a per-thread L1-resident buffer:
// 2 x 8 KiB for float, in and out, well inside the 32 KiB L1d of one core.
// Flattened: every call in the loop is inlined, as the kernels inline their exponential. Left to
// itself GCC 12 kept kernel_exp out of line here (one call per batch, a third more instructions
// than the exponential on AVX2) and so measured an exp floor above what an inlined exp costs.
template <class Scalar, transcendental f>
[[gnu::flatten]] void evaluations_in_l1(std::int64_t count) noexcept {
    constexpr std::size_t len = 8192 / sizeof(Scalar);
    constexpr std::ptrdiff_t w = batch<Scalar>::size;
    alignas(64) static thread_local std::array<Scalar, len> in = [] {
        std::array<Scalar, len> a{};
        // exp: the arguments a softmax kernel feeds it, (x - max) / T in [-16, 0]; log: the
        // mixtures of probabilities a divergence feeds it, e^-16 to 1.
        for (std::size_t i = 0; i < len; ++i) {
            const double x = -16.0 * double(i) / double(len);
            a[i] = static_cast<Scalar>(f == transcendental::exp ? x : std::exp(x));
        }
        return a;
    }();
    alignas(64) static thread_local std::array<Scalar, len> out{};
    while (count > 0) {
        const std::ptrdiff_t n = static_cast<std::ptrdiff_t>(std::min<std::int64_t>(count, len));
        for (std::ptrdiff_t i = 0; i < n; i += w) {
            const auto x = batch<Scalar>::load_aligned(in.data() + i);
            if constexpr (f == transcendental::exp)
                kernel_exp(x).store_aligned(out.data() + i);
            else
                kernel_log(x).store_aligned(out.data() + i);
        }
        benchmark::ClobberMemory(); // each pass must really run: out is observed
        count -= n;
    }
    benchmark::DoNotOptimize(out.data());
}

template <class Scalar>
void exps_in_l1(std::int64_t count) noexcept {
    evaluations_in_l1<Scalar, transcendental::exp>(count);
}

template <class Scalar>
void memory_floor(benchmark::State& state, case_spec c, int threads) {
    auto& in = inputs_for<Scalar>(c.rows, c.cols);
    const Scalar* s = in.student.data();
    const Scalar* t = in.teacher.data();
    Scalar* g = in.out.data();
    const omp_executor exec{threads};
    const std::ptrdiff_t n = c.rows * c.cols;
    for (auto _ : state) {
        if (c.kind == loss_kind::softmax)
            exec(0, n, [&](std::ptrdiff_t b, std::ptrdiff_t e) { scale_stream(s, g, Scalar(0.5), b, e); });
        else
            exec(0, n, [&](std::ptrdiff_t b, std::ptrdiff_t e) { add_streams(s, t, g, b, e); });
        benchmark::ClobberMemory();
    }
    finish(state, c);
}

template <class Scalar>
void exp_floor(benchmark::State& state, case_spec c, int threads) {
    const std::int64_t total = static_cast<std::int64_t>(c.rows * c.cols) * exps_per_element(c.kind);
    const omp_executor exec{threads};
    // Each thread computes its share on its own L1 buffer; the first call builds the buffers.
    const auto run = [&](std::ptrdiff_t b, std::ptrdiff_t e) {
        for (std::ptrdiff_t part = b; part < e; ++part)
            exps_in_l1<Scalar>(total * (part + 1) / threads - total * part / threads);
    };
    exec(0, threads, run);
    for (auto _ : state) exec(0, threads, run);
    state.counters["exp_per_element"] = exps_per_element(c.kind);
    finish(state, c);
}

// The exponentials and logarithms our kernel spends on a divergence case: N * C * exps exps, then
// N * C * logs logs, each thread its share on its own L1 buffers.
template <class Scalar>
void ops_floor(benchmark::State& state, case_spec c, int threads) {
    const transcendentals k = kernel_transcendentals(c.divergence);
    const std::int64_t elements = static_cast<std::int64_t>(c.rows * c.cols);
    const std::int64_t exps = elements * k.exps, logs = elements * k.logs;
    const omp_executor exec{threads};
    const auto run = [&](std::ptrdiff_t b, std::ptrdiff_t e) {
        for (std::ptrdiff_t part = b; part < e; ++part) {
            evaluations_in_l1<Scalar, transcendental::exp>(exps * (part + 1) / threads - exps * part / threads);
            evaluations_in_l1<Scalar, transcendental::log>(logs * (part + 1) / threads - logs * part / threads);
        }
    };
    exec(0, threads, run);
    for (auto _ : state) exec(0, threads, run);
    state.counters["exp_per_element"] = k.exps;
    state.counters["log_per_element"] = k.logs;
    finish(state, c);
}

} // namespace

const char* log_floor_function() { return "xsimd::log"; }

const char* exp_floor_function() {
#ifdef DISTILL_BENCH_HAS_DISTILL_EXP
    return "distill::detail::simd::exp_nonpositive";
#else
    return "xsimd::exp";
#endif
}

void register_floors(const case_spec& c, int threads, bool memory, bool exp) {
    if (memory)
        register_for_type(benchmark_name(c, "mem_floor", threads), c, [c, threads](benchmark::State& s, auto tag) {
            memory_floor<typename decltype(tag)::type>(s, c, threads);
        });
    if (exp)
        register_for_type(benchmark_name(c, "exp_floor", threads), c, [c, threads](benchmark::State& s, auto tag) {
            exp_floor<typename decltype(tag)::type>(s, c, threads);
        });
}

void register_ops_floor(const case_spec& c, int threads) {
    if (c.kind != loss_kind::divergence) return;
    register_for_type(benchmark_name(c, "ops_floor", threads), c, [c, threads](benchmark::State& s, auto tag) {
        ops_floor<typename decltype(tag)::type>(s, c, threads);
    });
}

} // namespace distill_bench
