// distill_bench: every case with its floors and its peers, in one binary and one run, so
// that every published figure is a ratio of two numbers measured side by side.
#include "bench_common.hpp"

#include <xsimd/xsimd.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>

#ifndef DISTILL_BENCH_ARCH_FLAGS
#define DISTILL_BENCH_ARCH_FLAGS "unknown"
#endif

namespace distill_bench {

std::string format_temperature(double t) {
    std::ostringstream os;
    os << t;
    return os.str();
}

namespace {

// Deterministic, fast fill (16M elements in well under a second): logits spread over [-8, 8), the
// teacher correlated with the student like a trained pair, labels uniform over the classes.
template <class Scalar>
void fill(inputs<Scalar>& in, std::ptrdiff_t rows, std::ptrdiff_t cols) {
    std::uint64_t state = 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(rows * 131 + cols);
    auto next = [&state] { // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return state * 0x2545f4914f6cdd1dull;
    };
    auto uniform = [&] { return static_cast<double>(next() >> 11) * 0x1.0p-53; };
    in.student.resize(rows, cols);
    in.teacher.resize(rows, cols);
    in.out.resize(rows, cols);
    for (std::ptrdiff_t i = 0; i < rows; ++i)
        for (std::ptrdiff_t j = 0; j < cols; ++j) {
            const double s = 16.0 * uniform() - 8.0;
            in.student(i, j) = static_cast<Scalar>(s);
            in.teacher(i, j) = static_cast<Scalar>(0.75 * s + 4.0 * uniform() - 2.0);
        }
    in.out.setZero();
    in.labels.resize(static_cast<std::size_t>(rows));
    for (auto& y : in.labels) y = static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(cols));
}

} // namespace

template <class Scalar>
inputs<Scalar>& inputs_for(std::ptrdiff_t rows, std::ptrdiff_t cols) {
    static inputs<Scalar> cached;
    if (cached.student.rows() != rows || cached.student.cols() != cols) {
        cached = inputs<Scalar>{}; // release the previous shape first
        fill(cached, rows, cols);
    }
    return cached;
}

template inputs<float>& inputs_for<float>(std::ptrdiff_t, std::ptrdiff_t);
template inputs<double>& inputs_for<double>(std::ptrdiff_t, std::ptrdiff_t);

} // namespace distill_bench

namespace {

using distill_bench::case_spec;
using distill_bench::loss_kind;

std::vector<case_spec> all_cases() {
    // Grouped by shape so the inputs of a shape are generated once.
    struct shape { std::ptrdiff_t rows, cols; };
    const shape float_shapes[] = {{64, 10}, {256, 1000}, {512, 32000}, {32, 128256}};
    std::vector<case_spec> cases;
    for (const auto& s : float_shapes) {
        cases.push_back({loss_kind::distillation, s.rows, s.cols, false, 4.0});
        if (s.rows == 512 && s.cols == 32000) {
            // Integer and non-integer temperatures: an implementation may derive softmax(s) from
            // softmax(s / T) by powers when T is an integer.
            cases.push_back({loss_kind::distillation, s.rows, s.cols, false, 1.0});
            cases.push_back({loss_kind::distillation, s.rows, s.cols, false, 2.5});
        }
        cases.push_back({loss_kind::kl, s.rows, s.cols, false, 4.0});
        cases.push_back({loss_kind::softmax, s.rows, s.cols, false, 1.0});
        if ((s.rows == 512 && s.cols == 32000) || (s.rows == 32 && s.cols == 128256)) {
            // The divergence family on the two LLM shapes, one case per divergence, at T = 2.
            using distill_bench::divergence_case;
            for (const divergence_case d :
                 {divergence_case::forward_kl, divergence_case::reverse_kl, divergence_case::jsd, divergence_case::skew_kl,
                  divergence_case::skew_reverse_kl, divergence_case::tvd, divergence_case::dkd})
                cases.push_back({loss_kind::divergence, s.rows, s.cols, false, 2.0, 1.0, d});
        }
    }
    cases.push_back({loss_kind::distillation, 512, 32000, true, 4.0});
    cases.push_back({loss_kind::kl, 512, 32000, true, 4.0});
    cases.push_back({loss_kind::softmax, 512, 32000, true, 1.0});
    return cases;
}

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
                        "ours,reference,eigen_naive,torch (default: all)\n");
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    benchmark::AddCustomContext("distill_simd_arch", xsimd::default_arch::name());
    benchmark::AddCustomContext("distill_arch_flags", DISTILL_BENCH_ARCH_FLAGS);
    benchmark::AddCustomContext("distill_exp_floor_function", distill_bench::exp_floor_function());
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

    for (const case_spec& c : all_cases()) {
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
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
