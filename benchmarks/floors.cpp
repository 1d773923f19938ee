// The two physical floors of every case, measured in the same binary and run as the kernels
// (BENCHMARKING.md): what our kernel's time is divided by.
//
// memory floor: the least memory traffic of the case as one SIMD streaming loop over the same
//   N x C buffers: g = s + t (read two, write one: the losses) or o = s * c (read one, write one:
//   softmax forward).
// exp floor: k vectorised exponentials per element, k = exps_per_element(kind), over an L1-resident
//   buffer (no memory traffic at all), N * C * k exps per iteration, once per candidate exponential:
//   ours (detail/simd/exp.hpp's exp_nonpositive, what the kernels call), xsimd::exp, and SLEEF's
//   1-ulp exp for the build's vector width (Sleef_expf16_u10 / Sleef_expd8_u10 on AVX-512,
//   Sleef_expf8_u10 / Sleef_expd4_u10 on AVX2) when the suite is built with SLEEF. The report takes
//   the fastest candidate whose measured error is within our documented bound (exp_candidates_accuracy),
//   so that a slow exponential of ours cannot make the floor easy to approach.
// ops floor (divergence cases only, not part of `floor`): the exponentials and logarithms our kernel
//   actually spends per element (kernel_transcendentals), measured the same way, with the log the
//   policies call (xsimd::log). ours / ops floor says how much of a case's time the rest of the
//   kernel (loads, stores, sweeps, the policy's other arithmetic) adds to its transcendentals.
// GCC 12's AVX-512 intrinsics warn falsely wherever xsimd inlines them (see the header):
// silenced for this file, as distill's public headers do for theirs.
#include <distill/detail/warnings_push.hpp>

#include "bench_common.hpp"

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <array>
#include <cmath>

#include <cfloat>
#include <cstring>
#include <sstream>
#include <type_traits>

#include <distill/detail/simd/exp.hpp>

#ifdef DISTILL_BENCH_WITH_SLEEF
#include <sleef.h>
#endif

namespace distill_bench {
namespace {

template <class Scalar>
using batch = xsimd::batch<Scalar>;

// The candidate exponentials of the exp floor.
enum class exp_function { ours, xsimd, sleef };

// SLEEF's vector exp for the build's register width, if the suite links SLEEF and the width is one
// SLEEF has (AVX-512: 16 floats / 8 doubles, AVX2: 8 / 4). The dispatching names (no ISA suffix)
// are SLEEF's documented entry points; they are out-of-line calls into libsleef.
#if defined(DISTILL_BENCH_WITH_SLEEF) && defined(__AVX512F__)
constexpr bool sleef_available = true;
inline batch<float> sleef_exp(const batch<float>& x) noexcept { return Sleef_expf16_u10(x); }
inline batch<double> sleef_exp(const batch<double>& x) noexcept { return Sleef_expd8_u10(x); }
constexpr const char* sleef_float_name = "Sleef_expf16_u10";
constexpr const char* sleef_double_name = "Sleef_expd8_u10";
#elif defined(DISTILL_BENCH_WITH_SLEEF) && defined(__AVX2__)
constexpr bool sleef_available = true;
inline batch<float> sleef_exp(const batch<float>& x) noexcept { return Sleef_expf8_u10(x); }
inline batch<double> sleef_exp(const batch<double>& x) noexcept { return Sleef_expd4_u10(x); }
constexpr const char* sleef_float_name = "Sleef_expf8_u10";
constexpr const char* sleef_double_name = "Sleef_expd4_u10";
#else
constexpr bool sleef_available = false;
template <class Scalar>
inline batch<Scalar> sleef_exp(const batch<Scalar>& x) noexcept { return x; } // never registered
constexpr const char* sleef_float_name = "";
constexpr const char* sleef_double_name = "";
#endif

const char* exp_function_name(exp_function f) {
    switch (f) {
    case exp_function::ours: return "ours";
    case exp_function::xsimd: return "xsimd";
    case exp_function::sleef: return "sleef";
    }
    return "?";
}

template <class Scalar>
const char* exp_function_symbol(exp_function f) {
    switch (f) {
    case exp_function::ours: return "distill::detail::simd::exp_nonpositive";
    case exp_function::xsimd: return "xsimd::exp";
    case exp_function::sleef: return std::is_same_v<Scalar, float> ? sleef_float_name : sleef_double_name;
    }
    return "?";
}

// One vector exponential of x <= 0 by the candidate F.
template <exp_function F, class Scalar>
inline batch<Scalar> candidate_exp(const batch<Scalar>& x) noexcept {
    if constexpr (F == exp_function::ours)
        return distill::detail::simd::exp_nonpositive<xsimd::default_arch>(x);
    else if constexpr (F == exp_function::xsimd)
        return xsimd::exp(x);
    else
        return sleef_exp(x);
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
// itself GCC 12 kept our exp out of line here (one call per batch, a third more instructions
// than the exponential on AVX2) and so measured an exp floor above what an inlined exp costs.
template <class Scalar, transcendental f, exp_function E = exp_function::ours>
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
                candidate_exp<E>(x).store_aligned(out.data() + i);
            else
                kernel_log(x).store_aligned(out.data() + i);
        }
        benchmark::ClobberMemory(); // each pass must really run: out is observed
        count -= n;
    }
    benchmark::DoNotOptimize(out.data());
}

