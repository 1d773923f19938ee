"""Every option against the PyTorch composite (composite.py), float64: loss, soft and hard parts,
and the gradient. Double-precision kernels and composites agree to rounding; the tolerance
(1e-10 relative, 1e-12 absolute) is far above that and far below any formula error."""

import pytest
import torch

import composite
import distill
from helpers import DIVERGENCES, REDUCTIONS, compare, make_inputs


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_kd_loss_every_divergence_and_reduction(divergence, reduction):
    s, t, y = make_inputs()
    options = dict(temperature=2.0, alpha=0.3, divergence=divergence, reduction=reduction,
                   normalizer=5.0 if reduction == "divide_by" else None)
    compare(lambda x: distill.kd_loss(x, t, y, return_parts=True, **options),
            lambda x: composite.kd_loss(x, t, y, **options), s)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0, 20.0])
@pytest.mark.parametrize("divergence", ["forward_kl", "jensen_shannon"])
def test_kd_loss_temperature(temperature, divergence):
    s, t, y = make_inputs(seed=2)
    options = dict(temperature=temperature, alpha=0.6, divergence=divergence)
    compare(lambda x: distill.kd_loss(x, t, y, return_parts=True, **options),
            lambda x: composite.kd_loss(x, t, y, **options), s)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_kd_loss_alpha(alpha):
    s, t, y = make_inputs(seed=3)
    compare(lambda x: distill.kd_loss(x, t, y, alpha=alpha, return_parts=True),
            lambda x: composite.kd_loss(x, t, y, alpha=alpha), s)


def test_kd_loss_default_options_are_hinton_with_t4_alpha_half():
    # The composite of docs/coming-from-pytorch.md: T = 4, alpha = 0.5, batchmean KL times T^2.
    s, t, y = make_inputs(shape=(6, 11), seed=4, ignored_rows=())
    F = torch.nn.functional

    def hinton(x):
        kl = F.kl_div(F.log_softmax(x / 4, -1), F.softmax(t / 4, -1), reduction="batchmean")
        return 0.5 * 16 * kl + 0.5 * F.cross_entropy(x, y)

    compare(lambda x: distill.kd_loss(x, t, y), hinton, s)


def test_kd_loss_without_labels_is_pure_distillation():
    s, t, _ = make_inputs(seed=5)
    compare(lambda x: distill.kd_loss(x, t, None, alpha=1.0, temperature=2.0),
            lambda x: composite.divergence_loss(x, t, temperature=2.0), s)


@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_kd_loss_ignore_index(ignore_index):
    s, t, y = make_inputs(shape=(12, 5), seed=6, ignored_rows=())
    y[3] = y[7] = ignore_index  # with ignore_index = 2, also every row whose class is 2
    options = dict(temperature=2.0, alpha=0.4, ignore_index=ignore_index, label_smoothing=0.1)
    compare(lambda x: distill.kd_loss(x, t, y, return_parts=True, **options),
            lambda x: composite.kd_loss(x, t, y, **options), s)


def test_kd_loss_every_row_ignored_is_zero_not_nan():
    # F.cross_entropy gives NaN (0 / 0) here; distill's mean over no rows is 0 with a zero gradient.
    s, t, y = make_inputs(shape=(4, 5), seed=7)
    y.fill_(-100)
    x = s.clone().requires_grad_(True)
    loss = distill.kd_loss(x, t, y)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(x.grad) == 0


@pytest.mark.parametrize("label_smoothing", [0.1, 0.5])
def test_kd_loss_label_smoothing(label_smoothing):
    s, t, y = make_inputs(seed=8)
    options = dict(temperature=3.0, alpha=0.2, label_smoothing=label_smoothing)
    compare(lambda x: distill.kd_loss(x, t, y, return_parts=True, **options),
            lambda x: composite.kd_loss(x, t, y, **options), s)


def teacher_values(t, teacher_input):
    """The teacher as stored log-probabilities or probabilities, deliberately not normalised (a top-k
    cache sums to less than 1; distill renormalises)."""
    if teacher_input == "log_probabilities":
        return torch.log_softmax(t, -1) - 0.3
    return 1.7 * torch.softmax(t, -1)


@pytest.mark.parametrize("teacher_input", ["log_probabilities", "probabilities"])
@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_kd_loss_teacher_input(teacher_input, divergence):
    s, t, y = make_inputs(seed=9)
    tv = teacher_values(t, teacher_input)
    options = dict(temperature=2.0, alpha=0.7, divergence=divergence, teacher_input=teacher_input)
    compare(lambda x: distill.kd_loss(x, tv, y, return_parts=True, **options),
            lambda x: composite.kd_loss(x, tv, y, **options), s)


