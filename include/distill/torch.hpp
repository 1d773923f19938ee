// distill/torch.hpp - the loss functors as libtorch autograd functions (optional: needs libtorch).
//
// Not included by distill.hpp: only a consumer that links libtorch includes it. Each function takes
// the student's logits as a [..., V] tensor (float32 or float64, on the CPU), runs the functor's
// fused loss_and_grad once on the tensors' memory in forward, keeps the gradient, and hands it back
// in backward multiplied by the incoming gradient. The teacher gets no gradient (as if detached).
//
//     auto out = distill::autograd::distillation_loss(student, teacher, labels, {.temperature = 4, .alpha = 0.5});
//     out.loss.backward();        // out.soft and out.hard: the two parts, for logging
//
// The rows run on an executor, at::parallel_for by default: it runs in parallel only when this file
// is compiled with OpenMP (-fopenmp) under a libtorch built with its OpenMP backend, as Debian's is
// (at_parallel_for_is_parallel says which). Errors are c10::ValueError (invalid_argument) and
// c10::IndexError (a label out of range) with the library's message; Python sees ValueError and
// IndexError. docs/api.md, section "libtorch", has the contract.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cross_entropy.hpp"
#include "distillation_loss.hpp"
#include "divergence_loss.hpp"
#include "executor.hpp"
#include "kl_divergence.hpp"
#include "logits.hpp"
#include "reduction.hpp"
#include "top_k_distillation_loss.hpp"

