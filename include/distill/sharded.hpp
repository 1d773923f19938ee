// distill/sharded.hpp - the distillation losses over a vocabulary split across processes
// (vocabulary, or tensor, parallelism): each rank holds columns [c0, c0 + Vr) of every row of the
// student's and the teacher's logits, and writes the same columns of the gradient. No rank ever
// sees another rank's logits; the ranks exchange a fixed-size record per row (shard_records.hpp).
//
//     distill::sharded_loss<float> kd(options, {.first_column = c0, .vocabulary = V});
//     kd.statistics(student, teacher, labels, stats);           // 1. this rank's columns, one sweep
//     all-reduce `stats` with distill::merge_row_statistics       //    13 doubles a row
//     if (kd.needs_sums(stats)) {                               //    the same answer on every rank
//         kd.sums(student, teacher, labels, stats, sums);       // 2. one sweep, against the whole row
//         all-reduce `sums` with a plain sum                      //    4 doubles a row
//     }
//     distill::loss_value v = kd.loss_and_grad(student, teacher, labels, stats, sums, grad);  // 3.
//
// Forward KL (the default) takes one reduction: its value follows from the statistics, except for
// rows where it is too close to 0 to be trusted from them, where needs_sums asks for the second
// (the one-process kernel sums such a row's terms again too). Every other divergence takes two.
// `v` is the whole loss, not a share of it: every rank computes it from the same combined records,
// to the same bits, so no third reduction is needed. `grad` receives this rank's columns of dL/ds.
//
// The inputs are those of distillation_loss (or divergence_loss, which takes no labels: pass
// distill::no_labels), with the labels as indices into the whole vocabulary, the same on every rank,
// as are the row mask and the options. docs/distributed.md has the MPI program, docs/api.md the
// records field by field.
#pragma once

#include "detail/warnings_push.hpp"  // GCC 12 AVX-512 false positives; pairs with warnings_pop.hpp below

#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/evaluate.hpp"
#include "detail/shard.hpp"
#include "distillation_loss.hpp"
#include "divergence.hpp"
#include "divergence_loss.hpp"
#include "executor.hpp"
#include "reduction.hpp"
#include "shard_records.hpp"
#include "status.hpp"

namespace distill {

template <class Scalar>
class sharded_loss {
    static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                  "distill: sharded_loss is defined for float and double");

public:
    using scalar_type = Scalar;

    // alpha T^2 D(p, q) + (1 - alpha) CE(s, y), as distillation_loss.
    sharded_loss(const distillation_options& options, const vocabulary_shard& shard)
        : class_weights_(options.class_weights.begin(), options.class_weights.end()),
          config_(detail::distillation_config(options, "sharded_loss", class_weights_)),
          shard_(shard) {
        check_options_or_throw();
    }
    // T^2 D(p, q), as divergence_loss.
    sharded_loss(const divergence_options& options, const vocabulary_shard& shard)
        : config_(detail::divergence_config(options, "sharded_loss")), shard_(shard) {
        check_options_or_throw();
    }
    const vocabulary_shard& shard() const noexcept { return shard_; }

    // ---- 1. statistics: `local` receives one record per row (the empty record for rows that take
    // no part), to be merged across ranks into the combined records.
    template <executor Exec, class Student, class Teacher, class Labels, class Isa = detail::isa>
    status try_statistics(Exec&& exec, const Student& student, const Teacher& teacher, const Labels& labels,
                          std::span<row_statistics> local, per_row rows = {}) const noexcept {
        return with_call(student, teacher, labels, detail::absent{}, rows, [&](const auto& call) {
            return detail::shard_statistics<Isa>(exec, config_, shard_, call, local);
        });
    }
    template <class Student, class Teacher, class Labels, class Isa = detail::isa>
        requires(!executor<Student>)
    status try_statistics(const Student& student, const Teacher& teacher, const Labels& labels,
                          std::span<row_statistics> local, per_row rows = {}) const noexcept {
        return try_statistics<const sequential_executor&, Student, Teacher, Labels, Isa>(sequential, student, teacher,
                                                                                         labels, local, rows);
    }

    // Whether the call needs phase 2 for these combined records. It reads the records and the options
    // only, so every rank, holding the same combined records, gives the same answer.
    template <class Isa = detail::isa>
    bool needs_sums(std::span<const row_statistics> combined) const noexcept {
        return detail::shard_needs_sums<Isa, Scalar>(config_, combined);
    }

    // ---- 2. sums: `local` receives each row's sums over this rank's columns, relative to the
    // combined statistics, to be added across ranks.
    template <executor Exec, class Student, class Teacher, class Labels, class Isa = detail::isa>
    status try_sums(Exec&& exec, const Student& student, const Teacher& teacher, const Labels& labels,
                    std::span<const row_statistics> combined, std::span<row_sums> local,
                    per_row rows = {}) const noexcept {
        return with_call(student, teacher, labels, detail::absent{}, rows, [&](const auto& call) {
            return detail::shard_sums<Isa>(exec, config_, shard_, call, combined, local);
        });
    }
    template <class Student, class Teacher, class Labels, class Isa = detail::isa>
        requires(!executor<Student>)
    status try_sums(const Student& student, const Teacher& teacher, const Labels& labels,
                    std::span<const row_statistics> combined, std::span<row_sums> local,
                    per_row rows = {}) const noexcept {
        return try_sums<const sequential_executor&, Student, Teacher, Labels, Isa>(sequential, student, teacher,
                                                                                   labels, combined, local, rows);
    }

