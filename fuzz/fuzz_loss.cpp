// libFuzzer target: every loss (and softmax) through the public API, with every divergence of the
// family and each kind of teacher input, on inputs read from the fuzzer's bytes, checked against an
// independent model of what docs/design.md and docs/api.md promise:
//   - invalid options, shapes or labels give a clean error: the throwing constructor or the try_
//     call fails with the predicted code, and the message names the loss, the argument and value;
//   - valid input: each row's loss and gradient match the reference kernel (tests/differential.hpp
//     bound, relative to the size of the terms), the reduced totals match the rows, rows_counted
//     is right, loss() equals loss_and_grad() and the result does not depend on the executor;
//   - the loss is +inf where one side masks a class the other gives mass (the student for forward
//     KL, skew KL at skew 0 and decoupled KD, the teacher for reverse KL and skew reverse KL at
//     skew 0; never for the bounded divergences), or where the student masks the label's class;
//     NaN exactly where a used value is NaN or +inf (or a teacher probability is negative); finite
//     otherwise; gradients are finite where the loss is, and each row sums to ~0; ignored rows are
//     exactly 0.
// Any violated check aborts (a finding); ASan and UBSan watch every call.
//
// Input layout (missing bytes read as 0; docs/reliability.md has the figures):
//   [0] flags: bit 0 double; bits 1-2 loss (0 Hinton, 1 Hinton without labels, 2 kl_divergence,
//       3 cross_entropy); bits 3-4 reduction (none, sum, mean, divide_by); bit 5 check_finite;
//       bit 6 row mask; bit 7 no T^2 factor
//   [1] N = byte % 17   [2,3] C = u16 % 2600   [4] T, [5] alpha, [6] label smoothing: a table
//       index, or >= 16: 8 raw bytes of a double follow   [7] bits 0-1 ignore_index, bits 4-6
//       normalizer (tables), bit 7 a family block follows the seed   [8] bits 0-2 student scale,
//       bits 3-5 teacher style, bit 6 also run softmax/log_softmax, bit 7 no per-row losses
//       [9..12] generator seed
//   family block (only with [7] bit 7, so that inputs without it mean forward KL on teacher logits,
//   as before the family existed): a byte, bits 0-2 the divergence (forward KL, reverse KL,
//   Jensen-Shannon, skew KL, skew reverse KL, total variation, decoupled KD, forward KL), bits 3-4
//   the teacher input (logits, log-probabilities, probabilities, logits), bit 5 divergence_loss
//   instead of kl_divergence for loss 2; then Jensen-Shannon's beta or the skew (a table index or
//   a raw double, as above), or decoupled KD's two weights
//   then N label codes, N mask bytes (bit 6), an edit count and the edits: a kind byte, a u16
//   position and a value code or raw float/double bits (kinds in apply_edit). Teacher
//   probabilities are generated as exp(t - max t) of the generated logits, before the edits.
//   Top-k block (family byte bit 6, losses 0 and 1 only): top_k_distillation_loss with the teacher
//   as its top k classes. Its header follows the divergence's parameters (read_top_k: mode,
//   padding index, 32-bit indices, mass_tolerance, k up to 1,100); after the dense edits, the
//   teacher's k largest classes per row become its indices and values (make_top_k), then a top-k
//   edit count and the top-k edits (apply_top_k_edit). The checks are the same, read off the k + 1
//   categories (check_top_k_valid), against the reference kernels of the same loss.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <distill/distill.hpp>
#include <distill/top_k_distillation_loss.hpp>

#include "../tests/differential.hpp"
#include "../tests/family.hpp"

