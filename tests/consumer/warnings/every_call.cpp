// A consumer translation unit that calls every public function of distill, for float and double,
// with Eigen matrices, tensors and distill::matrix_ref, and every loss functor for the 16-bit
// types. The consumer_warnings_* tests compile it with
// -Wall -Wextra -Wpedantic -Werror under GCC and Clang at x86-64-v3 (AVX2) and x86-64-v4 (AVX-512):
// a user who builds with warnings as errors must get none from distill's headers.
#include <cstdint>
#include <cstdio>
#include <span>
#include <vector>

#include <distill/distill.hpp>

namespace {

template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
int every_call() {
    constexpr Eigen::Index n = 3, c = 5;
    matrix<T> student = matrix<T>::Random(n, c), teacher = matrix<T>::Random(n, c), grad(n, c), probs(n, c);
    Eigen::Tensor<T, 3, Eigen::RowMajor> student3(1, n, c), teacher3(1, n, c), grad3(1, n, c);
    student3.setRandom();
    teacher3.setRandom();
    const std::vector<std::int64_t> labels = {0, 4, 2};
    std::vector<double> losses(n);
    const distill::per_row rows{.losses = losses};
    distill::loss_value v;
    int failures = 0;
    auto check = [&](const distill::status& s) { failures += s.ok() ? 0 : 1; };

    // softmax and log_softmax: writing, returning and try_ forms, matrices and tensors.
    distill::softmax(student, probs, 2.0);
    distill::log_softmax(student, probs, 2.0);
    matrix<T> p = distill::softmax(student, 2.0);
    matrix<T> lp = distill::log_softmax(student);
    Eigen::Tensor<T, 3, Eigen::RowMajor> p3 = distill::softmax(student3);
    Eigen::Tensor<T, 3, Eigen::RowMajor> lp3 = distill::log_softmax(student3, 0.5);
    check(distill::try_softmax(student, probs));
    check(distill::try_log_softmax(student3, grad3, 3.0));

    const distill::kl_divergence<T> kl({.temperature = 2.0});
    v = kl.loss(student, teacher);
    v = kl.loss_and_grad(student, teacher, grad, rows);
    v = kl.loss(distill::sequential, student3, teacher3);
    v = kl.loss_and_grad(distill::sequential, student3, teacher3, grad3);
    check(kl.try_loss(student, teacher, v));
    check(kl.try_loss_and_grad(student3, teacher3, grad3, v, rows));

    const distill::cross_entropy<T> ce({.label_smoothing = 0.1});
    v = ce.loss(student, labels);
    v = ce.loss_and_grad(student, labels, grad);
    v = ce.loss(distill::sequential, student3, labels, rows);
    v = ce.loss_and_grad(distill::sequential, student3, labels, grad3);
    check(ce.try_loss(student3, labels, v));
    check(ce.try_loss_and_grad(student, labels, grad, v));

    const distill::distillation_loss<T> kd({.temperature = 4.0, .alpha = 0.7});
    v = kd.loss(student, teacher, labels);
    v = kd.loss_and_grad(student, teacher, labels, grad);
    v = kd.loss(distill::sequential, student3, teacher3, labels);
    v = kd.loss_and_grad(distill::sequential, student3, teacher3, labels, grad3, rows);
    check(kd.try_loss(student, teacher, labels, v));
    check(kd.try_loss_and_grad(student3, teacher3, labels, grad3, v));

    // The divergence family, chosen at run time, and teachers given as log-probabilities.
    const distill::divergence family[] = {distill::forward_kl{}, distill::reverse_kl{}, distill::jensen_shannon{.beta = 0.3},
                                          distill::skew_kl{}, distill::skew_reverse_kl{.skew = 0.2},
                                          distill::total_variation{}};
    for (const distill::divergence& d : family) {
        const distill::divergence_loss<T> dl({.divergence = d, .temperature = 2.0});
        v = dl.loss_and_grad(student, teacher, grad);
        v = dl.loss(distill::sequential, student3, teacher3, rows);
        check(dl.try_loss_and_grad(student, teacher, grad, v));
    }
    const distill::distillation_loss<T> dkd({.temperature = 4.0, .divergence = distill::decoupled_kd{}});
    v = dkd.loss_and_grad(student, teacher, labels, grad);
    const distill::kl_divergence<T> offline({.teacher = distill::teacher_input::log_probabilities});
    v = offline.loss_and_grad(student, lp, grad);
    distill::softmax(distill::sequential, student, probs);
    check(distill::try_log_softmax(distill::sequential, student3, grad3));

    // Plain buffers.
    const distill::matrix_ref<const T> s_ref{student.data(), n, c}, t_ref{teacher.data(), n, c};
    const distill::matrix_ref<T> g_ref{grad.data(), n, c}, p_ref{probs.data(), n, c, c};
    distill::softmax(s_ref, p_ref);
    check(distill::try_log_softmax(s_ref, p_ref, 2.0));
    matrix<T> p2 = distill::log_softmax(s_ref);
    v = kl.loss_and_grad(s_ref, t_ref, g_ref);
    check(ce.try_loss(s_ref, labels, v));
    v = kd.loss_and_grad(distill::sequential, s_ref, t_ref, labels, g_ref, rows);
    failures += p2.rows() == n ? 0 : 1;

    // Across processes: a vocabulary of 2c classes over two "ranks" in this process, each holding c
    // columns (the same logits, for brevity); and the batch's row count.
    const distill::distillation_options shard_options{.temperature = 2.0, .alpha = 0.5,
                                                      .divergence = distill::reverse_kl{}};
    const distill::sharded_loss<T> left(shard_options, {.first_column = 0, .vocabulary = 2 * c});
    const distill::sharded_loss<T> right(shard_options, {.first_column = c, .vocabulary = 2 * c});
    const std::vector<std::int64_t> shard_labels = {1, 9, 6};
    std::vector<distill::row_statistics> stats(n), gathered(2 * n);
    std::vector<distill::row_sums> sums(n), right_sums(n);
    left.statistics(student, teacher, shard_labels, std::span(gathered).first(n));
    check(right.try_statistics(distill::sequential, student3, teacher3, shard_labels, std::span(gathered).subspan(n)));
    check(distill::merge_gathered_statistics(gathered, stats));
    stats[0] = distill::merge_row_statistics(gathered[0], gathered[n]);
    const std::span<const distill::row_statistics> combined(stats);
    if (left.needs_sums(combined)) {
        left.sums(s_ref, t_ref, shard_labels, combined, std::span(sums));
        check(right.try_sums(distill::sequential, student, teacher, shard_labels, combined, std::span(right_sums)));
        for (Eigen::Index i = 0; i < n; ++i) sums[i] = distill::merge_row_sums(sums[i], right_sums[i]);
    }
    v = left.loss_and_grad(student, teacher, shard_labels, combined, std::span<const distill::row_sums>(sums), grad);
    check(right.try_loss_and_grad(distill::sequential, student3, teacher3, shard_labels, combined,
                                  std::span<const distill::row_sums>(sums), grad3, v, rows));
    check(right.try_loss(s_ref, t_ref, shard_labels, combined, std::span<const distill::row_sums>(sums), v));
    v = right.loss(student, teacher, shard_labels, combined, std::span<const distill::row_sums>(sums));
    const distill::sharded_loss<T> whole(distill::divergence_options{.temperature = 2.0}, {.first_column = 0, .vocabulary = c});
    whole.statistics(student, teacher, distill::no_labels, std::span(stats));
    v = whole.loss_and_grad(distill::sequential, student, teacher, distill::no_labels, combined, {}, g_ref);
    failures += distill::counted_rows(labels) == n && distill::counted_rows(n) == n ? 0 : 1;

    // A teacher kept as its top k classes per row (here 2, one row padded with -1).
    Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> top_indices(n, 2);
    matrix<T> top_values(n, 2);
    for (Eigen::Index i = 0; i < n; ++i) top_indices(i, 0) = i, top_indices(i, 1) = i + 1 < n ? i + 1 : -1;
    top_values.setConstant(T(-1.5));
    const distill::top_k_distillation_loss<T> topk({.temperature = 2.0, .alpha = 0.5,
                                                    .teacher = distill::teacher_input::log_probabilities});
    v = topk.loss_and_grad(student, distill::top_k(top_indices, top_values), labels, grad);
    v = topk.loss(distill::sequential, s_ref, distill::top_k(top_indices, top_values), labels, rows);
    check(topk.try_loss_and_grad(student, distill::top_k(top_indices, top_values), labels, grad, v));

    std::printf("%s: total %g, %g %g %g %g\n", distill::simd_architecture, v.total, double(p(0, 0)),
                double(lp(0, 0)), double(p3(0, 0, 0)), double(lp3(0, 0, 0)));
    return failures;
}

// The 16-bit logits (Eigen::bfloat16, Eigen::half): every loss functor, with the gradient in the
// logits' own type and in float, in place, on plain buffers and against a top-k teacher.
template <class H>
int every_16bit_call() {
    constexpr Eigen::Index n = 3, c = 37;  // two vectors and a tail at every width
    const matrix<float> s32 = matrix<float>::Random(n, c), t32 = matrix<float>::Random(n, c);
    matrix<H> student = s32.cast<H>(), teacher = t32.cast<H>(), grad(n, c);
    matrix<float> grad32(n, c);
    const std::vector<std::int64_t> labels = {0, 36, 17};
    std::vector<double> losses(n);
    const distill::per_row rows{.losses = losses};
    distill::loss_value v;
    int failures = 0;
    auto check = [&](const distill::status& s) { failures += s.ok() ? 0 : 1; };

    const distill::distillation_loss<H> kd({.temperature = 2.0, .alpha = 0.5, .label_smoothing = 0.1,
                                            .class_weights = std::vector<double>(c, 0.5)});
    v = kd.loss(student, teacher, labels);
    v = kd.loss_and_grad(student, teacher, labels, grad, rows);
    v = kd.loss_and_grad(distill::sequential, student, teacher, labels, grad32);
    check(kd.try_loss_and_grad(student, teacher, labels, grad32, v));
    const distill::kl_divergence<H> kl({.temperature = 3.0});
    v = kl.loss_and_grad(student, teacher, grad);
    v = kl.loss_and_grad(student, teacher, grad32);
    const distill::divergence_loss<H> js({.divergence = distill::jensen_shannon{.beta = 0.3}, .temperature = 2.0});
    v = js.loss_and_grad(student, teacher, grad);
    check(js.try_loss_and_grad(student, teacher, grad32, v));
    const distill::cross_entropy<H> ce({.label_smoothing = 0.1});
    v = ce.loss_and_grad(student, labels, grad32);
    v = ce.loss(student, labels);
    const distill::matrix_ref<const H> s_ref{student.data(), n, c}, t_ref{teacher.data(), n, c};
    v = kl.loss_and_grad(s_ref, t_ref, distill::matrix_ref<float>{grad32.data(), n, c});
    v = kd.loss_and_grad(student, teacher, labels, student);  // in place

    Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> top_indices(n, 2);
    matrix<H> top_values(n, 2);
    for (Eigen::Index i = 0; i < n; ++i) top_indices(i, 0) = static_cast<std::int32_t>(i), top_indices(i, 1) = 20;
    top_values.setConstant(H(-1.5f));
    const distill::top_k_distillation_loss<H> topk({.temperature = 1.0, .alpha = 0.5,
                                                    .teacher = distill::teacher_input::log_probabilities});
    v = topk.loss_and_grad(student, distill::top_k(top_indices, top_values), labels, grad);
    check(topk.try_loss_and_grad(student, distill::top_k(top_indices, top_values), labels, grad32, v));
    std::printf("16-bit: total %g, gradient %g\n", v.total, static_cast<double>(grad32(0, 0)));
    return failures;
}

}  // namespace

int main() {
    return every_call<float>() + every_call<double>() + every_16bit_call<Eigen::bfloat16>() +
           every_16bit_call<Eigen::half>();
}
