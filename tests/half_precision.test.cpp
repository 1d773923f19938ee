// 16-bit logits: Eigen::bfloat16 and Eigen::half students and teachers (dense, and the top-k
// teacher's values), with the gradient written to a float buffer or to one of the logits' own type.
//
// Oracle: the double functor run on the same inputs, widened exactly to double (every 16-bit value
// is a float, every float a double); that double path is itself checked against PyTorch float64
// (tests/golden*.test.cpp). What separates the two is the 16-bit path's float compute and, for a
// 16-bit gradient buffer, the rounding of each stored entry. So, per row (tests/differential.hpp
// derives the scales and the float bound):
//   |loss - loss_double|  <= 4e-6 * (w_soft * divergence scale + w_hard * CE scale)
//   |g - g_double|        <= e + u * (|g_double| + e) + a,   e = 4e-6 * the row's gradient scale
// where u is the storage type's unit roundoff when the gradient is stored in 16 bits (bfloat16 has
// 8 significant bits: u = 2^-8; half 11: u = 2^-11), 0 for a float buffer, and a is half the spacing
// of half's subnormals (2^-25) for a half buffer, whose entries below 2^-14 lose relative precision.
// The conversions themselves are checked bit for bit against Eigen's scalar ones.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <distill/distill.hpp>
#include <distill/top_k_distillation_loss.hpp>
// Named explicitly: DISTILL_NO_SIMD leaves them out of distill.hpp, and they are tested in every build.
#include <distill/detail/simd/narrow_load_store.hpp>

#include "differential.hpp"
#include "family.hpp"
#include "test_support.hpp"

