// Shared pieces of the distill benchmark suite: the cases, the input data, the executor and the
// naming scheme that benchmarks/bench_report.py parses.
//
// Every benchmark is named  <case>/<impl>/<dtype>/<rows>x<cols>/threads:<n>
//   case  : "distillation_loss T=4", "kl_divergence T=4", "softmax T=1", "log_softmax T=1", ..., or for the divergence
//           family the divergence's name alone: forward_kl, reverse_kl, jsd, skew_kl,
//           skew_reverse_kl, tvd, dkd (all at T = 2; the temperature is a counter of every benchmark)
//   impl  : mem_floor, exp_floor_<exp> (one per candidate exponential: ours, xsimd, sleef), ops_floor,
//           ours, reference, eigen_naive, torch_autograd, torch_fused, onednn
// and reports its time in milliseconds of wall-clock time (UseRealTime: OpenMP threads do the work).
#pragma once

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace distill_bench {

enum class loss_kind { distillation, kl, softmax, log_softmax, divergence };

// The divergences of the family, one case each (loss_kind::divergence): every one through
// distill::divergence_loss, except decoupled KD, which needs labels and runs through
// distill::distillation_loss with alpha = 1 (no cross-entropy term).
enum class divergence_case { forward_kl, reverse_kl, jsd, skew_kl, skew_reverse_kl, tvd, dkd };

// The parameters the divergence cases run with (the family's defaults): JSD's beta, the skew of
// both skew divergences, and decoupled KD's weights (mdistiller's CIFAR-100 setting).
inline constexpr double jsd_beta = 0.5;
inline constexpr double skew = 0.1;
inline constexpr double dkd_target_weight = 1.0;
inline constexpr double dkd_non_target_weight = 8.0;

struct case_spec {
    loss_kind kind;
    std::ptrdiff_t rows;
    std::ptrdiff_t cols;
    bool is_double;
    double temperature;
    double alpha = 0.5; // distillation only
    divergence_case divergence = divergence_case::forward_kl; // loss_kind::divergence only
};

inline const char* kind_name(loss_kind k) {
    switch (k) {
    case loss_kind::distillation: return "distillation_loss";
    case loss_kind::kl: return "kl_divergence";
    case loss_kind::softmax: return "softmax";
    case loss_kind::log_softmax: return "log_softmax";
    case loss_kind::divergence: return "divergence";
    }
    return "?";
}

// The name a divergence case goes by in the benchmark names and in the report's `case` key.
inline const char* divergence_name(divergence_case d) {
    switch (d) {
    case divergence_case::forward_kl: return "forward_kl";
    case divergence_case::reverse_kl: return "reverse_kl";
    case divergence_case::jsd: return "jsd";
    case divergence_case::skew_kl: return "skew_kl";
    case divergence_case::skew_reverse_kl: return "skew_reverse_kl";
    case divergence_case::tvd: return "tvd";
    case divergence_case::dkd: return "dkd";
    }
    return "?";
}

// Exponentials per element the case cannot do without (the exp floor's k):
// distillation needs q = softmax(s/T), p = softmax(t/T) and r = softmax(s): 3 (2 when T is an
// integer, since r follows from q by powers; the floor keeps 3, the count the suite has always reported);
// kl and every divergence of the family need q and p: 2; softmax and log_softmax forward need one
// exp per element (log_softmax for its row sums only).
inline int exps_per_element(loss_kind k) {
    switch (k) {
    case loss_kind::distillation: return 3;
    case loss_kind::kl: return 2;
    case loss_kind::softmax: return 1;
    case loss_kind::log_softmax: return 1;
    case loss_kind::divergence: return 2;
    }
    return 1;
}

// What our SIMD kernel actually spends per element for loss_and_grad of a divergence case, teacher
// logits, no cross-entropy term (docs/design.md, section 5, at the commit this suite measures):
// forward KL runs statistics-first (e_q and e_p in sweep 1, e_q again in the gradient sweep);
// every other divergence normalise-first: e_q and e_p in sweep 1 (e_p parked in the gradient
// buffer), e_q again in the sums sweep and in the gradient sweep (p read back from the buffer),
// and the log of the mixture m in the sums sweep (JSD, both skews) and again in the gradient sweep
// (JSD, skew reverse KL; skew KL's gradient needs p q / m, a division, not the log). The ops floor
// measures these; update them with the kernels.
struct transcendentals {
    int exps;
    int logs;
};
inline transcendentals kernel_transcendentals(divergence_case d) {
    switch (d) {
    case divergence_case::forward_kl: return {3, 0};
    case divergence_case::reverse_kl: return {4, 0};
    case divergence_case::jsd: return {4, 2};
    case divergence_case::skew_kl: return {4, 1};
    case divergence_case::skew_reverse_kl: return {4, 2};
    case divergence_case::tvd: return {4, 0};
    case divergence_case::dkd: return {4, 0};
    }
    return {0, 0};
}

// Bytes each element must move through memory at least: read s and t, write the gradient
// (losses), or read s and write the probabilities (softmax, log_softmax). Labels (one per row) are ignored.
inline bool is_softmax(loss_kind k) { return k == loss_kind::softmax || k == loss_kind::log_softmax; }
inline std::int64_t bytes_per_element(const case_spec& c) {
    const std::int64_t word = c.is_double ? 8 : 4;
    return (is_softmax(c.kind) ? 2 : 3) * word;
}

std::string format_temperature(double t);

// The case part of a benchmark name: "<kind> T=<T>", or the divergence's name for the family.
inline std::string case_name(const case_spec& c) {
    if (c.kind == loss_kind::divergence) return divergence_name(c.divergence);
    return std::string(kind_name(c.kind)) + " T=" + format_temperature(c.temperature);
}

inline std::string benchmark_name(const case_spec& c, const char* impl, int threads) {
    return case_name(c) + "/" + impl +
           "/" + (c.is_double ? "double" : "float") + "/" + std::to_string(c.rows) + "x" +
           std::to_string(c.cols) + "/threads:" + std::to_string(threads);
}

template <class Scalar>
using matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The inputs of one shape, generated once and reused by every implementation of every case of that
// shape. Every buffer is written before any timed loop: on these virtual machines the first touch of
// fresh memory costs more than the kernels themselves.
template <class Scalar>
struct inputs {
    matrix<Scalar> student;
    matrix<Scalar> teacher;
    std::vector<std::int64_t> labels;
    matrix<Scalar> out; // gradient or probabilities, touched
};

// Only the most recent shape stays alive (cases are run shape by shape), so the suite never holds
// more than one shape's buffers per scalar type.
template <class Scalar>
inputs<Scalar>& inputs_for(std::ptrdiff_t rows, std::ptrdiff_t cols);

// Weighted checksum of an output: sum_ij out_ij * s_ij in double. Printed as a counter so the report
// can check that every implementation computed the same thing.
template <class Scalar>
double checksum(const matrix<Scalar>& out, const matrix<Scalar>& student) {
    return (out.template cast<double>().array() * student.template cast<double>().array()).sum();
}

// parallel_for(begin, end, fn) over OpenMP: one contiguous chunk per thread, the shape the distill
// executor parameter documents (any callable exec(begin, end, fn) calling fn(b, e) on disjoint
// sub-ranges covering [begin, end), possibly concurrently).
struct omp_executor {
    int threads = 1;
    template <class Fn>
    void operator()(std::ptrdiff_t begin, std::ptrdiff_t end, Fn&& fn) const {
        const std::ptrdiff_t n = end - begin;
        if (n <= 0) return;
        const int team = static_cast<int>(n < threads ? n : threads);
#ifdef _OPENMP
        if (team > 1) {
#pragma omp parallel num_threads(team)
            {
                const std::ptrdiff_t id = omp_get_thread_num();
                const std::ptrdiff_t count = omp_get_num_threads();
                const std::ptrdiff_t b = begin + n * id / count;
                const std::ptrdiff_t e = begin + n * (id + 1) / count;
                if (b < e) fn(b, e);
            }
            return;
        }
#endif
        fn(begin, end);
    }
};

// Common per-benchmark settings: ms, wall-clock time, bytes and elements per iteration, and the
// case's temperature (the divergence cases' names do not carry it).
inline void finish(benchmark::State& state, const case_spec& c) {
    state.counters["temperature"] = c.temperature;
    const auto elements = static_cast<std::int64_t>(c.rows * c.cols);
    state.SetItemsProcessed(elements * static_cast<std::int64_t>(state.iterations()));
    state.SetBytesProcessed(elements * bytes_per_element(c) * static_cast<std::int64_t>(state.iterations()));
}

// The timed loop every implementation shares. `call` computes the case once and returns its loss;
// the last call's loss and a checksum of its output become counters (no extra untimed call: at
// 512 x 32000 a peer's call costs up to a second, and Google Benchmark enters each benchmark once
// per repetition).
// `publish` runs after the loop, for an implementation whose output lives elsewhere than in.out.
struct nothing_to_publish {
    void operator()() const noexcept {}
};

template <class Scalar, class Call, class Publish = nothing_to_publish>
void run_timed(benchmark::State& state, const case_spec& c, inputs<Scalar>& in, Call&& call,
               Publish&& publish = {}) {
    double loss = 0;
    for (auto _ : state) {
        loss = call();
        benchmark::DoNotOptimize(loss);
        benchmark::ClobberMemory();
    }
    publish();
    state.counters["loss"] = loss;
    state.counters["check"] = checksum(in.out, in.student);
    finish(state, c);
}

inline benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b) {
    return b->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Registers one benchmark for the case's scalar type: `body(state, tag)` is a generic lambda that
// runs the implementation for `typename decltype(tag)::type` (float or double).
template <class Scalar>
struct scalar_tag {
    using type = Scalar;
};

template <class Body>
void register_for_type(const std::string& name, const case_spec& c, Body body) {
    if (c.is_double)
        configure(benchmark::RegisterBenchmark(name.c_str(), [body](benchmark::State& s) { body(s, scalar_tag<double>{}); }));
    else
        configure(benchmark::RegisterBenchmark(name.c_str(), [body](benchmark::State& s) { body(s, scalar_tag<float>{}); }));
}

// Registration hooks, one per translation unit; main registers case by case so that every
// implementation of a case runs next to the others, under the same machine conditions.
bool ours_runs(const case_spec& c, int threads); // false: our API has no such call (yet)
void register_floors(const case_spec& c, int threads, bool memory, bool exp);
void register_ops_floor(const case_spec& c, int threads); // divergence cases: the kernel's own exps and logs
const char* log_floor_function(); // the log the ops floor measures
const char* exp_floor_function(); // the exp the ops floor measures (the kernels' own)
// The exp floor's candidates and their accuracy, measured at start-up: one line per function and
// type, "<type> <name> <function> max_ulp=<x> subnormal_max_ulp=<y> flushes_subnormals=<0|1>"
// (see floors.cpp for the sweep), for the report, which takes the fastest whose error is in bound.
std::string exp_candidates_accuracy();
void register_ours(const case_spec& c, int threads);
void register_reference(const case_spec& c);
void register_eigen_naive(const case_spec& c);
void register_torch(const case_spec& c); // no-op when built without libtorch
bool torch_enabled();
std::string torch_version();
void register_onednn(const case_spec& c); // softmax and log_softmax, float; no-op without oneDNN
std::string onednn_version();             // empty without oneDNN

} // namespace distill_bench