namespace {

[[noreturn]] void finding(const char* what, const std::string& detail) {
    std::fprintf(stderr, "FINDING: %s\n  %s\n", what, detail.c_str());
    std::abort();
}
#define EXPECT(cond, detail)                                  \
    do {                                                      \
        if (!(cond)) finding(#cond, std::string() + detail); \
    } while (0)

struct reader {
    const std::uint8_t* data;
    std::size_t size, at = 0;
    std::uint8_t byte() { return at < size ? data[at++] : 0; }
    std::uint16_t u16() { return static_cast<std::uint16_t>(byte() | (byte() << 8)); }
    std::uint32_t u32() { return u16() | (static_cast<std::uint32_t>(u16()) << 16); }
    std::uint64_t u64() { return u32() | (static_cast<std::uint64_t>(u32()) << 32); }
    double raw_double() {
        const std::uint64_t bits = u64();
        double d;
        std::memcpy(&d, &bits, sizeof d);
        return d;
    }
    float raw_float() {
        const std::uint32_t bits = u32();
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return f;
    }
};

constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double nan = std::numeric_limits<double>::quiet_NaN();

double option_value(reader& in, const double (&table)[16]) {
    const std::uint8_t code = in.byte();
    return code < 16 ? table[code] : in.raw_double();
}
constexpr double temperatures[16] = {1, 2, 4, 0.5, 2.5, 1e-3, 1e3, 16, 17, 0, -1, inf, nan, 1e-30, 1e30, 3};
constexpr double alphas[16] = {0.5, 0, 1, 0.3, 0.9, -0.1, 1.5, nan, 0.5, 0.7, 0.1, 1e-300, 1 - 1e-16, inf, 0.5, 0.5};
constexpr double smoothings[16] = {0, 0.1, 0.5, 0.99, 1, -0.1, nan, 0.3, 0, 0, 0.2, 1e-300, 1 - 1e-16, inf, 0, 0.05};
constexpr std::int64_t ignore_indices[4] = {-100, -1, 0, 5};
// Jensen-Shannon's beta and the skews: the ends, interior values, values just inside and outside.
constexpr double unit_values[16] = {0.5, 0, 1, 0.1, 0.9, 0.25, -0.1, 1.5, nan, inf, 1e-300, 1 - 1e-16, 0.7, 0.05, 0.99, 1e-16};
// Decoupled KD's weights: the paper's, 0, and invalid ones.
constexpr double dkd_weights[16] = {1, 8, 0, 0.5, 2, -1, nan, inf, 1e-300, 1e300, 100, 3, 0.1, 8, 1, -0.0};
constexpr distill::teacher_input teacher_inputs[4] = {distill::teacher_input::logits, distill::teacher_input::log_probabilities,
                                                      distill::teacher_input::probabilities, distill::teacher_input::logits};
constexpr double normalizers[8] = {1, 0, -1, inf, nan, 7, 1e-300, 1e300};
constexpr double scales[8] = {1, 3, 0.01, 30, 1e3, 1e-30, 1e30, 1e-41};

template <class T>
T special_value(std::uint8_t code) {
    using L = std::numeric_limits<T>;
    const T table[18] = {-L::infinity(), L::infinity(), L::quiet_NaN(), L::max(), -L::max(), L::min(),
                         L::denorm_min(), -L::denorm_min(), T(0), T(-0.0), T(1e30), T(-1e30), T(88.7), T(-87.4),
                         T(1e-40), T(3), T(-3), T(1e4)};
    return table[code % 18];
}

// xorshift: the bulk of the logits, so that short inputs still make long rows.
struct generator {
    std::uint64_t state;
    double uniform() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return static_cast<double>(state >> 11) * 0x1.0p-53;
    }
    double normal() { return (uniform() + uniform() + uniform() + uniform() - 2) * 1.7320508; }
};

enum class loss_kind { hinton, hinton_no_labels, kl, ce };

// The top-k block (family byte bit 6, Hinton losses only): top_k_distillation_loss instead of
// distillation_loss, with the teacher as its k classes per row (README of this file's header).
struct top_k_input {
    distill::top_k_mode mode = distill::top_k_mode::tail_bucket;
    std::int64_t padding_index = -1;
    bool int32_indices = false;
    double mass_tolerance = 1e-4;
    std::ptrdiff_t k = 0;
};

struct input {
    bool is_double = false, check_finite = false, use_mask = false, t_squared = true, run_softmax = false,
         per_row_losses = true;
    loss_kind kind = loss_kind::hinton;
    distill::divergence divergence = distill::forward_kl{};
    distill::teacher_input teacher = distill::teacher_input::logits;
    bool divergence_loss = false;  // loss 2 as divergence_loss rather than kl_divergence
    bool top_k = false;            // losses 0 and 1 as top_k_distillation_loss (the top-k block)
    top_k_input top;
    distill::reduction reduce = distill::reduction::mean;
    std::ptrdiff_t N = 0, C = 0;
    double T = 1, alpha = 0.5, eps = 0, normalizer = 1;
    std::int64_t ignore_index = -100;
    std::vector<std::int64_t> labels;
    std::vector<std::uint8_t> mask;
};

template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Edits: the hostile values, placed where the bytes say.
template <class T>
void apply_edit(reader& in, const input& x, matrix<T>& s, matrix<T>& t) {
    const std::uint8_t kind = in.byte();
    matrix<T>& m = (kind & 0x80) ? t : s;
    const std::ptrdiff_t elements = x.N * x.C;
    if (elements == 0) return;
    const std::ptrdiff_t at = in.u16() % elements, i = at / x.C, j = at % x.C;
    T* row = m.data() + i * x.C;
    switch ((kind & 0x7f) % 8) {
        case 0: row[j] = special_value<T>(in.byte()); break;
        case 1: row[j] = std::is_same_v<T, float> ? static_cast<T>(in.raw_float()) : static_cast<T>(in.raw_double()); break;
        case 2: std::fill(row, row + x.C, -std::numeric_limits<T>::infinity()); break;
        case 3: std::fill(row, row + x.C, special_value<T>(in.byte())); break;
        case 4: {  // mask every k-th class from j on
            const std::ptrdiff_t step = in.byte() % 7 + 1;
            for (std::ptrdiff_t c = j; c < x.C; c += step) row[c] = -std::numeric_limits<T>::infinity();
            break;
        }
        case 5: std::fill(row, row + x.C, static_cast<T>(scales[in.byte() % 8])); break;
        case 6: {  // the other matrix's row: teacher == student in that row
            const matrix<T>& other = (kind & 0x80) ? s : t;
            std::copy(other.data() + i * x.C, other.data() + (i + 1) * x.C, row);
            break;
        }
        default: {
            const T f = static_cast<T>(scales[in.byte() % 8]);
            for (std::ptrdiff_t c = 0; c < x.C; ++c) row[c] *= f;
            break;
        }
    }
}

// ---- the model: what the API must answer ----

struct expected_error {
    distill::errc code = distill::errc::ok;
    std::string text;  // a substring the message must contain
};

const char* loss_name(const input& x) {
    if (x.top_k) return "top_k_distillation_loss";
    if (x.kind == loss_kind::kl) return x.divergence_loss ? "divergence_loss" : "kl_divergence";
    return x.kind == loss_kind::ce ? "cross_entropy" : "distillation_loss";
}

constexpr std::int64_t padding_indices[4] = {-1, -1, 3, -7};
constexpr double mass_tolerances[8] = {1e-4, 0, 1e-2, 0.1, 0.2, nan, -1e-9, 1e-4};

// The top-k block's header: a byte (bit 0 renormalize, bits 1-2 the padding index, bit 3 32-bit
// indices, bits 4-6 mass_tolerance; tables above), then k: a byte b, k = b % 40 below 200, (b - 200)
// * 12 below 250, then 1024, 1025, 1023, 300, 513, and at 255 a u16 % 1100 follows.
top_k_input read_top_k(reader& in) {
    top_k_input z;
    const std::uint8_t f = in.byte();
    z.mode = (f & 1) ? distill::top_k_mode::renormalize : distill::top_k_mode::tail_bucket;
    z.padding_index = padding_indices[(f >> 1) & 3];
    z.int32_indices = f & 8;
    z.mass_tolerance = mass_tolerances[(f >> 4) & 7];
    const std::uint8_t b = in.byte();
    constexpr std::ptrdiff_t large[5] = {1024, 1025, 1023, 300, 513};
    if (b < 200) z.k = b % 40;
    else if (b < 250) z.k = (b - 200) * 12;
    else z.k = b < 255 ? large[b - 250] : in.u16() % 1100;
    return z;
}

// The family block: which divergence with which parameters, and the teacher input. Only the losses
// with a teacher read them; kl_divergence is forward KL whatever the block says.
void read_family(reader& in, input& x) {
    const std::uint8_t f = in.byte();
    x.teacher = teacher_inputs[(f >> 3) & 3];
    x.divergence_loss = f & 0x20;
    switch (f & 7) {
        case 1: x.divergence = distill::reverse_kl{}; break;
        case 2: x.divergence = distill::jensen_shannon{option_value(in, unit_values)}; break;
        case 3: x.divergence = distill::skew_kl{option_value(in, unit_values)}; break;
        case 4: x.divergence = distill::skew_reverse_kl{option_value(in, unit_values)}; break;
        case 5: x.divergence = distill::total_variation{}; break;
        case 6: {
            const double target = option_value(in, dkd_weights);
            x.divergence = distill::decoupled_kd{target, option_value(in, dkd_weights)};
            break;
        }
        default: x.divergence = distill::forward_kl{}; break;
    }
    if (x.kind == loss_kind::ce) x.teacher = distill::teacher_input::logits;
    if (x.kind == loss_kind::ce || (x.kind == loss_kind::kl && !x.divergence_loss)) x.divergence = distill::forward_kl{};
    if (f & 0x40) {
        const top_k_input z = read_top_k(in);
        x.top_k = x.kind == loss_kind::hinton || x.kind == loss_kind::hinton_no_labels;
        if (x.top_k) x.top = z;
    }
}

// The effective options of each loss: kl_divergence is alpha = 1, cross_entropy alpha = 0 and T = 1.
struct effective {
    double T, alpha, eps;
    bool has_teacher, has_labels;
};
effective effective_options(const input& x) {
    switch (x.kind) {
        case loss_kind::kl: return {x.T, 1.0, 0.0, true, false};
        case loss_kind::ce: return {1.0, 0.0, x.eps, false, true};
        case loss_kind::hinton_no_labels: return {x.T, x.alpha, x.eps, true, false};
        default: return {x.T, x.alpha, x.eps, true, true};
    }
}

char text_buffer[400];
template <class... A>
std::string format(const char* f, A... a) {
    std::snprintf(text_buffer, sizeof text_buffer, f, a...);
    return text_buffer;
}

expected_error option_error(const input& x) {
    const effective o = effective_options(x);
    if (!(o.T >= 1e-3 && o.T <= 1e3)) return {distill::errc::invalid_argument, "temperature must be in [0.001, 1000]"};
    if (!(o.alpha >= 0 && o.alpha <= 1)) return {distill::errc::invalid_argument, "alpha must be in [0, 1]"};
    if (o.has_teacher) {  // detail/validation.hpp: the divergence's parameters, after alpha
        const auto unit = [](double v) { return v >= 0 && v <= 1; };
        const distill::detail::divergence_choice d = distill::detail::choose(x.divergence);
        if (!unit(d.params.beta)) return {distill::errc::invalid_argument, "jensen_shannon beta must be in [0, 1], got"};
        if (!unit(d.params.skew))
            return {distill::errc::invalid_argument, format("%s skew must be in [0, 1], got", distill::detail::divergence_name(d.kind))};
        for (double w : {d.params.target_weight, d.params.non_target_weight})
            if (!(w >= 0) || !std::isfinite(w))
                return {distill::errc::invalid_argument, "decoupled_kd weights must be finite and >= 0"};
        if (d.kind == distill::detail::divergence_kind::decoupled_kd && x.kind == loss_kind::kl)
            return {distill::errc::invalid_argument, "decoupled_kd needs each row's label; use distillation_loss"};
    }
    if (!(o.eps >= 0 && o.eps < 1)) return {distill::errc::invalid_argument, "label_smoothing must be in [0, 1)"};
    if (x.reduce == distill::reduction::divide_by && (!(x.normalizer > 0) || !std::isfinite(x.normalizer)))
        return {distill::errc::invalid_argument, "normalizer must be finite and > 0 for reduction::divide_by"};
    return {};
}

template <class T>
bool all_minus_inf(const T* r, std::ptrdiff_t C) {
    for (std::ptrdiff_t c = 0; c < C; ++c)
        if (r[c] != -std::numeric_limits<T>::infinity()) return false;
    return true;
}
template <class T>
bool has_nan_or_plus_inf(const T* r, std::ptrdiff_t C) {
    for (std::ptrdiff_t c = 0; c < C; ++c)
        if (std::isnan(r[c]) || r[c] == std::numeric_limits<T>::infinity()) return true;
    return false;
}
// The teacher's values make its softmax NaN: NaN or +inf, and for probabilities any negative value
// (log t is NaN).
template <class T>
bool teacher_poisoned(const T* r, std::ptrdiff_t C, distill::teacher_input input) {
    if (has_nan_or_plus_inf(r, C)) return true;
    if (input == distill::teacher_input::probabilities)
        for (std::ptrdiff_t c = 0; c < C; ++c)
            if (r[c] < 0) return true;
    return false;
}
// The teacher gives class c no mass at all: -inf, or 0 for probabilities (log 0 = -inf).
template <class T>
bool teacher_masks(const T* r, std::ptrdiff_t c, distill::teacher_input input) {
    return input == distill::teacher_input::probabilities ? r[c] == 0 : r[c] == -std::numeric_limits<T>::infinity();
}
// The teacher's softmax is undefined: every class without mass.
template <class T>
bool teacher_all_masked(const T* r, std::ptrdiff_t C, distill::teacher_input input) {
    for (std::ptrdiff_t c = 0; c < C; ++c)
        if (!teacher_masks(r, c, input)) return false;
    return true;
}

bool row_counted(const input& x, std::ptrdiff_t i) {
    const effective o = effective_options(x);
    if (o.has_labels && x.labels[static_cast<std::size_t>(i)] == x.ignore_index) return false;
    if (x.use_mask && x.mask[static_cast<std::size_t>(i)] == 0) return false;
    return true;
}

template <class T>
expected_error call_error(const input& x, const matrix<T>& s, const matrix<T>& t) {
    const effective o = effective_options(x);
    const auto N = x.N, C = x.C;
    if (C == 0) return {distill::errc::invalid_argument, format("student logits have 0 classes (shape %td x 0)", N)};
    if (!o.has_labels && N > 0 && o.has_teacher && o.alpha > 0 && distill_test::is_decoupled_kd(x.divergence))
        return {distill::errc::invalid_argument, "decoupled_kd needs one label per row (the target class), got none"};
    if (!o.has_labels && o.alpha < 1 && N > 0) return {distill::errc::invalid_argument, "no labels given but alpha"};
    if (x.reduce == distill::reduction::none && !x.per_row_losses && N > 0)
        return {distill::errc::invalid_argument, "reduction::none needs per_row.losses"};
    if (o.has_labels)
        for (std::ptrdiff_t i = 0; i < N; ++i) {
            const auto y = x.labels[static_cast<std::size_t>(i)];
            if (y != x.ignore_index && (y < 0 || y >= C))
                return {distill::errc::out_of_range, format("label %lld at row %td is out of range", static_cast<long long>(y), i)};
        }
    if (x.check_finite) {
        const bool scan_teacher = o.has_teacher && o.alpha > 0;
        for (int which = 0; which < (scan_teacher ? 2 : 1); ++which) {
            const matrix<T>& m = which ? t : s;
            const char* what = !which ? "student logits" : x.teacher == distill::teacher_input::logits ? "teacher logits" : "teacher values";
            const bool probabilities = which && x.teacher == distill::teacher_input::probabilities;
            for (std::ptrdiff_t i = 0; i < N; ++i)
                for (std::ptrdiff_t j = 0; j < C; ++j) {
                    if (std::isnan(m(i, j)) || m(i, j) == std::numeric_limits<T>::infinity())
                        return {distill::errc::invalid_argument,
                                format("%s: element (%td, %td) is %s", what, i, j, std::isnan(m(i, j)) ? "NaN" : "+inf")};
                    if (probabilities && m(i, j) < 0)
                        return {distill::errc::invalid_argument,
                                format("%s: element (%td, %td) is %s; probabilities must be >= 0", what, i, j,
                                       distill::detail::format_number(static_cast<double>(m(i, j))).c_str())};
                }
        }
    }
    const bool soft = o.has_teacher && o.alpha > 0;
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        if (!row_counted(x, i)) continue;
        if (all_minus_inf(s.data() + i * C, C)) return {distill::errc::invalid_argument, format("row %td of the student logits is entirely -inf", i)};
        if (soft && teacher_all_masked(t.data() + i * C, C, x.teacher))
            return {distill::errc::invalid_argument, format("row %td of the teacher logits is entirely -inf", i)};
    }
    return {};
}

void check_status(const distill::status& st, const expected_error& e, const char* loss) {
    EXPECT(st.code() == e.code, format("status code %d, expected %d; message: %s; expected text: ", static_cast<int>(st.code()),
                                       static_cast<int>(e.code), st.message()) + e.text);
    if (e.code == distill::errc::ok) return;
    const std::string message = st.message();
    EXPECT(message.rfind(std::string(loss) + ": ", 0) == 0, "message does not start with the loss name: " + message);
    EXPECT(message.find(e.text) != std::string::npos, "message '" + message + "' lacks '" + e.text + "'");
}

