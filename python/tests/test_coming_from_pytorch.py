"""Every line of docs/coming-from-pytorch.md: the distill call against the code it replaces, loss and
gradient with respect to the student's logits, float64. PyTorch's functions are called as they are;
torchdistill's KDLoss, TRL's generalized_jsd_loss and Liger-Kernel's losses are transcribed from their
source (the function each docstring names), since none of them is installed here."""

import math

import pytest
import torch
import torch.nn.functional as F

import distill
from helpers import compare, make_inputs

T = 2.0


# ---- PyTorch ----

def test_hinton_recipe():
    s, t, y = make_inputs(shape=(6, 9), seed=60, ignored_rows=())
    alpha = 0.7
    compare(lambda x: distill.kd_loss(x, t, y, temperature=T, alpha=alpha),
            lambda x: alpha * T * T * F.kl_div(F.log_softmax(x / T, -1), F.softmax(t / T, -1), reduction="batchmean")
            + (1 - alpha) * F.cross_entropy(x, y), s)


def test_kl_div_batchmean():
    s, t, _ = make_inputs(shape=(6, 9), seed=61)
    compare(lambda x: distill.divergence_loss(x, t, temperature=T, scale_by_t_squared=False),
            lambda x: F.kl_div(F.log_softmax(x / T, -1), F.softmax(t / T, -1), reduction="batchmean"), s)


def test_kl_div_batchmean_of_three_dimensional_logits_divides_by_the_batch():
    s, t, _ = make_inputs(shape=(2, 5, 9), seed=62)
    compare(lambda x: distill.divergence_loss(x, t, temperature=T, scale_by_t_squared=False, reduction="divide_by",
                                              normalizer=s.shape[0]),
            lambda x: F.kl_div(F.log_softmax(x / T, -1), F.softmax(t / T, -1), reduction="batchmean"), s)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")  # PyTorch's warning: the point
def test_kl_div_elementwise_mean():
    s, t, _ = make_inputs(shape=(6, 9), seed=63)
    compare(lambda x: distill.divergence_loss(x, t, reduction="divide_by", normalizer=s.numel()),
            lambda x: F.kl_div(F.log_softmax(x, -1), F.softmax(t, -1), reduction="mean"), s)


def test_kl_div_sum_and_none():
    s, t, _ = make_inputs(shape=(6, 9), seed=64)
    compare(lambda x: distill.divergence_loss(x, t, temperature=T, reduction="sum"),
            lambda x: T * T * F.kl_div(F.log_softmax(x / T, -1), F.softmax(t / T, -1), reduction="sum"), s)
    compare(lambda x: distill.divergence_loss(x, t, temperature=T, reduction="none"),
            lambda x: T * T * F.kl_div(F.log_softmax(x / T, -1), F.softmax(t / T, -1), reduction="none").sum(-1), s)


def test_kl_div_log_target_and_probabilities():
    s, t, _ = make_inputs(shape=(6, 9), seed=65)
    log_p = F.log_softmax(t / 3.0, -1)  # stored, softened by another temperature before
    compare(lambda x: distill.divergence_loss(x, log_p, temperature=T, teacher_input="log_probabilities",
                                              scale_by_t_squared=False),
            lambda x: F.kl_div(F.log_softmax(x / T, -1), log_p, reduction="batchmean", log_target=True), s)
    p = log_p.exp()
    compare(lambda x: distill.divergence_loss(x, p, temperature=T, teacher_input="probabilities",
                                              scale_by_t_squared=False),
            lambda x: F.kl_div(F.log_softmax(x / T, -1), p, reduction="batchmean"), s)


def test_cross_entropy():
    s, _, y = make_inputs(shape=(6, 9), seed=66, ignored_rows=(2,))
    compare(lambda x: distill.cross_entropy(x, y, label_smoothing=0.1),
            lambda x: F.cross_entropy(x, y, ignore_index=-100, label_smoothing=0.1), s)
    s3, _, y3 = make_inputs(shape=(2, 5, 9), seed=67, ignored_rows=(2,))
    compare(lambda x: distill.cross_entropy(x, y3), lambda x: F.cross_entropy(x.transpose(1, 2), y3), s3)


# ---- torchdistill: KDLoss.forward ----

def torchdistill_kd_loss(s, t, y, temperature, alpha, beta=None):
    beta = 1 - alpha if beta is None else beta
    soft_loss = F.kl_div(torch.log_softmax(s / temperature, dim=1), torch.softmax(t / temperature, dim=1),
                         reduction="batchmean")
    if alpha is None or alpha == 0 or y is None:
        return soft_loss
    hard_loss = F.cross_entropy(s, y)
    return alpha * hard_loss + beta * (temperature**2) * soft_loss


