// The kernels' exponential (detail/simd/exp.hpp) against std::exp in double over the range the
// kernels use, x in [-87.34, 0]: its contract says at most 2 ulp of float, results below 2^-126
// flushed to 0, exp(-inf) = 0, NaN in -> NaN out, and never a NaN or inf from a finite x <= 0.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <distill/detail/simd/exp.hpp>

namespace {
using arch = xsimd::default_arch;
using V = xsimd::batch<float, arch>;
constexpr std::size_t W = V::size;

// The spacing of floats at the magnitude of v: the size of one ulp for a result near v.
double ulp_at(double v) { return std::ldexp(1.0, std::ilogb(v) - 23); }
}  // namespace

TEST_CASE("exp_nonpositive is within 2 ulp of e^x on [-87.34, 0]", "[exp]") {
    double worst_ulp = 0, worst_x = 0;
    std::uint64_t checked = 0;
    // Every 61st float from -0 down to -87.34 (about 18 million values, every exponent and every
    // residue class of the mantissa's low bits), plus the exact endpoints below.
    float xs[W];
    std::size_t filled = 0;
    auto flush = [&] {
        float out[W];
        distill::detail::simd::exp_nonpositive<arch>(V::load_unaligned(xs)).store_unaligned(out);
        for (std::size_t i = 0; i < filled; ++i) {
            const double expected = std::exp(static_cast<double>(xs[i]));
            ++checked;
            if (expected < std::numeric_limits<float>::min()) {  // below 2^-126: flushed to zero by contract
                REQUIRE((out[i] == 0.0f || std::abs(out[i] - expected) <= ulp_at(std::numeric_limits<float>::min())));
                continue;
            }
            const double err = std::abs(out[i] - expected) / ulp_at(expected);
            if (err > worst_ulp) worst_ulp = err, worst_x = xs[i];
        }
        filled = 0;
    };
    for (std::uint32_t bits = 0x80000000u;; bits += 61) {
        float x;
        std::memcpy(&x, &bits, sizeof x);
        if (!(x >= -87.34f)) break;
        xs[filled++] = x;
        if (filled == W) flush();
    }
    for (float x : {0.0f, -0.0f, -1e-30f, -0.34657359f, -0.69314718f, -1.0f, -87.33f, -87.3365f}) {
        xs[filled++] = x;
        if (filled == W) flush();
    }
    if (filled) flush();
    INFO("checked " << checked << " values; worst " << worst_ulp << " ulp at x = " << worst_x);
    CHECK(checked > 10'000'000);
    CHECK(worst_ulp <= 2.0);
}

TEST_CASE("exp_nonpositive special values", "[exp]") {
    const float in[8] = {-std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(), -1e30f,
                         -104.0f, -87.5f, -std::numeric_limits<float>::denorm_min(), 0.0f, -0.0f};
    float padded[W > 8 ? W : 8] = {};
    for (std::size_t base = 0; base < 8; base += W) {
        float chunk[W];
        for (std::size_t i = 0; i < W; ++i) chunk[i] = base + i < 8 ? in[base + i] : 0.0f;
        distill::detail::simd::exp_nonpositive<arch>(V::load_unaligned(chunk)).store_unaligned(chunk);
        for (std::size_t i = 0; i < W && base + i < 8; ++i) padded[base + i] = chunk[i];
    }
    CHECK(padded[0] == 0.0f);           // e^-inf = 0: masked classes weigh nothing
    CHECK(std::isnan(padded[1]));       // NaN propagates
    CHECK(padded[2] == 0.0f);           // far below the float range
    CHECK(padded[3] == 0.0f);           // e^-104 ~ 7e-46: flushed
    CHECK(padded[4] == 0.0f);           // e^-87.5 < 2^-126: flushed
    CHECK(padded[5] == 1.0f);           // e^-tiny rounds to 1
    CHECK(padded[6] == 1.0f);
    CHECK(padded[7] == 1.0f);
}

namespace {
using VD = xsimd::batch<double, arch>;
constexpr std::size_t WD = VD::size;

// exp_nonpositive<double> of n values, a vector at a time (n a multiple of WD).
void exp_doubles(const double* in, double* out, std::size_t n) {
    for (std::size_t i = 0; i < n; i += WD)
        distill::detail::simd::exp_nonpositive<arch>(VD::load_unaligned(in + i)).store_unaligned(out + i);
}
}  // namespace

