// distill/detail/row_statistics.hpp - what sweep 1 learns about a row, how two stretches of a row
// combine, and the row's loss once its statistics (and, for normalise-first divergences, its
// sweep-2 sums) are known. Shared by both kernel layers: only how the numbers are gathered differs.
//
// Sweep 1 is an online softmax (Milakov & Gimelshein 2018): sums of exponentials relative to the
// running maxima, rescaled when a maximum rises. Its statistics over two adjacent stretches of a
// row merge exactly, which is what lets a long row be cut into segments that run on different
// threads and be put together in a fixed order.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "divergences.hpp"
#include "row_terms.hpp"

namespace distill::detail {

// Sweep-1 statistics of a stretch of a row, relative to the stretch's own running maxima.
struct row_stats {
    double ms = -std::numeric_limits<double>::infinity();  // max of s
    double mt = -std::numeric_limits<double>::infinity();  // max of the teacher's logits
    double zq = 0, zr = 0, zp = 0;                         // sums of e_q, e_r, e_p
    double acc = 0;                                        // forward KL's statistics-first accumulator
    double sum_x = 0;                                      // sum of w (s - ms), for label smoothing
    double weight_seen = 0;                                // sum of w over the elements covered (w = 1
                                                           // without class weights): sum_x's rescale
    std::ptrdiff_t seen = 0;                               // elements covered
};

// The maxima sweep 1 took a block's exponentials relative to: its stretch's running maxima when it
// reached the block. The later sweeps bring what sweep 1 parked to the row's maxima with one factor
// per block, or recompute it by sweep 1's very operations, so that both give the same bits.
struct block_maxima {
    double student = -std::numeric_limits<double>::infinity();
    double teacher = -std::numeric_limits<double>::infinity();
};

// Re-expresses `a` relative to maxima that are at least its own: every x falls by ds / T, every
// e_q by exp(-ds / T), every e_r by exp(-ds), every w (s - ms) by w ds; the teacher's sums by
// exp(-dt / T_t). A max of -inf has empty sums (except sums that are already +-inf), which need no
// rescale.
inline void rebase(row_stats& a, double new_ms, double new_mt, const row_terms& k) noexcept {
    constexpr double minus_inf = -std::numeric_limits<double>::infinity();
    double ds = 0, dt = 0, f = 1;
    if (a.ms != minus_inf && !(new_ms == a.ms)) {
        ds = new_ms - a.ms;
        a.zq *= std::exp(-ds * k.inv_temperature);
        a.zr *= std::exp(-ds);
        a.sum_x -= a.weight_seen * ds;
    }
    if (k.soft) {
        if (a.mt != minus_inf && !(new_mt == a.mt)) {
            dt = new_mt - a.mt;
            f = std::exp(-dt * k.teacher_inv_temperature);
        }
        a.acc = forward_kl_policy::rescale(a.acc, a.zp, ds, dt, k.inv_temperature, k.teacher_inv_temperature, f);
        a.zp *= f;
    }
    a.ms = new_ms;
    a.mt = new_mt;
}

// The statistics of two adjacent stretches as one (a on the left).
inline row_stats merge(row_stats a, row_stats b, const row_terms& k) noexcept {
    const double ms = sticky_max(a.ms, b.ms), mt = sticky_max(a.mt, b.mt);
    rebase(a, ms, mt, k);
    rebase(b, ms, mt, k);
    a.zq += b.zq;
    a.zr += b.zr;
    a.zp += b.zp;
    a.acc += b.acc;
    a.sum_x += b.sum_x;
    a.weight_seen += b.weight_seen;
    a.seen += b.seen;
    return a;
}

// The sweep-2 sums of two stretches as one: plain sums, relative to the same (whole-row) maxima.
inline divergence_sums<double> merge(const divergence_sums<double>& a, const divergence_sums<double>& b) noexcept {
    return {a[0] + b[0], a[1] + b[1], a[2] + b[2]};
}

// The teacher's value of one element on the logit scale: log t for probabilities.
template <class T>
double teacher_logit(const T* t, std::ptrdiff_t c, const row_terms& k) noexcept {
    return k.teacher_probabilities ? std::log(static_cast<double>(t[c])) : static_cast<double>(t[c]);
}

// Row constants every normalised element needs: the maxima and log Z_q, log Z_p.
struct row_normalizers {
    double ms = 0, mt = 0, log_zq = 0, log_zp = 0;
};

inline row_normalizers normalizers(const row_stats& st) noexcept {
    return {st.ms, st.mt, std::log(st.zq), std::log(st.zp)};
}

// Whether the row's softmaxes exist: a max of -inf means no logit above -inf, an all -inf row,
// unless NaNs (which max skips) are there, and then the sums are NaN and the NaN goes on to the loss.
inline bool student_defined(const row_stats& st) noexcept {
    return !(st.ms == -std::numeric_limits<double>::infinity() && !std::isnan(st.zq));
}
inline bool teacher_defined(const row_stats& st, const row_terms& k) noexcept {
    return !(k.soft && st.mt == -std::numeric_limits<double>::infinity() && !std::isnan(st.zp));
}

// The label's own values, on the logit scale (the teacher's is log t for probabilities): what the
// cross-entropy and a divergence defined around the target class read of the label's column. Kept
// apart from the row so that a caller holding only some of the row's columns (a vocabulary shard)
// can bring them from whichever rank holds the label.
struct label_logits {
    double student = 0, teacher = 0;
};

template <class T>
label_logits label_logits_at(const T* s, const T* t, std::int64_t label, const row_terms& k,
                             bool divergence_reads_label) noexcept {
    label_logits y;
    if (k.hard || divergence_reads_label) y.student = static_cast<double>(s[label]);
    if (divergence_reads_label) y.teacher = teacher_logit(t, label, k);
    return y;
}

// The label's element, normalised, in double (element_at of the label's column).
inline element<double> label_element_of(const label_logits& y, const row_terms& k, const row_normalizers& n) noexcept {
    element<double> e;
    e.lq = (y.student - n.ms) * k.inv_temperature - n.log_zq;
    e.lp = (y.teacher - n.mt) * k.teacher_inv_temperature - n.log_zp;
    e.q = std::exp(e.lq);
    e.p = std::exp(e.lp);
    return e;
}

// One element, normalised, in double.
template <class T>
element<double> element_at(const T* s, const T* t, std::ptrdiff_t c, const row_terms& k,
                           const row_normalizers& n) noexcept {
    return label_element_of({static_cast<double>(s[c]), teacher_logit(t, c, k)}, k, n);
}

// The row's loss from its statistics, for a normalise-first divergence its sweep-2 sums, and the
// label's values; `classes` is the row's number of classes (label smoothing's C). `value` receives
// the divergence's row scalars for the gradient sweep.
template <class Policy>
row_result row_loss_from(const row_stats& st, const divergence_sums<double>& sums, bool statistics_first,
                         const label_logits& y, double classes, const row_terms& k, divergence_value& value) noexcept {
    row_result out;
    out.student_defined = student_defined(st);
    out.teacher_defined = teacher_defined(st, k);
    if (!out.student_defined || !out.teacher_defined) return out;
    if (k.soft) {
        if (statistics_first) {
            const auto kl = forward_kl_policy::value(st.acc, st.zq, st.zp);
            value.value = kl.kl;
            out.cancelled = kl.cancelled;
        } else {
            target_element e{};
            if (Policy::excludes_label) e = label_element_of(y, k, normalizers(st));
            value = Policy::finish(sums, k.params, e);
        }
        out.divergence = value.value;
    }
    if (k.hard) {
        // CE = -(1 - eps) w_y log r_y - (eps / C) sum_c w_c log r_c, log r = s - ms - log Z_r.
        const double eps = k.smoothing;
        out.ce = -(1 - eps) * k.label_weight * (y.student - st.ms) - eps * st.sum_x / classes +
                 k.hard_r_weight(classes) * std::log(st.zr);
    }
    return out;
}

// The same for a whole row of C columns held here.
template <class Policy, class T>
row_result row_loss(const row_stats& st, const divergence_sums<double>& sums, bool statistics_first, const T* s,
                    const T* t, std::int64_t label, std::ptrdiff_t C, const row_terms& k,
                    divergence_value& value) noexcept {
    const bool reads_label = k.soft && !statistics_first && Policy::excludes_label && student_defined(st) &&
                             teacher_defined(st, k);
    return row_loss_from<Policy>(st, sums, statistics_first, label_logits_at(s, t, label, k, reads_label),
                                 static_cast<double>(C), k, value);
}

}  // namespace distill::detail
