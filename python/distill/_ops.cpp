// PyTorch operators over distill's kernels: torch.ops.distill.kd_loss, top_k_kd_loss, divergence_loss,
// cross_entropy, softmax and log_softmax. The losses are <distill/torch.hpp>'s autograd functions, so each operator
// returns (loss, soft, hard) with the student's gradient already wired into autograd; this file only
// turns the Python package's strings into the option structs. Built and loaded by python/distill
// (torch.utils.cpp_extension, no pybind11 module: the operators live in the dispatcher).
//
// The vocabulary-parallel loss (sharded_loss) is here too, as plain operators without autograd: its
// three phases, with the records as float64 tensors ([N, 13] statistics, [N, 4] sums) so that any
// collective can carry them, and the library's merges of records. python/distill runs the phases
// around torch.distributed and wraps them for autograd.
#include <distill/shard_records.hpp>
#include <distill/sharded.hpp>
#include <distill/softmax.hpp>
#include <distill/torch.hpp>

#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

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

// kd_loss's options (also top_k_kd_loss's and the sharded operators'), with `op` naming the operator in messages.
distill::distillation_options distillation_options_of(const char* op, double temperature, double alpha,
                                                      const std::string& divergence, double beta, double skew,
                                                      double target_weight, double non_target_weight,
                                                      const std::string& reduction, double normalizer,
                                                      std::int64_t ignore_index, double label_smoothing,
                                                      const std::string& teacher_input, bool scale_by_t_squared,
                                                      bool check_finite) {
    return {.temperature = temperature,
            .alpha = alpha,
            .scale_by_t_squared = scale_by_t_squared,
            .label_smoothing = label_smoothing,
            .ignore_index = ignore_index,
            .reduce = parse_reduction(op, reduction),
            .normalizer = normalizer,
            .check_finite = check_finite,
            .divergence = parse_divergence(op, divergence, beta, skew, target_weight, non_target_weight),
            .teacher = parse_teacher_input(op, teacher_input)};
}

loss_triple kd_loss(const at::Tensor& student, const at::Tensor& teacher, const c10::optional<at::Tensor>& labels,
                    const c10::optional<at::Tensor>& row_mask, double temperature, double alpha,
                    const std::string& divergence, double beta, double skew, double target_weight,
                    double non_target_weight, const std::string& reduction, double normalizer,
                    std::int64_t ignore_index, double label_smoothing, const std::string& teacher_input,
                    bool scale_by_t_squared, bool check_finite) {
    const distill::distillation_options options = distillation_options_of(
        "kd_loss", temperature, alpha, divergence, beta, skew, target_weight, non_target_weight, reduction, normalizer,
        ignore_index, label_smoothing, teacher_input, scale_by_t_squared, check_finite);
    return as_triple(distill::autograd::distillation_loss(student, teacher, defined_or_empty(labels), options,
                                                          defined_or_empty(row_mask)));
}

distill::top_k_mode parse_top_k_mode(const std::string& name) {
    if (name == "tail_bucket") return distill::top_k_mode::tail_bucket;
    if (name == "renormalize") return distill::top_k_mode::renormalize;
    C10_THROW_ERROR(ValueError, "top_k_kd_loss: mode must be 'tail_bucket' or 'renormalize', got '" + name + "'");
}

