// The smallest program a user builds against an installed or vendored distill: it must compile,
// link and compute the closed-form loss KL([1, 0] || [1/2, 1/2]) = log 2.
#include <cmath>
#include <cstdio>
#include <limits>

#include <distill/distill.hpp>

int main() {
    using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    matrix student(1, 2), teacher(1, 2), grad(1, 2);
    student << 0.f, 0.f;
    teacher << 0.f, -std::numeric_limits<float>::infinity();
    const double loss = distill::kl_divergence<float>().loss_and_grad(student, teacher, grad).total;
    std::printf("KL = %.6f (expected log 2 = %.6f)\n", loss, std::log(2.0));
    return std::abs(loss - std::log(2.0)) < 1e-6 ? 0 : 1;
}
