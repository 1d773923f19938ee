// Units built with different instruction sets (baseline x86-64, -march=native, DISTILL_NO_SIMD)
// linked into one program, in the order this executable was linked: each unit's API call must run
// its own kernels. If the drivers above the kernels were shared between the units (one definition
// kept by the linker), a unit's API result would come from another unit's kernel: a baseline unit
// could execute AVX-512 instructions, or a DISTILL_NO_SIMD unit SIMD code. The three kernels give
// different bits for the same row (checked first: otherwise the test could not tell them apart).
#include <cstdio>
#include <cstring>

#include "unit.hpp"

namespace {

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

int main() {
    const unit_result units[] = {unit_baseline(), unit_native(), unit_no_simd()};
    int failures = 0;
    for (const unit_result& u : units)
        std::printf("%-24s api %.17g  kernel %.17g  bf16 api %.17g  kernel %.17g\n", u.isa, u.api, u.kernel, u.api_bf16,
                    u.kernel_bf16);
    // The kernels must differ for the test to mean anything. On a machine whose native set is the
    // baseline itself, the two SIMD units are the same kernel; only the reference must differ then.
    const bool native_is_baseline = std::strcmp(units[0].isa, units[1].isa) == 0;
    for (int a = 0; a < 3; ++a)
        for (int b = a + 1; b < 3; ++b) {
            if (native_is_baseline && a == 0 && b == 1) continue;
            if (same_bits(units[a].kernel, units[b].kernel) || same_bits(units[a].kernel_bf16, units[b].kernel_bf16)) {
                std::printf("FAILED: the %s and %s kernels give the same bits; the test cannot tell them apart\n",
                            units[a].isa, units[b].isa);
                ++failures;
            }
        }
    for (const unit_result& u : units)
        if (!same_bits(u.api, u.kernel) || !same_bits(u.api_bf16, u.kernel_bf16)) {
            std::printf("FAILED: the %s unit's API call did not run its own kernel\n", u.isa);
            ++failures;
        }
    std::printf("%d passed, %d failed\n", failures == 0 ? 1 : 0, failures == 0 ? 0 : 1);
    return failures == 0 ? 0 : 1;
}
