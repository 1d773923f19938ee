// distill inside libtorch's autograd, through <distill/torch.hpp>: distill::autograd::distillation_loss
// runs the fused loss_and_grad on the tensors' own memory in forward, keeps the gradient, and hands it
// back in backward scaled by the incoming one. Autograd then carries it into the model as usual.
//
// The example checks itself against what a libtorch user writes without distill,
//   kl_div(log_softmax(s / T), softmax(t / T), batchmean) * T^2 * alpha + (1 - alpha) * cross_entropy(s, y),
// (loss and gradients equal within float tolerance), then per-token losses of a [batch, time, vocab]
// tensor (reduction::none, a per-token incoming gradient) against the same composite, and prints the
// time of both. Built with -fopenmp, so that at::parallel_for, the default executor, can use threads.
#include <distill/torch.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace {

torch::Tensor distill_loss(const torch::Tensor& student, const torch::Tensor& teacher, const torch::Tensor& labels,
                           double temperature, double alpha) {
    return distill::autograd::distillation_loss(student, teacher, labels,
                                                {.temperature = temperature, .alpha = alpha})
        .loss;
}

// The composite a libtorch user writes; autograd derives its backward.
torch::Tensor libtorch_loss(const torch::Tensor& student, const torch::Tensor& teacher, const torch::Tensor& labels,
                            double temperature, double alpha) {
    namespace F = torch::nn::functional;
    const torch::Tensor kl = F::kl_div(F::log_softmax(student / temperature, F::LogSoftmaxFuncOptions(1)),
                                       F::softmax(teacher / temperature, F::SoftmaxFuncOptions(1)),
                                       F::KLDivFuncOptions().reduction(torch::kBatchMean));
    return kl * (temperature * temperature * alpha) + (1.0 - alpha) * F::cross_entropy(student, labels);
}

// Median of 5 timed repetitions of the loss's forward + backward, after one untimed warm-up.
template <class Loss>
double time_loss(Loss loss, const torch::Tensor& student, const torch::Tensor& teacher, const torch::Tensor& labels) {
    std::vector<double> seconds;
    for (int rep = 0; rep < 6; ++rep) {
        student.mutable_grad() = torch::Tensor();  // assign, not accumulate, the gradient
        const auto start = std::chrono::steady_clock::now();
        loss(student, teacher, labels, 4.0, 0.5).backward();
        if (rep > 0) seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::nth_element(seconds.begin(), seconds.begin() + 2, seconds.end());
    return seconds[2];
}

}  // namespace

