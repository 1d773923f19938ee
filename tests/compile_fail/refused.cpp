// Calls the library must refuse at compile time, one per value of CASE (tests/compile_fail/
// CMakeLists.txt compiles each and checks that the first error is the library's static_assert,
// not a raw error from inside the library). CASE 0 is the control: it must compile.
#ifndef CASE
#define CASE 0
#endif

#include <vector>

#include <distill/distill.hpp>

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using matrix_d = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using tensor2 = Eigen::Tensor<float, 2, Eigen::RowMajor>;
using tensor3 = Eigen::Tensor<float, 3, Eigen::RowMajor>;
using const_map2 = Eigen::TensorMap<const Eigen::Tensor<const float, 2, Eigen::RowMajor>>;

int main() {
    const distill::kl_divergence<float> kl;
    const distill::cross_entropy<float> ce;
    matrix s(2, 3);
    tensor2 s2(2, 3);
    tensor3 s3(2, 2, 3);
    float buffer[6] = {};
#if CASE == 0
    const_map2 in(buffer, 2, 3);
    tensor2 g(2, 3);
    kl.loss_and_grad(in, s2, g);
    const std::vector<int> y{0, 1};
    ce.loss(s, y);
    distill::softmax(s2);
#elif CASE == 1  // a tensor expression as logits
    kl.loss(s2 * 2.0f, s2);
#elif CASE == 2  // a chip of a tensor as logits
    kl.loss(s2, s3.chip(0, 0));
#elif CASE == 3  // a tensor expression into the returning softmax
    distill::softmax(s2 * 2.0f);
#elif CASE == 4  // double logits into a float functor
    const matrix_d d(2, 3);
    kl.loss(d, d);
#elif CASE == 5  // a const TensorMap of const as the gradient buffer
    const const_map2 g(buffer, 2, 3);
    kl.loss_and_grad(s2, s2, g);
#elif CASE == 6  // a const TensorMap of const as the softmax output
    const const_map2 out(buffer, 2, 3);
    distill::softmax(s2, out);
#elif CASE == 7  // an Eigen expression as logits
    kl.loss(s * 2.0f, s);
#elif CASE == 8  // a softmax output of another scalar type
    matrix_d out(2, 3);
    distill::softmax(s, out);
#elif CASE == 9  // a const matrix as the gradient buffer
    const matrix g(2, 3);
    kl.loss_and_grad(s, s, g);
#elif CASE == 10  // labels with a compile-time inner stride
    const int labels[4] = {0, 9, 1, 9};
    ce.loss(s, Eigen::Map<const Eigen::VectorXi, 0, Eigen::InnerStride<2>>(labels, 2));
#endif
    (void)buffer;
}