namespace {

using distill::teacher_input;
using distill::detail::row_terms;
using distill_test::matrix;
using arch = xsimd::default_arch;
constexpr std::ptrdiff_t lanes = xsimd::batch<float, arch>::size;

// The unit roundoff of a gradient stored as G, and the absolute rounding of its smallest values.
template <class G>
constexpr double unit_roundoff() {
    if constexpr (std::is_same_v<G, Eigen::bfloat16>) return 0x1p-8;
    else if constexpr (std::is_same_v<G, Eigen::half>) return 0x1p-11;
    else return 0.0;
}
template <class G>
constexpr double subnormal_rounding() {
    return std::is_same_v<G, Eigen::half> ? 0x1p-25 : 0.0;
}

constexpr double float_bound = 4e-6;  // distill_test::kernel_bound<float>: the float compute's bound

template <class H>
matrix<double> widened(const matrix<H>& m) {
    matrix<double> out(m.rows(), m.cols());
    for (Eigen::Index i = 0; i < m.rows(); ++i)
        for (Eigen::Index j = 0; j < m.cols(); ++j) out(i, j) = static_cast<double>(m(i, j));
    return out;
}
template <class H>
matrix<H> narrowed(const matrix<double>& m) {
    matrix<H> out(m.rows(), m.cols());
    for (Eigen::Index i = 0; i < m.rows(); ++i)
        for (Eigen::Index j = 0; j < m.cols(); ++j) out(i, j) = H(static_cast<float>(m(i, j)));
    return out;
}

// The teacher's values in the form `input` names, from logits t: the logits, log_softmax(t) or
// softmax(t), in double (rounded to 16 bits by the caller).
matrix<double> teacher_values(const matrix<double>& t, teacher_input input) {
    if (input == teacher_input::logits) return t;
    matrix<double> out(t.rows(), t.cols());
    for (Eigen::Index i = 0; i < t.rows(); ++i) {
        const double m = t.row(i).maxCoeff();
        double z = 0;
        for (Eigen::Index j = 0; j < t.cols(); ++j) z += std::exp(t(i, j) - m);
        for (Eigen::Index j = 0; j < t.cols(); ++j) {
            const double lp = t(i, j) - m - std::log(z);
            out(i, j) = input == teacher_input::probabilities ? std::exp(lp) : lp;
        }
    }
    return out;
}

// Largest error seen, as a fraction of its bound, and how many values were compared: printed once
// per run for docs/math.md.
struct observed {
    double loss = 0, grad = 0;
    long long losses = 0, entries = 0;
};
observed& seen() {
    static observed o;
    return o;
}

// Counts the values outside their bound and describes the first, so that millions of entries cost
// no Catch assertion each.
struct misses {
    long long count = 0;
    std::string first;
    template <class Describe>
    void expect(bool ok, Describe&& describe) {
        if (!ok && count++ == 0) first = describe();
    }
};

// One functor call's settings, as the row kernels see them under reduction::none.
struct call_terms {
    row_terms k;
    double w_soft = 0, w_hard = 0;  // the row loss = w_soft D + w_hard CE
};

call_terms terms_for(const distill::divergence& d, teacher_input input, bool soft, bool hard, double T, double alpha,
                     double eps) {
    call_terms c;
    row_terms& k = c.k;
    k.soft = soft;
    k.hard = hard;
    k.temperature = soft ? T : 1.0;
    k.inv_temperature = 1.0 / k.temperature;
    k.integer_temperature = distill::detail::whole_temperature(k.temperature);
    k.smoothing = hard ? eps : 0.0;
    const double a = soft && hard ? alpha : 1.0;
    c.w_soft = soft ? a * T * T : 0.0;
    c.w_hard = hard ? (soft ? 1 - alpha : 1.0) : 0.0;
    k.soft_grad = c.w_soft / T;
    k.hard_grad = c.w_hard;
    distill_test::set_divergence(k, d);
    distill_test::set_teacher_input(k, input);
    return c;
}

// The 16-bit call's row losses and gradient against the double call's, row by row.
template <class G>
void compare_rows(const matrix<double>& s, const matrix<double>* t, const std::vector<std::int64_t>& labels,
                  const call_terms& c, const std::vector<double>& losses, const std::vector<double>& losses_double,
                  const matrix<G>* grad, const matrix<double>* grad_double) {
    const std::ptrdiff_t C = s.cols();
    misses out;
    for (Eigen::Index i = 0; i < s.rows(); ++i) {
        const std::int64_t label = labels.empty() ? -1 : labels[static_cast<std::size_t>(i)];
        const double* ti = t ? t->row(i).data() : s.row(i).data();
        const distill_test::row_scales sc = distill_test::reference_scales(s.row(i).data(), ti, label, C, c.k);
        const double loss_scale = c.w_soft * sc.divergence + c.w_hard * sc.ce;
        const double a = losses[static_cast<std::size_t>(i)], b = losses_double[static_cast<std::size_t>(i)];
        const double loss_error = distill_test::scaled_error(a, b, loss_scale);
        out.expect(loss_error <= float_bound, [&] {
            return "row " + std::to_string(i) + ": loss " + std::to_string(a) + ", double " + std::to_string(b) +
                   ", scale " + std::to_string(loss_scale);
        });
        seen().loss = std::max(seen().loss, loss_error / float_bound);
        ++seen().losses;
        if (!grad) continue;
        const double e = float_bound * sc.grad;
        for (std::ptrdiff_t j = 0; j < C; ++j) {
            const double g = static_cast<double>((*grad)(i, j)), gd = (*grad_double)(i, j);
            const double bound = e + unit_roundoff<G>() * (std::abs(gd) + e) + subnormal_rounding<G>() + sc.grad_slack;
            out.expect(std::abs(g - gd) <= bound, [&] {
                return "row " + std::to_string(i) + ", column " + std::to_string(j) + ": gradient " + std::to_string(g) +
                       ", double " + std::to_string(gd) + ", bound " + std::to_string(bound);
            });
            seen().grad = std::max(seen().grad, std::abs(g - gd) / bound);
            ++seen().entries;
        }
    }
    INFO(s.rows() << " x " << C << ", first value outside its bound: " << out.first);
    CHECK(out.count == 0);
}

// Runs `call(grad)` (a loss_and_grad under reduction::none, or loss() with a null gradient) for the
// 16-bit functor with a float and a 16-bit gradient and for the double functor, and compares them.
// loss() must give the very loss loss_and_grad gives, whichever gradient buffer (parked in or not).
template <class H, class Call16, class CallDouble>
void check_call(const matrix<double>& s, const matrix<double>* t, const std::vector<std::int64_t>& labels,
                const call_terms& c, Call16&& call16, CallDouble&& call_double) {
    const auto N = s.rows(), C = s.cols();
    const auto size = static_cast<std::size_t>(N);
    std::vector<double> l_double(size), l_float(size), l_narrow(size), l_none(size);
    matrix<double> g_double(N, C);
    matrix<float> g_float(N, C);
    matrix<H> g_narrow(N, C);
    call_double(g_double, l_double);
    const auto v_float = call16(&g_float, l_float);
    const auto v_narrow = call16(&g_narrow, l_narrow);
    const auto v_none = call16(static_cast<matrix<float>*>(nullptr), l_none);
    {
        INFO("float gradient");
        compare_rows(s, t, labels, c, l_float, l_double, &g_float, &g_double);
    }
    {
        INFO("16-bit gradient");
        compare_rows(s, t, labels, c, l_narrow, l_double, &g_narrow, &g_double);
    }
    CHECK(v_float == v_narrow);
    CHECK(v_none == v_narrow);
    CHECK(l_float == l_narrow);
    CHECK(l_none == l_narrow);
}

std::vector<std::int64_t> labels_with_tail(std::ptrdiff_t N, std::ptrdiff_t C, std::uint32_t seed) {
    std::vector<std::int64_t> y = distill_test::random_labels(N, C, seed);
    y[0] = C - 1;  // in the tail (or the last full vector)
    if (N > 1) y[1] = 0;
    return y;
}

// Every functor on one N x C shape of 16-bit logits.
template <class H>
void check_every_functor(std::ptrdiff_t N, std::ptrdiff_t C, std::uint32_t seed, bool whole_family) {
    const matrix<H> s16 = distill_test::random_logits<H>(N, C, seed);
    const matrix<double> s = widened(s16);
    const matrix<double> t_logits = widened(distill_test::random_logits<H>(N, C, seed + 1));
    const std::vector<std::int64_t> y = labels_with_tail(N, C, seed + 2);
    INFO(N << " x " << C);
    using distill::per_row;
    using distill::reduction;

    // distillation_loss: each divergence, at a fractional T with smoothing and at a whole T.
    const auto family = whole_family ? distill_test::all_divergences()
                                     : std::vector<distill::divergence>{distill::forward_kl{}, distill::jensen_shannon{0.5},
                                                                        distill::decoupled_kd{}};
    for (const distill::divergence& d : family)
        for (auto [T, alpha, eps] : {std::tuple{2.5, 0.3, 0.1}, std::tuple{2.0, 0.7, 0.0}}) {
            INFO("distillation_loss, " << distill_test::describe(d) << ", T = " << T);
            const distill::distillation_options o{.temperature = T, .alpha = alpha, .label_smoothing = eps,
                                                  .reduce = reduction::none, .divergence = d};
            const matrix<H> t16 = narrowed<H>(t_logits);
            const matrix<double> t = widened(t16);
            const distill::distillation_loss<H> f(o);
            const distill::distillation_loss<double> fd(o);
            check_call<H>(s, &t, y, terms_for(d, teacher_input::logits, true, true, T, alpha, eps),
                          [&](auto* g, std::vector<double>& l) {
                              return g ? f.loss_and_grad(s16, t16, y, *g, per_row{.losses = l}).total
                                       : f.loss(s16, t16, y, per_row{.losses = l}).total;
                          },
                          [&](matrix<double>& g, std::vector<double>& l) { fd.loss_and_grad(s, t, y, g, per_row{.losses = l}); });
        }
    // The teacher as log-probabilities and as probabilities, rounded to 16 bits.
    for (teacher_input input : {teacher_input::log_probabilities, teacher_input::probabilities})
        for (const distill::divergence& d : {distill::divergence{distill::forward_kl{}}, distill::divergence{distill::skew_kl{0.1}}}) {
            INFO("distillation_loss, " << distill_test::describe(d) << ", teacher " << distill_test::describe(input));
            const matrix<H> t16 = narrowed<H>(teacher_values(t_logits, input));
            const matrix<double> t = widened(t16);
            const distill::distillation_options o{.temperature = 4.0, .alpha = 0.5, .reduce = reduction::none,
                                                  .divergence = d, .teacher = input};
            const distill::distillation_loss<H> f(o);
            const distill::distillation_loss<double> fd(o);
            check_call<H>(s, &t, y, terms_for(d, input, true, true, 4.0, 0.5, 0.0),
                          [&](auto* g, std::vector<double>& l) {
                              return g ? f.loss_and_grad(s16, t16, y, *g, per_row{.losses = l}).total
                                       : f.loss(s16, t16, y, per_row{.losses = l}).total;
                          },
                          [&](matrix<double>& g, std::vector<double>& l) { fd.loss_and_grad(s, t, y, g, per_row{.losses = l}); });
        }
    // divergence_loss and kl_divergence: no labels.
    const matrix<H> t16 = narrowed<H>(t_logits);
    const matrix<double> t = widened(t16);
    const auto label_free = whole_family ? distill_test::label_free_divergences()
                                         : std::vector<distill::divergence>{distill::reverse_kl{}, distill::total_variation{}};
    for (const distill::divergence& d : label_free) {
        INFO("divergence_loss, " << distill_test::describe(d));
        const distill::divergence_options o{.divergence = d, .temperature = 1.5, .reduce = reduction::none};
        const distill::divergence_loss<H> f(o);
        const distill::divergence_loss<double> fd(o);
        check_call<H>(s, &t, {}, terms_for(d, teacher_input::logits, true, false, 1.5, 1.0, 0.0),
                      [&](auto* g, std::vector<double>& l) {
                          return g ? f.loss_and_grad(s16, t16, *g, per_row{.losses = l}).total
                                   : f.loss(s16, t16, per_row{.losses = l}).total;
                      },
                      [&](matrix<double>& g, std::vector<double>& l) { fd.loss_and_grad(s, t, g, per_row{.losses = l}); });
    }
    {
        INFO("kl_divergence");
        const distill::kl_divergence<H> f({.temperature = 3.0, .reduce = reduction::none});
        const distill::kl_divergence<double> fd({.temperature = 3.0, .reduce = reduction::none});
        check_call<H>(s, &t, {}, terms_for(distill::forward_kl{}, teacher_input::logits, true, false, 3.0, 1.0, 0.0),
                      [&](auto* g, std::vector<double>& l) {
                          return g ? f.loss_and_grad(s16, t16, *g, per_row{.losses = l}).total
                                   : f.loss(s16, t16, per_row{.losses = l}).total;
                      },
                      [&](matrix<double>& g, std::vector<double>& l) { fd.loss_and_grad(s, t, g, per_row{.losses = l}); });
    }
    {
        INFO("cross_entropy");
        const distill::cross_entropy<H> f({.label_smoothing = 0.2, .reduce = reduction::none});
        const distill::cross_entropy<double> fd({.label_smoothing = 0.2, .reduce = reduction::none});
        check_call<H>(s, nullptr, y, terms_for(distill::forward_kl{}, teacher_input::logits, false, true, 1.0, 0.0, 0.2),
                      [&](auto* g, std::vector<double>& l) {
                          return g ? f.loss_and_grad(s16, y, *g, per_row{.losses = l}).total
                                   : f.loss(s16, y, per_row{.losses = l}).total;
                      },
                      [&](matrix<double>& g, std::vector<double>& l) { fd.loss_and_grad(s, y, g, per_row{.losses = l}); });
    }
}

}  // namespace