// ---- the run ----

struct reverse_executor {  // pieces in reverse order: results must not change
    template <class Fn>
    void operator()(std::ptrdiff_t begin, std::ptrdiff_t end, Fn&& fn) const {
        for (std::ptrdiff_t i = end; i > begin; --i) fn(i - 1, i);
    }
};

template <class Loss, class T>
distill::status call(const Loss& loss, loss_kind kind, bool reversed, const matrix<T>& s, const matrix<T>& t,
                     const std::vector<std::int64_t>& y, matrix<T>* g, distill::loss_value& v, distill::per_row rows) {
    const std::vector<std::int64_t> none;
    const auto run = [&](auto&& exec) {
        if constexpr (std::is_same_v<Loss, distill::cross_entropy<T>>) {
            return g ? loss.try_loss_and_grad(exec, s, y, *g, v, rows) : loss.try_loss(exec, s, y, v, rows);
        } else if constexpr (std::is_same_v<Loss, distill::kl_divergence<T>> || std::is_same_v<Loss, distill::divergence_loss<T>>) {
            return g ? loss.try_loss_and_grad(exec, s, t, *g, v, rows) : loss.try_loss(exec, s, t, v, rows);
        } else {
            const auto& labels = kind == loss_kind::hinton_no_labels ? none : y;
            return g ? loss.try_loss_and_grad(exec, s, t, labels, *g, v, rows) : loss.try_loss(exec, s, t, labels, v, rows);
        }
    };
    return reversed ? run(reverse_executor{}) : run(distill::sequential);
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

template <class T>
std::string row_text(const T* r, std::ptrdiff_t C) {
    std::string out;
    for (std::ptrdiff_t c = 0; c < std::min<std::ptrdiff_t>(C, 12); ++c) out += format("%.9g ", static_cast<double>(r[c]));
    return out + (C > 12 ? "..." : "");
}

// The row is inside the range where the input type can carry the computation: 1/T, the spread of
// each row divided by T, and the gradient coefficients fit the type. Outside it (T below ~1e-38 or
// logit spreads beyond ~1e38 in float, T^2 overflowing double) results may be +inf or NaN where the
// exact value is finite; docs/reliability.md lists this.
template <class T>
bool in_range(const T* s, const T* t, std::ptrdiff_t C, const distill::detail::row_terms& k, double soft_weight) {
    const double limit = static_cast<double>(std::numeric_limits<T>::max()) / 16;
    const double smallest = static_cast<double>(std::numeric_limits<T>::min()) * 0x1p24;
    // 1/T must be a normal number of T, far from both ends (T = 1e-39 in float: 1/T = inf, and
    // 0 * inf = NaN at the row's max; T = 1e45: 1/T = 0, and -inf * 0 = NaN at a masked class).
    if (!(k.inv_temperature < limit) || !(k.inv_temperature > smallest)) return false;
    // The soft term's weight alpha T^2 must be a normal double: 0 * KL is NaN where KL is +inf.
    if (k.soft && !(soft_weight > std::numeric_limits<double>::min() * 0x1p24 && soft_weight < 1e300)) return false;
    // Gradient coefficients: finite in T, and not so small that T's subnormals round them.
    for (double coefficient : {k.soft ? k.soft_grad : 0.0, k.hard ? k.hard_grad : 0.0})
        if (!(std::abs(coefficient) < limit) || (coefficient != 0 && std::abs(coefficient) < smallest)) return false;
    // The mixtures' weights (Jensen-Shannon's beta and 1 - beta, the skew and 1 - skew): 0, or far
    // enough from 0 that the type holds them and their reciprocals (q / m = 1 / skew where p = 0):
    // in float a skew of 1e-300 is 0, which makes skew KL plain KL, +inf where the exact value is
    // merely large.
    if (k.soft) {
        using distill::detail::divergence_kind;
        double weight = 1;
        if (k.divergence == divergence_kind::jensen_shannon) weight = std::min(k.params.beta, 1 - k.params.beta);
        if (k.divergence == divergence_kind::skew_kl || k.divergence == divergence_kind::skew_reverse_kl)
            weight = std::min(k.params.skew, 1 - k.params.skew);
        if (weight != 0 && !(weight > smallest)) return false;
    }
    // Decoupled KD's weights multiply its gradient's coefficients (up to 2 wt + 2 wn per unit of
    // soft_grad) and its value: both must stay within the type.
    if (k.soft && k.divergence == distill::detail::divergence_kind::decoupled_kd) {
        const double weights = k.params.target_weight + k.params.non_target_weight;
        if (!(weights * std::max(1.0, std::abs(k.soft_grad)) * static_cast<double>(C) < limit)) return false;
        if (!(weights * soft_weight < 1e300)) return false;
    }
    for (const T* r : {s, t}) {
        if (!r || (r == t && !k.soft)) continue;
        // The teacher on the logit scale (log t for probabilities), at its own inverse temperature.
        const bool teacher = r == t;
        const double inv_t = teacher ? k.teacher_inv_temperature : k.inv_temperature;
        double lo = inf, hi = -inf;
        for (std::ptrdiff_t c = 0; c < C; ++c) {
            const double v = teacher ? distill::detail::teacher_logit(r, c, k) : static_cast<double>(r[c]);
            if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
        }
        // The KL accumulator sums up to C terms of size (spread / T).
        if (hi > lo && !((hi - lo) * inv_t * static_cast<double>(C) < limit)) return false;
        if (hi > lo && !((hi - lo) < limit)) return false;
    }
    return true;
}

// 1/T as the kernels use it (T = 1 without a soft term) is a normal number of T, far from its ends.
template <class T>
bool temperature_in_range(const input& x) {
    const effective o = effective_options(x);
    if (!(o.has_teacher && o.alpha > 0)) return true;
    const double inv_t = 1 / o.T;
    return inv_t < static_cast<double>(std::numeric_limits<T>::max()) / 16 &&
           inv_t > static_cast<double>(std::numeric_limits<T>::min()) * 0x1p24;
}

template <class T, class Loss>
void check_valid_call(const input& x, const Loss& loss, const matrix<T>& s, const matrix<T>& t) {
    namespace ref = distill::detail::reference;
    using bound = distill_test::kernel_bound<T>;
    const effective o = effective_options(x);
    const auto N = x.N, C = x.C;
    matrix<T> g = matrix<T>::Constant(N, C, T(12345));
    std::vector<double> rows(static_cast<std::size_t>(N), -1.0);
    distill::per_row pr{.mask = x.use_mask ? std::span<const std::uint8_t>(x.mask) : std::span<const std::uint8_t>(),
                        .losses = x.per_row_losses ? std::span<double>(rows) : std::span<double>()};
    distill::loss_value v;
    check_status(call(loss, x.kind, false, s, t, x.labels, &g, v, pr), {}, loss_name(x));

    // Same call without a gradient, and through another executor: bitwise the same.
    distill::loss_value v2, v3;
    std::vector<double> rows2(rows.size()), rows3(rows.size());
    const auto other_rows = [&](std::vector<double>& r) {
        return distill::per_row{.mask = pr.mask, .losses = x.per_row_losses ? std::span<double>(r) : std::span<double>()};
    };
    check_status(call(loss, x.kind, false, s, t, x.labels, static_cast<matrix<T>*>(nullptr), v2, other_rows(rows2)), {}, "");
    EXPECT(same_bits(v.total, v2.total) || (std::isnan(v.total) && std::isnan(v2.total)),
           format("loss() %.17g != loss_and_grad() %.17g", v2.total, v.total));
    matrix<T> g3(N, C);
    check_status(call(loss, x.kind, true, s, t, x.labels, &g3, v3, other_rows(rows3)), {}, "");
    if (x.per_row_losses && N > 0) {
        EXPECT(std::memcmp(rows.data(), rows2.data(), rows.size() * sizeof(double)) == 0 || std::isnan(v.total),
               "loss() and loss_and_grad() disagree on the per-row losses");
        EXPECT(std::memcmp(rows.data(), rows3.data(), rows.size() * sizeof(double)) == 0 || std::isnan(v.total),
               "the executor changed the per-row losses");
    }
    EXPECT(same_bits(v.total, v3.total) || (std::isnan(v.total) && std::isnan(v3.total)),
           format("executor changed the loss: %.17g vs %.17g", v.total, v3.total));
    EXPECT(N * C == 0 || std::memcmp(g.data(), g3.data(), sizeof(T) * static_cast<std::size_t>(N * C)) == 0 || g.hasNaN(),
           "executor changed the gradient");

    // The model's row terms, from the contract (docs/design.md).
    std::int64_t counted = 0;
    for (std::ptrdiff_t i = 0; i < N; ++i) counted += row_counted(x, i);
    EXPECT(v.rows_counted == counted, format("rows_counted %lld, expected %lld", static_cast<long long>(v.rows_counted),
                                             static_cast<long long>(counted)));
    double weight = 1;
    if (x.reduce == distill::reduction::mean) weight = counted ? 1.0 / static_cast<double>(counted) : 0.0;
    if (x.reduce == distill::reduction::divide_by) weight = 1 / x.normalizer;
    distill::detail::row_terms k;
    k.soft = o.has_teacher && o.alpha > 0;
    k.hard = o.has_labels && o.alpha < 1;
    k.temperature = k.soft ? o.T : 1.0;
    k.inv_temperature = 1 / k.temperature;
    k.integer_temperature = distill::detail::whole_temperature(k.temperature);
    k.smoothing = k.hard ? o.eps : 0.0;
    distill_test::set_divergence(k, x.divergence);
    distill_test::set_teacher_input(k, x.teacher);
    const double soft_weight = k.soft ? o.alpha * (x.t_squared ? o.T * o.T : 1.0) : 0.0, hard_weight = 1 - o.alpha;
    k.soft_grad = k.soft ? weight * soft_weight / k.temperature : 0.0;  // d(alpha T^2 D)/ds = alpha T dD/dx
    k.hard_grad = k.hard ? weight * hard_weight : 0.0;
    using distill::detail::divergence_kind;
    // Which side's masks make the divergence +inf (tests/family.hpp).
    const bool student_masks_infinite = k.soft && distill_test::infinite_where_student_masks(k.divergence, k.params);
    const bool teacher_masks_infinite = k.soft && distill_test::infinite_where_teacher_masks(k.divergence, k.params);
    constexpr T minus_inf_t = -std::numeric_limits<T>::infinity();

    std::vector<T> g_ref(static_cast<std::size_t>(C));
    double row_sum_of_losses = 0, magnitude = 0;
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        const T* si = s.data() + i * C;
        const T* ti = t.data() + i * C;
        const T* gi = g.data() + i * C;
        const double api_row = x.per_row_losses ? rows[static_cast<std::size_t>(i)] : 0.0;
        const std::int64_t y = k.needs_label() ? x.labels[static_cast<std::size_t>(i)] : -1;
        // Built only when a check fails: the row, and both kernels' unweighted terms.
        const auto where = [&] {
            const T* teacher = k.soft ? ti : nullptr;
            std::vector<T> scratch(static_cast<std::size_t>(C));
            const auto r = ref::fused_row(si, teacher, y, C, k, scratch.data());
            const auto v = distill::detail::simd::fused_row<xsimd::default_arch>(si, teacher, y, C, k, scratch.data());
            return format("row %td, C = %td, T = %g, alpha = %g, eps = %g, label %lld, soft %d hard %d, reduction %d, "
                          "weight %g, %s, %s; reference divergence %.17g CE %.17g, SIMD divergence %.17g CE %.17g; s = ",
                          i, C, o.T, o.alpha, o.eps, static_cast<long long>(y), k.soft, k.hard,
                          static_cast<int>(x.reduce), weight, distill_test::describe(x.divergence).c_str(),
                          distill_test::describe(x.teacher), r.divergence, r.ce, v.divergence, v.ce) +
                   row_text(si, C) + " t = " + row_text(ti, C);
        };
        if (!row_counted(x, i)) {
            for (std::ptrdiff_t c = 0; c < C; ++c) EXPECT(gi[c] == 0, "ignored row with a nonzero gradient, " + where());
            EXPECT(api_row == 0, "ignored row with a nonzero loss, " + where());
            continue;
        }
        const T* teacher_row = k.soft ? ti : static_cast<const T*>(nullptr);
        const auto r = ref::fused_row(si, teacher_row, y, C, k, g_ref.data());
        const double expected = (k.soft ? soft_weight * r.divergence : 0.0) + (k.hard ? hard_weight * r.ce : 0.0);
        const bool poisoned = has_nan_or_plus_inf(si, C) || (k.soft && teacher_poisoned(ti, C, x.teacher));
        const bool range = in_range(si, teacher_row, C, k, soft_weight);
        row_sum_of_losses += api_row;
        magnitude += std::abs(api_row);
        if (!x.per_row_losses) continue;

        if (poisoned) {  // NaN propagates: a NaN or +inf value that the loss reads makes the row NaN
            EXPECT(std::isnan(api_row), format("row loss %.17g, expected NaN, ", api_row) + where());
            continue;
        }
        if (!range) continue;  // docs/reliability.md, "outside the representable range"
        // Open engine findings (tests/differential.hpp): decoupled KD's underflowing non-target
        // masses, and the mixtures' underflow. The first leaves the row without a model; the second
        // only without the finiteness expectation.
        if (distill_test::decoupled_kd_mass_underflows(si, teacher_row, y, C, k)) continue;
        const bool mixture_risk = distill_test::mixture_may_underflow(si, teacher_row, C, k);

        // +inf exactly where the contract says: one side masks a class the other gives mass (here:
        // mass at least e^-50 / C, far from underflow), or the student masks the label's class.
        const double ms = ref::row_max(si, C);
        double mt = -inf;
        if (k.soft)
            for (std::ptrdiff_t c = 0; c < C; ++c) mt = std::max(mt, distill::detail::teacher_logit(ti, c, k));
        const auto teacher_mass = [&](std::ptrdiff_t c) { return (distill::detail::teacher_logit(ti, c, k) - mt) * k.teacher_inv_temperature; };
        const auto student_mass = [&](std::ptrdiff_t c) { return (static_cast<double>(si[c]) - ms) * k.inv_temperature; };
        bool must_be_inf = false, may_be_nan = false;
        if (k.hard && si[y] == minus_inf_t) must_be_inf = true;
        if (k.hard && k.smoothing > 0 && !all_minus_inf(si, C))
            for (std::ptrdiff_t c = 0; c < C; ++c) must_be_inf |= si[c] == minus_inf_t;
        if (k.soft && soft_weight > 0) {
            bool soft_inf = false;
            for (std::ptrdiff_t c = 0; c < C; ++c) {
                if (student_masks_infinite && si[c] == minus_inf_t && teacher_mass(c) > -50) soft_inf = true;
                if (teacher_masks_infinite && teacher_masks(ti, c, x.teacher) && student_mass(c) > -50) soft_inf = true;
            }
            if (k.divergence == divergence_kind::decoupled_kd) {
                // Decoupled KD's parts: TCKD is +inf where the student masks the label's class with
                // teacher mass, NCKD where it masks another; a part of weight 0 is left out (never
                // 0 * inf). Must: teacher mass far from underflow; may: any teacher mass (below the
                // type's range either answer), and then no further model.
                const auto part_inf = [&](bool target, double threshold) {
                    for (std::ptrdiff_t c = 0; c < C; ++c)
                        if ((c == y) == target && si[c] == minus_inf_t && !teacher_masks(ti, c, x.teacher) &&
                            teacher_mass(c) > threshold)
                            return true;
                    return false;
                };
                const auto weighted_inf = [&](double threshold) {
                    return (part_inf(true, threshold) && k.params.target_weight != 0) ||
                           (part_inf(false, threshold) && k.params.non_target_weight != 0);
                };
                soft_inf = weighted_inf(-50);
                may_be_nan = !soft_inf && weighted_inf(-inf);
            }
            must_be_inf |= soft_inf;
        }
        const bool any_student_mask = !all_minus_inf(si, C) && [&] {
            for (std::ptrdiff_t c = 0; c < C; ++c)
                if (si[c] == minus_inf_t) return true;
            return false;
        }();
        const bool any_teacher_mask = k.soft && [&] {
            for (std::ptrdiff_t c = 0; c < C; ++c)
                if (teacher_masks(ti, c, x.teacher)) return true;
            return false;
        }();
        // A masked class where the other side's mass is below the SIMD exponential's range (float:
        // (t - max t) / T < -87.3, p < 2^-126; double: < -708.4) counts as no mass in the SIMD
        // kernels and as mass (+inf) in the double reference: either answer is documented.
        const bool either = distill_test::probability_below_type_floor(si, teacher_row, C, k);
        if (may_be_nan) continue;  // +inf, or finite where the mass underflowed: no further model
        if (must_be_inf) EXPECT(api_row == inf, format("row loss %.17g, expected +inf, ", api_row) + where());
        // Finite without the masks that can make it infinite (the student's always can, through the
        // cross-entropy), unless the exact value itself overflows double.
        if (!any_student_mask && !(teacher_masks_infinite && any_teacher_mask) && !mixture_risk && std::abs(expected) < 1e300)
            EXPECT(std::isfinite(api_row), format("row loss %.17g, expected finite, ", api_row) + where());
        EXPECT(!std::isnan(api_row), "NaN row loss for NaN-free input, " + where());

        // Against the reference kernel, relative to the size of the terms.
        const auto sc = distill_test::reference_scales(si, teacher_row, y, C, k);
        const double loss_scale = (k.soft ? soft_weight * sc.divergence : 0.0) + (k.hard ? hard_weight * sc.ce : 0.0);
        const bool one_infinite = std::isinf(api_row) != std::isinf(expected);
        if ((std::isfinite(expected) || std::isfinite(api_row)) && !((either || mixture_risk) && one_infinite)) {
            const double err = distill_test::scaled_error(api_row, expected, loss_scale);
            EXPECT(err <= bound::loss(C) * 1.0000001,
                   format("row loss %.17g vs reference %.17g: %.3g of the scale %.3g (bound %.1e), ", api_row, expected,
                          err, loss_scale, bound::loss(C)) + where());
        }
        // The gradients of two different answers are not comparable; at a mixture's underflow (an
        // open finding) q / m may overflow too.
        if (one_infinite || mixture_risk) continue;
        // The gradient exists where the loss is finite; forward-type divergences (and the
        // cross-entropy) also have one where they are +inf: q - p stays finite.
        bool reference_gradient_finite = true;
        for (std::ptrdiff_t c = 0; c < C; ++c) reference_gradient_finite &= std::isfinite(static_cast<double>(g_ref[static_cast<std::size_t>(c)]));
        if (!std::isfinite(api_row) && !(reference_gradient_finite && !teacher_masks_infinite && !mixture_risk)) continue;
        double row_sum = 0;
        for (std::ptrdiff_t c = 0; c < C; ++c) {
            EXPECT(std::isfinite(gi[c]), format("gradient (%td, %td) = %g for NaN-free input, ", i, c, double(gi[c])) + where());
            const double err = distill_test::scaled_error(gi[c], g_ref[static_cast<std::size_t>(c)], sc.grad, sc.grad_slack);
            EXPECT(err <= bound::grad(C) * 1.0000001,
                   format("gradient (%td, %td) = %.9g vs reference %.9g: %.3g of the scale %.3g, ", i, c, double(gi[c]),
                          double(g_ref[static_cast<std::size_t>(c)]), err, sc.grad) + where());
            row_sum += gi[c];
        }
        // The gradient through the softmax sums to 0 over the row; its rounding is measured against
        // the coefficients (forward KL, CE: sum_c (q_c + p_c) = 2 per coefficient) or, for the other
        // divergences, half the sum of the entries' scales. Decoupled KD without teacher mass
        // outside the label is an open finding (tests/differential.hpp).
        const double coefficient = std::max(std::abs(k.soft ? k.soft_grad : 0.0) + std::abs(k.hard ? k.hard_grad : 0.0), sc.grad_sum / 2);
        if (!distill_test::decoupled_kd_without_non_target_teacher_mass(teacher_row, y, C, k))
            EXPECT(std::abs(row_sum) <= (std::is_same_v<T, float> ? 1e-5 : 1e-12) * coefficient,
                   format("gradient row sums to %.3g (coefficients %.3g), ", row_sum, coefficient) + where());
    }
    // The reduced total is the weighted sum of the rows' losses.
    if (x.per_row_losses && std::isfinite(weight) && std::isfinite(magnitude) && std::isfinite(v.total))
        EXPECT(std::abs(v.total - weight * row_sum_of_losses) <= 1e-12 * weight * magnitude,
               format("total %.17g vs the weighted rows %.17g", v.total, weight * row_sum_of_losses));
    if (counted == 0 && x.reduce == distill::reduction::mean) {
        EXPECT(v.total == 0, "every row ignored under mean must give 0");
    }
}

