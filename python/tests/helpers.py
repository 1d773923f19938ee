"""Inputs and comparisons shared by the tests."""

import torch

DIVERGENCES = ("forward_kl", "reverse_kl", "jensen_shannon", "skew_kl", "skew_reverse_kl", "total_variation",
               "decoupled_kd")
REDUCTIONS = ("mean", "sum", "none", "divide_by")


def make_inputs(shape=(3, 4, 9), dtype=torch.float64, seed=0, ignored_rows=(1,)):
    """Student and teacher logits of `shape` (the teacher correlated with the student, as after some
    training) and labels for the leading shape, with `ignored_rows` (flat indices) set to -100."""
    g = torch.Generator().manual_seed(seed)
    s = 2.0 * torch.randn(shape, generator=g, dtype=torch.float64)
    t = 0.6 * s + 1.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, shape[-1], shape[:-1], generator=g)
    for row in ignored_rows:
        y.view(-1)[row] = -100
    return s.to(dtype), t.to(dtype), y


def row_weights(n, seed=1):
    """An incoming gradient with one entry per row, for reduction='none'."""
    return torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.5


def compare(ours, reference, s, rtol=1e-10, atol=1e-12):
    """Runs ours(s1) and reference(s2) on copies of s, compares the losses (and the soft and hard parts
    when both return them), then the gradients of the loss (weighted per row for a per-row loss)."""
    s1 = s.detach().clone().requires_grad_(True)
    s2 = s.detach().clone().requires_grad_(True)
    got, expected = ours(s1), reference(s2)
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for g, e in zip(got, expected):
        assert g.dtype == s.dtype
        torch.testing.assert_close(g.double(), e.double(), rtol=rtol, atol=atol)
    loss, reference_loss = got[0], expected[0]
    if loss.dim() == 1:
        w = row_weights(loss.shape[0]).to(s.dtype)
        (loss * w).sum().backward()
        (reference_loss * w).sum().backward()
    else:
        loss.backward()
        reference_loss.backward()
    assert s1.grad.shape == s.shape
    torch.testing.assert_close(s1.grad.double(), s2.grad.double(), rtol=rtol, atol=atol)
    return got