loss_triple top_k_kd_loss(const at::Tensor& student, const at::Tensor& indices, const at::Tensor& values,
                          const c10::optional<at::Tensor>& labels, const c10::optional<at::Tensor>& row_mask,
                          double temperature, double alpha, const std::string& divergence, double beta, double skew,
                          const std::string& reduction, double normalizer, std::int64_t ignore_index,
                          double label_smoothing, const std::string& teacher_input, bool scale_by_t_squared,
                          bool check_finite, const std::string& mode, std::int64_t padding_index,
                          double mass_tolerance) {
    const distill::distillation_options options =
        distillation_options_of("top_k_kd_loss", temperature, alpha, divergence, beta, skew, 1.0, 8.0, reduction,
                                normalizer, ignore_index, label_smoothing, teacher_input, scale_by_t_squared, check_finite);
    const distill::top_k_options top{
        .mode = parse_top_k_mode(mode), .padding_index = padding_index, .mass_tolerance = mass_tolerance};
    return as_triple(distill::autograd::top_k_distillation_loss(student, indices, values, defined_or_empty(labels),
                                                                options, top, defined_or_empty(row_mask)));
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

// ---- the vocabulary-parallel loss: sharded_loss's phases and the record merges ----

constexpr std::int64_t statistics_width = sizeof(distill::row_statistics) / sizeof(double);  // 13
constexpr std::int64_t sums_width = sizeof(distill::row_sums) / sizeof(double);              // 4

// Every sharded operator takes the same trailing arguments: the shard, then either kd_loss's options
// (labelled = true: distillation_options) or divergence_loss's (labelled = false: divergence_options,
// whose loss takes no labels; alpha, the decoupled-KD weights, ignore_index and label smoothing are
// then not read). One macro for the C++ parameters, one string for the schema, so that the four
// operators cannot drift apart.
#define DISTILL_SHARD_PARAMETERS                                                                                     \
    std::int64_t first_column, std::int64_t vocabulary, bool labelled, double temperature, double alpha,             \
        const std::string& divergence, double beta, double skew, double target_weight, double non_target_weight,    \
        const std::string& reduction, double normalizer, std::int64_t ignore_index, double label_smoothing,          \
        const std::string& teacher_input, bool scale_by_t_squared, bool check_finite
#define DISTILL_SHARD_ARGUMENTS                                                                                      \
    first_column, vocabulary, labelled, temperature, alpha, divergence, beta, skew, target_weight, non_target_weight, \
        reduction, normalizer, ignore_index, label_smoothing, teacher_input, scale_by_t_squared, check_finite
#define DISTILL_SHARD_SCHEMA                                                                                  \
    "int first_column, int vocabulary, bool labelled, float temperature, float alpha, str divergence, "       \
    "float beta, float skew, float target_weight, float non_target_weight, str reduction, float normalizer, " \
    "int ignore_index, float label_smoothing, str teacher_input, bool scale_by_t_squared, bool check_finite"

struct shard_spec {
    std::variant<distill::distillation_options, distill::divergence_options> options;
    distill::vocabulary_shard shard;
    bool labelled = true;
};

shard_spec shard_spec_of(DISTILL_SHARD_PARAMETERS) {
    shard_spec spec;
    spec.shard = {.first_column = first_column, .vocabulary = vocabulary};
    spec.labelled = labelled;
    if (labelled)
        spec.options = distillation_options_of("sharded_loss", temperature, alpha, divergence, beta, skew,
                                               target_weight, non_target_weight, reduction, normalizer, ignore_index,
                                               label_smoothing, teacher_input, scale_by_t_squared, check_finite);
    else
        spec.options = distill::divergence_options{
            .divergence = parse_divergence("sharded_loss", divergence, beta, skew, 1.0, 8.0),
            .temperature = temperature,
            .scale_by_t_squared = scale_by_t_squared,
            .reduce = parse_reduction("sharded_loss", reduction),
            .normalizer = normalizer,
            .check_finite = check_finite,
            .teacher = parse_teacher_input("sharded_loss", teacher_input)};
    return spec;
}

// The sharded_loss<T> of a spec (its constructor validates the options, throwing std::invalid_argument).
template <class T>
distill::sharded_loss<T> loss_of(const shard_spec& spec) {
    return std::visit([&](const auto& options) { return distill::sharded_loss<T>(options, spec.shard); },
                      spec.options);
}

// Records as a float64 tensor [..., width] on the CPU -> a vector of records (a copy: a few hundred
// bytes a row, and no question of aliasing doubles as structs).
template <class Record>
std::vector<Record> records_of(const char* name, const char* what, const at::Tensor& t) {
    constexpr std::int64_t width = sizeof(Record) / sizeof(double);
    TORCH_CHECK_VALUE(t.defined(), name, ": ", what, " are an undefined tensor");
    TORCH_CHECK_VALUE(t.device().is_cpu(), name, ": distill runs on the CPU, got ", what, " on ", t.device());
    TORCH_CHECK_TYPE(t.scalar_type() == at::kDouble, name, ": ", what,
                     " must be float64 (every field is a double), got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.dim() >= 1 && t.size(-1) == width, name, ": ", what, " must be [..., ", width,
                      "] (one record of ", width, " doubles per row), got ", t.sizes());
    const at::Tensor dense = t.contiguous();
    std::vector<Record> out(static_cast<std::size_t>(dense.numel() / width));
    if (!out.empty()) std::memcpy(out.data(), dense.data_ptr<double>(), out.size() * sizeof(Record));
    return out;
}

// Records -> a float64 tensor [rows, width] (or `shape`).
template <class Record>
at::Tensor tensor_of(const std::vector<Record>& records, at::IntArrayRef shape) {
    at::Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kDouble));
    if (!records.empty()) std::memcpy(out.data_ptr<double>(), records.data(), records.size() * sizeof(Record));
    return out;
}