template <class T>
void check_softmax(const input& x, const matrix<T>& s) {
    namespace ref = distill::detail::reference;
    matrix<T> p(x.N, x.C), lp(x.N, x.C);
    const distill::status a = distill::try_softmax(s, p, x.T), b = distill::try_log_softmax(s, lp, x.T);
    expected_error e;
    if (!(x.T >= 1e-3 && x.T <= 1e3)) e = {distill::errc::invalid_argument, "temperature must be in [0.001, 1000]"};
    else if (x.C == 0) e = {distill::errc::invalid_argument, "logits have 0 classes"};
    else
        for (std::ptrdiff_t i = 0; i < x.N && e.code == distill::errc::ok; ++i)
            if (all_minus_inf(s.data() + i * x.C, x.C)) e = {distill::errc::invalid_argument, format("row %td of the logits is entirely -inf", i)};
    const double inv_t = 1 / x.T;
    const bool t_in_range = inv_t < static_cast<double>(std::numeric_limits<T>::max()) / 16 &&
                            inv_t > static_cast<double>(std::numeric_limits<T>::min()) * 0x1p24;
    if (!t_in_range && e.text.find("entirely -inf") != std::string::npos) return;  // as in run()
    check_status(a, e, "softmax");
    check_status(b, e, "log_softmax");
    if (e.code != distill::errc::ok || !t_in_range) return;
    const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    for (std::ptrdiff_t i = 0; i < x.N; ++i) {
        const T* si = s.data() + i * x.C;
        if (has_nan_or_plus_inf(si, x.C)) continue;
        distill::detail::row_terms k;
        k.inv_temperature = 1 / x.T;
        k.teacher_inv_temperature = k.inv_temperature;
        k.soft_grad = 1;
        if (!in_range<T>(si, nullptr, x.C, k, 1.0)) continue;
        double sum = 0;
        for (std::ptrdiff_t c = 0; c < x.C; ++c) {
            EXPECT(p(i, c) >= 0 && p(i, c) <= 1, format("softmax (%td, %td) = %g", i, c, double(p(i, c))));
            EXPECT(lp(i, c) <= T(tol), format("log_softmax (%td, %td) = %g > 0", i, c, double(lp(i, c))));
            sum += p(i, c);
        }
        EXPECT(std::abs(sum - 1) <= tol * 4, format("softmax row %td sums to 1 + %.3g", i, sum - 1));
    }
}