namespace distill::autograd {

// at::parallel_for as an executor: libtorch's intra-op threads (torch::set_num_threads) run the
// library's pieces. Grain size 1: the library already cuts the rows into at most 64 coarse pieces.
struct at_parallel_executor {
    template <class Fn>
    void operator()(std::ptrdiff_t begin, std::ptrdiff_t end, Fn&& fn) const {
        at::parallel_for(begin, end, /*grain_size=*/1, [&](std::int64_t lo, std::int64_t hi) { fn(lo, hi); });
    }
};
inline constexpr at_parallel_executor at_parallel{};

// Whether at::parallel_for runs in parallel in this translation unit. at::parallel_for is an inline
// template: with libtorch's OpenMP backend its parallel region exists only when the unit that
// instantiates it is compiled with -fopenmp; without it, it silently runs on the calling thread.
#if defined(INTRA_OP_PARALLEL)
inline constexpr bool at_parallel_for_is_parallel = true;
#else
inline constexpr bool at_parallel_for_is_parallel = false;
#endif

// What every function returns.
struct loss_tensors {
    at::Tensor loss;  // differentiable in the student: 0-dim, or [N] (one loss per row) under reduction::none
    at::Tensor soft;  // 0-dim, not differentiable: loss_value::soft (under reduction::none, the sum over rows)
    at::Tensor hard;  // 0-dim, not differentiable: loss_value::hard
    std::int64_t rows_counted = 0;
};

namespace internal {

// The library's errors as libtorch's, with the same message: invalid_argument -> c10::ValueError,
// out_of_range -> c10::IndexError (both c10::Error; Python's ValueError and IndexError).
template <class F>
decltype(auto) translating_errors(F&& f) {
    try {
        return std::forward<F>(f)();
    } catch (const std::out_of_range& e) {
        C10_THROW_ERROR(IndexError, e.what());
    } catch (const std::invalid_argument& e) {
        C10_THROW_ERROR(ValueError, e.what());
    }
}

inline std::int64_t row_count(const at::Tensor& logits) {
    std::int64_t rows = 1;
    for (std::int64_t d = 0; d + 1 < logits.dim(); ++d) rows *= logits.size(d);
    return rows;
}

// A [..., V] tensor as a rows x V matrix over its own memory. Rows that are evenly spaced with
// contiguous classes (any contiguous tensor, a slice of the vocabulary) are read in place; anything
// else is copied into `keep` first.
template <class T>
matrix_ref<const T> rows_of(const at::Tensor& t, at::Tensor& keep) {
    const std::int64_t cols = t.size(-1), rows = row_count(t);
    if (rows == 0 || cols == 0) {
        keep = t;
        return {nullptr, rows, cols};  // the library reports 0 classes; an empty batch reads nothing
    }
    keep = t.reshape({rows, cols});  // a view whenever the leading dimensions collapse
    if ((cols > 1 && keep.stride(1) != 1) || (rows > 1 && keep.stride(0) < cols)) keep = keep.contiguous();
    return {keep.data_ptr<T>(), rows, cols, rows > 1 ? keep.stride(0) : cols};
}

inline void check_student(const char* name, const at::Tensor& student) {
    TORCH_CHECK_VALUE(student.defined(), name, ": student logits are an undefined tensor");
    TORCH_CHECK_VALUE(student.dim() >= 1, name, ": student logits must be [..., classes], got a 0-dim tensor");
    TORCH_CHECK_VALUE(student.device().is_cpu(), name, ": distill runs on the CPU, got student logits on ",
                      student.device());
    TORCH_CHECK_VALUE(student.layout() == at::kStrided, name, ": student logits must be a dense (strided) tensor");
    TORCH_CHECK_TYPE(student.scalar_type() == at::kFloat || student.scalar_type() == at::kDouble, name,
                     ": student logits must be float32 or float64, got ", student.scalar_type());
}

inline void check_teacher(const char* name, const at::Tensor& student, const at::Tensor& teacher, teacher_input kind) {
    const char* what = kind == teacher_input::logits ? "teacher logits" : "teacher values";
    TORCH_CHECK_VALUE(teacher.defined(), name, ": ", what, " are an undefined tensor");
    TORCH_CHECK_VALUE(teacher.device().is_cpu(), name, ": distill runs on the CPU, got ", what, " on ",
                      teacher.device());
    TORCH_CHECK_VALUE(teacher.layout() == at::kStrided, name, ": ", what, " must be a dense (strided) tensor");
    TORCH_CHECK_TYPE(teacher.scalar_type() == student.scalar_type(), name, ": ", what,
                     " must have the student's dtype (", student.scalar_type(), "), got ", teacher.scalar_type());
    TORCH_CHECK_VALUE(teacher.sizes() == student.sizes(), name, ": ", what, " are ", teacher.sizes(),
                      " but student logits are ", student.sizes(), "; they must match");
}

// Labels and row masks have one entry per row: the student's leading shape, or flat [N].
inline void check_per_row(const char* name, const char* what, const at::Tensor& t, const at::Tensor& student) {
    const auto leading = student.sizes().slice(0, static_cast<std::size_t>(student.dim() - 1));
    const std::int64_t rows = row_count(student);
    const bool flat = t.dim() == 1 && t.size(0) == rows;
    if (!(t.sizes() == leading || flat)) {
        const std::string shapes = leading.size() == 1 ? c10::str(leading) : c10::str(leading, " or [", rows, "]");
        C10_THROW_ERROR(ValueError, c10::str(name, ": ", what, " are ", t.sizes(), " but student logits are ",
                                             student.sizes(), "; they need one entry per row: shape ", shapes));
    }
    TORCH_CHECK_VALUE(t.device().is_cpu(), name, ": distill runs on the CPU, got ", what, " on ", t.device());
}

inline std::span<const std::int64_t> labels_of(const char* name, const at::Tensor& labels, const at::Tensor& student,
                                               at::Tensor& keep) {
    if (!labels.defined()) return {};  // no labels: the library says whether that is allowed
    TORCH_CHECK_TYPE(labels.scalar_type() == at::kLong, name, ": labels must be int64, got ", labels.scalar_type());
    check_per_row(name, "labels", labels, student);
    keep = labels.contiguous();
    return {keep.data_ptr<std::int64_t>(), static_cast<std::size_t>(keep.numel())};
}

inline std::span<const std::uint8_t> mask_of(const char* name, const at::Tensor& mask, const at::Tensor& student,
                                             at::Tensor& keep) {
    if (!mask.defined()) return {};  // every row counts
    TORCH_CHECK_TYPE(mask.scalar_type() == at::kBool || mask.scalar_type() == at::kByte, name,
                     ": the row mask must be bool or uint8, got ", mask.scalar_type());
    check_per_row(name, "row mask entries", mask, student);
    keep = mask.contiguous();  // a bool is one byte holding 0 or 1
    return {static_cast<const std::uint8_t*>(keep.data_ptr()), static_cast<std::size_t>(keep.numel())};
}

// One call's outputs before autograd sees them.
struct computed {
    at::Tensor loss, soft, hard;
    std::int64_t rows_counted = 0;
};

// The Function behind every loss: forward runs `compute` (the fused call, which fills the gradient
// buffer), backward scales the kept gradient. Only the student is an autograd input. One class for
// every loss and dtype (the call is type-erased): autograd shows it as fused_loss_function.
struct fused_loss_function : ::torch::autograd::Function<fused_loss_function> {
    static ::torch::autograd::variable_list forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& student,
                                                    const std::function<computed(at::Tensor*)>& compute,
                                                    std::int64_t* rows_counted) {
        at::Tensor grad = at::empty(student.sizes(), student.options());  // contiguous, in the student's shape
        computed out = compute(&grad);
        *rows_counted = out.rows_counted;
        // The fused call already produced dLoss/dstudent: keep it instead of the inputs.
        ctx->save_for_backward({grad});
        ctx->mark_non_differentiable({out.soft, out.hard});
        return {out.loss, out.soft, out.hard};
    }