// A phase's inputs as views: student, teacher, labels (global class indices; none for an unlabelled
// spec, which the library would refuse) and the row mask, held alive by the tensors kept here.
template <class T>
struct shard_inputs {
    at::Tensor student_storage, teacher_storage, label_storage, mask_storage;
    distill::matrix_ref<const T> student, teacher;
    std::span<const std::int64_t> labels;
    std::span<const std::uint8_t> mask;
    std::int64_t rows = 0;
};

void check_shard_tensors(const shard_spec& spec, const at::Tensor& student, const at::Tensor& teacher) {
    distill::autograd::internal::check_student("sharded_loss", student);
    const distill::teacher_input kind =
        std::visit([](const auto& options) { return options.teacher; }, spec.options);
    distill::autograd::internal::check_teacher("sharded_loss", student, teacher, kind);
}

template <class T>
void view_inputs(const shard_spec& spec, const at::Tensor& student, const at::Tensor& teacher,
                 const c10::optional<at::Tensor>& labels, const c10::optional<at::Tensor>& row_mask,
                 shard_inputs<T>& in) {
    namespace internal = distill::autograd::internal;
    in.student = internal::rows_of<T>(student, in.student_storage);
    in.teacher = internal::rows_of<T>(teacher, in.teacher_storage);
    if (spec.labelled) {
        in.labels = internal::labels_of("sharded_loss", defined_or_empty(labels), student, in.label_storage);
    } else {
        TORCH_CHECK_VALUE(!labels.has_value() || !labels->defined(),
                          "sharded_loss: a loss built from divergence_loss's options takes no labels");
    }
    in.mask = internal::mask_of("sharded_loss", defined_or_empty(row_mask), student, in.mask_storage);
    in.rows = internal::row_count(student);
}

// Calls fn.template operator()<T>() for the student's dtype (float32 or float64).
template <class Fn>
decltype(auto) for_dtype(at::ScalarType dtype, Fn&& fn) {
    if (dtype == at::kFloat) return fn.template operator()<float>();
    TORCH_CHECK_TYPE(dtype == at::kDouble, "sharded_loss: logits must be float32 or float64, got ", dtype);
    return fn.template operator()<double>();
}

// 1. This rank's columns of each row -> one statistics record per row, float64 [N, 13].
at::Tensor sharded_statistics(const at::Tensor& student, const at::Tensor& teacher,
                              const c10::optional<at::Tensor>& labels, const c10::optional<at::Tensor>& row_mask,
                              DISTILL_SHARD_PARAMETERS) {
    const shard_spec spec = shard_spec_of(DISTILL_SHARD_ARGUMENTS);
    check_shard_tensors(spec, student, teacher);
    return for_dtype(student.scalar_type(), [&]<class T>() {
        shard_inputs<T> in;
        view_inputs(spec, student, teacher, labels, row_mask, in);
        std::vector<distill::row_statistics> local(static_cast<std::size_t>(in.rows));
        distill::autograd::internal::translating_errors([&] {
            loss_of<T>(spec).statistics(distill::autograd::at_parallel, in.student, in.teacher, in.labels,
                                        std::span(local), distill::per_row{.mask = in.mask});
        });
        return tensor_of(local, {in.rows, statistics_width});
    });
}

// Whether the combined records call for phase 2: the same answer on every rank holding them.
bool sharded_needs_sums(const at::Tensor& combined, at::ScalarType dtype, DISTILL_SHARD_PARAMETERS) {
    const shard_spec spec = shard_spec_of(DISTILL_SHARD_ARGUMENTS);
    const auto records = records_of<distill::row_statistics>("sharded_loss", "the combined statistics", combined);
    return for_dtype(dtype, [&]<class T>() {
        return distill::autograd::internal::translating_errors([&] {
            return loss_of<T>(spec).needs_sums(std::span<const distill::row_statistics>(records));
        });
    });
}