// ---- a teacher given as its top k classes: top_k_distillation_loss ----
//
// The teacher's k classes per row are the k largest of the generated (and edited) dense teacher,
// its values what the teacher input says: the logits themselves, log_softmax of the row, or the
// row over its sum; slots beyond C are padding. Then the top-k edits: a count, and for each a kind
// byte, a u16 position among the N x k slots and what the kind reads (apply_top_k_edit). The model:
// every check of docs/api.md in the order the call makes them, each with its message; on accepted
// input the categories (the k classes and the tail) formed here in double, from which the +inf /
// finite / NaN expectations follow as for the dense losses, and the tolerance scales with which
// the SIMD kernels are compared to the reference kernels (tests/differential.hpp's bound).

template <class T, class I>
struct top_k_teacher_data {
    Eigen::Matrix<I, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> indices;
    matrix<T> values;
    std::int64_t index(std::ptrdiff_t i, std::ptrdiff_t j) const { return static_cast<std::int64_t>(indices(i, j)); }
};

template <class T, class I>
top_k_teacher_data<T, I> make_top_k(const input& x, const matrix<T>& t) {
    const std::ptrdiff_t N = x.N, C = x.C, K = x.top.k;
    top_k_teacher_data<T, I> d{decltype(d.indices)(N, K), matrix<T>(N, K)};
    std::vector<std::ptrdiff_t> order(static_cast<std::size_t>(C));
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        const T* row = t.data() + i * C;
        // A total order, NaN first: std::sort needs a strict weak ordering.
        const auto key = [&](std::ptrdiff_t c) { return std::isnan(row[c]) ? inf : static_cast<double>(row[c]); };
        for (std::ptrdiff_t c = 0; c < C; ++c) order[static_cast<std::size_t>(c)] = c;
        std::sort(order.begin(), order.end(), [&](std::ptrdiff_t a, std::ptrdiff_t b) {
            return key(a) > key(b) || (key(a) == key(b) && a < b);
        });
        double m = -inf, z = 0, sum = 0;
        for (std::ptrdiff_t c = 0; c < C; ++c) m = std::isnan(m) || std::isnan(double(row[c])) ? nan : std::max(m, double(row[c]));
        for (std::ptrdiff_t c = 0; c < C; ++c) z += std::exp(double(row[c]) - m), sum += double(row[c]);
        const double lse = m + std::log(z);
        for (std::ptrdiff_t j = 0; j < K; ++j) {
            if (j >= C) {
                d.indices(i, j) = static_cast<I>(x.top.padding_index);
                d.values(i, j) = T(7);  // never read: refused as a log-probability or probability if it were
                continue;
            }
            const std::ptrdiff_t c = order[static_cast<std::size_t>(j)];
            d.indices(i, j) = static_cast<I>(c);
            const double v = double(row[c]);
            d.values(i, j) = static_cast<T>(x.teacher == distill::teacher_input::logits              ? v
                                            : x.teacher == distill::teacher_input::log_probabilities ? v - lse
                                                                                                     : v / sum);
        }
    }
    return d;
}

template <class T, class I>
void apply_top_k_edit(reader& in, const input& x, top_k_teacher_data<T, I>& d) {
    const std::uint8_t kind = in.byte();
    const std::ptrdiff_t K = x.top.k, slots = x.N * K;
    if (slots == 0) return;
    const std::ptrdiff_t at = in.u16() % slots, i = at / K, j = at % K;
    const auto C = static_cast<std::int64_t>(x.C);
    switch (kind % 8) {
        case 0: {  // an index: padding, out of range on either side, the edges, any column
            const std::uint8_t code = in.byte();
            const std::int64_t table[11] = {x.top.padding_index, -1, C, C - 1, 0, -2, std::numeric_limits<std::int64_t>::max(),
                                            std::numeric_limits<std::int64_t>::min(), std::int64_t{1} << 40, C + 1, 1};
            d.indices(i, j) = static_cast<I>(code < 11 ? table[code] : code % std::max<std::int64_t>(C, 1));
            break;
        }
        case 1: d.values(i, j) = special_value<T>(in.byte()); break;
        case 2: d.values(i, j) = std::is_same_v<T, float> ? static_cast<T>(in.raw_float()) : static_cast<T>(in.raw_double()); break;
        case 3: {  // the values' bounds: log-probabilities up to log(1 + tolerance), probabilities up to 1 + tolerance
            constexpr double bounds[10] = {1e-5, 1e-4, 9.9995000333308e-05, 2e-4, 0.5, 1, 1 + 1e-4, 1.0001, 1.5, -1e-30};
            d.values(i, j) = static_cast<T>(bounds[in.byte() % 10]);
            break;
        }
        case 4: d.indices.row(i).setConstant(static_cast<I>(x.top.padding_index)); break;  // a row without classes
        case 5: d.indices(i, j) = d.indices(i, (j + 1 + in.byte()) % K); break;            // a repeated class
        case 6:  // the teacher masks the class: no mass at all
            d.values(i, j) = x.teacher == distill::teacher_input::probabilities ? T(0) : -std::numeric_limits<T>::infinity();
            break;
        default: {  // the row's mass moved: log-probabilities shifted, probabilities scaled
            constexpr double deltas[4] = {1e-6, -1, 1e-3, 0.5};
            const double delta = deltas[in.byte() % 4];
            for (std::ptrdiff_t c = 0; c < K; ++c)
                d.values(i, c) = x.teacher == distill::teacher_input::probabilities ? static_cast<T>(double(d.values(i, c)) * (1 + delta))
                                                                                   : static_cast<T>(double(d.values(i, c)) + delta);
        }
    }
}

// The option errors of the top-k path (detail/top_k_loss.hpp), after those of distillation_options.
expected_error top_k_option_error(const input& x) {
    const effective o = effective_options(x);
    if (!(o.alpha > 0)) return {};  // no soft term: the teacher's form does not matter
    const distill::detail::divergence_choice d = distill::detail::choose(x.divergence);
    if (d.kind == distill::detail::divergence_kind::decoupled_kd)
        return {distill::errc::invalid_argument, "decoupled_kd is not defined for a top-k teacher"};
    if (x.top.mode == distill::top_k_mode::tail_bucket && x.teacher == distill::teacher_input::logits)
        return {distill::errc::invalid_argument, "top_k_mode::tail_bucket needs the teacher's values as log-probabilities or probabilities"};
    if (x.top.mode == distill::top_k_mode::renormalize && d.kind == distill::detail::divergence_kind::reverse_kl)
        return {distill::errc::invalid_argument, "reverse_kl with top_k_mode::renormalize is +inf"};
    if (!(x.top.mass_tolerance >= 0 && x.top.mass_tolerance <= 0.1))
        return {distill::errc::invalid_argument, "mass_tolerance must be in [0, 0.1], got"};
    return {};
}

