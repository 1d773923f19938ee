// The peer a C++ user writes without distill: the textbook formulas as Eigen array expressions
// (row-wise max for stability, exp, row sums, log), N x C temporaries allocated by each call, the
// gradient written into the caller's buffer. Eigen vectorises exp and the reductions with the same
// -march flags as our kernels, so this is what plain Eigen reaches, not a strawman.
#include "bench_common.hpp"

#include <utility>

namespace distill_bench {
namespace {

template <class Scalar>
using array = Eigen::Array<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using column = Eigen::Array<Scalar, Eigen::Dynamic, 1>;

// log_softmax(z) row by row; z is overwritten with z - rowmax.
template <class Scalar>
array<Scalar> log_softmax(array<Scalar>& z) {
    const column<Scalar> max = z.rowwise().maxCoeff();
    z.colwise() -= max;
    const column<Scalar> log_sum = z.exp().rowwise().sum().log();
    return z.colwise() - log_sum;
}

// log q = log_softmax(s / T), p = softmax(t / T) and KL(p || q) averaged over the rows.
template <class Scalar>
struct soft_targets {
    array<Scalar> log_q, p;
    Scalar kl;
};

template <class Scalar>
soft_targets<Scalar> soft_part(const matrix<Scalar>& s, const matrix<Scalar>& t, Scalar temperature) {
    array<Scalar> zs = s.array() / temperature;
    array<Scalar> log_q = log_softmax(zs);
    array<Scalar> zt = t.array() / temperature;
    const array<Scalar> log_p = log_softmax(zt);
    array<Scalar> p = log_p.exp();
    const Scalar kl = (p * (log_p - log_q)).sum() / static_cast<Scalar>(s.rows());
    return {std::move(log_q), std::move(p), kl};
}

// alpha * T^2 * KL(p || q) + (1 - alpha) * CE(s, y), batchmean; gradient into g.
template <class Scalar>
double distillation(const matrix<Scalar>& s, const matrix<Scalar>& t, const std::vector<std::int64_t>& y,
                    matrix<Scalar>& g, Scalar temperature, Scalar alpha) {
    const auto n = static_cast<Scalar>(s.rows());
    const auto [log_q, p, kl] = soft_part(s, t, temperature);

    array<Scalar> zr = s.array();
    const array<Scalar> log_r = log_softmax(zr);
    array<Scalar> r = log_r.exp();
    Scalar ce = 0;
    for (Eigen::Index i = 0; i < s.rows(); ++i) {
        const auto yi = static_cast<Eigen::Index>(y[static_cast<std::size_t>(i)]);
        ce -= log_r(i, yi);
        r(i, yi) -= 1;
    }
    ce /= n;
    g.array() = (alpha * temperature / n) * (log_q.exp() - p) + ((1 - alpha) / n) * r;
    return static_cast<double>(alpha * temperature * temperature * kl + (1 - alpha) * ce);
}

// T^2 * KL(p || q), batchmean; gradient into g.
template <class Scalar>
double kl(const matrix<Scalar>& s, const matrix<Scalar>& t, matrix<Scalar>& g, Scalar temperature) {
    const auto n = static_cast<Scalar>(s.rows());
    const auto [log_q, p, kl] = soft_part(s, t, temperature);
    g.array() = (temperature / n) * (log_q.exp() - p);
    return static_cast<double>(temperature * temperature * kl);
}

template <class Scalar>
void softmax(const matrix<Scalar>& s, matrix<Scalar>& out, Scalar temperature) {
    array<Scalar> z = s.array();
    if (temperature != 1) z /= temperature;
    const column<Scalar> max = z.rowwise().maxCoeff();
    out.array() = (z.colwise() - max).exp();
    const column<Scalar> sum = out.array().rowwise().sum();
    out.array().colwise() /= sum;
}

// log_softmax(s / T): z - max - log sum exp(z - max), one N x C temporary.
template <class Scalar>
void log_softmax_into(const matrix<Scalar>& s, matrix<Scalar>& out, Scalar temperature) {
    array<Scalar> z = s.array();
    if (temperature != 1) z /= temperature;
    out.array() = log_softmax(z);
}

template <class Scalar>
double call(const case_spec& c, inputs<Scalar>& in) {
    const auto temperature = static_cast<Scalar>(c.temperature);
    switch (c.kind) {
    case loss_kind::distillation:
        return distillation(in.student, in.teacher, in.labels, in.out, temperature, static_cast<Scalar>(c.alpha));
    case loss_kind::kl: return kl(in.student, in.teacher, in.out, temperature);
    case loss_kind::softmax: softmax(in.student, in.out, temperature); return 0;
    case loss_kind::log_softmax: log_softmax_into(in.student, in.out, temperature); return 0;
    case loss_kind::divergence: break; // not registered (register_eigen_naive)
    }
    return 0;
}

template <class Scalar>
void eigen_naive(benchmark::State& state, case_spec c) {
    auto& in = inputs_for<Scalar>(c.rows, c.cols);
    run_timed(state, c, in, [&] { return call(c, in); });
}

} // namespace

void register_eigen_naive(const case_spec& c) {
    // The divergence cases' C++ peer is libtorch autograd (torch_peer.cpp), as their users write it.
    if (c.kind == loss_kind::divergence) return;
    register_for_type(benchmark_name(c, "eigen_naive", 1), c, [c](benchmark::State& s, auto tag) {
        eigen_naive<typename decltype(tag)::type>(s, c);
    });
}

} // namespace distill_bench