// 2. This rank's sums against the combined statistics, float64 [N, 4], to be added across ranks.
at::Tensor sharded_sums(const at::Tensor& student, const at::Tensor& teacher, const c10::optional<at::Tensor>& labels,
                        const c10::optional<at::Tensor>& row_mask, const at::Tensor& combined,
                        DISTILL_SHARD_PARAMETERS) {
    const shard_spec spec = shard_spec_of(DISTILL_SHARD_ARGUMENTS);
    check_shard_tensors(spec, student, teacher);
    const auto records = records_of<distill::row_statistics>("sharded_loss", "the combined statistics", combined);
    return for_dtype(student.scalar_type(), [&]<class T>() {
        shard_inputs<T> in;
        view_inputs(spec, student, teacher, labels, row_mask, in);
        std::vector<distill::row_sums> local(static_cast<std::size_t>(in.rows));
        distill::autograd::internal::translating_errors([&] {
            loss_of<T>(spec).sums(distill::autograd::at_parallel, in.student, in.teacher, in.labels,
                                  std::span<const distill::row_statistics>(records), std::span(local),
                                  distill::per_row{.mask = in.mask});
        });
        return tensor_of(local, {in.rows, sums_width});
    });
}

// 3. The whole loss (the same bits on every rank) as (loss, soft, hard) in the student's dtype, loss
// [N] under reduction 'none'; and, with with_grad, this rank's columns of dL/ds (else None).
std::tuple<at::Tensor, at::Tensor, at::Tensor, c10::optional<at::Tensor>> sharded_loss_and_grad(
    const at::Tensor& student, const at::Tensor& teacher, const c10::optional<at::Tensor>& labels,
    const c10::optional<at::Tensor>& row_mask, const at::Tensor& combined,
    const c10::optional<at::Tensor>& combined_sums, bool with_grad, DISTILL_SHARD_PARAMETERS) {
    const shard_spec spec = shard_spec_of(DISTILL_SHARD_ARGUMENTS);
    check_shard_tensors(spec, student, teacher);
    const auto records = records_of<distill::row_statistics>("sharded_loss", "the combined statistics", combined);
    const bool has_sums = combined_sums.has_value() && combined_sums->defined();
    const auto sums = has_sums ? records_of<distill::row_sums>("sharded_loss", "the combined sums", *combined_sums)
                               : std::vector<distill::row_sums>{};
    const bool per_row_losses = reduction == "none";
    return for_dtype(student.scalar_type(), [&]<class T>() {
        shard_inputs<T> in;
        view_inputs(spec, student, teacher, labels, row_mask, in);
        at::Tensor losses = per_row_losses ? at::empty({in.rows}, student.options().dtype(at::kDouble)) : at::Tensor();
        const distill::per_row rows{
            .mask = in.mask,
            .losses = per_row_losses ? std::span<double>(losses.data_ptr<double>(), static_cast<std::size_t>(in.rows))
                                     : std::span<double>{}};
        at::Tensor grad = with_grad ? at::empty(student.sizes(), student.options()) : at::Tensor();
        const std::span<const distill::row_statistics> stats(records);
        const std::span<const distill::row_sums> sums_span(sums);
        const distill::loss_value v = distill::autograd::internal::translating_errors([&] {
            const distill::sharded_loss<T> loss = loss_of<T>(spec);
            if (!with_grad) return loss.loss(in.student, in.teacher, in.labels, stats, sums_span, rows);
            const distill::matrix_ref<T> g{grad.numel() > 0 ? grad.data_ptr<T>() : nullptr, in.student.rows,
                                           in.student.cols};
            return loss.loss_and_grad(distill::autograd::at_parallel, in.student, in.teacher, in.labels, stats,
                                      sums_span, g, rows);
        });
        const auto scalar = [&](double x) { return at::scalar_tensor(x, student.options()); };
        return std::tuple<at::Tensor, at::Tensor, at::Tensor, c10::optional<at::Tensor>>{
            per_row_losses ? losses.to(student.scalar_type()) : scalar(v.total), scalar(v.soft), scalar(v.hard),
            with_grad ? c10::optional<at::Tensor>(grad) : c10::nullopt};
    });
}