// A row's live teacher classes: (column, slot), sorted by column, as the library sorts them.
template <class T, class I>
std::vector<std::pair<std::int64_t, std::ptrdiff_t>> live_entries(const input& x, const top_k_teacher_data<T, I>& d, std::ptrdiff_t i) {
    std::vector<std::pair<std::int64_t, std::ptrdiff_t>> e;
    for (std::ptrdiff_t j = 0; j < x.top.k; ++j)
        if (d.index(i, j) != x.top.padding_index) e.push_back({d.index(i, j), j});
    std::stable_sort(e.begin(), e.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return e;
}

// The teacher's value of a slot on the logit scale, at its temperature (docs/api.md).
template <class T>
double top_k_logit(const input& x, T v) {
    const double y = x.teacher == distill::teacher_input::probabilities ? std::log(static_cast<double>(v)) : static_cast<double>(v);
    return x.teacher == distill::teacher_input::logits ? y * (1.0 / x.T) : y;
}

template <class T, class I>
expected_error top_k_call_error(const input& x, const matrix<T>& s, const top_k_teacher_data<T, I>& d) {
    using distill::errc;
    const effective o = effective_options(x);
    const auto N = x.N, C = x.C, K = x.top.k;
    const bool soft = o.alpha > 0;
    if (C == 0) return {errc::invalid_argument, format("student logits have 0 classes (shape %td x 0)", N)};
    if (!o.has_labels && o.alpha < 1 && N > 0) return {errc::invalid_argument, "no labels given but alpha"};
    if (K > 1024) return {errc::invalid_argument, format("the teacher has %td classes per row; at most 1024 are supported", K)};
    if (x.reduce == distill::reduction::none && !x.per_row_losses && N > 0)
        return {errc::invalid_argument, "reduction::none needs per_row.losses"};
    if (o.has_labels)
        for (std::ptrdiff_t i = 0; i < N; ++i) {
            const auto y = x.labels[static_cast<std::size_t>(i)];
            if (y != x.ignore_index && (y < 0 || y >= C))
                return {errc::out_of_range, format("label %lld at row %td is out of range", static_cast<long long>(y), i)};
        }
    if (x.check_finite)  // the student only: the teacher's values have their own checks, always made
        for (std::ptrdiff_t i = 0; i < N; ++i)
            for (std::ptrdiff_t j = 0; j < C; ++j)
                if (std::isnan(s(i, j)) || s(i, j) == std::numeric_limits<T>::infinity())
                    return {errc::invalid_argument,
                            format("student logits: element (%td, %td) is %s", i, j, std::isnan(s(i, j)) ? "NaN" : "+inf")};
    const double tol = x.top.mass_tolerance;
    if (soft)
        for (std::ptrdiff_t i = 0; i < N; ++i) {
            if (!row_counted(x, i)) continue;  // a row that takes no part is not read
            for (std::ptrdiff_t j = 0; j < K; ++j) {
                const std::int64_t c = d.index(i, j);
                if (c == x.top.padding_index) continue;
                if (c < 0 || c >= C)
                    return {errc::out_of_range, format("teacher index %lld at (%td, %td) is out of range", static_cast<long long>(c), i, j)};
                const double v = static_cast<double>(d.values(i, j));
                if (std::isnan(v)) return {errc::invalid_argument, format("teacher value at (%td, %td) is NaN", i, j)};
                const char* rule = nullptr;
                if (x.teacher == distill::teacher_input::logits && v == inf) rule = "logits must be finite or -inf";
                else if (x.teacher == distill::teacher_input::log_probabilities && v > std::log1p(tol)) rule = "log-probabilities must be <= 0";
                else if (x.teacher == distill::teacher_input::probabilities && !(v >= 0 && v <= 1 + tol)) rule = "probabilities must be in [0, 1]";
                if (rule)
                    return {errc::invalid_argument, format("teacher value at (%td, %td) is %s; %s", i, j,
                                                           distill::detail::format_number(v).c_str(), rule)};
            }
            const auto e = live_entries(x, d, i);
            for (std::size_t a = 1; a < e.size(); ++a)
                if (e[a].first == e[a - 1].first) {
                    // Which two slots the message names is the sort's choice when a class appears 3 times.
                    const bool twice = a + 1 == e.size() || e[a + 1].first != e[a].first;
                    return {errc::invalid_argument,
                            twice ? format("teacher index %lld appears twice in row %td (at %td and %td)", static_cast<long long>(e[a].first), i,
                                           e[a - 1].second, e[a].second)
                                  : format("teacher index %lld appears twice in row %td", static_cast<long long>(e[a].first), i)};
                }
            if (x.teacher != distill::teacher_input::logits) {
                double mass = 0;
                for (const auto& [c, j] : e) {
                    const double v = static_cast<double>(d.values(i, j));
                    mass += x.teacher == distill::teacher_input::probabilities ? v : std::exp(v);
                }
                if (mass > 1 + tol) return {errc::invalid_argument, format("the teacher's top-k mass in row %td is", i)};
            }
        }
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        if (!row_counted(x, i)) continue;
        if (all_minus_inf(s.data() + i * C, C)) return {errc::invalid_argument, format("row %td of the student logits is entirely -inf", i)};
        if (!soft) continue;
        // No teacher distribution: renormalize (or a row whose classes are all C columns) with no
        // class of any mass.
        const auto e = live_entries(x, d, i);
        if (x.top.mode == distill::top_k_mode::renormalize || static_cast<std::ptrdiff_t>(e.size()) == C) {
            double max_y = -inf;
            for (const auto& [c, j] : e) max_y = std::max(max_y, top_k_logit(x, d.values(i, j)));
            if (max_y == -inf) return {errc::invalid_argument, format("row %td of the teacher's top-k has no mass", i)};
        }
    }
    return {};
}

// One row's k + 1 categories in double: the live classes (sorted by column), then the tail if any
// column is outside them; log q, log p, q, p, and which side gives a category no mass at all.
struct top_k_categories {
    distill_test::scale_detail::normalised_row n;
    std::vector<std::int64_t> columns;  // -1: the tail
    std::vector<bool> student_masks, teacher_masks;
    bool tail_uncertain = false;  // the teacher's mass is within rounding of 1: its tail may be 0 or not
};


template <class T, class I>
top_k_categories categories_of(const input& x, const T* s, const top_k_teacher_data<T, I>& d, std::ptrdiff_t i,
                               const distill::detail::row_terms& k) {
    namespace ref = distill::detail::reference;
    const std::ptrdiff_t C = x.C;
    top_k_categories out;
    auto& n = out.n;
    const double ms = ref::row_max(s, C), lzq = ref::log_sum_exp(s, C, ms, k.inv_temperature);
    const auto e = live_entries(x, d, i);
    std::vector<bool> in_top(static_cast<std::size_t>(C), false);
    double lz = -inf;  // log sum_K exp(y)
    std::vector<double> y;
    for (const auto& [c, j] : e) {
        in_top[static_cast<std::size_t>(c)] = true;
        out.columns.push_back(c);
        n.lq.push_back((static_cast<double>(s[c]) - ms) * k.inv_temperature - lzq);
        out.student_masks.push_back(s[c] == -std::numeric_limits<T>::infinity());
        y.push_back(top_k_logit(x, d.values(i, j)));
    }
    double my = -inf;
    for (double v : y) {
        my = std::max(my, v);
    }
    if (my > -inf) {
        double z = 0;
        for (double v : y) z += std::exp(v - my);
        lz = my + std::log(z);
    }
    const bool has_tail = static_cast<std::ptrdiff_t>(e.size()) < C;
    double lp_tail = -inf;
    if (x.top.mode == distill::top_k_mode::renormalize || !has_tail) {
        for (double& v : y) v -= lz;
    } else {
        const double mass = std::exp(lz);
        out.tail_uncertain = std::abs(mass - 1) <= 1e-12;
        if (mass > 1) for (double& v : y) v -= lz;
        else lp_tail = std::log1p(-mass);
    }
    for (double v : y) {
        n.lp.push_back(v);
        out.teacher_masks.push_back(v == -inf);
    }
    if (has_tail) {
        double z_tail = 0;
        bool masked = true;
        for (std::ptrdiff_t c = 0; c < C; ++c)
            if (!in_top[static_cast<std::size_t>(c)]) {
                z_tail += std::exp((static_cast<double>(s[c]) - ms) * k.inv_temperature);
                masked &= s[c] == -std::numeric_limits<T>::infinity();
            }
        out.columns.push_back(-1);
        n.lq.push_back(std::log(z_tail) - lzq);
        out.student_masks.push_back(masked);
        n.lp.push_back(lp_tail);
        out.teacher_masks.push_back(lp_tail == -inf);
    }
    for (double v : n.lq) n.q.push_back(std::exp(v));
    for (double v : n.lp) n.p.push_back(std::exp(v));
    n.defined = true;
    return out;
}

template <class Isa, class T, class Loss, class Teacher>
distill::status top_k_call(const Loss& loss, bool reversed, const matrix<T>& s, const Teacher& teacher,
                           const std::vector<std::int64_t>& y, matrix<T>* g, distill::loss_value& v, distill::per_row rows) {
    using Y = std::vector<std::int64_t>;
    if (reversed)
        return g ? loss.try_loss_and_grad(reverse_executor{}, s, teacher, y, *g, v, rows) : loss.try_loss(reverse_executor{}, s, teacher, y, v, rows);
    if (g)
        return loss.template try_loss_and_grad<const distill::sequential_executor&, matrix<T>, Teacher, Y, matrix<T>&, Isa>(
            distill::sequential, s, teacher, y, *g, v, rows);
    return loss.template try_loss<const distill::sequential_executor&, matrix<T>, Teacher, Y, Isa>(distill::sequential, s, teacher, y, v, rows);
}

