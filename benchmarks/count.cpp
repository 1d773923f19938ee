// distill_count: one call of each of the suite's cases (one thread, our public API, the inputs of
// distill_bench), counted rather than timed; scripts/bench runs it and the report adds the counts.
//
//   distill_count_exps [--filter=REGEX]...  prints, per case, the vector exponentials per element
//                                         (built with DISTILL_COUNT_EXP_CALLS: detail/simd/exp.hpp
//                                         adds each call's lane count; a row's tail vector counts
//                                         whole)
//   valgrind --tool=callgrind --instr-atstart=no distill_count_avx2 [--filter=REGEX]
//                                         one callgrind dump per case, of that call alone: after an
//                                         uncounted first call, instrumentation is switched on,
//                                         the counters zeroed, the call made and the counts dumped
//                                         under the benchmark's name (callgrind's client requests;
//                                         without valgrind they do nothing)
//
// Each output line is a JSON object: {"name": "<case>/ours/<dtype>/<rows>x<cols>/threads:1", ...}.
#include "bench_common.hpp"
#include "cases.hpp"
#include "ours_call.hpp"

#include <cstdio>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#ifdef DISTILL_COUNT_WITH_CALLGRIND
#include <valgrind/callgrind.h>
#endif

namespace {

template <class Scalar>
void count(const distill_bench::case_spec& c, const std::string& name) {
    auto& in = distill_bench::inputs_for<Scalar>(c.rows, c.cols);
    const double elements = static_cast<double>(c.rows * c.cols);
    distill_bench::callers<Scalar>::call(c, in, nullptr); // first call uncounted: nothing is cold below
#ifdef DISTILL_COUNT_EXP_CALLS
    const std::uint64_t before = distill::detail::simd::exp_lanes.load();
    distill_bench::callers<Scalar>::call(c, in, nullptr);
    const double exps = static_cast<double>(distill::detail::simd::exp_lanes.load() - before) / elements;
    std::printf("{\"name\": \"%s\", \"exps_per_element\": %.6g}\n", name.c_str(), exps);
#elif defined(DISTILL_COUNT_WITH_CALLGRIND)
    CALLGRIND_START_INSTRUMENTATION;
    CALLGRIND_ZERO_STATS;
    distill_bench::callers<Scalar>::call(c, in, nullptr);
    CALLGRIND_DUMP_STATS_AT(name.c_str());
    CALLGRIND_STOP_INSTRUMENTATION;
    std::printf("{\"name\": \"%s\", \"elements\": %.0f}\n", name.c_str(), elements);
#else
    distill_bench::callers<Scalar>::call(c, in, nullptr);
    std::printf("{\"name\": \"%s\", \"elements\": %.0f}\n", name.c_str(), elements);
#endif
    std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv) {
    std::vector<std::regex> filters; // a case is counted when its name matches every one
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--filter=", 9) == 0) {
            filters.emplace_back(argv[i] + 9);
        } else {
            std::fprintf(stderr, "usage: %s [--filter=REGEX ...]  (each REGEX searched in <case>/ours/<dtype>/<rows>x<cols>/threads:1)\n",
                         argv[0]);
            return 2;
        }
    }
    for (const distill_bench::case_spec& c : distill_bench::all_cases()) {
        const std::string name = distill_bench::benchmark_name(c, "ours", 1);
        bool wanted = true;
        for (const auto& f : filters) wanted = wanted && std::regex_search(name, f);
        if (!wanted) continue;
        if (c.is_double)
            count<double>(c, name);
        else
            count<float>(c, name);
    }
    return 0;
}
