"""Errors reach Python with the library's messages: ValueError for an invalid argument, IndexError for
a label out of range, TypeError for a wrong dtype."""

import re

import pytest
import torch

import distill
from helpers import make_inputs


def raises(exception, message, fn):
    with pytest.raises(exception) as info:
        fn()
    assert str(info.value).splitlines()[0] == message


@pytest.fixture
def data():
    return make_inputs(shape=(3, 5), seed=50, ignored_rows=())


def test_option_messages_are_the_librarys(data):
    s, t, y = data
    raises(ValueError, "distillation_loss: temperature must be in [0.001, 1000], got 0",
           lambda: distill.kd_loss(s, t, y, temperature=0.0))
    raises(ValueError, "distillation_loss: alpha must be in [0, 1], got 1.5",
           lambda: distill.kd_loss(s, t, y, alpha=1.5))
    raises(ValueError, "distillation_loss: jensen_shannon beta must be in [0, 1], got 2",
           lambda: distill.kd_loss(s, t, y, divergence="jensen_shannon", beta=2.0))
    raises(ValueError, "divergence_loss: skew_reverse_kl skew must be in [0, 1], got -0.1",
           lambda: distill.divergence_loss(s, t, divergence="skew_reverse_kl", skew=-0.1))
    raises(ValueError, "distillation_loss: decoupled_kd weights must be finite and >= 0, got target_weight -1 and "
                       "non_target_weight 8",
           lambda: distill.kd_loss(s, t, y, divergence="decoupled_kd", target_weight=-1.0))
    raises(ValueError, "divergence_loss: decoupled_kd needs each row's label; use distillation_loss, which takes "
                       "labels",
           lambda: distill.divergence_loss(s, t, divergence="decoupled_kd"))
    raises(ValueError, "cross_entropy: label_smoothing must be in [0, 1), got 1",
           lambda: distill.cross_entropy(s, y, label_smoothing=1.0))
    raises(ValueError, "distillation_loss: normalizer must be finite and > 0 for reduction::divide_by, got 0",
           lambda: distill.kd_loss(s, t, y, reduction="divide_by", normalizer=0))
    raises(ValueError, "softmax: temperature must be in [0.001, 1000], got 0", lambda: distill.softmax(s, 0.0))


def test_data_messages_are_the_librarys(data):
    s, t, y = data
    bad = y.clone()
    bad[2] = 9
    raises(IndexError, "distillation_loss: label 9 at row 2 is out of range: classes are [0, 5) and ignore_index is "
                       "-100", lambda: distill.kd_loss(s, t, bad))
    raises(ValueError, "distillation_loss: no labels given but alpha = 0.5; the hard-label term needs one label per "
                       "row (without labels, alpha must be 1: pure distillation)",
           lambda: distill.kd_loss(s, t, None))
    masked = s.clone()
    masked[1] = float("-inf")
    raises(ValueError, "divergence_loss: row 1 of the student logits is entirely -inf (every class masked), so its "
                       "softmax is undefined", lambda: distill.divergence_loss(masked, t))
    nan = s.clone()
    nan[0, 2] = float("nan")
    raises(ValueError, "distillation_loss: student logits: element (0, 2) is NaN (check_finite rejects NaN and +inf; "
                       "-inf is a legal class mask)", lambda: distill.kd_loss(nan, t, y, check_finite=True))
    raises(ValueError, "distillation_loss: student logits have 0 classes (shape 3 x 0); at least 1 class is needed",
           lambda: distill.kd_loss(s[:, :0], t[:, :0], y))


def test_shape_messages(data):
    s, t, y = data
    raises(ValueError, "distillation_loss: teacher logits are [5, 3] but student logits are [3, 5]; they must match",
           lambda: distill.kd_loss(s, t.t(), y))
    raises(ValueError, "distillation_loss: teacher values are [3, 4] but student logits are [3, 5]; they must match",
           lambda: distill.kd_loss(s, t[:, :4], y, teacher_input="probabilities"))
    raises(ValueError, "distillation_loss: labels are [2] but student logits are [3, 5]; they need one entry per row: "
                       "shape [3]", lambda: distill.kd_loss(s, t, y[:2]))
    raises(ValueError, "cross_entropy: row mask entries are [4] but student logits are [3, 5]; they need one entry "
                       "per row: shape [3]",
           lambda: distill.cross_entropy(s, y, mask=torch.ones(4, dtype=torch.bool)))
    s3, t3, y3 = make_inputs(shape=(2, 3, 5), seed=51)
    raises(ValueError, "distillation_loss: labels are [3, 2] but student logits are [2, 3, 5]; they need one entry "
                       "per row: shape [2, 3] or [6]", lambda: distill.kd_loss(s3, t3, y3.t()))
    raises(ValueError, "divergence_loss: student logits must be [..., classes], got a 0-dim tensor",
           lambda: distill.divergence_loss(s[0, 0], t[0, 0]))


def test_dtype_messages(data):
    s, t, y = data
    raises(TypeError, "distillation_loss: student logits must be float32 or float64, got Half",
           lambda: distill.kd_loss(s.half(), t.half(), y))
    raises(TypeError, "distillation_loss: teacher logits must have the student's dtype (Double), got Float",
           lambda: distill.kd_loss(s, t.float(), y))
    raises(TypeError, "distillation_loss: labels must be int64, got Int", lambda: distill.kd_loss(s, t, y.int()))
    raises(TypeError, "divergence_loss: the row mask must be bool or uint8, got Float",
           lambda: distill.divergence_loss(s, t, mask=torch.ones(3)))


def test_python_level_messages(data):
    s, t, y = data
    raises(ValueError, "kd_loss: beta= applies to divergence='jensen_shannon' only, got divergence='forward_kl'",
           lambda: distill.kd_loss(s, t, y, beta=0.5))
    raises(ValueError, "divergence_loss: skew= applies to divergence='skew_kl' or 'skew_reverse_kl' only, got "
                       "divergence='jensen_shannon'",
           lambda: distill.divergence_loss(s, t, divergence="jensen_shannon", skew=0.1))
    raises(ValueError, "kd_loss: reduction must be 'mean', 'sum', 'none' or 'divide_by', got 'batchmean' ('mean' is "
                       "PyTorch's 'batchmean': the sum over the rows that count divided by their number)",
           lambda: distill.kd_loss(s, t, y, reduction="batchmean"))
    raises(ValueError, "kd_loss: divergence must be 'forward_kl', 'reverse_kl', 'jensen_shannon', 'skew_kl', "
                       "'skew_reverse_kl', 'total_variation' or 'decoupled_kd', got 'jsd'",
           lambda: distill.kd_loss(s, t, y, divergence="jsd"))
    raises(ValueError, "divergence_loss: teacher_input must be 'logits', 'log_probabilities' or 'probabilities', got "
                       "'probs'", lambda: distill.divergence_loss(s, t, teacher_input="probs"))
    raises(ValueError, "cross_entropy: normalizer= applies to reduction='divide_by' only, got reduction='mean'",
           lambda: distill.cross_entropy(s, y, normalizer=4))
    raises(ValueError, "kd_loss: reduction='divide_by' needs normalizer=",
           lambda: distill.kd_loss(s, t, y, reduction="divide_by"))


def test_messages_carry_no_cpp_backtrace(data):
    s, t, y = data
    with pytest.raises(ValueError) as info:
        distill.kd_loss(s, t, y, temperature=-1.0)
    assert not re.search(r"Exception raised from|frame #", str(info.value))
