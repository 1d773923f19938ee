// The libtorch peers (BENCHMARKING.md), single-threaded, on the very buffers our kernel reads:
//
// torch_autograd: what a user writes,
//     kl_div(log_softmax(s/T), softmax(t/T), batchmean) * T*T * alpha + (1-alpha) * cross_entropy(s, y)
//   then backward(); the gradient is left in s.grad() and reset to undefined before the next call
//   (zero_grad(set_to_none), the cheaper of the two choices for torch). Every call allocates its
//   N x C temporaries: scripts/bench runs these cases a second time with a caching allocator
//   (jemalloc through LD_PRELOAD) and reports the faster.
// torch_fused: the same loss and gradient formula written by hand with torch ops into buffers
//   allocated and touched once, before timing (out= variants and in-place ops only):
//     grad = alpha*T/N * (q - p) + (1-alpha)/N * (r - onehot(y)).
//
// Softmax and log_softmax forward: torch::softmax(s, 1) / torch::log_softmax(s, 1) (a fresh tensor
// per call) against _softmax_out / _log_softmax_out into a preallocated tensor.
//
// The divergence family (torch_autograd only): for each divergence the composite its users write,
// from the code that popularised it, with autograd, times T^2 as our divergence_loss is by default
// (see divergence_composite). Each returns the batch mean of the rows' divergences.
#include "bench_common.hpp"

#ifdef DISTILL_BENCH_WITH_TORCH

#include <ATen/Parallel.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/loss.h>
#include <torch/version.h>