TEMPLATE_TEST_CASE("16-bit conversions agree bit for bit with Eigen's scalar ones", "[half_precision]", Eigen::bfloat16,
                   Eigen::half) {
    using H = TestType;
    namespace simd = distill::detail::simd;
    // Widening: every one of the 65536 bit patterns, a full vector at a time.
    std::vector<H> all(65536);
    for (std::uint32_t b = 0; b < 65536; ++b) all[b] = std::bit_cast<H>(static_cast<std::uint16_t>(b));
    int wrong = 0;
    for (std::size_t b = 0; b < all.size(); b += lanes) {
        alignas(64) float lane[64];
        simd::load<arch>(all.data() + b, lanes, 0.0f).store_unaligned(lane);
        for (std::ptrdiff_t j = 0; j < lanes; ++j) {
            const float want = static_cast<float>(all[b + static_cast<std::size_t>(j)]);
            const bool same = std::isnan(want) ? std::isnan(lane[j]) : std::memcmp(&want, &lane[j], 4) == 0;
            wrong += same ? 0 : 1;
        }
    }
    CHECK(wrong == 0);
    // Narrowing: random float bit patterns, exact ties, values that round to the largest finite value
    // or overflow, subnormals, zeros, infinities and NaNs of both signs.
    std::vector<float> x;
    std::mt19937 gen(5);
    for (int i = 0; i < 200000; ++i) x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(gen())));
    for (std::uint32_t b : {0x3F808000u, 0x3F818000u, 0x3F800001u, 0x7F7FFFFFu, 0x7F7F8000u, 0x00000001u, 0x80000001u,
                            0x00008000u, 0x3F801000u, 0x3F803000u, 0x477FF000u, 0x477FE000u, 0x33000000u, 0x33000001u})
        for (std::uint32_t sign : {0u, 0x80000000u}) x.push_back(std::bit_cast<float>(b | sign));
    for (float v : {0.0f, -0.0f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(), 65504.0f, 65520.0f,
                    1e-8f, 6e-8f, 3e-8f})
        x.push_back(v);
    while (x.size() % static_cast<std::size_t>(lanes) != 0) x.push_back(1.0f);
    std::vector<H> out(x.size());
    for (std::size_t i = 0; i < x.size(); i += lanes)
        simd::store<arch>(out.data() + i, lanes, xsimd::batch<float, arch>::load_unaligned(x.data() + i));
    wrong = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const H want(x[i]);
        const bool same = std::isnan(x[i]) ? std::isnan(static_cast<float>(out[i]))
                                           : std::bit_cast<std::uint16_t>(want) == std::bit_cast<std::uint16_t>(out[i]);
        if (!same && wrong++ < 5) FAIL_CHECK("float bits " << std::bit_cast<std::uint32_t>(x[i]) << " narrowed wrongly");
    }
    CHECK(wrong == 0);
    // Tails: n < lanes elements, the rest filled or left alone.
    for (std::ptrdiff_t n = 0; n < lanes; ++n) {
        const auto v = simd::load<arch>(all.data() + 15360, n, -1.0f);
        alignas(64) float lane[64];
        v.store_unaligned(lane);
        for (std::ptrdiff_t j = 0; j < lanes; ++j)
            CHECK(lane[j] == (j < n ? static_cast<float>(all[15360 + static_cast<std::size_t>(j)]) : -1.0f));
        std::vector<H> dst(static_cast<std::size_t>(lanes), H(7.0f));
        simd::store<arch>(dst.data(), n, v);
        for (std::ptrdiff_t j = 0; j < lanes; ++j)
            CHECK(static_cast<float>(dst[static_cast<std::size_t>(j)]) ==
                  (j < n ? static_cast<float>(all[15360 + static_cast<std::size_t>(j)]) : 7.0f));
    }
}

