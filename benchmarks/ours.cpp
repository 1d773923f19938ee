// Our kernels through the public API, as a user calls them: the loss functors' fused loss_and_grad
// and softmax, sequential (threads = 1) or with an OpenMP parallel_for executor (threads > 1).
// Also the reference path (DISTILL_NO_SIMD), called through the shared library that holds it.
#include "bench_common.hpp"
#include "ours_call.hpp"
#include "reference_variant.hpp"

#include <distill/distill.hpp>

#include <algorithm>
#include <span>
#include <string>

namespace distill_bench {
namespace {

template <class Scalar>
struct reference_callers {
    static double call_reference(const case_spec& c, inputs<Scalar>& in) {
        namespace ref = reference_variant;
        switch (c.kind) {
        case loss_kind::distillation:
            return ref::distillation_loss_and_grad(in.student.data(), in.teacher.data(), in.labels.data(),
                                                   in.out.data(), c.rows, c.cols, c.temperature, c.alpha);
        case loss_kind::kl:
            return ref::kl_loss_and_grad(in.student.data(), in.teacher.data(), in.out.data(), c.rows, c.cols,
                                         c.temperature);
        case loss_kind::softmax:
            return ref::softmax(in.student.data(), in.out.data(), c.rows, c.cols, c.temperature);
        case loss_kind::log_softmax:
            return ref::log_softmax(in.student.data(), in.out.data(), c.rows, c.cols, c.temperature);
        case loss_kind::divergence:
        case loss_kind::top_k: break; // not registered (register_reference)
        }
        return 0;
    }
};

template <class Scalar>
void ours(benchmark::State& state, case_spec c, int threads) {
    auto& in = inputs_for<Scalar>(c.rows, c.cols);
    const omp_executor exec{threads};
    const omp_executor* e = threads > 1 ? &exec : nullptr;
    run_timed(state, c, in, [&] { return callers<Scalar>::call(c, in, e); });
}

// The distillation and KL cases of rows longer than 1024 classes again, with a workspace lent
// (docs/api.md, "Workspace"): a slot for each thread and for each row of a call of at most 8 rows,
// made before the timed loop.
template <class Scalar>
void ours_workspace(benchmark::State& state, case_spec c, int threads) {
    auto& in = inputs_for<Scalar>(c.rows, c.cols);
    const omp_executor exec{threads};
    const omp_executor* e = threads > 1 ? &exec : nullptr;
    distill::workspace ws(std::max<std::ptrdiff_t>(threads, std::min<std::ptrdiff_t>(c.rows, 8)), c.cols);
    run_timed(state, c, in, [&] { return callers<Scalar>::call(c, in, e, &ws); });
}

// The top-k case's comparison: the dense distillation loss (alpha = 1) on the same student, with the
// teacher's whole logits: what the top-k path saves a trainer that could keep them.
template <class Scalar>
void dense(benchmark::State& state, case_spec c) {
    auto& in = inputs_for<Scalar>(c.rows, c.cols);
    const distill::distillation_loss<Scalar> loss({.temperature = c.temperature, .alpha = 1.0});
    run_timed(state, c, in, [&] { return loss.loss_and_grad(in.student, in.teacher, distill::no_labels, in.out).total; });
}

// The float case's inputs rounded to bfloat16, with the gradient in bfloat16 or in float (G): what a
// bf16 training step hands the loss. Reads 2 + 2 bytes and writes sizeof(G) per element, against
// float's 4 + 4 + 4.
using bf16 = Eigen::bfloat16;

struct bf16_inputs {
    matrix<bf16> student, teacher;
};
const bf16_inputs& bf16_inputs_for(const inputs<float>& in) {
    static const bf16_inputs cached{in.student.cast<bf16>(), in.teacher.cast<bf16>()};  // one shape only
    return cached;
}

template <class G>
void ours_bf16(benchmark::State& state, case_spec c) {
    auto& in = inputs_for<float>(c.rows, c.cols);
    const bf16_inputs& half = bf16_inputs_for(in);
    matrix<G> grad = matrix<G>::Zero(c.rows, c.cols);  // touched before the timed loop
    const distill::distillation_loss<bf16> loss({.temperature = c.temperature, .alpha = c.alpha});
    const std::span<const std::int64_t> labels(in.labels);
    double value = 0;
    for (auto _ : state) {
        value = loss.loss_and_grad(half.student, half.teacher, labels, grad).total;
        benchmark::DoNotOptimize(value);
        benchmark::ClobberMemory();
    }
    state.counters["loss"] = value;
    state.SetBytesProcessed(static_cast<std::int64_t>(c.rows * c.cols) * static_cast<std::int64_t>(4 + sizeof(G)) *
                            static_cast<std::int64_t>(state.iterations()));
}

template <class Scalar>
void reference(benchmark::State& state, case_spec c) {
    auto& in = inputs_for<Scalar>(c.rows, c.cols);
    run_timed(state, c, in, [&] { return reference_callers<Scalar>::call_reference(c, in); });
}

} // namespace

bool ours_runs(const case_spec& c, int threads) {
    // TODO(threads): distill::softmax has no executor parameter yet; its threads > 1 rows appear
    // as soon as the headers accept one (softmax_accepts_executor), nothing to change here.
    if (c.kind == loss_kind::log_softmax) return true; // distill::log_softmax takes an executor
    return threads == 1 || c.kind != loss_kind::softmax ||
           (c.is_double ? softmax_accepts_executor<double> : softmax_accepts_executor<float>);
}

void register_ours(const case_spec& c, int threads) {
    if (!ours_runs(c, threads)) return;
    register_for_type(benchmark_name(c, "ours", threads), c, [c, threads](benchmark::State& s, auto tag) {
        ours<typename decltype(tag)::type>(s, c, threads);
    });
    if ((c.kind == loss_kind::distillation || c.kind == loss_kind::kl) && c.cols > 1024)
        register_for_type(benchmark_name(c, "ours_workspace", threads), c, [c, threads](benchmark::State& s, auto tag) {
            ours_workspace<typename decltype(tag)::type>(s, c, threads);
        });
    // bfloat16 logits next to the float distillation case of the LLM shape (dtype "bf16": bf16
    // gradient; "bf16>float": float gradient).
    if (c.kind == loss_kind::distillation && !c.is_double && c.rows == 512 && c.cols == 32000 && threads == 1) {
        std::string name = benchmark_name(c, "ours", threads);
        const auto at = name.find("/float/");
        const std::string bf16_grad = name.replace(at, 7, "/bf16/");
        const std::string float_grad = name.replace(at, 6, "/bf16>float/");
        configure(benchmark::RegisterBenchmark(bf16_grad.c_str(), [c](benchmark::State& s) { ours_bf16<bf16>(s, c); }));
        configure(benchmark::RegisterBenchmark(float_grad.c_str(), [c](benchmark::State& s) { ours_bf16<float>(s, c); }));
    }
}

void register_reference(const case_spec& c) {
    if (c.kind == loss_kind::top_k) {  // its second column: the dense path
        register_for_type(benchmark_name(c, "dense", 1), c, [c](benchmark::State& s, auto tag) {
            dense<typename decltype(tag)::type>(s, c);
        });
        return;
    }
    // The divergence cases compare with their floors and libtorch only: the reference library
    // exports the original cases' calls.
    if (c.kind == loss_kind::divergence) return;
    register_for_type(benchmark_name(c, "reference", 1), c, [c](benchmark::State& s, auto tag) {
        reference<typename decltype(tag)::type>(s, c);
    });
}

} // namespace distill_bench