// merge_row_statistics record by record: a and b float64 [..., 13] of one shape.
at::Tensor merge_row_statistics(const at::Tensor& a, const at::Tensor& b) {
    TORCH_CHECK_VALUE(a.sizes() == b.sizes(), "merge_row_statistics: the records are ", a.sizes(), " and ", b.sizes(),
                      "; they must have one shape");
    auto left = records_of<distill::row_statistics>("merge_row_statistics", "statistics records", a);
    const auto right = records_of<distill::row_statistics>("merge_row_statistics", "statistics records", b);
    for (std::size_t i = 0; i < left.size(); ++i) left[i] = distill::merge_row_statistics(left[i], right[i]);
    return tensor_of(left, a.sizes());
}

// merge_gathered_statistics: every rank's records, float64 [R, N, 13] (rank-major, as all_gather
// lists them) -> [N, 13], each row's R records folded left in rank order.
at::Tensor merge_gathered_statistics(const at::Tensor& gathered) {
    TORCH_CHECK_VALUE(gathered.dim() == 3 && gathered.size(0) >= 1,
                      "merge_gathered_statistics: the records must be [R, N, ", statistics_width,
                      "] with R >= 1 (one block per rank), got ", gathered.sizes());
    const auto all = records_of<distill::row_statistics>("merge_gathered_statistics", "the gathered records", gathered);
    std::vector<distill::row_statistics> combined(static_cast<std::size_t>(gathered.size(1)));
    distill::autograd::internal::translating_errors(
        [&] { distill::detail::throw_if_error(distill::merge_gathered_statistics(all, combined)); });
    return tensor_of(combined, {gathered.size(1), statistics_width});
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
    m.def("top_k_kd_loss(Tensor student, Tensor indices, Tensor values, Tensor? labels, Tensor? row_mask, "
          "float temperature, float alpha, str divergence, float beta, float skew, str reduction, float normalizer, "
          "int ignore_index, float label_smoothing, str teacher_input, bool scale_by_t_squared, bool check_finite, "
          "str mode, int padding_index, float mass_tolerance) -> (Tensor loss, Tensor soft, Tensor hard)",
          &top_k_kd_loss);
    m.def("cross_entropy(Tensor student, Tensor labels, Tensor? row_mask, str reduction, float normalizer, "
          "int ignore_index, float label_smoothing, bool check_finite) -> (Tensor loss, Tensor soft, Tensor hard)",
          &cross_entropy);
    m.def("softmax(Tensor x, float temperature) -> Tensor", &softmax);
    m.def("log_softmax(Tensor x, float temperature) -> Tensor", &log_softmax);
    m.def("at_parallel_for_is_parallel() -> bool", &at_parallel_for_is_parallel);
    m.def("sharded_statistics(Tensor student, Tensor teacher, Tensor? labels, Tensor? row_mask, " DISTILL_SHARD_SCHEMA
          ") -> Tensor",
          &sharded_statistics);
    m.def("sharded_needs_sums(Tensor combined, ScalarType dtype, " DISTILL_SHARD_SCHEMA ") -> bool",
          &sharded_needs_sums);
    m.def("sharded_sums(Tensor student, Tensor teacher, Tensor? labels, Tensor? row_mask, Tensor combined, "
          DISTILL_SHARD_SCHEMA ") -> Tensor",
          &sharded_sums);
    m.def("sharded_loss_and_grad(Tensor student, Tensor teacher, Tensor? labels, Tensor? row_mask, Tensor combined, "
          "Tensor? combined_sums, bool with_grad, " DISTILL_SHARD_SCHEMA
          ") -> (Tensor loss, Tensor soft, Tensor hard, Tensor? grad)",
          &sharded_loss_and_grad);
    m.def("merge_row_statistics(Tensor a, Tensor b) -> Tensor", &merge_row_statistics);
    m.def("merge_gathered_statistics(Tensor gathered) -> Tensor", &merge_gathered_statistics);
}

#undef DISTILL_SHARD_PARAMETERS
#undef DISTILL_SHARD_ARGUMENTS
#undef DISTILL_SHARD_SCHEMA
