// One translation unit of the mixed instruction-set test, compiled three times with different
// flags (baseline x86-64, -march=native, DISTILL_NO_SIMD) and the function name in DISTILL_UNIT.
// It computes one KL row through the public API and through its own backend's row kernel
// directly, in float and in bfloat16; the two must be bitwise equal, whatever the other units
// linked into the program.
#include <distill/distill.hpp>

#include <vector>

#include "unit.hpp"

unit_result DISTILL_UNIT() {
    using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    constexpr Eigen::Index C = 1000;
    // Logits from integers and a power-of-two scale: no floating-point arithmetic that the units'
    // different flags could round differently (a library function compiled into every unit, such
    // as std::normal_distribution, is itself one definition that the linker picks).
    matrix s(1, C), t(1, C);
    for (Eigen::Index c = 0; c < C; ++c) {
        s(0, c) = static_cast<float>((c * 7919 + 13) % 2001 - 1000) / 128.0f;
        t(0, c) = static_cast<float>((c * 104729 + 7) % 1999 - 999) / 128.0f;
    }

    // kl_divergence at T = 1 with reduction::sum over one row returns that row's KL exactly:
    // 1 * (0 + 1 * KL) in the library's own double arithmetic.
    const distill::kl_divergence<float> kl({.reduce = distill::reduction::sum});
    unit_result r;
    r.isa = distill::detail::isa::name();
    r.api = kl.loss(s, t).total;

    distill::detail::row_terms k;
    k.soft = true;
    k.integer_temperature = 1;
    r.kernel = distill::detail::backend<distill::detail::isa>::fused_row(s.data(), t.data(), -1, C, k,
                                                                          static_cast<float*>(nullptr))
                   .divergence;

    // The same row in bfloat16, whose conversions (narrow_load_store.hpp) are templates of the
    // instruction set too, with a 16-bit gradient (the store path). In std::vectors: Eigen matrices of
    // bfloat16 here crashed the program (heap corruption), as Eigen's inline allocation functions
    // differ between units of different alignments (EIGEN_MAX_ALIGN_BYTES 16 or 64) and the linker
    // keeps one copy of each, so memory may be freed by another unit's function than allocated it.
    using bf16 = Eigen::bfloat16;
    std::vector<bf16> s16(C), t16(C), g16(C);
    for (Eigen::Index c = 0; c < C; ++c) s16[c] = bf16(s(0, c)), t16[c] = bf16(t(0, c));
    const distill::matrix_ref<const bf16> s_ref{s16.data(), 1, C}, t_ref{t16.data(), 1, C};
    r.api_bf16 = distill::kl_divergence<bf16>({.reduce = distill::reduction::sum})
                     .loss_and_grad(s_ref, t_ref, distill::matrix_ref<bf16>{g16.data(), 1, C})
                     .total;
    r.kernel_bf16 = distill::detail::backend<distill::detail::isa>::fused_row(s16.data(), t16.data(), -1, C, k, g16.data())
                        .divergence;
    return r;
}
