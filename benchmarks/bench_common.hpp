// Shared pieces of the distill benchmark suite: the cases, the input data, the executor and the
// naming scheme that benchmarks/bench_report.py parses.
//
// Every benchmark is named  <case>/<impl>/<dtype>/<rows>x<cols>/threads:<n>
//   case  : "distillation_loss T=4", "kl_divergence T=4", "softmax T=1", ...
//   impl  : mem_floor, exp_floor, ours, reference, eigen_naive, torch_autograd, torch_fused
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

enum class loss_kind { distillation, kl, softmax };

struct case_spec {
    loss_kind kind;
    std::ptrdiff_t rows;
    std::ptrdiff_t cols;
    bool is_double;
    double temperature;
    double alpha = 0.5; // distillation only
};

inline const char* kind_name(loss_kind k) {
    switch (k) {
    case loss_kind::distillation: return "distillation_loss";
    case loss_kind::kl: return "kl_divergence";
    case loss_kind::softmax: return "softmax";
    }
    return "?";
}

// Exponentials per element the case cannot do without (the exp floor's k):
// distillation needs q = softmax(s/T), p = softmax(t/T) and r = softmax(s): 3 (2 when T is an
// integer, since r follows from q by powers; the floor keeps 3, as issue 3 states it);
// kl needs q and p: 2; softmax forward needs one exp per element.
inline int exps_per_element(loss_kind k) {
    switch (k) {
    case loss_kind::distillation: return 3;
    case loss_kind::kl: return 2;
    case loss_kind::softmax: return 1;
    }
    return 1;
}

// Bytes each element must move through memory at least: read s and t, write the gradient
// (losses), or read s and write the probabilities (softmax). Labels (one per row) are ignored.
inline std::int64_t bytes_per_element(const case_spec& c) {
    const std::int64_t word = c.is_double ? 8 : 4;
    return (c.kind == loss_kind::softmax ? 2 : 3) * word;
}

std::string format_temperature(double t);

inline std::string benchmark_name(const case_spec& c, const char* impl, int threads) {
    return std::string(kind_name(c.kind)) + " T=" + format_temperature(c.temperature) + "/" + impl +
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

// Common per-benchmark settings: ms, wall-clock time, bytes and elements per iteration.
inline void finish(benchmark::State& state, const case_spec& c) {
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
const char* exp_floor_function(); // the exp the exp floor measures
void register_ours(const case_spec& c, int threads);
void register_reference(const case_spec& c);
void register_eigen_naive(const case_spec& c);
void register_torch(const case_spec& c); // no-op when built without libtorch
bool torch_enabled();
std::string torch_version();

} // namespace distill_bench
