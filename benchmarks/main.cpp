// distill_bench: every case with its floors and its peers, in one binary and one run, so
// that every published figure is a ratio of two numbers measured side by side.
#include "bench_common.hpp"
#include "cases.hpp"

#include <xsimd/xsimd.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#ifndef DISTILL_BENCH_ARCH_FLAGS
#define DISTILL_BENCH_ARCH_FLAGS "unknown"
#endif

namespace {

using distill_bench::case_spec;
using distill_bench::loss_kind;

// Removes --<name>=a,b,c from argv and returns its comma-separated items (empty when absent).
std::vector<std::string> take_list_flag(int& argc, char** argv, const char* name, bool& given) {
    const std::string prefix = std::string("--") + name + "=";
    std::vector<std::string> items;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) != 0) continue;
        given = true;
        items.clear();
        std::istringstream list(argv[i] + prefix.size());
        for (std::string item; std::getline(list, item, ',');)
            if (!item.empty()) items.push_back(item);
        for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
        --argc;
        --i;
    }
    return items;
}

} // namespace

int main(int argc, char** argv) {
    // --distill_threads=1,2 : thread counts for our kernel and the floors (the peers run on one).
    bool threads_given = false;
    std::vector<int> threads;
    for (const auto& t : take_list_flag(argc, argv, "distill_threads", threads_given))
        if (const int n = std::atoi(t.c_str()); n > 0) threads.push_back(n);
    if (!threads_given) threads = {1, 2};
    // --distill_impls=eigen_naive,torch_autograd : register only these implementations (scripts/bench
    // reruns the allocating peers under a caching allocator this way).
    bool impls_given = false;
    const std::vector<std::string> impls = take_list_flag(argc, argv, "distill_impls", impls_given);
    const auto wanted = [&](const char* impl) {
        if (!impls_given) return true;
        for (const auto& i : impls)
            if (i == impl) return true;
        return false;
    };
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "--help") == 0)
            std::printf("distill_bench flags: --distill_threads=1,2  --distill_impls=mem_floor,exp_floor,ops_floor,"
                        "ours,reference,eigen_naive,torch,onednn (default: all)\n");
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    benchmark::AddCustomContext("distill_simd_arch", xsimd::default_arch::name());
    benchmark::AddCustomContext("distill_arch_flags", DISTILL_BENCH_ARCH_FLAGS);
    benchmark::AddCustomContext("distill_exp_floor_function", distill_bench::exp_floor_function());
    // Measured here, before any benchmark, so that the report can keep the candidates in bound.
    benchmark::AddCustomContext("distill_exp_accuracy", distill_bench::exp_candidates_accuracy());
    benchmark::AddCustomContext("distill_onednn", distill_bench::onednn_version().empty()
                                                      ? std::string("absent")
                                                      : distill_bench::onednn_version());
    benchmark::AddCustomContext("distill_log_floor_function", distill_bench::log_floor_function());
    benchmark::AddCustomContext("distill_torch", distill_bench::torch_enabled()
                                                     ? distill_bench::torch_version()
                                                     : std::string("absent"));
#ifdef __VERSION__
    benchmark::AddCustomContext("distill_compiler", __VERSION__);
#endif
    std::string thread_list;
    for (int t : threads) {
        if (!thread_list.empty()) thread_list += ',';
        thread_list += std::to_string(t);
    }
    benchmark::AddCustomContext("distill_threads", thread_list);

    for (const case_spec& c : distill_bench::all_cases()) {
        for (int t : threads)
            if (distill_bench::ours_runs(c, t)) {
                distill_bench::register_floors(c, t, wanted("mem_floor"), wanted("exp_floor"));
                if (wanted("ops_floor")) distill_bench::register_ops_floor(c, t);
            }
        if (wanted("ours"))
            for (int t : threads) distill_bench::register_ours(c, t);
        if (wanted("reference")) distill_bench::register_reference(c);
        if (wanted("eigen_naive")) distill_bench::register_eigen_naive(c);
        if (wanted("torch")) distill_bench::register_torch(c);
        if (wanted("onednn")) distill_bench::register_onednn(c);
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
