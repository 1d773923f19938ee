// distill/shard_records.hpp - what one rank of a vocabulary-parallel loss sends the others: a
// fixed-size record per row, and how two records combine (sharded.hpp runs the loss around them).
//
// A row's softmax needs the whole row only through a few numbers: its maxima and the sums of
// exponentials relative to them. Two stretches of a row with their own maxima combine exactly (the
// online softmax of docs/math.md, section 3): both are brought to the larger maxima by one scalar
// factor each, then added. So a rank holding columns [c0, c0 + Vr) of a row reduces them to one
// `row_statistics`, the ranks combine their records with `merge_row_statistics`, and every rank then
// knows the whole row's normalisers without ever seeing the other columns.
//
// Every field of both records is a double, so that a record is a plain array of doubles on the wire:
// 13 MPI_DOUBLEs (one MPI datatype and one user-defined MPI_Op), or a float64 tensor of shape
// [rows, 13] for torch.distributed, which gathers tensors of one dtype. Counts are whole numbers,
// exact in a double up to 2^53.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>

#include "detail/row_statistics.hpp"
#include "detail/row_terms.hpp"
#include "status.hpp"

namespace distill {

// Which columns of the vocabulary this rank holds: [first_column, first_column + Vr), where Vr is the
// number of columns of the logits it passes (0 is allowed: an empty shard).
struct vocabulary_shard {
    std::int64_t first_column = 0;  // this rank's first column in the whole vocabulary
    std::int64_t vocabulary = 0;    // classes in the whole vocabulary, all ranks together (>= 1)
};

// One row's statistics over a stretch of its columns (a shard, or several shards merged), relative
// to the stretch's own maxima. With x = (s - student_max) / T and y = (t - teacher_max) / T_t:
struct row_statistics {
    double student_max = -std::numeric_limits<double>::infinity();  // max of the student's logits s; -inf when
                                                                   // the stretch is empty or all -inf; NaN once
                                                                   // a NaN logit is seen (NaN is kept)
    double teacher_max = -std::numeric_limits<double>::infinity();  // max of the teacher's logits (log t for
                                                                   // probabilities); -inf without a soft term
    double z_q = 0;                      // Z_q = sum exp(x): the student's softmax at T
    double z_r = 0;                      // Z_r = sum exp(s - student_max): softmax(s), for the cross-entropy
                                         // term (0 without it)
    double z_p = 0;                      // Z_p = sum exp(y): the teacher's softmax (0 without a soft term)
    double kl_accumulator = 0;           // A = sum exp(y) (y - x): forward KL's value A / Z_p - log Z_p +
                                         // log Z_q; kept by the SIMD kernels for forward KL only, else 0
    double smoothing_sum = 0;            // S = sum (s - student_max): label smoothing's share of the
                                         // cross-entropy (0 without label smoothing)
    double student_at_label = 0;         // s_y where this stretch holds the row's label y, else 0
    double teacher_at_label = 0;         // the teacher's logit at y (log t_y for probabilities) where this
                                         // stretch holds y and the call has a soft term, else 0
    double columns = 0;                  // columns covered; a whole row: the vocabulary
    double label_columns = 0;            // 1 where this stretch holds the row's label, else 0; after the
                                         // merge, how many stretches claimed it (exactly 1 is valid)
    double inv_temperature = 1;          // 1 / T of the call that made the record (the student's)
    double teacher_inv_temperature = 1;  // 1 / T_t: 1 / T for teacher logits, 1 for log-probabilities
                                         // and probabilities
};

// One row's sums over normalised p and q (the divergence's `accumulate`, docs/math.md section 3)
// over a stretch of its columns, relative to the whole row's combined statistics. They combine by
// plain addition: a sum all-reduce (MPI_SUM, NCCL's or torch.distributed's SUM) of 4 doubles a row.
struct row_sums {
    double terms[3] = {0, 0, 0};  // the divergence's running sums (which, divergence by divergence: docs/api.md)
    double columns = 0;           // columns covered; a whole row: the vocabulary
};

static_assert(std::is_trivially_copyable_v<row_statistics> && std::is_standard_layout_v<row_statistics> &&
                  sizeof(row_statistics) == 13 * sizeof(double),
              "distill: row_statistics must stay 13 doubles, the layout documented for all-reduces");
static_assert(std::is_trivially_copyable_v<row_sums> && std::is_standard_layout_v<row_sums> &&
                  sizeof(row_sums) == 4 * sizeof(double),
              "distill: row_sums must stay 4 doubles, the layout documented for all-reduces");

namespace detail {

// A record's column count as an integer, or false when it is none (NaN, negative, fractional, or
// beyond what a double counts exactly): converting such a double would be undefined behaviour.
inline bool whole_count(double columns, std::ptrdiff_t& out) noexcept {
    if (!(columns >= 0 && columns <= 9007199254740992.0) || std::floor(columns) != columns) return false;
    out = static_cast<std::ptrdiff_t>(columns);
    return true;
}

// Maxima of +0 and -0 compare equal but print and propagate differently; keeping +0 makes the merge
// commutative to the bit.
inline double canonical_max(double m) noexcept { return m == 0 ? 0.0 : m; }

// The record's statistics fields from a stretch's row_stats (the inverse of stats_of).
inline void put_stats(row_statistics& r, const row_stats& st) noexcept {
    r.student_max = canonical_max(st.ms);
    r.teacher_max = canonical_max(st.mt);
    r.z_q = st.zq;
    r.z_r = st.zr;
    r.z_p = st.zp;
    r.kl_accumulator = st.acc;
    r.smoothing_sum = st.sum_x;
}

inline row_stats stats_of(const row_statistics& r, std::ptrdiff_t columns) noexcept {
    row_stats st;
    st.ms = canonical_max(r.student_max);
    st.mt = canonical_max(r.teacher_max);
    st.zq = r.z_q;
    st.zr = r.z_r;
    st.zp = r.z_p;
    st.acc = r.kl_accumulator;
    st.sum_x = r.smoothing_sum;
    st.seen = columns;
    st.weight_seen = static_cast<double>(columns);  // shards take no class weights: every class weighs 1
    return st;
}

}  // namespace detail

// The statistics of two stretches of one row as one: both are brought to the larger maxima (each
// sum times exp(-rise / T), the smoothing sum minus columns * rise, forward KL's accumulator by its
// own rule) and added. Exact in exact arithmetic; in floating point:
//   - commutative to the bit: merge(a, b) and merge(b, a) are the same bits (NaN payloads aside),
//     so the order in which a reduction pairs records does not matter, only how it brackets them;
//   - associative up to rounding: merge(merge(a, b), c) and merge(a, merge(b, c)) differ in the last
//     bits (the rescaling factors are rounded), so a fixed bracketing (a left fold in rank order, or
//     an all-reduce whose algorithm is fixed for the communicator and message size) gives the same
//     bits on every run;
//   - the empty record (no columns, maxima -inf, sums 0, the same temperatures) is its identity.
// It never fails: records that cannot be merged (different temperatures, a column count that is not
// a whole number >= 0) give a record whose `columns` (or temperatures) are NaN, which the loss
// refuses with a message that says why; a label claimed twice shows as label_columns = 2.
inline row_statistics merge_row_statistics(const row_statistics& a, const row_statistics& b) noexcept {
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    std::ptrdiff_t columns_a = 0, columns_b = 0;
    const bool counted = detail::whole_count(a.columns, columns_a) && detail::whole_count(b.columns, columns_b);
    const bool same_temperatures =
        a.inv_temperature == b.inv_temperature && a.teacher_inv_temperature == b.teacher_inv_temperature;
    detail::row_terms k;
    k.soft = true;  // without a soft term the teacher's fields are -inf and 0, which the rescale leaves alone
    k.inv_temperature = a.inv_temperature;
    k.teacher_inv_temperature = a.teacher_inv_temperature;
    const detail::row_stats st = detail::merge(detail::stats_of(a, columns_a), detail::stats_of(b, columns_b), k);
    row_statistics out;
    detail::put_stats(out, st);
    // Stretches that do not hold the label hold 0 there, and x + 0 = x exactly.
    out.student_at_label = a.student_at_label + b.student_at_label;
    out.teacher_at_label = a.teacher_at_label + b.teacher_at_label;
    out.columns = counted ? a.columns + b.columns : nan;
    out.label_columns = a.label_columns + b.label_columns;
    out.inv_temperature = same_temperatures ? a.inv_temperature : nan;
    out.teacher_inv_temperature = same_temperatures ? a.teacher_inv_temperature : nan;
    return out;
}

// The sums of two stretches as one: plain addition, commutative; associative up to rounding.
inline row_sums merge_row_sums(const row_sums& a, const row_sums& b) noexcept {
    row_sums out;
    for (int j = 0; j < 3; ++j) out.terms[j] = a.terms[j] + b.terms[j];
    out.columns = a.columns + b.columns;
    return out;
}

// For collectives without user-defined reductions (NCCL, torch.distributed): after an all-gather of
// every rank's records, rank-major (R blocks of N records, rank 0 first, as MPI_Allgather and
// torch.distributed.all_gather_into_tensor lay them out), combines each row's R records by a left
// fold in rank order. Every rank folds the same records in the same order, so every rank gets the
// same bits whatever algorithm the gather used. Fails only on sizes: `gathered` must hold a whole
// number (>= 1) of blocks of combined.size() records.
inline status merge_gathered_statistics(std::span<const row_statistics> gathered,
                                        std::span<row_statistics> combined) noexcept {
    const std::size_t n = combined.size();
    if (n == 0) return {};
    if (gathered.size() < n || gathered.size() % n != 0)
        return status::error(errc::invalid_argument,
                             "merge_gathered_statistics: %zu gathered records are not a whole number of blocks of "
                             "%zu rows (one block per rank, rank-major)",
                             gathered.size(), n);
    const std::size_t ranks = gathered.size() / n;
    for (std::size_t i = 0; i < n; ++i) {
        row_statistics r = gathered[i];
        for (std::size_t rank = 1; rank < ranks; ++rank) r = merge_row_statistics(r, gathered[rank * n + i]);
        combined[i] = r;
    }
    return {};
}

}  // namespace distill
