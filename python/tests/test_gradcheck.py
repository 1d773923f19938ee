"""torch.autograd.gradcheck (finite differences, float64) of the fused gradients, including the
per-row incoming gradient of reduction='none'."""

import pytest
import torch

import distill
from helpers import make_inputs


def check(fn, shape=(2, 3, 5), seed=0):
    s, t, y = make_inputs(shape=shape, seed=seed)
    x = s.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: fn(v, t, y), (x,), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("divergence, reduction, params", [
    ("forward_kl", "mean", {}),
    ("jensen_shannon", "none", dict(beta=0.3)),
    ("skew_reverse_kl", "sum", dict(skew=0.2)),
    ("decoupled_kd", "mean", dict(target_weight=1.0, non_target_weight=4.0)),
    ("total_variation", "divide_by", dict(normalizer=3.0)),
])
def test_kd_loss_gradcheck(divergence, reduction, params):
    check(lambda s, t, y: distill.kd_loss(s, t, y, temperature=2.0, alpha=0.6, divergence=divergence,
                                          reduction=reduction, label_smoothing=0.1, **params))


def test_divergence_loss_gradcheck_teacher_probabilities():
    check(lambda s, t, y: distill.divergence_loss(s, torch.softmax(t, -1), divergence="reverse_kl",
                                                  teacher_input="probabilities", reduction="none"), seed=1)


def test_cross_entropy_gradcheck():
    check(lambda s, t, y: distill.cross_entropy(s, y, label_smoothing=0.2, reduction="none"), seed=2)


@pytest.mark.parametrize("fn", [distill.softmax, distill.log_softmax])
def test_softmax_gradcheck(fn):
    check(lambda s, t, y: fn(s, 1.7), seed=3)