TEMPLATE_TEST_CASE("16-bit logits, every functor and divergence, every tail length: float and 16-bit gradients match "
                   "the double functor on the same inputs",
                   "[half_precision]", Eigen::bfloat16, Eigen::half) {
    for (std::ptrdiff_t C = 1; C <= 2 * lanes + 3; ++C) check_every_functor<TestType>(3, C, 100u + static_cast<std::uint32_t>(C), true);
    // Several blocks per row: rows split into segments that run as separate work items (few rows),
    // or one after another (many rows).
    check_every_functor<TestType>(4, 5000 + 3, 7u, false);
    check_every_functor<TestType>(70, 2100 + 5, 8u, false);
    std::printf("half_precision (%s): largest error %.3g of the loss bound over %lld row losses, %.3g of the gradient "
                "bound over %lld entries\n",
                std::is_same_v<TestType, Eigen::bfloat16> ? "bfloat16" : "half", seen().loss, seen().losses, seen().grad,
                seen().entries);
    seen() = {};
}

TEMPLATE_TEST_CASE("16-bit logits, a 512 x 32000 language-model batch: mean loss and gradients match the double "
                   "functor, and are bitwise the same for every thread count",
                   "[half_precision]", Eigen::bfloat16, Eigen::half) {
    using H = TestType;
    const std::ptrdiff_t N = 512, C = 32000;
    const matrix<H> s16 = distill_test::random_logits<H>(N, C, 41u), t16 = distill_test::random_logits<H>(N, C, 42u);
    const std::vector<std::int64_t> y = labels_with_tail(N, C, 43u);
    const matrix<double> s = widened(s16), t = widened(t16);
    const distill::distillation_options o{.temperature = 2.0, .alpha = 0.5, .reduce = distill::reduction::none};
    const distill::distillation_loss<H> f(o);
    std::vector<double> l(static_cast<std::size_t>(N)), l_double(l.size()), l_narrow(l.size());
    matrix<float> g_float(N, C);
    matrix<H> g_narrow(N, C);
    matrix<double> g_double(N, C);
    distill::distillation_loss<double>(o).loss_and_grad(s, t, y, g_double, distill::per_row{.losses = l_double});
    f.loss_and_grad(s16, t16, y, g_float, distill::per_row{.losses = l});
    f.loss_and_grad(s16, t16, y, g_narrow, distill::per_row{.losses = l_narrow});
    const call_terms c = terms_for(distill::forward_kl{}, teacher_input::logits, true, true, 2.0, 0.5, 0.0);
    compare_rows(s, &t, y, c, l, l_double, &g_float, &g_double);
    compare_rows(s, &t, y, c, l_narrow, l_double, &g_narrow, &g_double);
    seen() = {};

    // The mean over the rows, from one executor to another: the same bits.
    const distill::distillation_loss<H> mean({.temperature = 2.0, .alpha = 0.5});
    matrix<float> g1(N, C), g2(N, C);
    matrix<H> h1(N, C), h2(N, C);
    const distill::loss_value v1 = mean.loss_and_grad(s16, t16, y, g1);
    const distill::loss_value w1 = mean.loss_and_grad(s16, t16, y, h1);
    for (int threads : {2, 3, 8}) {
        INFO(threads << " threads");
        const distill_test::thread_executor pool{threads};
        const distill::loss_value v2 = mean.loss_and_grad(pool, s16, t16, y, g2);
        const distill::loss_value w2 = mean.loss_and_grad(pool, s16, t16, y, h2);
        CHECK(v2.total == v1.total);
        CHECK(w2.total == w1.total);
        CHECK(g2 == g1);
        CHECK(std::memcmp(h2.data(), h1.data(), sizeof(H) * static_cast<std::size_t>(N * C)) == 0);
    }
    // A few long rows: each cut into segments that run on different threads.
    const matrix<H> s4 = s16.topRows(4), t4 = t16.topRows(4);
    const std::vector<std::int64_t> y4(y.begin(), y.begin() + 4);
    matrix<H> a(4, C), b(4, C);
    const distill::distillation_loss<H> js({.temperature = 2.0, .alpha = 0.5, .divergence = distill::jensen_shannon{0.5}});
    const double one = js.loss_and_grad(s4, t4, y4, a).total;
    const double many = js.loss_and_grad(distill_test::thread_executor{8}, s4, t4, y4, b).total;
    CHECK(one == many);
    CHECK(std::memcmp(a.data(), b.data(), sizeof(H) * static_cast<std::size_t>(4 * C)) == 0);
}

