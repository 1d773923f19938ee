// What the compression buys at inference: time per image through mlp::predict on one thread.
#pragma once

#include "matrix.hpp"
#include "mlp.hpp"

namespace demo {

struct inference_speed {
    // Microseconds per image, the median over repetitions. `cpu`: the calling thread's CPU time,
    // which other programs on a shared machine inflate far less than the wall clock; `wall`: the
    // wall clock, as a user waits for it.
    double batch1_cpu_us = 0, batch256_cpu_us = 0;
    double batch1_wall_us = 0, batch256_wall_us = 0;
};

// Batch 1: `single_images` images of `images`, one predict() call each (the allocations of a call
// are part of its cost). Batch 256: every full batch of 256 rows of `images`. Each measurement is
// repeated `repetitions` times after one warm-up pass. The caller keeps Eigen on one thread.
inference_speed measure_inference(const mlp& net, const matrix& images, int single_images, int repetitions);

}  // namespace demo
