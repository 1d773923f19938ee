// distill/detail/shard.hpp - the three phases of a vocabulary-parallel loss on one rank's columns
// (sharded.hpp is the API around them).
//
// The row kernels already run over a range of blocks and return statistics relative to their own
// maxima (the scheduler cuts long rows into segments that way). A shard is handed to them as a row of
// its own, of Vr columns, with three things of the whole row brought in from outside:
//   - the label's position, shard-local, or -1 where another rank holds it (no column matches);
//   - label smoothing's class count, row_terms::row_classes = the vocabulary (eps / C, not eps / Vr);
//   - the whole row's statistics (and the divergence's row scalars), combined by the caller, in place
//     of the shard's own for the sums and gradient sweeps.
// That is all the kernels needed: no column-range variant of them exists or is needed.
//
// Phases, each over the rows of the shard, cut into at most 64 pieces of whole rows (the executor
// runs pieces; rows are independent, so results do not depend on it):
//   1. statistics: sweep 1 of each row into its row_statistics record;
//   2. sums (when needed): sweep 2 against the combined statistics into its row_sums record;
//   3. finish: the loss from the combined records alone (the same on every rank), then the gradient
//      sweep of the shard's columns.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>

#include "../reduction.hpp"
#include "../shard_records.hpp"
#include "../status.hpp"
#include "backend.hpp"
#include "loss_call.hpp"
#include "row_statistics.hpp"
#include "schedule.hpp"
#include "validation.hpp"

namespace distill::detail {

template <class Isa, class T, class Label>
struct shard_plan {
    const loss_config* options = nullptr;
    const loss_call<T, Label>* call = nullptr;
    std::int64_t first_column = 0, vocabulary = 0;
    row_terms terms;
    loss_weights weights;
    std::int64_t counted = 0;
    std::ptrdiff_t piece_count = 0;
    std::ptrdiff_t blocks = 0;  // of the shard's rows
    // Decoupled KD's sums and gradient run on the reference kernels, in double: the one-process
    // kernels redo a row in double where its non-target mass underflows the kernel's type, a decision
    // a shard cannot take alone (it needs the whole row's sums, after the second reduction).
    bool double_precision_rows = false;