    static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                     ::torch::autograd::variable_list grad_outputs) {
        const at::Tensor grad = ctx->get_saved_variables()[0];
        const at::Tensor& incoming = grad_outputs[0];  // zeros when the loss was not used
        if (incoming.dim() == 0) {
            // A scalar loss: the incoming gradient is one factor, 1 for a plain loss.backward(). Then the
            // kept gradient is handed over as it is instead of allocating an N x V product.
            if (incoming.item<double>() == 1.0) return {grad, at::Tensor(), at::Tensor()};
            return {grad * incoming, at::Tensor(), at::Tensor()};
        }
        // reduction::none: row i's gradient is dL_i/ds_i, scaled by the incoming gradient's entry i.
        std::vector<std::int64_t> per_row_shape = grad.sizes().vec();
        per_row_shape.back() = 1;
        return {grad * incoming.reshape(per_row_shape), at::Tensor(), at::Tensor()};
    }
};

// Runs `Loss<T>` with `options` on the prepared views: through the autograd Function when the
// student needs a gradient, as a plain loss() call otherwise.
// A top-k teacher's indices (int64 or int32) and values, [..., k] each with the student's leading shape.
struct top_k_tensors {
    const at::Tensor& indices;
    const at::Tensor& values;
    top_k_options options;
};

inline void check_top_k(const char* name, const at::Tensor& student, const top_k_tensors& top) {
    const auto leading = student.sizes().slice(0, static_cast<std::size_t>(student.dim() - 1));
    for (const at::Tensor* t : {&top.indices, &top.values}) {
        const char* what = t == &top.indices ? "teacher indices" : "teacher values";
        TORCH_CHECK_VALUE(t->defined() && t->dim() == student.dim() && t->sizes().slice(0, leading.size()) == leading,
                          name, ": ", what, " must be [..., k] with the student's leading shape ", leading, ", got ",
                          t->defined() ? c10::str(t->sizes()) : std::string("an undefined tensor"));
        TORCH_CHECK_VALUE(t->device().is_cpu(), name, ": distill runs on the CPU, got ", what, " on ", t->device());
    }
    TORCH_CHECK_TYPE(top.indices.scalar_type() == at::kLong || top.indices.scalar_type() == at::kInt, name,
                     ": teacher indices must be int64 or int32, got ", top.indices.scalar_type());
    TORCH_CHECK_TYPE(top.values.scalar_type() == student.scalar_type(), name,
                     ": teacher values must have the student's dtype (", student.scalar_type(), "), got ",
                     top.values.scalar_type());
}