TEST_CASE("exp_nonpositive<double> is within 2 ulp of e^x on [-708.39, 0]", "[exp]") {
    // 2,000,064 values evenly spaced from 0 down to -708.39 (every binade of the result down to
    // the smallest normal double), and eight more at the edges: the ends of the reduced range
    // (+-ln2 / 2 around each multiple of ln2) and the last inputs above ln(2^-1022) = -708.39641853,
    // whose results are the smallest normal ones (their exponent field must not reach 0). Against
    // expl in long double (64-bit mantissa on x86), whose own error is far below a double ulp.
    // 2 ulp is the contract (exp.hpp), as for float.
    constexpr std::size_t n = 2'000'064;
    std::vector<double> xs(n), out(n + 8);
    for (std::size_t i = 0; i < n; ++i) xs[i] = -708.39 * static_cast<double>(i) / static_cast<double>(n - 1);
    for (double x : {-0.34657359027997264, -0.34657359027997270, -1.0397207708399179, -1.0397207708399180,
                     -708.3964, -708.39641, -708.396418, -708.3964185322641})
        xs.push_back(x);
    exp_doubles(xs.data(), out.data(), xs.size());
    double worst = 0, worst_x = 0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const long double exact = std::exp(static_cast<long double>(xs[i]));
        const double ulp = std::ldexp(1.0, std::ilogb(static_cast<double>(exact)) - 52);
        const double err = static_cast<double>(std::abs(static_cast<long double>(out[i]) - exact)) / ulp;
        if (err > worst) worst = err, worst_x = xs[i];
    }
    INFO("worst " << worst << " ulp at x = " << worst_x);
    CHECK(worst <= 2.0);
    // The next double below the last one kept (-708.3964185322641, whose result is normal, above):
    // flushed, as e^x is subnormal there.
    std::vector<double> below(WD, std::nextafter(-708.3964185322641, -1000.0)), flushed(WD);
    exp_doubles(below.data(), flushed.data(), WD);
    CHECK(flushed[0] == 0.0);
}

TEST_CASE("exp_nonpositive<double> special values", "[exp]") {
    // The values a kernel can pass: masked classes (-inf), NaN logits, far-below-range shifts, and
    // (when a NaN logit hid the row max) x > 0, whose lane must not turn a NaN row into anything else.
    constexpr double inf = std::numeric_limits<double>::infinity();
    const double in[8] = {-inf, std::numeric_limits<double>::quiet_NaN(), -1e300, -1000.0, -745.5,
                          -std::numeric_limits<double>::denorm_min(), 0.0, -0.0};
    double padded[WD > 8 ? WD : 8] = {};
    for (std::size_t base = 0; base < 8; base += WD) {
        double chunk[WD];
        for (std::size_t i = 0; i < WD; ++i) chunk[i] = base + i < 8 ? in[base + i] : 0.0;
        exp_doubles(chunk, chunk, WD);
        for (std::size_t i = 0; i < WD && base + i < 8; ++i) padded[base + i] = chunk[i];
    }
    CHECK(padded[0] == 0.0);       // e^-inf = 0: masked classes weigh nothing
    CHECK(std::isnan(padded[1]));  // NaN propagates
    CHECK(padded[2] == 0.0);       // far below the double range
    CHECK(padded[3] == 0.0);
    CHECK(padded[4] < std::numeric_limits<double>::min());  // e^-745.5 ~ 4e-324: 0 or a subnormal
    CHECK(padded[5] == 1.0);       // e^-tiny rounds to 1
    CHECK(padded[6] == 1.0);
    CHECK(padded[7] == 1.0);
}

TEST_CASE("exp_nonpositive keeps every NaN a NaN, whatever its sign and payload", "[exp]") {
    // A NaN logit reaches the exponential with the payload it came with (quiet or signalling, either
    // sign); the row must stay NaN. The exponential has no NaN test of its own (exp.hpp: the NaN goes
    // through e^r into the product with 2^n), so every payload bit is tried, in float and in double.
    std::vector<float> floats;
    for (std::uint32_t bit = 0; bit < 23; ++bit)
        for (std::uint32_t sign : {0u, 0x80000000u})
            for (std::uint32_t quiet : {0u, 0x400000u}) {
                const std::uint32_t bits = sign | 0x7f800000u | quiet | (1u << bit) | (bit * 0x1f3u & 0x3fffffu);
                float f;
                std::memcpy(&f, &bits, sizeof f);
                floats.push_back(f);
            }
    floats.resize((floats.size() + W - 1) / W * W, std::numeric_limits<float>::quiet_NaN());
    for (std::size_t i = 0; i < floats.size(); i += W) {
        float out[W];
        distill::detail::simd::exp_nonpositive<arch>(V::load_unaligned(floats.data() + i)).store_unaligned(out);
        for (std::size_t j = 0; j < W; ++j) {
            INFO("float NaN input " << i + j);
            CHECK(std::isnan(out[j]));
        }
    }
    std::vector<double> doubles;
    for (std::uint64_t bit = 0; bit < 52; ++bit)
        for (std::uint64_t sign : {std::uint64_t{0}, std::uint64_t{1} << 63})
            for (std::uint64_t quiet : {std::uint64_t{0}, std::uint64_t{1} << 51}) {
                const std::uint64_t bits = sign | (std::uint64_t{0x7ff} << 52) | quiet | (std::uint64_t{1} << bit) |
                                           (bit * 0x1f3u & 0xfffffffffffffu);
                double d;
                std::memcpy(&d, &bits, sizeof d);
                doubles.push_back(d);
            }
    doubles.resize((doubles.size() + WD - 1) / WD * WD, std::numeric_limits<double>::quiet_NaN());
    std::vector<double> out(doubles.size());
    exp_doubles(doubles.data(), out.data(), doubles.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
        INFO("double NaN input " << i);
        CHECK(std::isnan(out[i]));
    }
}