TEMPLATE_TEST_CASE("16-bit gradient written over the 16-bit student logits: the out-of-place bits", "[half_precision]",
                   Eigen::bfloat16, Eigen::half) {
    using H = TestType;
    for (auto [N, C] : {std::pair<std::ptrdiff_t, std::ptrdiff_t>{3, 2 * lanes + 3}, {4, 5003}, {70, 2105}})
        for (const distill::divergence& d : distill_test::all_divergences()) {
            INFO(N << " x " << C << ", " << distill_test::describe(d));
            const matrix<H> s16 = distill_test::random_logits<H>(N, C, 3u), t16 = distill_test::random_logits<H>(N, C, 4u);
            const std::vector<std::int64_t> y = labels_with_tail(N, C, 5u);
            const distill::distillation_loss<H> f({.temperature = 2.0, .alpha = 0.5, .label_smoothing = 0.1, .divergence = d});
            matrix<H> out(N, C), in_place = s16;
            const double a = f.loss_and_grad(s16, t16, y, out).total;
            const double b = f.loss_and_grad(in_place, t16, y, in_place).total;
            CHECK(a == b);
            CHECK(std::memcmp(out.data(), in_place.data(), sizeof(H) * static_cast<std::size_t>(N * C)) == 0);
        }
}

TEMPLATE_TEST_CASE("16-bit student and top-k teacher values: float and 16-bit gradients match the double functor",
                   "[half_precision]", Eigen::bfloat16, Eigen::half) {
    using H = TestType;
    using index_matrix = Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    std::vector<std::pair<std::ptrdiff_t, std::ptrdiff_t>> shapes;
    for (std::ptrdiff_t C = 1; C <= 2 * lanes + 3; ++C) shapes.push_back({3, C});
    shapes.push_back({64, 32000});
    for (auto [N, C] : shapes)
        for (auto mode : {distill::top_k_mode::tail_bucket, distill::top_k_mode::renormalize}) {
            const std::ptrdiff_t k = std::min<std::ptrdiff_t>(C, C > 100 ? 64 : 5);
            INFO(N << " x " << C << ", k = " << k << (mode == distill::top_k_mode::renormalize ? ", renormalize" : ", tail_bucket"));
            const matrix<H> s16 = distill_test::random_logits<H>(N, C, 61u + static_cast<std::uint32_t>(C));
            const matrix<double> s = widened(s16);
            const matrix<double> t_full = widened(distill_test::random_logits<H>(N, C, 62u + static_cast<std::uint32_t>(C)));
            const teacher_input input =
                mode == distill::top_k_mode::renormalize ? teacher_input::logits : teacher_input::log_probabilities;
            const matrix<double> tv = teacher_values(t_full, input);
            // The k largest teacher classes of each row, and their values rounded to 16 bits.
            index_matrix idx(N, k);
            matrix<H> v16(N, k);
            for (Eigen::Index i = 0; i < N; ++i) {
                std::vector<std::int32_t> order(static_cast<std::size_t>(C));
                std::iota(order.begin(), order.end(), 0);
                std::partial_sort(order.begin(), order.begin() + k, order.end(),
                                  [&](std::int32_t a, std::int32_t b) { return t_full(i, a) > t_full(i, b); });
                for (std::ptrdiff_t j = 0; j < k; ++j) {
                    idx(i, j) = order[static_cast<std::size_t>(j)];
                    v16(i, j) = H(static_cast<float>(tv(i, order[static_cast<std::size_t>(j)])));
                }
            }
            const matrix<double> v = widened(v16);
            const std::vector<std::int64_t> y = labels_with_tail(N, C, 63u);
            const distill::distillation_options o{.temperature = 2.0, .alpha = 0.6, .label_smoothing = 0.1,
                                                  .reduce = distill::reduction::none, .teacher = input};
            // Log-probabilities rounded to 16 bits move each p by up to u |log p| (relative): the
            // top-k mass may exceed 1 by u times the top k's entropy term sum p |log p|, a few 1e-3
            // in bfloat16, far above the default tolerance of 1e-4 meant for float values.
            const distill::top_k_options to{.mode = mode, .mass_tolerance = 0.05};
            std::vector<double> l_double(static_cast<std::size_t>(N)), l_float(l_double.size()), l_narrow(l_double.size());
            matrix<double> g_double(N, C);
            matrix<float> g_float(N, C);
            matrix<H> g_narrow(N, C);
            distill::top_k_distillation_loss<double>(o, to).loss_and_grad(s, distill::top_k(idx, v), y, g_double,
                                                                           distill::per_row{.losses = l_double});
            const distill::top_k_distillation_loss<H> f(o, to);
            f.loss_and_grad(s16, distill::top_k(idx, v16), y, g_float, distill::per_row{.losses = l_float});
            f.loss_and_grad(s16, distill::top_k(idx, v16), y, g_narrow, distill::per_row{.losses = l_narrow});
            CHECK(l_float == l_narrow);
            misses out;
            // Scales over the k + 1 categories, by tests/differential.hpp's rule for forward KL:
            // loss: sum p (|log p| + |log q| + 2) + the CE scale; gradient entry: soft_grad (q_c + p_c)
            // + hard_grad (r_c + target_c), p_c of a class outside the k being its share of the tail.
            for (Eigen::Index i = 0; i < N; ++i) {
                const double T = 2.0, alpha = 0.6, eps = 0.1;
                const double ms = s.row(i).maxCoeff();
                std::vector<double> lq(static_cast<std::size_t>(C)), lr(lq.size()), p(lq.size(), -1.0);
                double zq = 0, zr = 0;
                for (Eigen::Index c = 0; c < C; ++c) zq += std::exp((s(i, c) - ms) / T), zr += std::exp(s(i, c) - ms);
                for (Eigen::Index c = 0; c < C; ++c)
                    lq[static_cast<std::size_t>(c)] = (s(i, c) - ms) / T - std::log(zq), lr[static_cast<std::size_t>(c)] = s(i, c) - ms - std::log(zr);
                double z_top = 0, top_q = 0;
                for (std::ptrdiff_t j = 0; j < k; ++j) z_top += input == teacher_input::logits ? std::exp(v(i, j) / T) : std::exp(v(i, j));
                double loss_scale = 0;
                for (std::ptrdiff_t j = 0; j < k; ++j) {
                    const double lp = input == teacher_input::logits ? v(i, j) / T - std::log(z_top) : v(i, j);
                    const auto c = static_cast<std::size_t>(idx(i, j));
                    p[c] = std::exp(lp);
                    top_q += std::exp(lq[c]);
                    loss_scale += p[c] * (std::abs(lp) + std::abs(lq[c]) + 2);
                }
                const double p_tail = mode == distill::top_k_mode::renormalize ? 0.0 : std::max(0.0, 1 - z_top);
                const double q_tail = std::max(0.0, 1 - top_q);
                if (p_tail > 0) loss_scale += p_tail * (std::abs(std::log(p_tail)) + std::abs(std::log(q_tail)) + 2);
                loss_scale *= alpha * T * T;
                const auto yi = static_cast<std::size_t>(y[static_cast<std::size_t>(i)]);
                loss_scale += (1 - alpha) * ((1 - eps) * (std::abs(lr[yi]) + 1));
                double grad_scale = 0;
                for (std::size_t c = 0; c < static_cast<std::size_t>(C); ++c) {
                    const double q = std::exp(lq[c]), pc = p[c] >= 0 ? p[c] : (q_tail > 0 ? q / q_tail * p_tail : 0.0);
                    if (eps > 0) loss_scale += (1 - alpha) * eps / static_cast<double>(C) * (std::abs(lr[c]) + 1);
                    grad_scale = std::max(grad_scale, alpha * T * (q + pc) + (1 - alpha) * (std::exp(lr[c]) + (c == yi ? 1 - eps : 0.0) + eps / static_cast<double>(C)));
                }
                out.expect(distill_test::scaled_error(l_float[static_cast<std::size_t>(i)], l_double[static_cast<std::size_t>(i)],
                                                      loss_scale) <= float_bound,
                           [&] { return "loss of row " + std::to_string(i); });
                const double e = float_bound * grad_scale;
                for (Eigen::Index c = 0; c < C; ++c) {
                    const double gd = g_double(i, c);
                    const double in_float = static_cast<double>(g_float(i, c)), in_16 = static_cast<double>(g_narrow(i, c));
                    out.expect(std::abs(in_float - gd) <= e && std::abs(in_16 - gd) <= e + unit_roundoff<H>() * (std::abs(gd) + e) +
                                                                                    subnormal_rounding<H>(),
                               [&] {
                                   return "row " + std::to_string(i) + ", column " + std::to_string(c) + ": " +
                                          std::to_string(in_float) + " (float), " + std::to_string(in_16) +
                                          " (16-bit), double " + std::to_string(gd);
                               });
                }
            }
            INFO("first value outside its bound: " << out.first);
            CHECK(out.count == 0);
        }
}

