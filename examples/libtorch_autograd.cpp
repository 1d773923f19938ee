// distill inside libtorch's autograd: a torch::autograd::Function whose forward runs distill's fused
// loss_and_grad on the tensors' own memory and keeps the gradient, and whose backward hands that
// gradient back scaled by the incoming one. Autograd then carries it into the model as usual.
//
// The example checks itself against what a libtorch user writes without distill,
//   kl_div(log_softmax(s / T), softmax(t / T), batchmean) * T^2 * alpha + (1 - alpha) * cross_entropy(s, y),
// (loss and gradients equal within float tolerance) and prints the time of both.
#include <distill/distill.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <span>
#include <vector>

namespace {

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct distillation_function : torch::autograd::Function<distillation_function> {
    // student: N x C float32 on the CPU (requires grad); teacher: N x C float32; labels: N int64.
    static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& student,
                                 const torch::Tensor& teacher, const torch::Tensor& labels, double temperature,
                                 double alpha) {
        TORCH_CHECK(student.dim() == 2 && student.sizes() == teacher.sizes(), "student and teacher must be N x C alike");
        TORCH_CHECK(student.scalar_type() == torch::kFloat && teacher.scalar_type() == torch::kFloat, "float32 logits");
        TORCH_CHECK(labels.scalar_type() == torch::kLong && labels.numel() == student.size(0), "one int64 label per row");
        TORCH_CHECK(student.device().is_cpu(), "distill runs on the CPU");
        // contiguous() is free for the usual contiguous logits; a transposed view would be copied here
        // rather than read with the wrong stride.
        const torch::Tensor s = student.contiguous(), t = teacher.contiguous(), y = labels.contiguous();
        torch::Tensor grad = torch::empty_like(s);

        const auto n = s.size(0), c = s.size(1);
        const Eigen::Map<const row_major> s_map(s.data_ptr<float>(), n, c);
        const Eigen::Map<const row_major> t_map(t.data_ptr<float>(), n, c);
        Eigen::Map<row_major> g_map(grad.data_ptr<float>(), n, c);
        const std::span<const std::int64_t> y_span(y.data_ptr<std::int64_t>(), static_cast<std::size_t>(n));

        const distill::distillation_loss<float> kd({.temperature = temperature, .alpha = alpha});
        const distill::loss_value v = kd.loss_and_grad(s_map, t_map, y_span, g_map);

        // The fused call already produced dLoss/dstudent: keep it for backward instead of the inputs.
        ctx->save_for_backward({grad});
        return torch::tensor(v.total, s.options());
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grad_output) {
        const torch::Tensor grad = ctx->get_saved_variables()[0];
        // Chain rule: the loss is a scalar, so the incoming gradient is a scalar factor. It is 1 for a
        // plain loss.backward(): then hand the saved gradient over as it is instead of allocating an
        // N x C copy (for a 32,000-word vocabulary, fresh memory costs more than the loss itself).
        // No gradient for the teacher, the labels, T or alpha.
        const torch::Tensor& scale = grad_output[0];
        const torch::Tensor grad_student = scale.item<double>() == 1.0 ? grad : grad * scale;
        return {grad_student, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    }
};

torch::Tensor distill_loss(const torch::Tensor& student, const torch::Tensor& teacher, const torch::Tensor& labels,
                           double temperature, double alpha) {
    return distillation_function::apply(student, teacher, labels, temperature, alpha);
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

    // 2. Time at a language-model shape: 256 tokens, 32,000-word vocabulary. Both sides allocate
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

    if (!ok) {
        std::fprintf(stderr, "FAILED: distill and libtorch disagree beyond float tolerance\n");
        return 1;
    }
    std::printf("ok: distill's autograd Function matches libtorch's composite\n");
    return 0;
}
