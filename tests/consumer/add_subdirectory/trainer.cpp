// The parent project's own library: a trainer step over its own buffers, with no Eigen type in sight.
#include <cstdint>

#include <distill/distill.hpp>

double trainer_step(const float* student, const float* teacher, const std::int64_t* labels, float* grad,
                    std::int64_t rows, std::int64_t cols) {
    const distill::distillation_loss<float> kd({.temperature = 2.0, .alpha = 0.5});
    return kd.loss_and_grad(distill::matrix_ref<const float>{student, rows, cols},
                            distill::matrix_ref<const float>{teacher, rows, cols},
                            std::span<const std::int64_t>(labels, static_cast<std::size_t>(rows)),
                            distill::matrix_ref<float>{grad, rows, cols})
        .total;
}
