// Token-level distillation, the shape of LLM distillation: logits of shape [batch, time, vocab]
// with a 32,000-word vocabulary, padding tokens marked with ignore_index, a per-token mean, and
// gradient accumulation over micro-batches.
//
// The point this example checks: with micro-batches of uneven padding, averaging each micro-batch's
// own mean weighs the tokens of short micro-batches more. Dividing every micro-batch by the global
// number of real tokens (reduction::divide_by) makes the accumulated loss and gradient exactly
// those of the whole batch at once, the same as data-parallel training dividing by the global count.
#include <distill/distill.hpp>

#include <unsupported/Eigen/CXX11/Tensor>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <span>
#include <vector>

namespace {

using tensor3 = Eigen::Tensor<float, 3, Eigen::RowMajor>;  // [sequence, position, vocabulary]

constexpr Eigen::Index sequences = 8;     // the optimiser's batch
constexpr Eigen::Index micro_batch = 2;   // sequences per forward/backward pass (what fits in memory)
constexpr Eigen::Index positions = 32;
constexpr Eigen::Index vocab = 32000;
constexpr std::int64_t padding = -100;    // distill's default ignore_index, as in PyTorch

// A stand-in for the two models' outputs: a teacher with a few confident tokens per position and a
// student that roughly agrees.
void make_logits(tensor3& teacher, tensor3& student, std::mt19937& rng) {
    std::normal_distribution<float> noise(0.0f, 1.0f);
    std::uniform_int_distribution<Eigen::Index> any_token(0, vocab - 1);
    for (Eigen::Index i = 0; i < teacher.size(); ++i) teacher.data()[i] = noise(rng);
    for (Eigen::Index s = 0; s < sequences; ++s)
        for (Eigen::Index p = 0; p < positions; ++p)
            for (int k = 0; k < 4; ++k) teacher(s, p, any_token(rng)) += 8.0f;
    for (Eigen::Index i = 0; i < student.size(); ++i) student.data()[i] = 0.7f * teacher.data()[i] + noise(rng);
}

}  // namespace

