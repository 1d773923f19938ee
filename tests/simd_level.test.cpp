// distill::simd_architecture names the instruction set the kernels were compiled for.
#include <string_view>

#include <catch2/catch.hpp>

#include <distill/distill.hpp>

TEST_CASE("simd_architecture names the kernels' instruction set") {
    const std::string_view name = distill::simd_architecture;
    INFO("simd_architecture = " << name);
    CHECK(!name.empty());
#if defined(DISTILL_NO_SIMD)
    CHECK(name == "none (DISTILL_NO_SIMD)");
#else
    CHECK(name == std::string_view(xsimd::default_arch::name()));
    CHECK(name.find("none") == std::string_view::npos);
#endif
}

TEST_CASE("simd_architecture is a compile-time constant") {
    static_assert(distill::simd_architecture[0] != '\0');
    SUCCEED();
}