template <class T, class I>
void check_top_k_valid(const input& x, const distill::top_k_distillation_loss<T>& loss, const matrix<T>& s,
                       const top_k_teacher_data<T, I>& d, const std::vector<std::int64_t>& labels) {
    namespace ref = distill::detail::reference;
    using bound = distill_test::kernel_bound<T>;
    using distill::detail::isa;
    using distill::detail::no_simd;
    const effective o = effective_options(x);
    const auto N = x.N, C = x.C;
    const auto teacher = distill::top_k(d.indices, d.values);
    const auto rows_of = [&](std::vector<double>& r) {
        return distill::per_row{.mask = x.use_mask ? std::span<const std::uint8_t>(x.mask) : std::span<const std::uint8_t>(),
                                .losses = x.per_row_losses ? std::span<double>(r) : std::span<double>()};
    };
    matrix<T> g = matrix<T>::Constant(N, C, T(12345)), g2(N, C), g_ref(N, C);
    std::vector<double> rows(static_cast<std::size_t>(N), -1.0), rows2(rows.size()), rows3(rows.size()), rows_ref(rows.size());
    distill::loss_value v, v2, v3, v_ref;
    const char* name = "top_k_distillation_loss";
    check_status(top_k_call<isa>(loss, false, s, teacher, labels, &g, v, rows_of(rows)), {}, name);
    check_status(top_k_call<isa>(loss, false, s, teacher, labels, static_cast<matrix<T>*>(nullptr), v2, rows_of(rows2)), {}, name);
    check_status(top_k_call<isa>(loss, true, s, teacher, labels, &g2, v3, rows_of(rows3)), {}, name);
    check_status(top_k_call<no_simd>(loss, false, s, teacher, labels, &g_ref, v_ref, rows_of(rows_ref)), {}, name);
    // Same call without a gradient, and through another executor: bitwise the same.
    EXPECT(same_bits(v.total, v2.total) || (std::isnan(v.total) && std::isnan(v2.total)),
           format("top-k loss() %.17g != loss_and_grad() %.17g", v2.total, v.total));
    EXPECT(same_bits(v.total, v3.total) || (std::isnan(v.total) && std::isnan(v3.total)),
           format("executor changed the top-k loss: %.17g vs %.17g", v.total, v3.total));
    if (x.per_row_losses && N > 0) {
        EXPECT(std::memcmp(rows.data(), rows2.data(), rows.size() * sizeof(double)) == 0 || std::isnan(v.total),
               "top-k loss() and loss_and_grad() disagree on the per-row losses");
        EXPECT(std::memcmp(rows.data(), rows3.data(), rows.size() * sizeof(double)) == 0 || std::isnan(v.total),
               "the executor changed the top-k per-row losses");
    }
    EXPECT(N * C == 0 || std::memcmp(g.data(), g2.data(), sizeof(T) * static_cast<std::size_t>(N * C)) == 0 || g.hasNaN(),
           "executor changed the top-k gradient");

    std::int64_t counted = 0;
    for (std::ptrdiff_t i = 0; i < N; ++i) counted += row_counted(x, i);
    EXPECT(v.rows_counted == counted, format("top-k rows_counted %lld, expected %lld", static_cast<long long>(v.rows_counted),
                                             static_cast<long long>(counted)));
    double weight = 1;
    if (x.reduce == distill::reduction::mean) weight = counted ? 1.0 / static_cast<double>(counted) : 0.0;
    if (x.reduce == distill::reduction::divide_by) weight = 1 / x.normalizer;
    distill::detail::row_terms k;
    k.soft = o.alpha > 0;
    k.hard = o.has_labels && o.alpha < 1;
    k.temperature = k.soft ? o.T : 1.0;
    k.inv_temperature = 1 / k.temperature;
    k.integer_temperature = distill::detail::whole_temperature(k.temperature);
    k.smoothing = k.hard ? o.eps : 0.0;
    distill_test::set_divergence(k, x.divergence);
    distill_test::set_teacher_input(k, x.teacher);
    const double soft_weight = k.soft ? o.alpha * (x.t_squared ? o.T * o.T : 1.0) : 0.0, hard_weight = 1 - o.alpha;
    k.soft_grad = k.soft ? weight * soft_weight / k.temperature : 0.0;
    k.hard_grad = k.hard ? weight * hard_weight : 0.0;
    distill::detail::row_terms k_hard = k;  // the cross-entropy's scales, over the whole row
    k_hard.soft = false;
    const bool student_masks_infinite = k.soft && distill_test::infinite_where_student_masks(k.divergence, k.params);
    const bool teacher_masks_infinite = k.soft && distill_test::infinite_where_teacher_masks(k.divergence, k.params);
    constexpr T minus_inf_t = -std::numeric_limits<T>::infinity();
    const double limit = static_cast<double>(std::numeric_limits<T>::max()) / 16;

    double row_sum_of_losses = 0, magnitude = 0;
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        const T* si = s.data() + i * C;
        const T* gi = g.data() + i * C;
        const T* gr = g_ref.data() + i * C;
        const double api_row = x.per_row_losses ? rows[static_cast<std::size_t>(i)] : 0.0;
        const double expected = x.per_row_losses ? rows_ref[static_cast<std::size_t>(i)] : 0.0;
        const std::int64_t y = k.hard ? labels[static_cast<std::size_t>(i)] : -1;
        const auto where = [&] {
            std::string text = format("row %td, C = %td, k = %td, %s, T = %g, alpha = %g, eps = %g, label %lld, reduction %d, weight %g, %s, %s; "
                                      "reference row %.17g; s = ",
                                      i, C, x.top.k, x.top.mode == distill::top_k_mode::renormalize ? "renormalize" : "tail_bucket", o.T,
                                      o.alpha, o.eps, static_cast<long long>(y), static_cast<int>(x.reduce), weight,
                                      distill_test::describe(x.divergence).c_str(), distill_test::describe(x.teacher), expected) +
                               row_text(si, C) + " teacher (every slot, index:value):";
            for (std::ptrdiff_t j = 0; j < x.top.k; ++j)
                text += format(" %lld:%.17g", static_cast<long long>(d.index(i, j)), static_cast<double>(d.values(i, j)));
            text += "; the student's whole row:";
            for (std::ptrdiff_t c = 0; c < C; ++c) text += format(" %.17g", static_cast<double>(si[c]));
            return text;
        };
        if (!row_counted(x, i)) {
            for (std::ptrdiff_t c = 0; c < C; ++c) EXPECT(gi[c] == 0, "ignored top-k row with a nonzero gradient, " + where());
            EXPECT(api_row == 0, "ignored top-k row with a nonzero loss, " + where());
            continue;
        }
        row_sum_of_losses += api_row;
        magnitude += std::abs(api_row);
        if (!x.per_row_losses) continue;
        if (has_nan_or_plus_inf(si, C)) {  // NaN propagates from the student (the teacher's NaN is refused)
            EXPECT(std::isnan(api_row), format("top-k row loss %.17g, expected NaN, ", api_row) + where());
            continue;
        }
        if (!in_range(si, static_cast<const T*>(nullptr), C, k, soft_weight)) continue;
        // (Without a soft term the teacher is neither checked nor read: no categories.)
        const top_k_categories cat = k.soft ? categories_of(x, si, d, i, k) : top_k_categories{};
        const auto& n = cat.n;
        if (k.soft) {  // the teacher's logits must fit the type's range too (in_range's rule)
            double lo = inf, hi = -inf;
            for (double lp : n.lp)
                if (std::isfinite(lp)) lo = std::min(lo, lp), hi = std::max(hi, lp);
            if (hi > lo && !((hi - lo) * static_cast<double>(x.top.k + 1) < limit)) continue;
        }
        // +inf where the contract says (docs/api.md): the student masks the label; a category where
        // one side has no mass at all and the other clearly has, in the divergence's direction.
        bool must_be_inf = false, underflow = false, any_teacher_mask = false;
        if (k.hard && si[y] == minus_inf_t) must_be_inf = true;
        if (k.hard && k.smoothing > 0)
            for (std::ptrdiff_t c = 0; c < C; ++c) must_be_inf |= si[c] == minus_inf_t;
        const std::size_t categories = n.q.size();
        for (std::size_t c = 0; c < categories && k.soft && soft_weight > 0; ++c) {
            const bool tail = cat.columns[c] < 0;
            if (student_masks_infinite && cat.student_masks[c] && n.lp[c] > -50) must_be_inf = true;
            if (teacher_masks_infinite && cat.teacher_masks[c] && n.lq[c] > -50 && !(tail && cat.tail_uncertain)) must_be_inf = true;
            any_teacher_mask |= cat.teacher_masks[c] || (tail && cat.tail_uncertain);
            // A probability that underflowed (or nearly) without a mask: +inf or a bounded mixture's
            // underflow (tests/differential.hpp) may go either way.
            underflow |= (n.p[c] < 1e-290 && !cat.teacher_masks[c]) || (n.q[c] < 1e-290 && !cat.student_masks[c]);
        }
        bool any_student_mask = false;
        for (std::ptrdiff_t c = 0; c < C; ++c) any_student_mask |= si[c] == minus_inf_t;
        if (must_be_inf) EXPECT(api_row == inf, format("top-k row loss %.17g, expected +inf, ", api_row) + where());
        // (A student tail whose every term is below the SIMD exponential's floor is 0 there: +inf
        // under a forward-type divergence, documented as a student tail of 0.)
        distill::detail::row_terms k_student = k;
        k_student.soft = false;
        const bool either = distill_test::probability_below_type_floor(si, static_cast<const T*>(nullptr), C, k_student);
        if (!any_student_mask && !(teacher_masks_infinite && any_teacher_mask) && !underflow && !either && std::abs(expected) < 1e300)
            EXPECT(std::isfinite(api_row), format("top-k row loss %.17g, expected finite, ", api_row) + where());
        EXPECT(!std::isnan(api_row), "NaN top-k row loss for NaN-free input, " + where());

        // The SIMD kernels against the reference kernels, relative to the scales of the terms: the
        // divergence's over the categories (a column outside the classes takes its share of the
        // tail's gradient scale), the cross-entropy's over the whole row.
        double soft_scale = 0, slack = 0, soft_grad_max = 0, soft_grad_sum = 0;
        std::vector<double> grad_scales;
        if (k.soft) distill_test::scale_detail::divergence_scales<T>(n, -1, k, soft_scale, grad_scales, slack);
        for (std::size_t c = 0; c < grad_scales.size(); ++c) {
            soft_grad_max = std::max(soft_grad_max, grad_scales[c]);
            soft_grad_sum += grad_scales[c];
        }
        const auto hard = distill_test::reference_scales(si, static_cast<const T*>(nullptr), y, C, k_hard);
        const double loss_scale = soft_weight * soft_scale + (k.hard ? hard_weight * hard.ce : 0.0);
        const double grad_scale = std::abs(k.soft_grad) * soft_grad_max + hard.grad;
        const double grad_sum = std::abs(k.soft_grad) * soft_grad_sum + hard.grad_sum;
        slack *= std::abs(k.soft_grad);
        const bool one_infinite = std::isinf(api_row) != std::isinf(expected);
        if ((std::isfinite(expected) || std::isfinite(api_row)) && !((either || underflow) && one_infinite)) {
            const double err = distill_test::scaled_error(api_row, expected, loss_scale);
            EXPECT(err <= bound::loss(C) * 1.0000001,
                   format("top-k row loss %.17g vs reference kernels %.17g: %.3g of the scale %.3g (bound %.1e), ", api_row, expected, err,
                          loss_scale, bound::loss(C)) + where());
        }
        if (one_infinite || underflow) continue;
        bool reference_gradient_finite = true;
        for (std::ptrdiff_t c = 0; c < C; ++c) reference_gradient_finite &= std::isfinite(static_cast<double>(gr[c]));
        if (!std::isfinite(api_row) && !(reference_gradient_finite && !teacher_masks_infinite)) continue;
        double row_sum = 0;
        for (std::ptrdiff_t c = 0; c < C; ++c) {
            EXPECT(std::isfinite(gi[c]), format("top-k gradient (%td, %td) = %g for NaN-free input, ", i, c, double(gi[c])) + where());
            const double err = distill_test::scaled_error(gi[c], gr[c], grad_scale, slack);
            EXPECT(err <= bound::grad(C) * 1.0000001,
                   format("top-k gradient (%td, %td) = %.9g vs reference kernels %.9g: %.3g of the scale %.3g, ", i, c, double(gi[c]),
                          double(gr[c]), err, grad_scale) + where());
            row_sum += gi[c];
        }
        // Through the softmax, the row's gradient sums to 0 -- where the loss is finite: at a
        // student tail of 0 under a teacher tail p_t > 0 (+inf) the tail's columns get 0
        // (docs/math.md), so the teacher classes' q - p sum to p_t.
        if (!std::isfinite(api_row)) continue;
        const double coefficient = std::max(std::abs(k.soft ? k.soft_grad : 0.0) + std::abs(k.hard ? k.hard_grad : 0.0), grad_sum / 2);
        EXPECT(std::abs(row_sum) <= (std::is_same_v<T, float> ? 1e-5 : 1e-12) * coefficient,
               format("top-k gradient row sums to %.3g (coefficients %.3g), ", row_sum, coefficient) + where());
    }
    if (x.per_row_losses && std::isfinite(weight) && std::isfinite(magnitude) && std::isfinite(v.total))
        EXPECT(std::abs(v.total - weight * row_sum_of_losses) <= 1e-12 * weight * magnitude,
               format("top-k total %.17g vs the weighted rows %.17g", v.total, weight * row_sum_of_losses));
    if (counted == 0 && x.reduce == distill::reduction::mean) EXPECT(v.total == 0, "every row ignored under mean must give 0");
}

