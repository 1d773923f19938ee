"""float32 against the float64 composite on the same (float32-rounded) inputs, at shapes that take
the kernels' long-row paths: few rows of more than 1024 classes (cut into column segments) and many
rows. The tolerances are the library's float guarantees (docs/math.md section 5): 1e-6 of the loss
scale and 2e-6 of each row's gradient scale."""

import pytest
import torch

import composite
import distill
from helpers import DIVERGENCES, make_inputs


def scales(s, t, temperature, alpha):
    """loss_scale and per-row grad_scale of docs/math.md section 5, with the divergence's terms
    bounded symmetrically in p and q (reverse and mixture divergences weight log p by q)."""
    lq = torch.log_softmax(s / temperature, -1)
    lp = torch.log_softmax(t / temperature, -1)
    lr = torch.log_softmax(s, -1)
    p, q, r = lp.exp(), lq.exp(), lr.exp()
    soft_terms = (p + q) * (lp.abs() + lq.abs() + 2)
    loss_scale = alpha * temperature**2 * soft_terms.sum(-1) + (1 - alpha) * (lr.abs() + 1).max(-1).values
    grad_scale = (alpha * temperature * soft_terms + (1 - alpha) * (r + 1)).max(-1).values
    return loss_scale, grad_scale


@pytest.mark.parametrize("shape", [(4, 3000), (96, 257)])
@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_kd_loss_float32(shape, divergence):
    temperature, alpha = 2.0, 0.5
    s, t, y = make_inputs(shape=shape, dtype=torch.float32, seed=20, ignored_rows=(1,))
    x = s.clone().requires_grad_(True)
    loss, soft, hard = distill.kd_loss(x, t, y, temperature=temperature, alpha=alpha, divergence=divergence,
                                       return_parts=True)
    loss.backward()
    x64 = s.double().requires_grad_(True)
    ref, ref_soft, ref_hard = composite.kd_loss(x64, t.double(), y, temperature=temperature, alpha=alpha,
                                                divergence=divergence)
    ref.backward()

    counted = y != -100
    loss_scale, grad_scale = scales(s.double(), t.double(), temperature, alpha)
    mean_loss_scale = loss_scale[counted].sum().item() / counted.sum().item()
    for got, expected in ((loss, ref), (soft, ref_soft), (hard, ref_hard)):
        assert got.dtype == torch.float32
        assert abs(got.item() - expected.item()) <= 1e-6 * mean_loss_scale
    weight = 1.0 / counted.sum().item()  # mean's weight per row
    row_tolerance = 2e-6 * weight * grad_scale
    error = (x.grad.double() - x64.grad).abs().max(-1).values
    assert torch.all(error <= row_tolerance), (error / row_tolerance).max()
    assert torch.count_nonzero(x.grad[1]) == 0  # the ignored row


def test_softmax_float32():
    s, _, _ = make_inputs(shape=(8, 2000), dtype=torch.float32, seed=21)
    expected = torch.softmax(s.double() / 3.0, -1)
    got = distill.softmax(s, 3.0)
    assert got.dtype == torch.float32
    error = (got.double() - expected).abs().max(-1).values
    assert torch.all(error <= 2e-6 * expected.max(-1).values)
