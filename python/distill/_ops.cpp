// PyTorch operators over distill's kernels: torch.ops.distill.kd_loss, divergence_loss, cross_entropy,
// softmax and log_softmax. The losses are <distill/torch.hpp>'s autograd functions, so each operator
// returns (loss, soft, hard) with the student's gradient already wired into autograd; this file only
// turns the Python package's strings into the option structs. Built and loaded by python/distill
// (torch.utils.cpp_extension, no pybind11 module: the operators live in the dispatcher).
#include <distill/softmax.hpp>
#include <distill/torch.hpp>

#include <torch/library.h>

#include <cstdint>
#include <string>
#include <tuple>

namespace {

using loss_triple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

loss_triple as_triple(const distill::autograd::loss_tensors& t) { return {t.loss, t.soft, t.hard}; }

at::Tensor defined_or_empty(const c10::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); }

distill::reduction parse_reduction(const char* op, const std::string& name) {
    if (name == "mean") return distill::reduction::mean;
    if (name == "sum") return distill::reduction::sum;
    if (name == "none") return distill::reduction::none;
    if (name == "divide_by") return distill::reduction::divide_by;
    C10_THROW_ERROR(ValueError, std::string(op) + ": reduction must be 'mean', 'sum', 'none' or 'divide_by', got '" +
                                    name +
                                    "' ('mean' is PyTorch's 'batchmean': the sum over the rows that count divided "
                                    "by their number)");
}

distill::teacher_input parse_teacher_input(const char* op, const std::string& name) {
    if (name == "logits") return distill::teacher_input::logits;
    if (name == "log_probabilities") return distill::teacher_input::log_probabilities;
    if (name == "probabilities") return distill::teacher_input::probabilities;
    C10_THROW_ERROR(ValueError, std::string(op) +
                                    ": teacher_input must be 'logits', 'log_probabilities' or 'probabilities', got '" +
                                    name + "'");
}

// The divergence and its parameters; the library validates the values.
distill::divergence parse_divergence(const char* op, const std::string& name, double beta, double skew,
                                     double target_weight, double non_target_weight) {
    if (name == "forward_kl") return distill::forward_kl{};
    if (name == "reverse_kl") return distill::reverse_kl{};
    if (name == "jensen_shannon") return distill::jensen_shannon{.beta = beta};
    if (name == "skew_kl") return distill::skew_kl{.skew = skew};
    if (name == "skew_reverse_kl") return distill::skew_reverse_kl{.skew = skew};
    if (name == "total_variation") return distill::total_variation{};
    if (name == "decoupled_kd")
        return distill::decoupled_kd{.target_weight = target_weight, .non_target_weight = non_target_weight};
    C10_THROW_ERROR(ValueError, std::string(op) +
                                    ": divergence must be 'forward_kl', 'reverse_kl', 'jensen_shannon', 'skew_kl', "
                                    "'skew_reverse_kl', 'total_variation' or 'decoupled_kd', got '" +
                                    name + "'");
}

loss_triple kd_loss(const at::Tensor& student, const at::Tensor& teacher, const c10::optional<at::Tensor>& labels,
                    const c10::optional<at::Tensor>& row_mask, double temperature, double alpha,
                    const std::string& divergence, double beta, double skew, double target_weight,
                    double non_target_weight, const std::string& reduction, double normalizer,
                    std::int64_t ignore_index, double label_smoothing, const std::string& teacher_input,
                    bool scale_by_t_squared, bool check_finite) {
    const distill::distillation_options options{
        .temperature = temperature,
        .alpha = alpha,
        .scale_by_t_squared = scale_by_t_squared,
        .label_smoothing = label_smoothing,
        .ignore_index = ignore_index,
        .reduce = parse_reduction("kd_loss", reduction),
        .normalizer = normalizer,
        .check_finite = check_finite,
        .divergence = parse_divergence("kd_loss", divergence, beta, skew, target_weight, non_target_weight),
        .teacher = parse_teacher_input("kd_loss", teacher_input)};
    return as_triple(distill::autograd::distillation_loss(student, teacher, defined_or_empty(labels), options,
                                                          defined_or_empty(row_mask)));
}

loss_triple divergence_loss(const at::Tensor& student, const at::Tensor& teacher,
                            const c10::optional<at::Tensor>& row_mask, double temperature,
                            const std::string& divergence, double beta, double skew, const std::string& reduction,
                            double normalizer, const std::string& teacher_input, bool scale_by_t_squared,
                            bool check_finite) {
    // decoupled_kd's weights are not offered here: the library refuses it without labels.
    const distill::divergence_options options{
        .divergence = parse_divergence("divergence_loss", divergence, beta, skew, 1.0, 8.0),
        .temperature = temperature,
        .scale_by_t_squared = scale_by_t_squared,
        .reduce = parse_reduction("divergence_loss", reduction),
        .normalizer = normalizer,
        .check_finite = check_finite,
        .teacher = parse_teacher_input("divergence_loss", teacher_input)};
    return as_triple(distill::autograd::divergence_loss(student, teacher, options, defined_or_empty(row_mask)));
}

