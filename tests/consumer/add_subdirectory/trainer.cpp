// The parent project's own library: one non-template function over distill.
#include <distill/distill.hpp>

double trainer_kl(const float* student, const float* teacher, float* grad, long cols) {
    using map = Eigen::Map<Eigen::Matrix<float, 1, Eigen::Dynamic, Eigen::RowMajor>>;
    using const_map = Eigen::Map<const Eigen::Matrix<float, 1, Eigen::Dynamic, Eigen::RowMajor>>;
    map g(grad, cols);
    return distill::kl_divergence<float>().loss_and_grad(const_map(student, cols), const_map(teacher, cols), g).total;
}