    // ---- 3. the loss (the whole loss, the same on every rank) and this rank's columns of the
    // gradient. `combined_sums` may be empty when needs_sums was false.
    template <class Student, class Teacher, class Labels, class Isa = detail::isa>
    status try_loss(const Student& student, const Teacher& teacher, const Labels& labels,
                    std::span<const row_statistics> combined, std::span<const row_sums> combined_sums,
                    loss_value& out, per_row rows = {}) const noexcept {
        out = {};
        return with_call(student, teacher, labels, detail::absent{}, rows, [&](const auto& call) {
            return detail::shard_finish<Isa>(sequential, config_, shard_, call, combined, combined_sums, out);
        });
    }
    template <executor Exec, class Student, class Teacher, class Labels, class Grad, class Isa = detail::isa>
    status try_loss_and_grad(Exec&& exec, const Student& student, const Teacher& teacher, const Labels& labels,
                             std::span<const row_statistics> combined, std::span<const row_sums> combined_sums,
                             Grad&& grad, loss_value& out, per_row rows = {}) const noexcept {
        out = {};
        return with_call(student, teacher, labels, std::forward<Grad>(grad), rows, [&](const auto& call) {
            return detail::shard_finish<Isa>(exec, config_, shard_, call, combined, combined_sums, out);
        });
    }
    template <class Student, class Teacher, class Labels, class Grad, class Isa = detail::isa>
        requires(!executor<Student>)
    status try_loss_and_grad(const Student& student, const Teacher& teacher, const Labels& labels,
                             std::span<const row_statistics> combined, std::span<const row_sums> combined_sums,
                             Grad&& grad, loss_value& out, per_row rows = {}) const noexcept {
        return try_loss_and_grad<const sequential_executor&, Student, Teacher, Labels, Grad, Isa>(
            sequential, student, teacher, labels, combined, combined_sums, std::forward<Grad>(grad), out, rows);
    }

#if defined(__cpp_exceptions)
    // ---- the throwing forms: std::invalid_argument / std::out_of_range with the status's message ----
    template <class... Args>
    void statistics(Args&&... args) const {
        detail::throw_if_error(try_statistics(std::forward<Args>(args)...));
    }
    template <class... Args>
    void sums(Args&&... args) const {
        detail::throw_if_error(try_sums(std::forward<Args>(args)...));
    }
    template <class Student, class Teacher, class Labels>
    loss_value loss(const Student& student, const Teacher& teacher, const Labels& labels,
                    std::span<const row_statistics> combined, std::span<const row_sums> combined_sums,
                    per_row rows = {}) const {
        loss_value v;
        detail::throw_if_error(try_loss(student, teacher, labels, combined, combined_sums, v, rows));
        return v;
    }
    template <executor Exec, class Student, class Teacher, class Labels, class Grad>
    loss_value loss_and_grad(Exec&& exec, const Student& student, const Teacher& teacher, const Labels& labels,
                             std::span<const row_statistics> combined, std::span<const row_sums> combined_sums,
                             Grad&& grad, per_row rows = {}) const {
        loss_value v;
        detail::throw_if_error(try_loss_and_grad(std::forward<Exec>(exec), student, teacher, labels, combined,
                                                 combined_sums, std::forward<Grad>(grad), v, rows));
        return v;
    }
    template <class Student, class Teacher, class Labels, class Grad>
        requires(!executor<Student>)
    loss_value loss_and_grad(const Student& student, const Teacher& teacher, const Labels& labels,
                             std::span<const row_statistics> combined, std::span<const row_sums> combined_sums,
                             Grad&& grad, per_row rows = {}) const {
        return loss_and_grad(sequential, student, teacher, labels, combined, combined_sums, std::forward<Grad>(grad),
                             rows);
    }
#endif

private:
    void check_options_or_throw() const {
#if defined(__cpp_exceptions)
        detail::throw_if_error(detail::check_options(config_));
#endif
    }

    // The caller's objects as views (refusing what cannot be read without a copy), then fn(call).
    template <class Student, class Teacher, class Labels, class Grad, class Fn>
    static status with_call(const Student& student, const Teacher& teacher, const Labels& labels, Grad&& grad,
                            per_row rows, Fn&& fn) noexcept {
        using label_type = typename detail::label_value<std::remove_cvref_t<Labels>>::type;
        detail::loss_call<Scalar, label_type> call;
        if (status s = detail::view_of<Scalar, false>(student, "student logits", call.student); !s) return s;
        if (status s = detail::view_of<Scalar, false>(teacher, "teacher logits", call.teacher); !s) return s;
        call.has_teacher = true;
        if (status s = detail::label_span(labels, call.labels); !s) return s;
        if constexpr (!detail::is_absent<Grad>) {
            if (status s = detail::view_of<Scalar, true>(grad, "gradient buffer", call.grad); !s) return s;
            call.has_grad = true;
        }
        call.rows = rows;
        return fn(call);
    }

    std::vector<Scalar> class_weights_;  // refused for now (detail/shard.hpp), but never dropped silently
    detail::loss_config config_;
    vocabulary_shard shard_;
};

}  // namespace distill

#include "detail/warnings_pop.hpp"