def test_torchdistill_alpha_is_the_hard_weight():
    s, t, y = make_inputs(shape=(6, 9), seed=68, ignored_rows=())
    a = 0.9
    compare(lambda x: distill.kd_loss(x, t, y, temperature=T, alpha=1 - a),
            lambda x: torchdistill_kd_loss(x, t, y, T, a), s)


def test_torchdistill_explicit_beta():
    s, t, y = make_inputs(shape=(6, 9), seed=69, ignored_rows=())
    a, b = 0.3, 0.9
    compare(lambda x: (a + b) * distill.kd_loss(x, t, y, temperature=T, alpha=b / (a + b)),
            lambda x: torchdistill_kd_loss(x, t, y, T, a, b), s)


def test_torchdistill_without_hard_term_has_no_t_squared():
    s, t, y = make_inputs(shape=(6, 9), seed=70, ignored_rows=())
    for a, labels in ((0, y), (0.5, None)):
        compare(lambda x: distill.divergence_loss(x, t, temperature=T, scale_by_t_squared=False),
                lambda x: torchdistill_kd_loss(x, t, labels, T, a), s)


# ---- TRL: GKDTrainer.generalized_jsd_loss ----

def trl_generalized_jsd_loss(student_logits, teacher_logits, labels=None, beta=0.5, temperature=1.0,
                             reduction="batchmean", num_items_in_batch=None):
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    if beta == 0:
        jsd = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(teacher_log_probs, student_log_probs, reduction="none", log_target=True)
    else:
        beta = torch.tensor(beta, dtype=student_log_probs.dtype)
        mixture_log_probs = torch.logsumexp(
            torch.stack([student_log_probs + torch.log1p(-beta), teacher_log_probs + torch.log(beta)]), dim=0)
        kl_teacher = F.kl_div(mixture_log_probs, teacher_log_probs, reduction="none", log_target=True)
        kl_student = F.kl_div(mixture_log_probs, student_log_probs, reduction="none", log_target=True)
        jsd = beta * kl_teacher + (1 - beta) * kl_student
    if labels is not None:
        mask = labels != -100
        jsd = jsd[mask]
    if num_items_in_batch is not None:
        return jsd.sum() / num_items_in_batch
    if reduction == "batchmean":
        denom = mask.sum().clamp_min(1) if labels is not None else max(jsd.size(0), 1)
        return jsd.sum() / denom
    raise NotImplementedError(reduction)


def test_trl_with_labels():
    s, t, y = make_inputs(shape=(2, 5, 9), seed=71, ignored_rows=(1, 7))
    for b in (0.0, 0.3, 1.0):
        compare(lambda x: distill.divergence_loss(x, t, temperature=T, divergence="jensen_shannon", beta=b,
                                                  scale_by_t_squared=False, mask=y != -100),
                lambda x: trl_generalized_jsd_loss(x, t, labels=y, beta=b, temperature=T), s)


def test_trl_without_labels_divides_by_the_batch():
    s, t, _ = make_inputs(shape=(2, 5, 9), seed=72)
    compare(lambda x: distill.divergence_loss(x, t, temperature=T, divergence="jensen_shannon", beta=0.5,
                                              scale_by_t_squared=False, reduction="divide_by",
                                              normalizer=s.shape[0]),
            lambda x: trl_generalized_jsd_loss(x, t, beta=0.5, temperature=T), s)


def test_trl_num_items_in_batch():
    s, t, y = make_inputs(shape=(2, 5, 9), seed=73, ignored_rows=(3,))
    n = 12
    compare(lambda x: distill.divergence_loss(x, t, temperature=T, divergence="jensen_shannon", beta=0.5,
                                              scale_by_t_squared=False, mask=y != -100, reduction="divide_by",
                                              normalizer=n),
            lambda x: trl_generalized_jsd_loss(x, t, labels=y, beta=0.5, temperature=T, num_items_in_batch=n), s)


# ---- Liger-Kernel (the Triton kernels' formulas) ----

def liger_jsd(log_q, log_p, shift_labels=None, beta=0.5, ignore_index=-100):
    """LigerJSDFunction: _jsd_kernel's per-element loss, summed, divided by the rows not ignored."""
    X, Y = log_q, log_p
    if beta == 0.0:
        loss = Y.exp() * (Y - X)
    elif beta == 1.0:
        loss = X.exp() * (X - Y)
    else:
        Q, P = X.exp(), Y.exp()
        M = beta * P + (1 - beta) * Q
        loss = beta * P * Y + (1 - beta) * Q * X - M * torch.log(M)
    rows = torch.ones(X.shape[0], dtype=torch.bool) if shift_labels is None else shift_labels != ignore_index
    return loss[rows].sum() / rows.sum()