template <class T, class I>
void run_top_k(const input& x, reader& in, const matrix<T>& s, const matrix<T>& t) {
    top_k_teacher_data<T, I> d = make_top_k<T, I>(x, t);
    const int edits = in.byte() % 17;
    for (int e = 0; e < edits; ++e) apply_top_k_edit(in, x, d);
    const std::vector<std::int64_t> none;
    const std::vector<std::int64_t>& labels = x.kind == loss_kind::hinton_no_labels ? none : x.labels;
    expected_error options_wrong = option_error(x);
    if (options_wrong.code == distill::errc::ok) options_wrong = top_k_option_error(x);
    const char* name = "top_k_distillation_loss";
    try {
        const distill::top_k_distillation_loss<T> loss(
            {.temperature = x.T, .alpha = x.alpha, .scale_by_t_squared = x.t_squared, .label_smoothing = x.eps,
             .ignore_index = x.ignore_index, .reduce = x.reduce, .normalizer = x.normalizer, .check_finite = x.check_finite,
             .divergence = x.divergence, .teacher = x.teacher},
            {.mode = x.top.mode, .padding_index = x.top.padding_index, .mass_tolerance = x.top.mass_tolerance});
        EXPECT(options_wrong.code == distill::errc::ok, std::string("top-k constructor accepted bad options; expected: ") + options_wrong.text);
        const expected_error e = top_k_call_error(x, s, d);
        if (e.code != distill::errc::ok) {
            distill::loss_value v;
            v.total = 42;
            matrix<T> g(x.N, x.C);
            std::vector<double> rows(static_cast<std::size_t>(x.N));
            const distill::per_row pr{.mask = x.use_mask ? std::span<const std::uint8_t>(x.mask) : std::span<const std::uint8_t>(),
                                      .losses = x.per_row_losses ? std::span<double>(rows) : std::span<double>()};
            const auto teacher = distill::top_k(d.indices, d.values);
            check_status(top_k_call<distill::detail::isa>(loss, false, s, teacher, labels, &g, v, pr), e, name);
            EXPECT(v.total == 0 && v.rows_counted == 0, "a failed top-k call left a result behind");
            check_status(top_k_call<distill::detail::isa>(loss, true, s, teacher, labels, static_cast<matrix<T>*>(nullptr), v, pr), e, name);
            return;
        }
        check_top_k_valid(x, loss, s, d, labels);
    } catch (const std::invalid_argument& ex) {
        const std::string message = ex.what();
        EXPECT(options_wrong.code == distill::errc::invalid_argument, "top-k constructor threw for good options: " + message);
        EXPECT(message.rfind(std::string(name) + ": ", 0) == 0 && message.find(options_wrong.text) != std::string::npos,
               "top-k constructor message '" + message + "' lacks '" + options_wrong.text + "'");
    }
}

template <class T>
void run(const input& x, reader& in, std::uint8_t generator_byte, std::uint32_t seed) {
    matrix<T> s(x.N, x.C), t(x.N, x.C);
    generator gen{0x9E3779B97F4A7C15ull ^ seed};
    const double scale = scales[generator_byte & 7];
    const int style = (generator_byte >> 3) & 7;
    for (std::ptrdiff_t e = 0; e < x.N * x.C; ++e) {
        const double a = scale * gen.normal();
        double b = 0;
        switch (style) {
            case 0: b = scale * gen.normal(); break;                      // independent
            case 1: b = a + 1e-3 * scale * gen.normal(); break;          // near-equal: KL near 0
            case 2: b = a; break;                                        // equal
            case 3: b = 30 * gen.normal(); break;                        // different spread
            case 4: b = a + 1e4; break;                                  // offset
            case 5: b = (gen.uniform() < 0.3 ? -inf : 3 * gen.normal()); break;  // teacher masks
            case 6: b = 3 * gen.normal(); s.data()[e] = static_cast<T>(gen.uniform() < 0.3 ? -inf : a); continue;
            default: b = -a; break;                                      // opposite
        }
        s.data()[e] = static_cast<T>(a);
        t.data()[e] = static_cast<T>(b);
    }
    if (x.teacher == distill::teacher_input::probabilities)  // t >= 0: exp(t - max t) per row
        for (std::ptrdiff_t i = 0; i < x.N; ++i) {
            T* row = t.data() + i * x.C;
            double m = -inf;
            for (std::ptrdiff_t c = 0; c < x.C; ++c) m = std::max(m, static_cast<double>(row[c]));
            for (std::ptrdiff_t c = 0; c < x.C; ++c)
                row[c] = static_cast<T>(m == -inf ? 0.0 : std::exp(static_cast<double>(row[c]) - m));
        }
    const int edits = in.byte() % 33;
    for (int n = 0; n < edits; ++n) apply_edit(in, x, s, t);
    if (x.top_k) {
        if (x.top.int32_indices) run_top_k<T, std::int32_t>(x, in, s, t);
        else run_top_k<T, std::int64_t>(x, in, s, t);
        return;
    }

    const char* name = loss_name(x);
    const expected_error options_wrong = option_error(x);
    const auto go = [&](const auto& loss) {
        if (x.run_softmax) check_softmax(x, s);
        const expected_error e = call_error(x, s, t);
        if (e.code != distill::errc::ok) {
            distill::loss_value v;
            v.total = 42;
            matrix<T> g(x.N, x.C);
            std::vector<double> rows(static_cast<std::size_t>(x.N));
            const distill::per_row pr{.mask = x.use_mask ? std::span<const std::uint8_t>(x.mask) : std::span<const std::uint8_t>(),
                                      .losses = x.per_row_losses ? std::span<double>(rows) : std::span<double>()};
            const distill::status st = call(loss, x.kind, false, s, t, x.labels, &g, v, pr);
            // Outside the representable range of 1/T (docs/reliability.md) an all -inf row meets
            // 0 * inf = NaN before it is recognised: NaN instead of the error is documented there.
            const bool row_error = e.text.find("entirely -inf") != std::string::npos;
            if (row_error && st.ok() && !temperature_in_range<T>(x)) return;
            check_status(st, e, name);
            EXPECT(v.total == 0 && v.rows_counted == 0, "a failed call left a result behind");
            return;
        }
        check_valid_call<T>(x, loss, s, t);
    };
    // The throwing constructors refuse bad options with the message the try_ calls would give.
    try {
        switch (x.kind) {
            case loss_kind::kl:
                if (x.divergence_loss)
                    go(distill::divergence_loss<T>({.divergence = x.divergence, .temperature = x.T,
                                                    .scale_by_t_squared = x.t_squared, .reduce = x.reduce,
                                                    .normalizer = x.normalizer, .check_finite = x.check_finite,
                                                    .teacher = x.teacher}));
                else
                    go(distill::kl_divergence<T>({.temperature = x.T, .scale_by_t_squared = x.t_squared, .reduce = x.reduce,
                                                  .normalizer = x.normalizer, .check_finite = x.check_finite,
                                                  .teacher = x.teacher}));
                break;
            case loss_kind::ce:
                go(distill::cross_entropy<T>({.label_smoothing = x.eps, .ignore_index = x.ignore_index, .reduce = x.reduce,
                                              .normalizer = x.normalizer, .check_finite = x.check_finite}));
                break;
            default:
                go(distill::distillation_loss<T>({.temperature = x.T, .alpha = x.alpha, .scale_by_t_squared = x.t_squared,
                                                  .label_smoothing = x.eps, .ignore_index = x.ignore_index,
                                                  .reduce = x.reduce, .normalizer = x.normalizer,
                                                  .check_finite = x.check_finite, .divergence = x.divergence,
                                                  .teacher = x.teacher}));
        }
        EXPECT(options_wrong.code == distill::errc::ok, std::string("constructor accepted bad options; expected: ") + options_wrong.text);
    } catch (const std::invalid_argument& ex) {
        const std::string message = ex.what();
        EXPECT(options_wrong.code == distill::errc::invalid_argument, "constructor threw for good options: " + message);
        EXPECT(message.rfind(std::string(name) + ": ", 0) == 0 && message.find(options_wrong.text) != std::string::npos,
               "constructor message '" + message + "' lacks '" + options_wrong.text + "'");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    reader in{data, size};
    input x;
    const std::uint8_t flags = in.byte();
    x.is_double = flags & 1;
    x.kind = static_cast<loss_kind>((flags >> 1) & 3);
    x.reduce = static_cast<distill::reduction>((flags >> 3) & 3);
    x.check_finite = flags & 0x20;
    x.use_mask = flags & 0x40;
    x.t_squared = !(flags & 0x80);
    x.N = in.byte() % 17;
    x.C = in.u16() % 2600;
    x.T = option_value(in, temperatures);
    x.alpha = option_value(in, alphas);
    x.eps = option_value(in, smoothings);
    const std::uint8_t pick = in.byte();
    x.ignore_index = ignore_indices[pick & 3];
    x.normalizer = normalizers[(pick >> 4) & 7];
    const std::uint8_t generator_byte = in.byte();
    x.run_softmax = generator_byte & 0x40;
    x.per_row_losses = !(generator_byte & 0x80);
    const std::uint32_t seed = in.u32();
    if (pick & 0x80) read_family(in, x);
    if (effective_options(x).has_labels) {
        for (std::ptrdiff_t i = 0; i < x.N; ++i) {
            const std::uint8_t code = in.byte();
            std::int64_t y;
            if (code < 224) y = x.C > 0 ? code % x.C : 0;
            else if (code < 240) y = x.ignore_index;
            else if (code == 240) y = x.C;
            else if (code == 241) y = -1;
            else if (code == 242) y = std::numeric_limits<std::int64_t>::max();
            else if (code == 243) y = std::numeric_limits<std::int64_t>::min();
            else if (code == 244) y = x.C - 1;
            else y = static_cast<std::int64_t>(in.u64());
            x.labels.push_back(y);
        }
    }
    if (x.use_mask)
        for (std::ptrdiff_t i = 0; i < x.N; ++i) x.mask.push_back(in.byte() % 4 == 0 ? 0 : 1);
    if (x.is_double)
        run<double>(x, in, generator_byte, seed);
    else
        run<float>(x, in, generator_byte, seed);
    return 0;
}