TEMPLATE_TEST_CASE("16-bit logits: class weights in float, check_finite, and refusals name the 16-bit arguments",
                   "[half_precision]", Eigen::bfloat16, Eigen::half) {
    using H = TestType;
    const std::ptrdiff_t N = 5, C = 2 * lanes + 3;
    const matrix<H> s16 = distill_test::random_logits<H>(N, C, 71u), t16 = distill_test::random_logits<H>(N, C, 72u);
    const matrix<double> s = widened(s16), t = widened(t16);
    const std::vector<std::int64_t> y = labels_with_tail(N, C, 73u);
    // Class weights that 16 bits cannot hold (kept in float, as the kernels read them): the rows
    // against the double functor's, with the hard term's scales taken at the largest weight (1.3),
    // which bounds every weighted term of the CE and of its gradient.
    std::vector<double> w(static_cast<std::size_t>(C));
    for (std::size_t c = 0; c < w.size(); ++c) w[c] = 0.7 + 0.6 * static_cast<double>(c) / static_cast<double>(C) + 1e-4;
    const distill::distillation_options o{.temperature = 2.0, .alpha = 0.5, .label_smoothing = 0.1,
                                          .reduce = distill::reduction::none, .class_weights = w};
    matrix<float> g(N, C);
    matrix<H> g16(N, C);
    matrix<double> gd(N, C);
    std::vector<double> l(static_cast<std::size_t>(N)), l16(l.size()), ld(l.size());
    distill::distillation_loss<H>(o).loss_and_grad(s16, t16, y, g, distill::per_row{.losses = l});
    distill::distillation_loss<H>(o).loss_and_grad(s16, t16, y, g16, distill::per_row{.losses = l16});
    distill::distillation_loss<double>(o).loss_and_grad(s, t, y, gd, distill::per_row{.losses = ld});
    call_terms c = terms_for(distill::forward_kl{}, teacher_input::logits, true, true, 2.0, 0.5, 0.1);
    c.w_hard *= 1.3;
    c.k.hard_grad *= 1.3;
    compare_rows(s, &t, y, c, l, ld, &g, &gd);
    compare_rows(s, &t, y, c, l16, ld, &g16, &gd);
    seen() = {};

    matrix<H> bad = s16;
    bad(2, 3) = H(std::numeric_limits<float>::quiet_NaN());
    distill::loss_value v;
    const distill::status st = distill::kl_divergence<H>({.check_finite = true}).try_loss_and_grad(bad, t16, g, v);
    CHECK(!st.ok());
    CHECK_THAT(std::string(st.message()), Catch::Matchers::Contains("student logits: element (2, 3) is NaN"));
    matrix<H> g_small(N, C - 1);
    const distill::status shape = distill::kl_divergence<H>().try_loss_and_grad(s16, t16, g_small, v);
    CHECK_THAT(std::string(shape.message()), Catch::Matchers::Contains("gradient buffer is"));
}