template <template <class> class Loss, class Options, class Exec>
loss_tensors run(const char* name, const Options& options, Exec&& exec, const at::Tensor& student,
                 const at::Tensor* teacher, const at::Tensor* labels, const at::Tensor& mask,
                 const top_k_tensors* top = nullptr) {
    check_student(name, student);
    if (top != nullptr) check_top_k(name, student, *top);
    if (teacher != nullptr) {
        teacher_input kind = teacher_input::logits;
        if constexpr (requires { options.teacher; }) kind = options.teacher;
        check_teacher(name, student, *teacher, kind);
    }
    at::Tensor label_storage, mask_storage;
    const std::span<const std::int64_t> label_span =
        labels != nullptr ? labels_of(name, *labels, student, label_storage) : std::span<const std::int64_t>{};
    const std::span<const std::uint8_t> mask_span = mask_of(name, mask, student, mask_storage);
    const std::int64_t rows = row_count(student);
    const bool per_row_losses = options.reduce == reduction::none;

    auto compute_as = [&]<class T>(at::Tensor* grad) -> computed {
        at::Tensor student_storage, teacher_storage;
        const matrix_ref<const T> s = rows_of<T>(student, student_storage);
        const matrix_ref<const T> t =
            teacher != nullptr ? rows_of<T>(*teacher, teacher_storage) : matrix_ref<const T>{};
        at::Tensor losses = per_row_losses ? at::empty({rows}, student.options().dtype(at::kDouble)) : at::Tensor();
        const std::span<double> loss_span =
            per_row_losses ? std::span<double>(losses.data_ptr<double>(), static_cast<std::size_t>(rows))
                           : std::span<double>{};
        const per_row rows_io{mask_span, loss_span};
        const loss_value v = translating_errors([&] {
            if constexpr (std::is_same_v<Loss<T>, distill::top_k_distillation_loss<T>>) {
                at::Tensor index_storage, value_storage;
                const matrix_ref<const T> values = rows_of<T>(top->values, value_storage);
                const Loss<T> loss(options, top->options);
                const auto with_indices = [&]<class I>() {
                    const matrix_ref<const I> indices = rows_of<I>(top->indices, index_storage);
                    if (grad != nullptr)
                        return loss.loss_and_grad(exec, s, top_k(indices, values), label_span,
                                                  matrix_ref<T>{grad->data_ptr<T>(), s.rows, s.cols}, rows_io);
                    return loss.loss(exec, s, top_k(indices, values), label_span, rows_io);
                };
                return top->indices.scalar_type() == at::kLong ? with_indices.template operator()<std::int64_t>()
                                                               : with_indices.template operator()<std::int32_t>();
            } else {
                const Loss<T> loss(options);  // validates the options
                if (grad != nullptr) {
                    const matrix_ref<T> g{grad->data_ptr<T>(), s.rows, s.cols};
                    if constexpr (Loss<T>::input_count == 3)
                        return loss.loss_and_grad(exec, s, t, label_span, g, rows_io);
                    else if constexpr (requires { options.label_smoothing; })  // cross_entropy
                        return loss.loss_and_grad(exec, s, label_span, g, rows_io);
                    else
                        return loss.loss_and_grad(exec, s, t, g, rows_io);
                }
                if constexpr (Loss<T>::input_count == 3)
                    return loss.loss(exec, s, t, label_span, rows_io);
                else if constexpr (requires { options.label_smoothing; })
                    return loss.loss(exec, s, label_span, rows_io);
                else
                    return loss.loss(exec, s, t, rows_io);
            }
        });
        const auto scalar = [&](double x) { return at::scalar_tensor(x, student.options()); };
        return {per_row_losses ? losses.to(student.scalar_type()) : scalar(v.total), scalar(v.soft), scalar(v.hard),
                v.rows_counted};
    };
    const std::function<computed(at::Tensor*)> compute = [&](at::Tensor* grad) -> computed {
        return student.scalar_type() == at::kFloat ? compute_as.template operator()<float>(grad)
                                                   : compute_as.template operator()<double>(grad);
    };

    if (!(at::GradMode::is_enabled() && student.requires_grad())) {
        computed out = compute(nullptr);  // no gradient wanted: loss() alone, no autograd node
        return {out.loss, out.soft, out.hard, out.rows_counted};
    }
    std::int64_t rows_counted = 0;
    ::torch::autograd::variable_list out = fused_loss_function::apply(student, compute, &rows_counted);
    return {out[0], out[1], out[2], rows_counted};
}

}  // namespace internal

