// The kernels' exponential (detail/simd/exp.hpp) against std::exp in double over the range the
// kernels use, x in [-87.34, 0]: its contract says at most 2 ulp of float, results below 2^-126
// flushed to 0, exp(-inf) = 0, NaN in -> NaN out, and never a NaN or inf from a finite x <= 0.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

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
