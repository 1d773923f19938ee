#!/usr/bin/env python3
"""The gradient error of 16-bit distillation, measured against float64 on the same bf16 inputs.

Compares, for one language-model batch of bfloat16 logits (student, teacher, labels):
  - PyTorch's own bf16 autograd of the loss,
        alpha T^2 F.kl_div(F.log_softmax(s / T), F.log_softmax(t / T), log_target=True,
                           reduction='batchmean') + (1 - alpha) F.cross_entropy(s, y)
    computed in bfloat16 (the gradient comes out in bfloat16);
  - distill::distillation_loss<Eigen::bfloat16> with a float gradient buffer and with a bfloat16 one;
against the same expression in float64 on the bf16 inputs widened exactly (the oracle). The figures
are quoted in docs/api.md ("16-bit logits") and docs/math.md (accuracy).

Usage: /usr/bin/python3 tests/bf16_gradient_error.py [rows] [vocabulary]   (Debian's python3-torch;
builds a small shared library from include/ with g++ into build/bf16_error/ first).
"""
import ctypes
import pathlib
import subprocess
import sys

import torch
import torch.nn.functional as F

REPO = pathlib.Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "bf16_error"

SOURCE = r"""
#include <cstdint>
#include <span>
#include <distill/distillation_loss.hpp>

// loss_and_grad of distillation_loss<bfloat16> on n x c bf16 logits; the gradient goes to the float
// buffer when given, else to the bf16 one.
extern "C" double distill_bf16(const void* s, const void* t, const std::int64_t* y, long n, long c, double T,
                               double alpha, float* grad_float, void* grad_bf16) {
    using bf16 = Eigen::bfloat16;
    const distill::matrix_ref<const bf16> student{static_cast<const bf16*>(s), n, c, c};
    const distill::matrix_ref<const bf16> teacher{static_cast<const bf16*>(t), n, c, c};
    const std::span<const std::int64_t> labels(y, static_cast<std::size_t>(n));
    const distill::distillation_loss<bf16> kd({.temperature = T, .alpha = alpha});
    if (grad_float) return kd.loss_and_grad(student, teacher, labels, distill::matrix_ref<float>{grad_float, n, c, c}).total;
    return kd.loss_and_grad(student, teacher, labels, distill::matrix_ref<bf16>{static_cast<bf16*>(grad_bf16), n, c, c}).total;
}
"""


def library():
    BUILD.mkdir(parents=True, exist_ok=True)
    src, lib = BUILD / "distill_bf16.cpp", BUILD / "libdistill_bf16.so"
    src.write_text(SOURCE)
    subprocess.run(["g++", "-std=c++20", "-O2", "-march=native", "-DNDEBUG", "-shared", "-fPIC", f"-I{REPO / 'include'}",
                    "-I/usr/include/eigen3", str(src), "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


def loss_of(s, t, y, T, alpha):
    kl = F.kl_div(F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1), log_target=True, reduction="batchmean")
    return alpha * T * T * kl + (1 - alpha) * F.cross_entropy(s, y)


def errors(g, g64):
    """max |g - g64| / max |g64|, ||g - g64|| / ||g64||, and the median relative error of the entries
    of at least 1e-3 of the largest."""
    d = (g.double() - g64).abs()
    big = g64.abs() >= 1e-3 * g64.abs().max()
    return ((d.max() / g64.abs().max()).item(), (d.norm() / g64.norm()).item(),
            (d[big] / g64.abs()[big]).median().item())


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    vocabulary = int(sys.argv[2]) if len(sys.argv) > 2 else 32000
    T, alpha = 2.0, 0.5
    torch.manual_seed(0)
    s = (2.0 * torch.randn(rows, vocabulary)).bfloat16()
    t = (3.0 * torch.randn(rows, vocabulary)).bfloat16()
    y = torch.randint(0, vocabulary, (rows,))

    s64 = s.double().requires_grad_()
    loss64 = loss_of(s64, t.double(), y, T, alpha)
    loss64.backward()
    g64 = s64.grad

    sb = s.clone().requires_grad_()
    loss_bf16 = loss_of(sb, t, y, T, alpha)
    loss_bf16.backward()

    lib = library()
    lib.distill_bf16.restype = ctypes.c_double
    lib.distill_bf16.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_long,
                                 ctypes.c_double, ctypes.c_double, ctypes.c_void_p, ctypes.c_void_p]
    s_c, t_c, y_c = s.contiguous(), t.contiguous(), y.contiguous()
    g_float = torch.empty(rows, vocabulary, dtype=torch.float32)
    g_bf16 = torch.empty(rows, vocabulary, dtype=torch.bfloat16)
    ours_float = lib.distill_bf16(s_c.data_ptr(), t_c.data_ptr(), y_c.data_ptr(), rows, vocabulary, T, alpha,
                                  g_float.data_ptr(), None)
    ours_bf16 = lib.distill_bf16(s_c.data_ptr(), t_c.data_ptr(), y_c.data_ptr(), rows, vocabulary, T, alpha, None,
                                 g_bf16.data_ptr())

    ref = loss64.item()
    print(f"{rows} x {vocabulary} bf16 logits, T = {T}, alpha = {alpha}; float64 loss {ref:.10f}")
    print(f"{'':34s} {'loss rel. err':>14s} {'grad max/max':>13s} {'grad norm':>10s} {'grad median rel':>16s}")
    for name, loss, g in [("PyTorch bf16 autograd (bf16 grad)", loss_bf16.item(), sb.grad),
                          ("distill, bf16 in, float grad", ours_float, g_float),
                          ("distill, bf16 in, bf16 grad", ours_bf16, g_bf16)]:
        mx, nrm, med = errors(g, g64)
        print(f"{name:34s} {abs(loss - ref) / abs(ref):14.2e} {mx:13.2e} {nrm:10.2e} {med:16.2e}")


if __name__ == "__main__":
    main()