namespace distill_bench {
namespace {

namespace F = torch::nn::functional;

template <class Scalar>
constexpr auto torch_type() {
    return std::is_same_v<Scalar, double> ? torch::kDouble : torch::kFloat;
}

template <class Scalar>
torch::Tensor view(matrix<Scalar>& m) {
    return torch::from_blob(m.data(), {m.rows(), m.cols()}, torch::TensorOptions().dtype(torch_type<Scalar>()));
}

// T^2 D(p, q) averaged over the rows, p = softmax(t / T), q = softmax(s / T), as the divergence's
// users write it; y holds the labels (decoupled KD only). The expressions keep their sources'
// operations and order, with the temperature applied where they take one.
torch::Tensor divergence_composite(const case_spec& c, const torch::Tensor& s, const torch::Tensor& t,
                                   const torch::Tensor& y) {
    const double T = c.temperature;
    const double n = static_cast<double>(c.rows);
    switch (c.divergence) {
    case divergence_case::forward_kl: // the kl_divergence case's expression
        return F::kl_div(torch::log_softmax(s / T, 1), torch::softmax(t / T, 1),
                         F::KLDivFuncOptions().reduction(torch::kBatchMean)) *
               (T * T);
    case divergence_case::reverse_kl: // KL(q || p): kl_div(log p, log q) with log_target (MiniLLM's direction)
        return F::kl_div(torch::log_softmax(t / T, 1), torch::log_softmax(s / T, 1),
                         F::KLDivFuncOptions().reduction(torch::kBatchMean).log_target(true)) *
               (T * T);
    case divergence_case::jsd: {
        // TRL's GKDTrainer.generalized_jsd_loss, 0 < beta < 1, labels=None, reduction="batchmean".
        const auto student_log_probs = torch::log_softmax(s / T, -1);
        const auto teacher_log_probs = torch::log_softmax(t / T, -1);
        const auto beta = torch::tensor(jsd_beta, student_log_probs.options());
        const auto mixture_log_probs = torch::logsumexp(
            torch::stack({student_log_probs + torch::log(1 - beta), teacher_log_probs + torch::log(beta)}), 0);
        const auto none = F::KLDivFuncOptions().reduction(torch::kNone).log_target(true);
        const auto kl_teacher = F::kl_div(mixture_log_probs, teacher_log_probs, none);
        const auto kl_student = F::kl_div(mixture_log_probs, student_log_probs, none);
        const auto jsd = beta * kl_teacher + (1 - beta) * kl_student;
        return jsd.sum() / jsd.size(0) * (T * T); // TRL does not scale by T^2; ours does
    }
    case divergence_case::skew_kl: {
        // DistiLLM's skewed_forward_kl: m = a p + (1 - a) q in probability space, log m, and
        // -sum p log m per row. DistiLLM drops the teacher's entropy sum p log p, constant for the
        // student (same gradient); it is added back here so that the loss is KL(p || m), ours.
        // DistiLLM's masked_fill of infinite logits is left out: the inputs have none.
        const auto teacher_probs = torch::softmax(t / T, -1);
        const auto student_probs = torch::softmax(s / T, -1);
        const auto mixed_logprobs = torch::log(skew * teacher_probs + (1 - skew) * student_probs);
        const auto teacher_logprobs = torch::log_softmax(t / T, -1);
        const auto x = (teacher_probs * (teacher_logprobs - mixed_logprobs)).sum(-1);
        return x.sum() / n * (T * T);
    }
    case divergence_case::skew_reverse_kl: {
        // DistiLLM's skewed_reverse_kl: m = (1 - a) p + a q, -sum (q log m - q log q) per row,
        // which is KL(q || m) exactly (masked_fill left out as above).
        const auto teacher_probs = torch::softmax(t / T, -1);
        const auto student_probs = torch::softmax(s / T, -1);
        const auto mixed_probs = (1 - skew) * teacher_probs + skew * student_probs;
        const auto student_logprobs = torch::log_softmax(s / T, -1);
        const auto mixed_logprobs = torch::log(mixed_probs);
        auto prod_probs = student_probs * mixed_logprobs;
        prod_probs = prod_probs - student_probs * student_logprobs;
        const auto x = prod_probs.sum(-1);
        return -x.sum() / n * (T * T);
    }
    case divergence_case::tvd: { // 0.5 sum |p - q| per row (Liger's TVD, DistiLLM's tv_distance)
        const auto p = torch::softmax(t / T, -1);
        const auto q = torch::softmax(s / T, -1);
        return 0.5 * (p - q).abs().sum(-1).mean() * (T * T);
    }
    case divergence_case::dkd: {
        // mdistiller's dkd_loss (cat_mask form), alpha = target weight, beta = non-target weight;
        // it scales both parts by T^2 itself.
        const auto target = y.reshape({-1, 1});
        const auto gt_mask = torch::zeros_like(s).scatter_(1, target, 1).to(torch::kBool);
        const auto other_mask = torch::ones_like(s).scatter_(1, target, 0).to(torch::kBool);
        const auto cat_mask = [](const torch::Tensor& x, const torch::Tensor& mask1, const torch::Tensor& mask2) {
            const auto t1 = (x * mask1).sum(1, true);
            const auto t2 = (x * mask2).sum(1, true);
            return torch::cat({t1, t2}, 1);
        };
        auto pred_student = torch::softmax(s / T, 1);
        auto pred_teacher = torch::softmax(t / T, 1);
        pred_student = cat_mask(pred_student, gt_mask, other_mask);
        pred_teacher = cat_mask(pred_teacher, gt_mask, other_mask);
        const auto log_pred_student = torch::log(pred_student);
        const auto sum = F::KLDivFuncOptions().reduction(torch::kSum); // size_average=False
        const auto tckd_loss = F::kl_div(log_pred_student, pred_teacher, sum) * (T * T) / n;
        const auto pred_teacher_part2 = torch::softmax(t / T - 1000.0 * gt_mask, 1);
        const auto log_pred_student_part2 = torch::log_softmax(s / T - 1000.0 * gt_mask, 1);
        const auto nckd_loss = F::kl_div(log_pred_student_part2, pred_teacher_part2, sum) * (T * T) / n;
        return dkd_target_weight * tckd_loss + dkd_non_target_weight * nckd_loss;
    }
    }
    return {};
}

template <class Scalar>
void torch_autograd(benchmark::State& state, case_spec c) {
    auto& in = inputs_for<Scalar>(c.rows, c.cols);
    const double T = c.temperature;
    const double alpha = c.alpha;
    torch::Tensor s = view(in.student);
    const torch::Tensor t = view(in.teacher);
    const torch::Tensor y = torch::from_blob(in.labels.data(), {c.rows}, torch::kLong);
    torch::Tensor result; // softmax's output, or the gradient of the losses
    if (!is_softmax(c.kind)) s.requires_grad_(true);

    const auto call = [&]() -> double {
        switch (c.kind) {
        case loss_kind::distillation: {
            auto loss = F::kl_div(torch::log_softmax(s / T, 1), torch::softmax(t / T, 1),
                                  F::KLDivFuncOptions().reduction(torch::kBatchMean)) *
                            (T * T * alpha) +
                        (1 - alpha) * F::cross_entropy(s, y);
            loss.backward();
            result = s.grad();
            s.mutable_grad().reset();
            return loss.item<double>();
        }
        case loss_kind::kl: {
            auto loss = F::kl_div(torch::log_softmax(s / T, 1), torch::softmax(t / T, 1),
                                  F::KLDivFuncOptions().reduction(torch::kBatchMean)) *
                        (T * T);
            loss.backward();
            result = s.grad();
            s.mutable_grad().reset();
            return loss.item<double>();
        }
        case loss_kind::divergence: {
            auto loss = divergence_composite(c, s, t, y);
            loss.backward();
            result = s.grad();
            s.mutable_grad().reset();
            return loss.item<double>();
        }
        case loss_kind::softmax:
            result = T == 1 ? torch::softmax(s, 1) : torch::softmax(s / T, 1);
            return 0;
        case loss_kind::log_softmax:
            result = T == 1 ? torch::log_softmax(s, 1) : torch::log_softmax(s / T, 1);
            return 0;
        }
        return 0;
    };

    // Each call's output lives until the next call replaces it, as in a training loop.
    run_timed(state, c, in, call, [&] { view(in.out).copy_(result); });
    if (!is_softmax(c.kind)) s.requires_grad_(false);
}

// The hand-fused variant's buffers, allocated and touched (zero-filled) once per shape and type and
// kept across repetitions: at 512 x 32000 they are 9 x 65 MB, whose first touch alone costs seconds.
struct fused_buffers {
    torch::Tensor zs, log_q, q, zt, log_p, p, tmp, log_r, r; // N x C
    torch::Tensor picked, neg;                               // N x 1
    torch::Tensor sum;                                       // scalar
};

fused_buffers& fused_buffers_for(const case_spec& c, torch::ScalarType type) {
    static fused_buffers cached;
    if (!cached.zs.defined() || cached.zs.size(0) != c.rows || cached.zs.size(1) != c.cols ||
        cached.zs.scalar_type() != type) {
        cached = {}; // release the previous shape first
        const auto options = torch::TensorOptions().dtype(type);
        const auto full = [&] { return torch::zeros({c.rows, c.cols}, options); };
        cached = {full(), full(), full(), full(), full(), full(), full(), full(), full(),
                  torch::zeros({c.rows, 1}, options), torch::zeros({c.rows, 1}, options), torch::zeros({}, options)};
    }
    return cached;
}

template <class Scalar>
void torch_fused(benchmark::State& state, case_spec c) {
    auto& in = inputs_for<Scalar>(c.rows, c.cols);
    const double T = c.temperature;
    const double alpha = c.alpha;
    const double n = static_cast<double>(c.rows);
    const torch::Tensor s = view(in.student);
    const torch::Tensor t = view(in.teacher);
    torch::Tensor g = view(in.out);
    const torch::Tensor y = torch::from_blob(in.labels.data(), {c.rows, 1}, torch::kLong);

    fused_buffers& b = fused_buffers_for(c, torch_type<Scalar>());
    auto& [zs, log_q, q, zt, log_p, p, tmp, log_r, r, picked, neg, sum] = b;
    neg.fill_(-(1 - alpha) / n);

    const auto soft_part = [&] { // q, p and sum p (log p - log q)
        at::mul_out(zs, s, 1 / T);
        at::_log_softmax_out(log_q, zs, 1, false);
        at::exp_out(q, log_q);
        at::mul_out(zt, t, 1 / T);
        at::_log_softmax_out(log_p, zt, 1, false);
        at::exp_out(p, log_p);
        at::sub_out(tmp, log_p, log_q);
        tmp.mul_(p);
        at::sum_out(sum, tmp);
        return sum.item<double>();
    };
    const auto call = [&]() -> double {
        switch (c.kind) {
        case loss_kind::distillation: {
            const double kl = soft_part() / n;
            at::_log_softmax_out(log_r, s, 1, false);
            at::gather_out(picked, log_r, 1, y);
            at::sum_out(sum, picked);
            const double ce = -sum.item<double>() / n;
            at::exp_out(r, log_r);
            at::sub_out(g, q, p);
            g.mul_(alpha * T / n);
            g.add_(r, (1 - alpha) / n);
            g.scatter_add_(1, y, neg);
            return alpha * T * T * kl + (1 - alpha) * ce;
        }
        case loss_kind::kl: {
            const double kl = soft_part() / n;
            at::sub_out(g, q, p);
            g.mul_(T / n);
            return T * T * kl;
        }
        case loss_kind::softmax:
            if (T == 1) {
                at::_softmax_out(g, s, 1, false);
            } else {
                at::mul_out(zs, s, 1 / T);
                at::_softmax_out(g, zs, 1, false);
            }
            return 0;
        case loss_kind::log_softmax:
            if (T == 1) {
                at::_log_softmax_out(g, s, 1, false);
            } else {
                at::mul_out(zs, s, 1 / T);
                at::_log_softmax_out(g, zs, 1, false);
            }
            return 0;
        case loss_kind::divergence: break; // not registered (register_torch)
        }
        return 0;
    };

    run_timed(state, c, in, call);
}

} // namespace

bool torch_enabled() { return true; }
std::string torch_version() { return TORCH_VERSION; }

void register_torch(const case_spec& c) {
    static const bool single_thread = [] { // the peers run on one thread, like our sequential path
        at::set_num_threads(1);
        return true;
    }();
    (void)single_thread;
    register_for_type(benchmark_name(c, "torch_autograd", 1), c, [c](benchmark::State& s, auto tag) {
        torch_autograd<typename decltype(tag)::type>(s, c);
    });
    // The divergence family's peer is the composite its users write (autograd); hand-fused torch
    // versions of seven divergences would measure our rewriting, not what is used.
    if (c.kind == loss_kind::divergence) return;
    register_for_type(benchmark_name(c, "torch_fused", 1), c, [c](benchmark::State& s, auto tag) {
        torch_fused<typename decltype(tag)::type>(s, c);
    });
}

} // namespace distill_bench

#else // built without libtorch: the peers are absent from the report (null in --json)

namespace distill_bench {
bool torch_enabled() { return false; }
std::string torch_version() { return {}; }
void register_torch(const case_spec&) {}
} // namespace distill_bench

#endif
