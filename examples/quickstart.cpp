// quickstart: the smallest complete use of distill. A batch of student and teacher logits, hard
// labels, one fused call that returns the Hinton distillation loss and writes its gradient.
//
//   L_i = alpha * T^2 * KL(softmax(t_i / T) || softmax(s_i / T)) + (1 - alpha) * CE(s_i, y_i)
//
// Build: link distill::distill (find_package(distill) or add_subdirectory), C++20.
#include <cstdint>
#include <cstdio>
#include <vector>

#include <distill/distill.hpp>

int main() {
    // Rows are samples, columns are classes; distill reads row-major memory in place.
    using logits = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Index batch = 4, classes = 10;

    logits student = logits::Random(batch, classes);       // the small model's outputs
    logits teacher = 3.0f * logits::Random(batch, classes); // the large model's outputs
    std::vector<std::int64_t> labels{3, 7, -100, 1};        // -100 (ignore_index): row 2 takes no part
    logits grad(batch, classes);                            // dL/d(student logits) goes here

    const distill::distillation_loss<float> kd({.temperature = 4.0, .alpha = 0.7});
    const distill::loss_value loss = kd.loss_and_grad(student, teacher, labels, grad);

    std::printf("loss %.5f = soft %.5f + hard %.5f over %lld rows\n", loss.total, loss.soft, loss.hard,
                static_cast<long long>(loss.rows_counted));
    // Back-propagate `grad` into the student; the ignored row's gradient is zero.
    std::printf("gradient row 0 sums to %.1e; row 2 (ignored) is zero: %s\n", grad.row(0).sum(),
                grad.row(2).isZero() ? "yes" : "no");
    return grad.row(2).isZero() && loss.rows_counted == 3 ? 0 : 1;
}