int main() {
    torch::manual_seed(0);
    // One thread for both sides: the comparison is of the loss's work, not of thread pools.
    torch::set_num_threads(1);
    constexpr double temperature = 4.0, alpha = 0.5;

    // 1. Correctness on a small batch, through a linear head so the gradient goes on into weights.
    const std::int64_t rows = 64, features = 128, classes = 1000;
    torch::nn::Linear head(features, classes);
    const torch::Tensor x = torch::randn({rows, features});
    const torch::Tensor teacher = 3.0 * torch::randn({rows, classes});
    const torch::Tensor labels = torch::randint(classes, {rows}, torch::kLong);

    const torch::Tensor ours = distill_loss(head->forward(x), teacher, labels, temperature, alpha);
    ours.backward();
    const torch::Tensor our_weight_grad = head->weight.grad().clone();
    head->zero_grad();
    const torch::Tensor reference = libtorch_loss(head->forward(x), teacher, labels, temperature, alpha);
    reference.backward();
    const torch::Tensor reference_weight_grad = head->weight.grad().clone();

    // The logits' gradient directly, too: scaled by 3 to check backward's chain rule.
    const torch::Tensor s1 = head->forward(x).detach().requires_grad_(true);
    const torch::Tensor s2 = s1.detach().clone().requires_grad_(true);
    (3.0 * distill_loss(s1, teacher, labels, temperature, alpha)).backward();
    (3.0 * libtorch_loss(s2, teacher, labels, temperature, alpha)).backward();

    const double loss_difference = std::abs(ours.item<double>() - reference.item<double>());
    const double logit_grad_difference = (s1.grad() - s2.grad()).abs().max().item<double>();
    const double weight_grad_difference = (our_weight_grad - reference_weight_grad).abs().max().item<double>();
    std::printf("loss: distill %.7f, libtorch %.7f (difference %.2g)\n", ours.item<double>(), reference.item<double>(),
                loss_difference);
    std::printf("largest gradient difference: logits %.2g, head weights %.2g\n", logit_grad_difference,
                weight_grad_difference);
    // float32 throughout; libtorch accumulates in float, distill in double.
    const bool ok = loss_difference <= 1e-5 * std::max(1.0, std::abs(reference.item<double>())) &&
                    torch::allclose(s1.grad(), s2.grad(), 1e-4, 1e-7) &&
                    torch::allclose(our_weight_grad, reference_weight_grad, 1e-4, 1e-6);

    // 2. Per-token losses of a [batch, time, vocab] tensor: kl_divergence with reduction::none returns
    //    one loss per token ([batch * time]), and backward takes one incoming gradient per token (here a
    //    weight per token), which it multiplies into that token's gradient row. float64 here, and on
    //    the calling thread: the last argument is the executor (at::parallel_for unless given).
    const std::int64_t batch = 3, time = 5, vocab_small = 50;
    const double t_small = 2.0;
    const torch::Tensor tokens_s1 = torch::randn({batch, time, vocab_small}, torch::kDouble).requires_grad_(true);
    const torch::Tensor tokens_s2 = tokens_s1.detach().clone().requires_grad_(true);
    const torch::Tensor tokens_t = torch::randn({batch, time, vocab_small}, torch::kDouble);
    const torch::Tensor token_weights = torch::rand({batch * time}, torch::kDouble);
    const distill::autograd::loss_tensors per_token = distill::autograd::kl_divergence(
        tokens_s1, tokens_t, {.temperature = t_small, .reduce = distill::reduction::none}, /*row_mask=*/{},
        distill::sequential);
    (per_token.loss * token_weights).sum().backward();
    // The composite: T^2 sum_v p (log p - log q) for each token.
    const torch::Tensor log_q = torch::log_softmax(tokens_s2 / t_small, -1);
    const torch::Tensor log_p = torch::log_softmax(tokens_t / t_small, -1);
    const torch::Tensor reference_per_token =
        (t_small * t_small) * (log_p.exp() * (log_p - log_q)).sum(-1).reshape({-1});
    (reference_per_token * token_weights).sum().backward();
    std::printf("per-token KL, %lld x %lld x %lld float64: largest loss difference %.2g, gradient %.2g\n",
                static_cast<long long>(batch), static_cast<long long>(time), static_cast<long long>(vocab_small),
                (per_token.loss - reference_per_token).abs().max().item<double>(),
                (tokens_s1.grad() - tokens_s2.grad()).abs().max().item<double>());
    const bool per_token_ok = per_token.loss.sizes() == reference_per_token.sizes() &&
                              torch::allclose(per_token.loss, reference_per_token, 1e-12, 1e-14) &&
                              torch::allclose(tokens_s1.grad(), tokens_s2.grad(), 1e-12, 1e-14);

    // 3. Time at a language-model shape: 256 tokens, 32,000-word vocabulary. Both sides allocate
    //    their outputs per call as autograd requires (libtorch also its temporaries); on a machine
    //    where fresh memory is slow, a caching allocator (jemalloc) narrows the gap.
    const std::int64_t tokens = 256, vocab = 32000;
    const torch::Tensor lm_student = (3.0 * torch::randn({tokens, vocab})).requires_grad_(true);
    const torch::Tensor lm_teacher = 3.0 * torch::randn({tokens, vocab});
    const torch::Tensor lm_labels = torch::randint(vocab, {tokens}, torch::kLong);
    const double ours_s = time_loss(distill_loss, lm_student, lm_teacher, lm_labels);
    const double torch_s = time_loss(libtorch_loss, lm_student, lm_teacher, lm_labels);
    std::printf("forward + backward, %lld x %lld logits, 1 thread: distill %.1f ms, libtorch %.1f ms, speedup %.2fx\n",
                static_cast<long long>(tokens), static_cast<long long>(vocab), ours_s * 1e3, torch_s * 1e3,
                torch_s / ours_s);

    std::printf("at::parallel_for runs in parallel in this build: %s\n",
                distill::autograd::at_parallel_for_is_parallel ? "yes (-fopenmp)" : "no (built without OpenMP)");

    if (!ok || !per_token_ok) {
        std::fprintf(stderr, "FAILED: distill and libtorch disagree beyond float tolerance\n");
        return 1;
    }
    std::printf("ok: distill's autograd Function matches libtorch's composite\n");
    return 0;
}