TEMPLATE_TEST_CASE("16-bit logits: -inf masks and NaN behave as in float", "[half_precision]", Eigen::bfloat16,
                   Eigen::half) {
    using H = TestType;
    constexpr float inf = std::numeric_limits<float>::infinity();
    const std::ptrdiff_t N = 3, C = 2 * lanes + 3;
    matrix<H> s16 = distill_test::random_logits<H>(N, C, 81u), t16 = distill_test::random_logits<H>(N, C, 82u);
    // Row 0: a class masked in both (in the tail) and one the teacher alone masks (in a full vector);
    // row 1: every class but two masked in both.
    s16(0, C - 1) = t16(0, C - 1) = H(-inf);
    t16(0, 3) = H(-inf);
    for (std::ptrdiff_t c = 2; c < C; ++c) s16(1, c) = t16(1, c) = H(-inf);
    const std::vector<std::int64_t> y = {0, 1, 5};
    const distill::distillation_options o{.temperature = 2.0, .alpha = 0.5, .reduce = distill::reduction::none};
    const matrix<double> s = widened(s16), t = widened(t16);
    std::vector<double> l(static_cast<std::size_t>(N)), l16(l.size()), ld(l.size());
    matrix<float> g(N, C);
    matrix<H> g16(N, C);
    matrix<double> gd(N, C);
    distill::distillation_loss<H>(o).loss_and_grad(s16, t16, y, g, distill::per_row{.losses = l});
    distill::distillation_loss<H>(o).loss_and_grad(s16, t16, y, g16, distill::per_row{.losses = l16});
    distill::distillation_loss<double>(o).loss_and_grad(s, t, y, gd, distill::per_row{.losses = ld});
    const call_terms c = terms_for(distill::forward_kl{}, teacher_input::logits, true, true, 2.0, 0.5, 0.0);
    compare_rows(s, &t, y, c, l, ld, &g, &gd);
    compare_rows(s, &t, y, c, l16, ld, &g16, &gd);
    // A class masked in both gets exactly 0 (q = r = p = 0).
    CHECK(static_cast<float>(g16(0, C - 1)) == 0.0f);
    CHECK(static_cast<float>(g16(1, C - 1)) == 0.0f);
    seen() = {};

    // A NaN logit reaches its row's loss and gradient as NaN, in both gradient types.
    s16(2, 4) = H(std::numeric_limits<float>::quiet_NaN());
    const distill::distillation_loss<H> f(o);
    f.loss_and_grad(s16, t16, y, g, distill::per_row{.losses = l});
    f.loss_and_grad(s16, t16, y, g16, distill::per_row{.losses = l16});
    CHECK(std::isnan(l[2]));
    CHECK(std::isnan(l16[2]));
    CHECK(std::isnan(g(2, 0)));
    CHECK(std::isnan(static_cast<float>(g16(2, 0))));
    CHECK(std::isfinite(l16[0]));
}
