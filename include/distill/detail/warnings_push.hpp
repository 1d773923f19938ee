// distill/detail/warnings_push.hpp - included first by every public header that reaches the SIMD
// kernels, which end by including warnings_pop.hpp. No include guard: it is meant to be included
// once per such header.
//
// Why: GCC up to 12.2, optimising with AVX-512 enabled (-march=x86-64-v4, -march=native on an
// AVX-512 machine), reports -Wmaybe-uninitialized and -Wuninitialized inside its own AVX-512
// intrinsics headers: intrinsics such as _mm512_slli_epi32 pass _mm512_undefined_epi32(), which GCC
// writes as a self-initialised variable (`__m512i __Y = __Y;`), as the unused merge operand of a
// builtin, and the warning fires wherever xsimd's calls to them are inlined into our kernels:
// thousands of lines, and a failed build under -Werror. It is a known false positive (GCC bugzilla
// 105593; later GCC releases fix it). The pragmas silence these two warnings only, for GCC only, over
// the text of the public header and what it includes; the user's code after it keeps its own settings.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