loss_triple cross_entropy(const at::Tensor& student, const at::Tensor& labels,
                          const c10::optional<at::Tensor>& row_mask, const std::string& reduction, double normalizer,
                          std::int64_t ignore_index, double label_smoothing, bool check_finite) {
    const distill::cross_entropy_options options{.label_smoothing = label_smoothing,
                                                 .ignore_index = ignore_index,
                                                 .reduce = parse_reduction("cross_entropy", reduction),
                                                 .normalizer = normalizer,
                                                 .check_finite = check_finite};
    return as_triple(distill::autograd::cross_entropy(student, labels, options, defined_or_empty(row_mask)));
}

// softmax(x / T) or log_softmax(x / T) over the last dimension, into a fresh contiguous tensor.
at::Tensor softmax_forward(const char* name, const at::Tensor& x, double temperature, bool log) {
    distill::autograd::internal::check_student(name, x);
    at::Tensor out = at::empty(x.sizes(), x.options());
    const auto run = [&]<class T>() {
        at::Tensor keep;
        const distill::matrix_ref<const T> in = distill::autograd::internal::rows_of<T>(x, keep);
        const distill::matrix_ref<T> o{out.data_ptr<T>(), in.rows, in.cols};
        distill::autograd::internal::translating_errors([&] {
            if (log)
                distill::log_softmax(distill::autograd::at_parallel, in, o, temperature);
            else
                distill::softmax(distill::autograd::at_parallel, in, o, temperature);
        });
    };
    if (x.scalar_type() == at::kFloat)
        run.template operator()<float>();
    else
        run.template operator()<double>();
    return out;
}

// d softmax(x / T) / dx applied to g: y (g - sum y g) / T; d log_softmax(x / T) / dx: (g - y sum g) / T
// with y the softmax. Written with ATen operations, which are differentiable in turn.
struct softmax_function : torch::autograd::Function<softmax_function> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double temperature,
                              bool log) {
        at::Tensor y = softmax_forward(log ? "log_softmax" : "softmax", x, temperature, log);
        ctx->save_for_backward({y});
        ctx->saved_data["temperature"] = temperature;
        ctx->saved_data["log"] = log;
        return y;
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grad_outputs) {
        const at::Tensor y = ctx->get_saved_variables()[0];
        const double temperature = ctx->saved_data["temperature"].toDouble();
        const at::Tensor& g = grad_outputs[0];
        const at::Tensor grad_x = ctx->saved_data["log"].toBool()
                                      ? (g - y.exp() * g.sum(-1, /*keepdim=*/true)) / temperature
                                      : y * (g - (g * y).sum(-1, /*keepdim=*/true)) / temperature;
        return {grad_x, at::Tensor(), at::Tensor()};
    }
};

at::Tensor softmax(const at::Tensor& x, double temperature) { return softmax_function::apply(x, temperature, false); }
at::Tensor log_softmax(const at::Tensor& x, double temperature) {
    return softmax_function::apply(x, temperature, true);
}

// Whether at::parallel_for, the executor of every operator here, can use libtorch's threads in this
// build (this file compiled with -fopenmp under libtorch's OpenMP backend).
bool at_parallel_for_is_parallel() { return distill::autograd::at_parallel_for_is_parallel; }

}  // namespace

// A kernel registered with m.def(schema, function) serves every dispatch key (CompositeImplicitAutograd):
// autograd sees the Functions above, which keep each gradient.
TORCH_LIBRARY(distill, m) {
    m.def("kd_loss(Tensor student, Tensor teacher, Tensor? labels, Tensor? row_mask, float temperature, float alpha, "
          "str divergence, float beta, float skew, float target_weight, float non_target_weight, str reduction, "
          "float normalizer, int ignore_index, float label_smoothing, str teacher_input, bool scale_by_t_squared, "
          "bool check_finite) -> (Tensor loss, Tensor soft, Tensor hard)",
          &kd_loss);
    m.def("divergence_loss(Tensor student, Tensor teacher, Tensor? row_mask, float temperature, str divergence, "
          "float beta, float skew, str reduction, float normalizer, str teacher_input, bool scale_by_t_squared, "
          "bool check_finite) -> (Tensor loss, Tensor soft, Tensor hard)",
          &divergence_loss);
    m.def("cross_entropy(Tensor student, Tensor labels, Tensor? row_mask, str reduction, float normalizer, "
          "int ignore_index, float label_smoothing, bool check_finite) -> (Tensor loss, Tensor soft, Tensor hard)",
          &cross_entropy);
    m.def("softmax(Tensor x, float temperature) -> Tensor", &softmax);
    m.def("log_softmax(Tensor x, float temperature) -> Tensor", &log_softmax);
    m.def("at_parallel_for_is_parallel() -> bool", &at_parallel_for_is_parallel);
}