@pytest.mark.parametrize("divergence", ["forward_kl", "jensen_shannon", "decoupled_kd"])
def test_kd_loss_without_t_squared(divergence):
    s, t, y = make_inputs(seed=10)
    options = dict(temperature=3.0, alpha=0.5, divergence=divergence, scale_by_t_squared=False)
    compare(lambda x: distill.kd_loss(x, t, y, return_parts=True, **options),
            lambda x: composite.kd_loss(x, t, y, **options), s)


@pytest.mark.parametrize("divergence, params", [
    ("jensen_shannon", dict(beta=0.0)),  # TRL's end: forward KL
    ("jensen_shannon", dict(beta=0.1)),
    ("jensen_shannon", dict(beta=0.9)),
    ("jensen_shannon", dict(beta=1.0)),  # TRL's end: reverse KL
    ("skew_kl", dict(skew=0.0)),
    ("skew_kl", dict(skew=0.3)),
    ("skew_kl", dict(skew=1.0)),
    ("skew_reverse_kl", dict(skew=0.0)),
    ("skew_reverse_kl", dict(skew=0.3)),
    ("skew_reverse_kl", dict(skew=1.0)),
    ("decoupled_kd", dict(target_weight=2.0, non_target_weight=0.5)),
])
def test_kd_loss_divergence_parameters(divergence, params):
    s, t, y = make_inputs(seed=11)
    options = dict(temperature=1.5, alpha=0.8, divergence=divergence, **params)
    compare(lambda x: distill.kd_loss(x, t, y, return_parts=True, **options),
            lambda x: composite.kd_loss(x, t, y, **options), s)


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.uint8])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_kd_loss_row_mask(mask_dtype, reduction):
    s, t, y = make_inputs(seed=12)
    mask = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 1], [1, 1, 0, 1]], dtype=mask_dtype)
    options = dict(temperature=2.0, alpha=0.5, reduction=reduction, mask=mask)
    compare(lambda x: distill.kd_loss(x, t, y, return_parts=True, **options),
            lambda x: composite.kd_loss(x, t, y, **options), s)


@pytest.mark.parametrize("divergence", [d for d in DIVERGENCES if d != "decoupled_kd"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_divergence_loss(divergence, reduction):
    s, t, _ = make_inputs(shape=(5, 13), seed=13)
    options = dict(temperature=2.5, divergence=divergence, reduction=reduction)
    compare(lambda x: distill.divergence_loss(x, t, **options),
            lambda x: composite.divergence_loss(x, t, **options), s)


@pytest.mark.parametrize("teacher_input", ["logits", "log_probabilities", "probabilities"])
def test_divergence_loss_options(teacher_input):
    s, t, _ = make_inputs(seed=14)
    tv = t if teacher_input == "logits" else teacher_values(t, teacher_input)
    mask = torch.tensor([[True, True, False, True]] * 3)
    options = dict(temperature=0.7, divergence="jensen_shannon", beta=0.3, reduction="divide_by", normalizer=7.0,
                   teacher_input=teacher_input, scale_by_t_squared=False, mask=mask)
    compare(lambda x: distill.divergence_loss(x, tv, **options),
            lambda x: composite.divergence_loss(x, tv, **options), s)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy(reduction, label_smoothing):
    s, _, y = make_inputs(shape=(7, 6), seed=15, ignored_rows=(2, 5))
    options = dict(reduction=reduction, label_smoothing=label_smoothing,
                   normalizer=3.0 if reduction == "divide_by" else None)
    compare(lambda x: distill.cross_entropy(x, y, **options),
            lambda x: composite.cross_entropy(x, y, **options), s)


def test_cross_entropy_is_pytorchs_with_ignore_index_and_mask():
    s, _, y = make_inputs(shape=(2, 5, 8), seed=16, ignored_rows=(3,))
    mask = torch.ones(10, dtype=torch.bool)
    mask[6] = False
    compare(lambda x: distill.cross_entropy(x, y, mask=mask, ignore_index=-100),
            lambda x: composite.cross_entropy(x, y, mask=mask), s)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_softmax_and_log_softmax(temperature):
    s, _, _ = make_inputs(shape=(3, 4, 9), seed=17)
    w = torch.rand(s.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for ours, theirs in ((distill.softmax, torch.softmax), (distill.log_softmax, torch.log_softmax)):
        compare(lambda x: (ours(x, temperature) * w).sum(), lambda x: (theirs(x / temperature, -1) * w).sum(), s)
        got = ours(s, temperature)
        torch.testing.assert_close(got, theirs(s / temperature, -1), rtol=1e-13, atol=1e-15)
