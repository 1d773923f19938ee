// distill/simd_level.hpp - which SIMD instruction set this translation unit's kernels use.
//
// The kernels run on xsimd::default_arch: the widest instruction set the compiler flags enable, not
// the one the CPU has. A build without -march (or -mavx2 -mfma) gets SSE2 on x86-64 and runs the
// loss several times slower (docs/api.md, "SIMD instruction set"). Print or check this name to see
// what a build got.
#pragma once

#if !defined(DISTILL_NO_SIMD)
#include <xsimd/xsimd.hpp>
#endif

namespace distill {

// xsimd's name of the architecture the kernels are compiled for: "avx512bw", "fma3+avx2", "avx2",
// "sse4.2", "sse2", ..., or "none (DISTILL_NO_SIMD)" when the scalar reference kernels are selected.
#if defined(DISTILL_NO_SIMD)
inline constexpr const char* simd_architecture = "none (DISTILL_NO_SIMD)";
#else
inline constexpr const char* simd_architecture = xsimd::default_arch::name();
#endif

}  // namespace distill