    std::ptrdiff_t columns() const noexcept { return call->student.cols; }
    bool counts(std::ptrdiff_t i) const noexcept { return row_counts(*call, options->ignore_index, i); }
    bool has_label(std::ptrdiff_t i) const noexcept { return !call->labels.empty() && counts(i); }
    std::int64_t label_of(std::ptrdiff_t i) const noexcept {
        return static_cast<std::int64_t>(call->labels[static_cast<std::size_t>(i)]);
    }
    // The label's column in this shard, or -1 where another rank holds it.
    std::int64_t local_label(std::ptrdiff_t i) const noexcept {
        if (!has_label(i)) return -1;
        const std::int64_t c = label_of(i) - first_column;
        return c >= 0 && c < columns() ? c : -1;
    }
    const T* student_row(std::ptrdiff_t i) const noexcept { return call->student.row(i); }
    const T* teacher_row(std::ptrdiff_t i) const noexcept { return call->teacher.row(i); }
    T* grad_row(std::ptrdiff_t i) const noexcept { return call->grad.row(i); }
    // Forward KL's value from the statistics alone (SIMD kernels only; the reference sums every divergence).
    bool statistics_first() const noexcept { return backend<Isa>::statistics_first(terms); }
};

// Validates one call of any phase and fills the plan. Only the statistics phase scans the values
// (check_finite): the later phases read the same logits.
template <class Isa, class T, class Label>
status make_shard_plan(const loss_config& o, const vocabulary_shard& shard, const loss_call<T, Label>& c,
                       bool scan_values, shard_plan<Isa, T, Label>& plan) noexcept {
    if (status s = check_options(o); !s) return s;
    if (!(shard.vocabulary >= 1) || shard.first_column < 0 || shard.first_column > shard.vocabulary ||
        c.student.cols > shard.vocabulary - shard.first_column)
        return status::error(errc::invalid_argument,
                             "%s: the shard's %td columns from first_column %lld must lie within the vocabulary "
                             "[0, %lld) (vocabulary_shard{.first_column = %lld, .vocabulary = %lld})",
                             o.loss_name, c.student.cols, static_cast<long long>(shard.first_column),
                             static_cast<long long>(shard.vocabulary), static_cast<long long>(shard.first_column),
                             static_cast<long long>(shard.vocabulary));
    if (shard.vocabulary > (std::int64_t{1} << 53))
        return status::error(errc::invalid_argument,
                             "%s: the vocabulary (%lld classes) must be at most 2^53, the counts a record's doubles "
                             "hold exactly",
                             o.loss_name, static_cast<long long>(shard.vocabulary));
    if (!o.hard_term && !c.labels.empty())
        return status::error(errc::invalid_argument,
                             "%s: built from divergence_options, which take no labels; pass distill::no_labels",
                             o.loss_name);
    if (!c.rows.weights.empty() || o.class_weights)
        return status::error(errc::invalid_argument,
                             "%s: sharded_loss takes no row weights and no class weights yet; use a mask, or the "
                             "one-process loss",
                             o.loss_name);
    if (status s = check_shapes(o, c, false); !s) return s;
    double weight_sum = 0, hard_weight_sum = 0;
    if (status s = count_rows(o, c, shard.vocabulary, plan.counted, weight_sum, hard_weight_sum); !s) return s;
    row_terms& k = plan.terms;
    const bool soft = soft_active(o) && c.has_teacher, hard = hard_active(o) && !c.labels.empty();
    if (scan_values && o.check_finite) {
        if (status s = check_finite(o.loss_name, "student logits", c.student); !s) return s;
        if (soft)
            if (status s = check_finite(o.loss_name,
                                        o.teacher == teacher_input::logits ? "teacher logits" : "teacher values",
                                        c.teacher, o.teacher == teacher_input::probabilities);
                !s)
                return s;
    }
    plan_terms<T>(o, soft, hard, weight_sum, hard_weight_sum, k, plan.weights);
    k.row_classes = static_cast<std::ptrdiff_t>(shard.vocabulary);
    plan.options = &o;
    plan.call = &c;
    plan.first_column = shard.first_column;
    plan.vocabulary = shard.vocabulary;
    plan.piece_count = std::min<std::ptrdiff_t>(c.student.rows, max_pieces);
    plan.blocks = backend<Isa>::template row_blocks<T>(c.student.cols);
    plan.double_precision_rows =
        k.soft && k.divergence == divergence_kind::decoupled_kd && !std::is_same_v<Isa, no_simd>;
    return {};
}

template <class Record>
status check_record_count(const char* loss_name, const char* what, std::span<Record> records,
                          std::ptrdiff_t rows) noexcept {
    if (static_cast<std::ptrdiff_t>(records.size()) != rows)
        return status::error(errc::invalid_argument, "%s: %s has %zu records but the logits have %td rows", loss_name,
                             what, records.size(), rows);
    return {};
}

// Calls fn(i) for the rows of pieces [first, last): piece p is rows [p N / P, (p + 1) N / P), as the
// scheduler cuts them.
template <class Plan, class Fn>
void for_rows_of_pieces(const Plan& plan, std::ptrdiff_t first, std::ptrdiff_t last, Fn&& fn) noexcept {
    const std::ptrdiff_t N = plan.call->student.rows;
    for (std::ptrdiff_t p = first; p < last; ++p)
        for (std::ptrdiff_t i = p * N / plan.piece_count; i < (p + 1) * N / plan.piece_count; ++i) fn(i);
}

// ---- phase 1: statistics ----

// Pieces [first, last) of the statistics phase. Not inlined, for the reason run_pieces gives.
template <class Isa, class T, class Label>
[[gnu::noinline]] void run_shard_statistics(const shard_plan<Isa, T, Label>& plan, std::span<row_statistics> out,
                                            std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
    const row_terms& k = plan.terms;
    const std::ptrdiff_t C = plan.columns();
    for_rows_of_pieces(plan, first, last, [&](std::ptrdiff_t i) {
        row_statistics& r = out[static_cast<std::size_t>(i)];
        r = row_statistics{};
        r.inv_temperature = k.inv_temperature;
        r.teacher_inv_temperature = k.teacher_inv_temperature;
        if (!plan.counts(i)) return;  // the empty record: rows that take no part are not read
        block_maxima unused[max_row_blocks];
        const row_stats st = C > 0 ? backend<Isa>::statistics(plan.student_row(i), plan.teacher_row(i), C, k,
                                                              static_cast<T*>(nullptr), 0, plan.blocks, unused)
                                   : row_stats{};
        put_stats(r, st);
        r.columns = static_cast<double>(C);
        if (const std::int64_t y = plan.local_label(i); y >= 0) {
            r.label_columns = 1;
            r.student_at_label = static_cast<double>(plan.student_row(i)[y]);
            if (k.soft) r.teacher_at_label = teacher_logit(plan.teacher_row(i), y, k);
        }
    });
}

template <class Isa, class T, class Label, class Exec>
status shard_statistics(Exec&& exec, const loss_config& o, const vocabulary_shard& shard,
                        const loss_call<T, Label>& c, std::span<row_statistics> out) noexcept {
    shard_plan<Isa, T, Label> plan;
    if (status s = make_shard_plan(o, shard, c, true, plan); !s) return s;
    if (status s = check_record_count(o.loss_name, "the statistics span", out, c.student.rows); !s) return s;
    if (plan.piece_count > 0)
        exec(std::ptrdiff_t{0}, plan.piece_count, [&plan, out](std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
            run_shard_statistics(plan, out, first, last);
        });
    return {};
}

// ---- the combined records ----

// Checks the combined record of a row that takes part: it must cover the vocabulary once, come from
// calls with this call's temperatures, hold the label once where the row needs it, and have sums
// that fit its maxima (a finite max contributes exp(0) = 1 to its sum; a max of -inf, no column above
// -inf, leaves the sum 0). NaN in the maxima or sums is a NaN logit's, and goes on to the loss.
template <class Isa, class T, class Label>
status check_combined(const shard_plan<Isa, T, Label>& plan, std::ptrdiff_t i, const row_statistics& r) noexcept {
    const char* name = plan.options->loss_name;
    const row_terms& k = plan.terms;
    std::ptrdiff_t columns = 0;
    if (!whole_count(r.columns, columns))
        return status::error(errc::invalid_argument,
                             "%s: row %td: the combined statistics have columns = %g, not a whole number >= 0: a "
                             "record was damaged, or merged by something other than merge_row_statistics",
                             name, i, r.columns);
    if (columns != plan.vocabulary)
        return status::error(errc::invalid_argument,
                             "%s: row %td: the combined statistics cover %td columns but the vocabulary has %lld: "
                             "every rank's record must be merged exactly once",
                             name, i, columns, static_cast<long long>(plan.vocabulary));
    if (!(r.inv_temperature == k.inv_temperature && r.teacher_inv_temperature == k.teacher_inv_temperature))
        return status::error(errc::invalid_argument,
                             "%s: row %td: the combined statistics were made with 1/T = %g and teacher 1/T = %g, this "
                             "call has %g and %g (NaN: records of different temperatures were merged)",
                             name, i, r.inv_temperature, r.teacher_inv_temperature, k.inv_temperature,
                             k.teacher_inv_temperature);
    if (k.needs_label() && r.label_columns != 1)
        return status::error(errc::invalid_argument,
                             "%s: row %td: its label %lld was found in %g shards, expected exactly 1: the ranks' "
                             "first_column and column counts must tile the vocabulary",
                             name, i, static_cast<long long>(plan.label_of(i)), r.label_columns);
    const auto fits = [](double max, double z) {
        if (std::isnan(max) || std::isnan(z)) return true;
        if (max == -std::numeric_limits<double>::infinity()) return z == 0;
        return std::isfinite(max) && z >= 1;  // +inf logits give NaN sums, never a number
    };
    if (!fits(r.student_max, r.z_q) || (k.hard && !fits(r.student_max, r.z_r)))
        return status::error(errc::invalid_argument,
                             "%s: row %td: inconsistent combined statistics: student_max = %g with z_q = %g and "
                             "z_r = %g (a finite max needs sums >= 1, a max of -inf sums of 0)",
                             name, i, r.student_max, r.z_q, r.z_r);
    if (k.soft && !fits(r.teacher_max, r.z_p))
        return status::error(errc::invalid_argument,
                             "%s: row %td: inconsistent combined statistics: teacher_max = %g with z_p = %g (a "
                             "finite max needs z_p >= 1, a max of -inf z_p = 0)",
                             name, i, r.teacher_max, r.z_p);
    return {};
}

template <class Isa, class T, class Label>
status check_combined_all(const shard_plan<Isa, T, Label>& plan, std::span<const row_statistics> combined) noexcept {
    for (std::ptrdiff_t i = 0; i < plan.call->student.rows; ++i)
        if (plan.counts(i))
            if (status s = check_combined(plan, i, combined[static_cast<std::size_t>(i)]); !s) return s;
    return {};
}

inline row_stats combined_stats(const row_statistics& r) noexcept {
    std::ptrdiff_t columns = 0;
    whole_count(r.columns, columns);
    return stats_of(r, columns);
}

// Whether a row's divergence needs the sums phase: always for a normalise-first divergence; for
// forward KL on the SIMD kernels (statistics_first) only where the value from the statistics is too
// close to 0 to be trusted, the test the one-process kernel makes before summing a row's terms again.
template <class T>
bool row_needs_sums(const row_terms& k, bool statistics_first, const row_stats& st) noexcept {
    if (!k.soft || !student_defined(st) || !teacher_defined(st, k)) return false;
    if (!statistics_first) return true;
    return forward_kl_policy::worth_terms<T>(forward_kl_policy::value(st.acc, st.zq, st.zp));
}
template <class Isa, class T, class Label>
bool row_needs_sums(const shard_plan<Isa, T, Label>& plan, const row_stats& st) noexcept {
    return row_needs_sums<T>(plan.terms, plan.statistics_first(), st);
}

// Whether any of the combined records needs the sums phase. It reads nothing but the records and the
// options, so every rank, holding the same combined records, gives the same answer.
template <class Isa, class T>
bool shard_needs_sums(const loss_config& o, std::span<const row_statistics> combined) noexcept {
    row_terms k;
    loss_weights unused;
    plan_terms<T>(o, soft_active(o), hard_active(o), 0, 0, k, unused);
    const bool first = backend<Isa>::statistics_first(k);
    for (const row_statistics& r : combined)
        if (row_needs_sums<T>(k, first, combined_stats(r))) return true;
    return false;
}

// ---- phase 2: sums ----

template <class Isa, class T, class Label>
[[gnu::noinline]] void run_shard_sums(const shard_plan<Isa, T, Label>& plan, std::span<const row_statistics> combined,
                                      std::span<row_sums> out, std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
    const row_terms& k = plan.terms;
    const std::ptrdiff_t C = plan.columns();
    for_rows_of_pieces(plan, first, last, [&](std::ptrdiff_t i) {
        row_sums& r = out[static_cast<std::size_t>(i)];
        r = row_sums{};
        r.columns = static_cast<double>(C);
        if (!plan.counts(i) || C == 0) return;
        const row_stats st = combined_stats(combined[static_cast<std::size_t>(i)]);
        if (!row_needs_sums(plan, st)) return;
        const T *s = plan.student_row(i), *t = plan.teacher_row(i);
        const std::int64_t y = plan.local_label(i);
        divergence_sums<double> sums;
        if (plan.double_precision_rows)
            sums = reference::sums<decoupled_kd_policy>(s, t, y, C, k, st, 0, reference::row_blocks(C));
        else
            sums = backend<Isa>::sums(s, t, y, C, k, st, static_cast<const T*>(nullptr), nullptr, 0, plan.blocks);
        for (int j = 0; j < 3; ++j) r.terms[j] = sums[static_cast<std::size_t>(j)];
    });
}

template <class Isa, class T, class Label, class Exec>
status shard_sums(Exec&& exec, const loss_config& o, const vocabulary_shard& shard, const loss_call<T, Label>& c,
                  std::span<const row_statistics> combined, std::span<row_sums> out) noexcept {
    shard_plan<Isa, T, Label> plan;
    if (status s = make_shard_plan(o, shard, c, false, plan); !s) return s;
    if (status s = check_record_count(o.loss_name, "the combined statistics span", combined, c.student.rows); !s)
        return s;
    if (status s = check_record_count(o.loss_name, "the sums span", out, c.student.rows); !s) return s;
    if (status s = check_combined_all(plan, combined); !s) return s;
    if (plan.piece_count > 0)
        exec(std::ptrdiff_t{0}, plan.piece_count,
             [&plan, combined, out](std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
                 run_shard_sums(plan, combined, out, first, last);
             });
    return {};
}

// ---- phase 3: the loss and the gradient ----

// Row i's unweighted terms and its divergence's row scalars, from the combined records alone.
template <class Isa, class T, class Label>
row_result shard_row_loss(const shard_plan<Isa, T, Label>& plan, const row_statistics& r, const row_sums* sums,
                          divergence_value& value) noexcept {
    const row_terms& k = plan.terms;
    const row_stats st = combined_stats(r);
    const bool summed = sums != nullptr && row_needs_sums(plan, st);
    divergence_sums<double> terms{};
    if (summed) terms = {sums->terms[0], sums->terms[1], sums->terms[2]};
    const label_logits y{r.student_at_label, r.teacher_at_label};
    const double classes = static_cast<double>(plan.vocabulary);
    return with_divergence(k.divergence, [&]<class Policy>() {
        if (plan.statistics_first()) {  // forward KL (or no divergence): from the statistics, unless summed
            row_result out = row_loss_from<Policy>(st, terms, true, y, classes, k, value);
            if (summed && k.soft && out.student_defined && out.teacher_defined) {
                value = forward_kl_policy::finish(terms, k.params, {});
                out.divergence = value.value;
            }
            return out;
        }
        return row_loss_from<Policy>(st, terms, false, y, classes, k, value);
    });
}

template <class Isa, class T, class Label>
[[gnu::noinline]] void run_shard_gradients(const shard_plan<Isa, T, Label>& plan,
                                           std::span<const row_statistics> combined, std::span<const row_sums> sums,
                                           std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
    const row_terms& k = plan.terms;
    const std::ptrdiff_t C = plan.columns();
    for_rows_of_pieces(plan, first, last, [&](std::ptrdiff_t i) {
        T* g = plan.grad_row(i);
        if (!plan.counts(i)) {
            std::fill(g, g + C, T(0));
            return;
        }
        if (C == 0) return;
        const auto at = static_cast<std::size_t>(i);
        divergence_value value;
        shard_row_loss(plan, combined[at], sums.empty() ? nullptr : &sums[at], value);
        const row_stats st = combined_stats(combined[at]);
        const T *s = plan.student_row(i), *t = plan.teacher_row(i);
        const std::int64_t y = plan.local_label(i);
        if (plan.double_precision_rows) {
            reference::gradient<decoupled_kd_policy>(s, t, y, C, k, st, value, g, 0, reference::row_blocks(C));
            return;
        }
        // The SIMD gradient sweep reads the teacher's e_p where sweep 1 parked it in the gradient
        // buffer; sweep 1 ran in another call, so each block is parked again (relative to the whole
        // row's teacher max) just before its gradient, while it is in cache. Its e_q is computed
        // relative to the row's student max.
        block_maxima maxima[max_row_blocks];
        for (std::ptrdiff_t b = 0; b < plan.blocks; ++b) {
            maxima[b].student = st.ms;
            if (backend<Isa>::parks_teacher && k.soft)
                backend<Isa>::park_teacher(t, C, k, st.mt, g, b, b + 1, maxima);
            backend<Isa>::gradient(s, t, y, C, k, st, value, g, b, b + 1, maxima);
        }
    });
}

template <class Isa, class T, class Label, class Exec>
status shard_finish(Exec&& exec, const loss_config& o, const vocabulary_shard& shard, const loss_call<T, Label>& c,
                    std::span<const row_statistics> combined, std::span<const row_sums> sums,
                    loss_value& out) noexcept {
    out = {};
    shard_plan<Isa, T, Label> plan;
    if (status s = make_shard_plan(o, shard, c, false, plan); !s) return s;
    if (status s = check_losses_output(o, c); !s) return s;
    if (status s = check_record_count(o.loss_name, "the combined statistics span", combined, c.student.rows); !s)
        return s;
    if (status s = check_combined_all(plan, combined); !s) return s;
    bool sums_needed = false;
    for (std::ptrdiff_t i = 0; i < c.student.rows && !sums_needed; ++i)
        sums_needed = plan.counts(i) && row_needs_sums(plan, combined_stats(combined[static_cast<std::size_t>(i)]));
    if (sums_needed) {
        if (sums.empty())
            return status::error(errc::invalid_argument,
                                 "%s: the combined statistics call for the sums phase (needs_sums is true) but no "
                                 "combined sums were given",
                                 o.loss_name);
        if (status s = check_record_count(o.loss_name, "the combined sums span", sums, c.student.rows); !s) return s;
        for (std::ptrdiff_t i = 0; i < c.student.rows; ++i) {
            const double columns = sums[static_cast<std::size_t>(i)].columns;
            if (plan.counts(i) && columns != static_cast<double>(plan.vocabulary))
                return status::error(errc::invalid_argument,
                                     "%s: row %td: the combined sums cover %g columns but the vocabulary has %lld: "
                                     "every rank's sums must be added exactly once",
                                     o.loss_name, i, columns, static_cast<long long>(plan.vocabulary));
        }
    } else {
        sums = {};  // not read: forward KL's rows all trust their statistics
    }

    // The loss, from the records alone: the same rows, records and order on every rank, so the same
    // bits. Rows are added per piece and the pieces in order, as the one-process scheduler does.
    double soft_sum = 0, hard_sum = 0;
    for (std::ptrdiff_t p = 0; p < plan.piece_count; ++p) {
        double soft_piece = 0, hard_piece = 0;
        for (std::ptrdiff_t i = p * c.student.rows / plan.piece_count;
             i < (p + 1) * c.student.rows / plan.piece_count; ++i) {
            double row_loss = 0;
            if (plan.counts(i)) {
                const auto at = static_cast<std::size_t>(i);
                divergence_value value;
                const row_result rr = shard_row_loss(plan, combined[at], sums.empty() ? nullptr : &sums[at], value);
                if (!rr.student_defined || !rr.teacher_defined)
                    return status::error(errc::invalid_argument,
                                         "%s: row %td of the %s logits is entirely -inf (every class masked, on every "
                                         "rank), so its softmax is undefined",
                                         o.loss_name, i, rr.teacher_defined ? "student" : "teacher");
                const double soft = plan.terms.soft ? plan.weights.soft * rr.divergence : 0.0;
                const double hard = plan.terms.hard ? plan.weights.hard * rr.ce : 0.0;
                soft_piece += soft;
                hard_piece += hard;
                row_loss = soft + hard;
            }
            if (!c.rows.losses.empty()) c.rows.losses[static_cast<std::size_t>(i)] = row_loss;
        }
        soft_sum += soft_piece;
        hard_sum += hard_piece;
    }
    out.soft = plan.weights.reduction * soft_sum;
    out.hard = plan.weights.reduction * hard_sum;
    out.total = out.soft + out.hard;
    out.rows_counted = plan.counted;

    if (c.has_grad && plan.piece_count > 0)
        exec(std::ptrdiff_t{0}, plan.piece_count,
             [&plan, combined, sums](std::ptrdiff_t first, std::ptrdiff_t last) noexcept {
                 run_shard_gradients(plan, combined, sums, first, last);
             });
    return {};
}

}  // namespace distill::detail