template <class Scalar, exp_function E>
void exps_in_l1(std::int64_t count) noexcept {
    evaluations_in_l1<Scalar, transcendental::exp, E>(count);
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
        if (is_softmax(c.kind))
            exec(0, n, [&](std::ptrdiff_t b, std::ptrdiff_t e) { scale_stream(s, g, Scalar(0.5), b, e); });
        else
            exec(0, n, [&](std::ptrdiff_t b, std::ptrdiff_t e) { add_streams(s, t, g, b, e); });
        benchmark::ClobberMemory();
    }
    finish(state, c);
}

template <class Scalar, exp_function E>
void exp_floor(benchmark::State& state, case_spec c, int threads) {
    const std::int64_t total = static_cast<std::int64_t>(c.rows * c.cols) * exps_per_element(c.kind);
    const omp_executor exec{threads};
    // Each thread computes its share on its own L1 buffer; the first call builds the buffers.
    const auto run = [&](std::ptrdiff_t b, std::ptrdiff_t e) {
        for (std::ptrdiff_t part = b; part < e; ++part)
            exps_in_l1<Scalar, E>(total * (part + 1) / threads - total * part / threads);
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

// ---- accuracy of the candidates ----
//
// Each candidate against the exact e^x, over a dense sweep of the kernels' input range: every 17th
// float bit pattern from -0 down to -104 (66 million values: every binade, every residue of the
// mantissa's low bits) for float, against std::exp in double (its own error is below 2^-28 float
// ulp); for double, 20 million bit patterns evenly spaced from -0 down to -745, against expl in
// long double (x87 extended, 64-bit mantissa: its error is below 2^-10 double ulp). The error of a
// result is |result - exact| / ulp(exact), with ulp the spacing of the type at the exact value:
// 2^(e - 23) (float) or 2^(e - 52) (double) for a normal result in [2^e, 2^(e+1)), the smallest
// subnormal below the normal range. `max_ulp` is the maximum over results that are normal numbers;
// over subnormal results (float: x < -87.34, double: x < -708.4) `subnormal_max_ulp` counts in units
// of the smallest subnormal, and `flushes` says whether the candidate returns +0 there, which our
// contract allows (detail/simd/exp.hpp: "results below 2^-126 are flushed to +0").
struct accuracy {
    double max_ulp = 0, subnormal_max_ulp = 0;
    bool flushes = false;
};

template <class Scalar>
double ulp_of(long double exact) {
    constexpr int digits = std::numeric_limits<Scalar>::digits; // 24 or 53
    const long double smallest_normal = std::numeric_limits<Scalar>::min();
    if (exact < smallest_normal) return static_cast<double>(std::numeric_limits<Scalar>::denorm_min());
    return std::ldexp(1.0, std::ilogb(static_cast<double>(exact)) - (digits - 1));
}

template <class Scalar, exp_function E>
accuracy measure_accuracy() {
    using Bits = std::conditional_t<std::is_same_v<Scalar, float>, std::uint32_t, std::uint64_t>;
    constexpr std::size_t w = batch<Scalar>::size;
    const Scalar lowest = std::is_same_v<Scalar, float> ? Scalar(-104) : Scalar(-745);
    Bits last_bits;
    std::memcpy(&last_bits, &lowest, sizeof lowest);
    const Bits first_bits = Bits(1) << (8 * sizeof(Bits) - 1); // -0
    const Bits step = std::is_same_v<Scalar, float> ? Bits(17) : Bits((last_bits - first_bits) / 20'000'000);
    accuracy a;
    alignas(64) Scalar xs[w], ys[w];
    std::size_t filled = 0;
    const auto flush = [&] {
        for (std::size_t i = filled; i < w; ++i) xs[i] = 0;
        candidate_exp<E>(batch<Scalar>::load_aligned(xs)).store_aligned(ys);
        for (std::size_t i = 0; i < filled; ++i) {
            const long double exact = std::is_same_v<Scalar, float> ? static_cast<long double>(std::exp(double(xs[i])))
                                                                    : std::exp(static_cast<long double>(xs[i]));
            // Divided in long double: near the bottom of the double range the difference itself
            // is below the smallest double subnormal and would round on conversion.
            const double err = static_cast<double>(std::fabs(static_cast<long double>(ys[i]) - exact) /
                                                   static_cast<long double>(ulp_of<Scalar>(exact)));
            if (exact >= static_cast<long double>(std::numeric_limits<Scalar>::min())) {
                a.max_ulp = std::max(a.max_ulp, err);
            } else {
                a.subnormal_max_ulp = std::max(a.subnormal_max_ulp, err);
                if (ys[i] == 0 && exact >= static_cast<long double>(std::numeric_limits<Scalar>::denorm_min()))
                    a.flushes = true;
            }
        }
        filled = 0;
    };
    for (Bits bits = first_bits; bits <= last_bits; bits += step) {
        std::memcpy(&xs[filled++], &bits, sizeof bits);
        if (filled == w) flush();
        if (last_bits - bits < step) break;
    }
    xs[filled++] = lowest;
    if (filled == w) flush();
    xs[filled++] = Scalar(0);
    flush();
    return a;
}

template <class Scalar>
constexpr bool candidate_available(exp_function f) {
    return f != exp_function::sleef || sleef_available;
}

template <class Scalar, exp_function E>
void describe_accuracy(std::ostringstream& os) {
    if (!candidate_available<Scalar>(E)) return;
    const accuracy a = measure_accuracy<Scalar, E>();
    os << (std::is_same_v<Scalar, float> ? "float" : "double") << ' ' << exp_function_name(E) << ' '
       << exp_function_symbol<Scalar>(E) << " max_ulp=" << a.max_ulp << " subnormal_max_ulp=" << a.subnormal_max_ulp
       << " flushes_subnormals=" << (a.flushes ? 1 : 0) << '\n';
}

} // namespace

const char* log_floor_function() { return "xsimd::log"; }

const char* exp_floor_function() { return "distill::detail::simd::exp_nonpositive"; }

std::string exp_candidates_accuracy() {
    std::ostringstream os;
    os.precision(7);
    describe_accuracy<float, exp_function::ours>(os);
    describe_accuracy<float, exp_function::xsimd>(os);
    describe_accuracy<float, exp_function::sleef>(os);
    describe_accuracy<double, exp_function::ours>(os);
    describe_accuracy<double, exp_function::xsimd>(os);
    describe_accuracy<double, exp_function::sleef>(os);
    return os.str();
}

void register_floors(const case_spec& c, int threads, bool memory, bool exp) {
    if (memory)
        register_for_type(benchmark_name(c, "mem_floor", threads), c, [c, threads](benchmark::State& s, auto tag) {
            memory_floor<typename decltype(tag)::type>(s, c, threads);
        });
    if (!exp) return;
    const auto register_candidate = [&]<exp_function E>() {
        if (!(c.is_double ? candidate_available<double>(E) : candidate_available<float>(E))) return;
        const std::string impl = std::string("exp_floor_") + exp_function_name(E);
        register_for_type(benchmark_name(c, impl.c_str(), threads), c, [c, threads](benchmark::State& s, auto tag) {
            exp_floor<typename decltype(tag)::type, E>(s, c, threads);
        });
    };
    register_candidate.template operator()<exp_function::ours>();
    register_candidate.template operator()<exp_function::xsimd>();
    register_candidate.template operator()<exp_function::sleef>();
}

void register_ops_floor(const case_spec& c, int threads) {
    if (c.kind != loss_kind::divergence) return;
    register_for_type(benchmark_name(c, "ops_floor", threads), c, [c, threads](benchmark::State& s, auto tag) {
        ops_floor<typename decltype(tag)::type>(s, c, threads);
    });
}

} // namespace distill_bench

#include <distill/detail/warnings_pop.hpp>