int main() {
    std::mt19937 rng(42);
    tensor3 teacher(sequences, positions, vocab), student(sequences, positions, vocab);
    make_logits(teacher, student, rng);

    // Next-token labels; each sequence ends early and the rest is padding. The lengths are uneven on
    // purpose: micro-batch 0 is nearly full, micro-batch 3 nearly empty.
    const std::vector<Eigen::Index> lengths{32, 30, 25, 20, 14, 9, 5, 3};
    std::vector<std::int64_t> labels(static_cast<std::size_t>(sequences * positions), padding);
    std::uniform_int_distribution<std::int64_t> any_token(0, vocab - 1);
    std::int64_t real_tokens = 0;  // known before any forward pass: count the attention mask
    for (Eigen::Index s = 0; s < sequences; ++s)
        for (Eigen::Index p = 0; p < lengths[static_cast<std::size_t>(s)]; ++p, ++real_tokens)
            labels[static_cast<std::size_t>(s * positions + p)] = any_token(rng);

    const distill::distillation_options recipe{.temperature = 2.0, .alpha = 0.5};

    // 1. Gradient accumulation: one loss_and_grad per micro-batch, each dividing by the global count.
    //    A micro-batch is a TensorMap over its slice of the batch: [micro_batch, positions, vocab],
    //    flattened by distill into (micro_batch * positions) rows of `vocab` columns. No copies.
    distill::distillation_options accumulate = recipe;
    accumulate.reduce = distill::reduction::divide_by;
    accumulate.normalizer = static_cast<double>(real_tokens);
    const distill::distillation_loss<float> kd_accumulate(accumulate);

    tensor3 grad(sequences, positions, vocab);
    grad.setZero();  // touch the memory before timing: first-touch page faults are not the loss's cost
    const Eigen::Index micro_rows = micro_batch * positions;
    const Eigen::Index micro_size = micro_rows * vocab;
    double accumulated_loss = 0, sum_of_micro_means = 0;
    const auto start = std::chrono::steady_clock::now();
    for (Eigen::Index m = 0; m < sequences / micro_batch; ++m) {
        const Eigen::TensorMap<const tensor3> s(student.data() + m * micro_size, micro_batch, positions, vocab);
        const Eigen::TensorMap<const tensor3> t(teacher.data() + m * micro_size, micro_batch, positions, vocab);
        Eigen::TensorMap<tensor3> g(grad.data() + m * micro_size, micro_batch, positions, vocab);
        const std::span<const std::int64_t> y(labels.data() + m * micro_rows, static_cast<std::size_t>(micro_rows));

        const distill::loss_value v = kd_accumulate.loss_and_grad(s, t, y, g);
        accumulated_loss += v.total;
        // (a trainer would backpropagate g through the model here and free the activations)

        // The common mistake, for comparison: each micro-batch's own per-token mean, averaged.
        const distill::distillation_loss<float> kd_micro_mean(recipe);  // reduction::mean
        sum_of_micro_means += kd_micro_mean.loss(s, t, y).total;
        std::printf("micro-batch %ld: %3lld real tokens, loss contribution %.6f\n", static_cast<long>(m),
                    static_cast<long long>(v.rows_counted), v.total);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double mean_of_means = sum_of_micro_means / static_cast<double>(sequences / micro_batch);

    // 2. The reference: the whole batch in one call, per-token mean over the real tokens.
    tensor3 grad_whole(sequences, positions, vocab);
    const distill::distillation_loss<float> kd_whole(recipe);
    const distill::loss_value whole = kd_whole.loss_and_grad(student, teacher, labels, grad_whole);

    float max_grad_difference = 0, max_padding_grad = 0;
    for (Eigen::Index i = 0; i < grad.size(); ++i)
        max_grad_difference = std::max(max_grad_difference, std::abs(grad.data()[i] - grad_whole.data()[i]));
    for (std::size_t row = 0; row < labels.size(); ++row)
        if (labels[row] == padding)
            for (Eigen::Index c = 0; c < vocab; ++c)
                max_padding_grad = std::max(max_padding_grad, std::abs(grad.data()[static_cast<Eigen::Index>(row) * vocab + c]));

    std::printf("\n%lld real tokens of %lld positions, vocabulary %ld\n", static_cast<long long>(real_tokens),
                static_cast<long long>(labels.size()), static_cast<long>(vocab));
    std::printf("accumulated loss (divide_by %lld) : %.6f\n", static_cast<long long>(real_tokens), accumulated_loss);
    std::printf("whole batch at once (mean)        : %.6f  (%lld tokens counted)\n", whole.total,
                static_cast<long long>(whole.rows_counted));
    std::printf("mean of micro-batch means (wrong) : %.6f\n", mean_of_means);
    std::printf("largest gradient difference       : %.3g\n", static_cast<double>(max_grad_difference));
    std::printf("largest gradient on a padding row : %.3g\n", static_cast<double>(max_padding_grad));
    std::printf("%.1f ms for %lld x %ld logits (%.0f tokens/s, one thread)\n", seconds * 1e3,
                static_cast<long long>(labels.size()), static_cast<long>(vocab),
                static_cast<double>(labels.size()) / seconds);

    // The summation order differs (four partial sums against one), so allow float rounding.
    const bool loss_matches = std::abs(accumulated_loss - whole.total) <= 1e-9 * std::abs(whole.total) + 1e-12;
    const bool grad_matches = max_grad_difference <= 1e-7f;
    const bool counted = whole.rows_counted == real_tokens;
    const bool padding_silent = max_padding_grad == 0.0f;
    // Small here (these synthetic tokens are alike), but a bias nonetheless, and it grows with how
    // unlike the micro-batches are.
    const bool mistake_visible = std::abs(mean_of_means - whole.total) > 1e-6 * std::abs(whole.total);
    if (!(loss_matches && grad_matches && counted && padding_silent && mistake_visible)) {
        std::fprintf(stderr, "FAILED: loss %s, gradient %s, token count %s, padding %s, micro-mean differs %s\n",
                     loss_matches ? "ok" : "differs", grad_matches ? "ok" : "differs", counted ? "ok" : "wrong",
                     padding_silent ? "ok" : "has gradient", mistake_visible ? "yes" : "no");
        return 1;
    }
    std::printf("ok: accumulation with the global normaliser equals the whole batch\n");
    return 0;
}