// student, teacher: [..., V], the student's dtype (float32 or float64). labels: int64, one per row
// (the student's leading shape or flat [N]). row_mask: bool or uint8, one per row (0 = the row does
// not count), or undefined. The options are the functors' (docs/api.md).

// T^2 KL(softmax(t / T) || softmax(s / T)) per row.
template <class Exec = const at_parallel_executor&>
loss_tensors kl_divergence(const at::Tensor& student, const at::Tensor& teacher, const kl_options& options = {},
                           const at::Tensor& row_mask = {}, Exec&& exec = at_parallel) {
    return internal::run<distill::kl_divergence>("kl_divergence", options, exec, student, &teacher, nullptr, row_mask);
}

// T^2 D(p, q) per row, D any divergence of the family but decoupled_kd.
template <class Exec = const at_parallel_executor&>
loss_tensors divergence_loss(const at::Tensor& student, const at::Tensor& teacher,
                             const divergence_options& options = {}, const at::Tensor& row_mask = {},
                             Exec&& exec = at_parallel) {
    return internal::run<distill::divergence_loss>("divergence_loss", options, exec, student, &teacher, nullptr,
                                                   row_mask);
}

// Cross-entropy of softmax(s) against the labels, with label smoothing and ignore_index.
template <class Exec = const at_parallel_executor&>
loss_tensors cross_entropy(const at::Tensor& student, const at::Tensor& labels,
                           const cross_entropy_options& options = {}, const at::Tensor& row_mask = {},
                           Exec&& exec = at_parallel) {
    return internal::run<distill::cross_entropy>("cross_entropy", options, exec, student, nullptr, &labels, row_mask);
}

// alpha T^2 D(p, q) + (1 - alpha) CE(s, y) per row. An undefined `labels` is pure distillation
// (alpha must be 1).
template <class Exec = const at_parallel_executor&>
loss_tensors distillation_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& labels,
                               const distillation_options& options = {}, const at::Tensor& row_mask = {},
                               Exec&& exec = at_parallel) {
    return internal::run<distill::distillation_loss>("distillation_loss", options, exec, student, &teacher, &labels,
                                                     row_mask);
}

// alpha T^2 D(p, q) + (1 - alpha) CE(s, y) against a teacher kept as its top k classes per row
// (top_k_distillation_loss.hpp): indices int64 or int32 and values of the student's dtype, each
// [..., k] with the student's leading shape.
template <class Exec = const at_parallel_executor&>
loss_tensors top_k_distillation_loss(const at::Tensor& student, const at::Tensor& indices, const at::Tensor& values,
                                     const at::Tensor& labels, const distillation_options& options,
                                     const top_k_options& top = {}, const at::Tensor& row_mask = {},
                                     Exec&& exec = at_parallel) {
    const internal::top_k_tensors teacher{indices, values, top};
    return internal::run<distill::top_k_distillation_loss>("top_k_distillation_loss", options, exec, student, nullptr,
                                                           &labels, row_mask, &teacher);
}

}  // namespace distill::autograd
