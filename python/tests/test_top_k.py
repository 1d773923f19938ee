"""distill.top_k_kd_loss against the PyTorch composite a user writes for a top-k teacher, in float64.

The composite (below) reads the definitions: q = softmax(s / T) over the whole vocabulary, gathered at
the teacher's classes, the student's tail summed over the other classes (a scattered mask), the
teacher as the mode says, each divergence written out over the k + 1 categories, and F.cross_entropy
on the whole row. Autograd of it gives the reference gradient.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import distill

DIVERGENCES = [
    ("forward_kl", {}),
    ("reverse_kl", {}),
    ("jensen_shannon", {"beta": 0.5}),
    ("jensen_shannon", {"beta": 0.1}),
    ("skew_kl", {"skew": 0.1}),
    ("skew_reverse_kl", {"skew": 0.3}),
    ("total_variation", {}),
]


def kl(a, b):
    """sum a (log a - log b) over a > 0."""
    pos = a > 0
    return torch.where(pos, a * (torch.log(torch.where(pos, a, 1.0)) - torch.log(b)), torch.zeros_like(a)).sum()


def divergence_by_definition(name, p, q, beta=0.5, skew=0.1):
    if name == "forward_kl":
        return kl(p, q)
    if name == "reverse_kl":
        return kl(q, p)
    if name == "jensen_shannon":
        m = beta * p + (1 - beta) * q
        return beta * kl(p, m) + (1 - beta) * kl(q, m)
    if name == "skew_kl":
        return kl(p, skew * p + (1 - skew) * q)
    if name == "skew_reverse_kl":
        return kl(q, (1 - skew) * p + skew * q)
    if name == "total_variation":
        return 0.5 * (p - q).abs().sum()
    raise ValueError(name)


def composite(s, idx, vals, labels, temperature, alpha, mode, divergence, params, teacher_input, smoothing,
              padding=-1):
    """Mean over the rows of alpha T^2 D + (1 - alpha) CE, row by row."""
    rows = []
    q_full = F.softmax(s / temperature, dim=-1)
    for i in range(s.shape[0]):
        keep = idx[i] != padding
        cols, v = idx[i][keep], vals[i][keep].to(torch.float64)
        outside = torch.ones(s.shape[1], dtype=torch.bool)
        outside[cols] = False
        q_k, q_tail = q_full[i, cols], q_full[i][outside].sum()
        if mode == "renormalize":
            y = v / temperature if teacher_input == "logits" else (torch.log(v) if teacher_input == "probabilities" else v)
            p_k, p_tail = torch.exp(y - torch.logsumexp(y, 0)), torch.zeros((), dtype=torch.float64)
        else:
            p_k = v if teacher_input == "probabilities" else torch.exp(v)
            p_tail = torch.clamp(1 - p_k.sum(), min=0)
        p, q = torch.cat([p_k, p_tail.reshape(1)]), torch.cat([q_k, q_tail.reshape(1)])
        loss = alpha * temperature**2 * divergence_by_definition(divergence, p, q, **params)
        if labels is not None:
            loss = loss + (1 - alpha) * F.cross_entropy(s[i : i + 1], labels[i : i + 1], label_smoothing=smoothing)
        rows.append(loss)
    return torch.stack(rows).mean()


def make_teacher(n, v, k, temperature, teacher_input, seed, padded_row=1):
    g = torch.Generator().manual_seed(seed)
    t = 3 * torch.randn(n, v, generator=g, dtype=torch.float64)
    lp = F.log_softmax(t / temperature, dim=-1)
    top = torch.topk(lp, k, dim=-1)
    perm = torch.randperm(k, generator=g)
    idx, lp_k, t_k = top.indices[:, perm], top.values[:, perm], t.gather(-1, top.indices[:, perm])
    vals = {"logits": t_k, "log_probabilities": lp_k, "probabilities": lp_k.exp()}[teacher_input].clone()
    idx = idx.clone()
    idx[padded_row, -2:] = -1  # a row with fewer classes
    return idx, vals


# reverse_kl under renormalize is refused (+inf): test_errors covers it.
CASES = [(mode, teacher_input, divergence, params)
         for mode, teacher_input in [("tail_bucket", "log_probabilities"), ("tail_bucket", "probabilities"),
                                     ("renormalize", "logits"), ("renormalize", "log_probabilities")]
         for divergence, params in DIVERGENCES
         if not (mode == "renormalize" and divergence == "reverse_kl")]


@pytest.mark.parametrize("mode,teacher_input,divergence,params", CASES)
@pytest.mark.parametrize("with_labels", [False, True])
def test_loss_and_gradient_match_the_composite(mode, teacher_input, divergence, params, with_labels):
    n, v, k, temperature = 4, 40, 6, 2.5
    idx, vals = make_teacher(n, v, k, temperature, teacher_input, seed=7)
    s = (2 * torch.randn(n, v, generator=torch.Generator().manual_seed(8), dtype=torch.float64)).requires_grad_()
    labels = torch.tensor([3, 17, 0, 39]) if with_labels else None
    alpha = 0.6 if with_labels else 1.0
    ours = distill.top_k_kd_loss(s, idx, vals, labels, temperature=temperature, alpha=alpha, mode=mode,
                                 divergence=divergence, teacher_input=teacher_input, label_smoothing=0.1,
                                 **params)
    (g_ours,) = torch.autograd.grad(ours, s)
    ref = composite(s, idx, vals, labels, temperature, alpha, mode, divergence, params, teacher_input, 0.1)
    (g_ref,) = torch.autograd.grad(ref, s)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-11, abs=1e-13)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-12)


def test_float32_against_float64_and_int32_indices():
    n, v, k, temperature = 8, 3000, 20, 1.0
    idx, vals = make_teacher(n, v, k, temperature, "log_probabilities", seed=11)
    s64 = (3 * torch.randn(n, v, generator=torch.Generator().manual_seed(12), dtype=torch.float64)).requires_grad_()
    s32 = s64.detach().float().requires_grad_()
    ref = composite(s32.detach().double().requires_grad_(), idx, vals.float().double(), None, temperature, 1.0,
                    "tail_bucket", "forward_kl", {}, "log_probabilities", 0.0)
    ours = distill.top_k_kd_loss(s32, idx.int(), vals.float(), temperature=temperature)
    ours.backward()
    # float: the library's float partial sums (about 2e-6 of the loss's scale, docs/math.md).
    assert ours.item() == pytest.approx(ref.item(), rel=2e-6)


def test_gradcheck_tail_bucket_jsd():
    idx, vals = make_teacher(3, 9, 3, 2.0, "log_probabilities", seed=21)
    s = torch.randn(3, 9, generator=torch.Generator().manual_seed(22), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: distill.top_k_kd_loss(x, idx, vals, temperature=2.0, divergence="jensen_shannon"), (s,))


def test_leading_dimensions_and_reduction_none():
    b, t, v, k = 2, 3, 50, 4
    idx, vals = make_teacher(b * t, v, k, 1.0, "log_probabilities", seed=31)
    s = torch.randn(b * t, v, generator=torch.Generator().manual_seed(32), dtype=torch.float64)
    flat = distill.top_k_kd_loss(s, idx, vals, reduction="none")
    shaped = distill.top_k_kd_loss(s.reshape(b, t, v), idx.reshape(b, t, k), vals.reshape(b, t, k), reduction="none")
    assert torch.equal(flat, shaped.reshape(-1))


def test_errors():
    idx, vals = make_teacher(2, 10, 3, 1.0, "log_probabilities", seed=41)
    s = torch.randn(2, 10, dtype=torch.float64)
    bad = idx.clone()
    bad[0, 0] = 10
    with pytest.raises(IndexError, match=r"teacher index 10 at \(0, 0\) is out of range"):
        distill.top_k_kd_loss(s, bad, vals)
    bad[0, 0] = bad[0, 1]
    with pytest.raises(ValueError, match="appears twice in row 0"):
        distill.top_k_kd_loss(s, bad, vals)
    with pytest.raises(ValueError, match="reverse_kl with top_k_mode::renormalize"):
        distill.top_k_kd_loss(s, idx, vals, mode="renormalize", divergence="reverse_kl")
    with pytest.raises(ValueError, match="mode must be 'tail_bucket' or 'renormalize'"):
        distill.top_k_kd_loss(s, idx, vals, mode="bucket")
    with pytest.raises(ValueError, match="teacher indices must be"):
        distill.top_k_kd_loss(s, idx[:1], vals)
    with pytest.raises(TypeError, match="teacher values must have the student's dtype"):
        distill.top_k_kd_loss(s, idx, vals.float())
    with pytest.raises(ValueError, match="top-k mass in row 0 is"):
        distill.top_k_kd_loss(s, idx, torch.full_like(vals, math.log(0.5)))
