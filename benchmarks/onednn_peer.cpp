// The oneDNN peer (Debian libdnnl-dev): softmax and log_softmax forward of the float cases, [N, C]
// along axis 1, one softmax_v2_forward primitive (algorithm softmax_accurate or softmax_log,
// forward_inference) created once per benchmark, outside the timed loop, on memory objects over the
// very buffers our kernel reads and writes. Each timed call is execute() and stream.wait().
//
// One thread: Debian builds oneDNN with the OpenMP runtime (DNNL_CPU_RUNTIME = OMP in
// dnnl_config.h; libdnnl links libgomp), under which oneDNN sizes its parallel regions by the
// calling thread's OpenMP maximum (omp_get_max_threads), as oneDNN documents for that runtime; so
// the benchmark sets omp_set_num_threads(1) before creating and executing the primitive. Our own
// OpenMP executor names its team size in each parallel region (num_threads), so it is unaffected.
#include "bench_common.hpp"

#ifdef DISTILL_BENCH_WITH_ONEDNN

#include <oneapi/dnnl/dnnl.hpp>

namespace distill_bench {
namespace {

void onednn(benchmark::State& state, case_spec c) {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    auto& in = inputs_for<float>(c.rows, c.cols);
    const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    dnnl::stream stream(engine);
    const dnnl::memory::desc md({c.rows, c.cols}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::ab);
    dnnl::memory src(md, engine, in.student.data());
    dnnl::memory dst(md, engine, in.out.data());
    const auto algorithm =
        c.kind == loss_kind::log_softmax ? dnnl::algorithm::softmax_log : dnnl::algorithm::softmax_accurate;
    // Our softmax divides by T first; the cases run at T = 1, where the primitive alone is the peer.
    const dnnl::softmax_v2_forward::desc desc(dnnl::prop_kind::forward_inference, algorithm, md, md, 1);
    const dnnl::softmax_v2_forward softmax(dnnl::softmax_v2_forward::primitive_desc(desc, engine));
    const std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    run_timed(state, c, in, [&] {
        softmax.execute(stream, args);
        stream.wait();
        return 0.0;
    });
}

} // namespace

std::string onednn_version() {
    const dnnl_version_t* v = dnnl_version();
    return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
           " (CPU runtime " + (v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "not OpenMP") + ")";
}

void register_onednn(const case_spec& c) {
    if (!is_softmax(c.kind) || c.is_double || c.temperature != 1.0) return; // oneDNN's softmax: no f64
    configure(benchmark::RegisterBenchmark(benchmark_name(c, "onednn", 1).c_str(),
                                           [c](benchmark::State& s) { onednn(s, c); }));
}

} // namespace distill_bench

#else // built without oneDNN: no onednn rows (null in --json)

namespace distill_bench {
std::string onednn_version() { return {}; }
void register_onednn(const case_spec&) {}
} // namespace distill_bench

#endif