def test_liger_jsd():
    s, t, y = make_inputs(shape=(8, 9), seed=74, ignored_rows=(2,))
    log_p = F.log_softmax(t, -1)
    compare(lambda x: distill.divergence_loss(F.log_softmax(x, -1), log_p, divergence="jensen_shannon", beta=0.2,
                                              teacher_input="log_probabilities", mask=y != -100),
            lambda x: liger_jsd(F.log_softmax(x, -1), log_p, y, beta=0.2), s)


def test_liger_fused_linear_jsd():
    g = torch.Generator().manual_seed(75)
    x_s, x_t = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randn(8, 6, generator=g, dtype=torch.float64)
    W_s, W_t = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 9, (8,), generator=g)
    y[5] = -100
    # fused_linear_jsd_forward: logits x @ W.T, divided by T, log_softmax, _jsd_kernel
    compare(lambda w: distill.divergence_loss(x_s @ w.T, x_t @ W_t.T, temperature=T, divergence="jensen_shannon",
                                              beta=0.4, scale_by_t_squared=False, mask=y != -100),
            lambda w: liger_jsd(F.log_softmax(x_s @ w.T / T, -1), F.log_softmax(x_t @ W_t.T / T, -1), y, beta=0.4),
            W_s)


def test_liger_chunked_fused_linear_jsd_loss():
    g = torch.Generator().manual_seed(76)
    x_s, x_t = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randn(8, 6, generator=g, dtype=torch.float64)
    W_s, W_t = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 9, (8,), generator=g)
    y[1] = -100
    wh, ws, b = 0.3, 0.6, 0.5

    def liger(w):  # LigerFusedLinearDistillationBase._compute_loss with LigerFusedLinearJSDFunction's loss
        student_logits, teacher_logits = x_s @ w.T, x_t @ W_t.T
        n_valid = (y != -100).sum()
        hard = F.nll_loss(F.log_softmax(student_logits, -1), y, reduction="sum", ignore_index=-100) / n_valid
        lq, lp = F.log_softmax(student_logits / T, -1), F.log_softmax(teacher_logits / T, -1)
        log_mean = torch.logsumexp(torch.stack([lq + math.log(1 - b), lp + math.log(b)]), dim=0)
        jsd = (b * F.kl_div(log_mean, lp, reduction="none", log_target=True)
               + (1 - b) * F.kl_div(log_mean, lq, reduction="none", log_target=True)).sum(-1)
        soft = jsd.masked_fill(y == -100, 0.0).sum() / n_valid
        return wh * hard + ws * soft

    compare(lambda w: (wh + ws) * distill.kd_loss(x_s @ w.T, x_t @ W_t.T, y, temperature=T, alpha=ws / (wh + ws),
                                                  divergence="jensen_shannon", beta=b, scale_by_t_squared=False,
                                                  ignore_index=-100),
            liger, W_s)


def liger_kldiv(y_pred, y_true, reduction="mean", log_target=False, eps=1e-10):
    """LigerKLDivLossFunction: _kldiv_kernel_forward, then the reduction."""
    loss = y_true.exp() * (y_true - y_pred) if log_target else y_true * (torch.log(y_true.clamp_min(eps)) - y_pred)
    n, v = y_pred.shape
    return {"batchmean": loss.sum() / n, "mean": loss.sum() / (n * v), "sum": loss.sum()}[reduction]


def test_liger_kldiv():
    s, t, _ = make_inputs(shape=(6, 9), seed=77)
    log_p = F.log_softmax(t, -1)
    p = log_p.exp()
    compare(lambda x: distill.divergence_loss(F.log_softmax(x, -1), log_p, teacher_input="log_probabilities"),
            lambda x: liger_kldiv(F.log_softmax(x, -1), log_p, reduction="batchmean", log_target=True), s)
    compare(lambda x: distill.divergence_loss(F.log_softmax(x, -1), p, teacher_input="probabilities"),
            lambda x: liger_kldiv(F.log_softmax(x, -1), p, reduction="batchmean"), s)
    compare(lambda x: distill.divergence_loss(F.log_softmax(x, -1), p, teacher_input="probabilities",
                                              reduction="divide_by", normalizer=s.numel()),
            lambda x: liger_kldiv(F.log_softmax(x, -1), p), s)


def test_liger_tvd():
    s, t, y = make_inputs(shape=(8, 9), seed=78, ignored_rows=(4,))
    p = F.softmax(t, -1)

    def liger(x):  # _tv_distance_kernel, batchmean over the rows not ignored
        rows = y != -100
        return (0.5 * (F.softmax(x, -1) - p).abs())[rows].sum() / rows.sum()

    compare(lambda x: distill.divergence_loss(x, p, divergence="total_variation", teacher_input="probabilities",
                                              mask=y != -100), liger, s)
