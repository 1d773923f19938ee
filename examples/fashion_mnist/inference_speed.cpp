#include "inference_speed.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <vector>

namespace demo {
namespace {

double thread_cpu_seconds() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs `pass` once to warm the caches, then `repetitions` times; returns the median CPU and wall
// seconds of a pass.
template <class Pass>
std::pair<double, double> time_passes(Pass&& pass, int repetitions) {
    pass();
    std::vector<double> cpu, wall;
    for (int r = 0; r < repetitions; ++r) {
        const double c0 = thread_cpu_seconds();
        const auto w0 = std::chrono::steady_clock::now();
        pass();
        wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count());
        cpu.push_back(thread_cpu_seconds() - c0);
    }
    return {median(cpu), median(wall)};
}

}  // namespace

inference_speed measure_inference(const mlp& net, const matrix& images, int single_images, int repetitions) {
    constexpr Eigen::Index batch = 256;
    const Eigen::Index singles = std::min<Eigen::Index>(single_images, images.rows());
    const Eigen::Index batches = images.rows() / batch;
    // The inputs are cut into their batches before the clock starts: copying rows is not inference.
    std::vector<matrix> ones, batched;
    for (Eigen::Index i = 0; i < singles; ++i) ones.push_back(images.row(i));
    for (Eigen::Index b = 0; b < batches; ++b) batched.push_back(images.middleRows(b * batch, batch));
    // Summing an output keeps the compiler from discarding a prediction nobody reads.
    volatile float sink = 0;
    const auto [cpu1, wall1] = time_passes(
        [&] {
            for (const matrix& x : ones) sink = sink + net.predict(x)(0, 0);
        },
        repetitions);
    const auto [cpu256, wall256] = time_passes(
        [&] {
            for (const matrix& x : batched) sink = sink + net.predict(x)(0, 0);
        },
        repetitions);
    const double per_single = 1e6 / static_cast<double>(singles);
    const double per_batched = 1e6 / static_cast<double>(batches * batch);
    return {.batch1_cpu_us = cpu1 * per_single, .batch256_cpu_us = cpu256 * per_batched,
            .batch1_wall_us = wall1 * per_single, .batch256_wall_us = wall256 * per_batched};
}

}  // namespace demo
