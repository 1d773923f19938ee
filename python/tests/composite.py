"""The PyTorch composites the tests compare with: what a user writes without distill, in float64.

Each divergence is written as its published implementation writes it: F.kl_div for forward and
reverse KL (Hinton's recipe and TRL's ends), TRL's generalized_jsd_loss for the Jensen-Shannon
divergence (logsumexp of the mixture, F.kl_div with log_target), the DistiLLM mixtures for the skew
divergences, 0.5 * |p - q| summed for total variation (Liger's TVD), and decoupled KD as in the paper
(Zhao et al. 2022) with the target removed from the non-target distributions. Autograd of these
expressions gives the reference gradients.
"""

import torch
import torch.nn.functional as F


def teacher_log_probs(t, temperature, teacher_input):
    if teacher_input == "logits":
        return F.log_softmax(t / temperature, dim=-1)
    if teacher_input == "log_probabilities":  # the temperature does not apply; renormalised
        return F.log_softmax(t, dim=-1)
    if teacher_input == "probabilities":
        return torch.log(t / t.sum(dim=-1, keepdim=True))
    raise ValueError(teacher_input)


def kl_terms(log_target, log_input):
    """F.kl_div(log_input, log_target, log_target=True, reduction='none') summed over the classes."""
    return F.kl_div(log_input, log_target, reduction="none", log_target=True).sum(-1)


def divergence_per_row(s, t, labels, temperature, divergence, beta=0.5, skew=0.1, target_weight=1.0,
                       non_target_weight=8.0, teacher_input="logits"):
    """D(p, q) per row of [N, V] logits, without the T^2 factor."""
    lq = F.log_softmax(s / temperature, dim=-1)
    lp = teacher_log_probs(t, temperature, teacher_input)
    if divergence == "forward_kl" or (divergence == "jensen_shannon" and beta == 0):
        return kl_terms(lp, lq)
    if divergence == "reverse_kl" or (divergence == "jensen_shannon" and beta == 1):
        return kl_terms(lq, lp)
    if divergence == "jensen_shannon":  # TRL's generalized_jsd_loss
        b = torch.tensor(beta, dtype=s.dtype)
        lm = torch.logsumexp(torch.stack([lq + torch.log1p(-b), lp + torch.log(b)]), dim=0)
        return beta * kl_terms(lp, lm) + (1 - beta) * kl_terms(lq, lm)
    if divergence == "skew_kl":  # KL(p || a p + (1 - a) q)
        m = skew * lp.exp() + (1 - skew) * lq.exp()
        return kl_terms(lp, torch.log(m))
    if divergence == "skew_reverse_kl":  # KL(q || (1 - a) p + a q)
        m = (1 - skew) * lp.exp() + skew * lq.exp()
        return kl_terms(lq, torch.log(m))
    if divergence == "total_variation":
        return 0.5 * (lp.exp() - lq.exp()).abs().sum(-1)
    if divergence == "decoupled_kd":
        y = labels.clamp(min=0).unsqueeze(-1)
        target = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, y, True)
        p, q = lp.exp(), lq.exp()
        p_y, q_y = p.gather(-1, y).squeeze(-1), q.gather(-1, y).squeeze(-1)
        p_rest = p.masked_fill(target, 0).sum(-1)  # 1 - p_y, summed over the other classes
        q_rest = q.masked_fill(target, 0).sum(-1)
        tckd = p_y * (torch.log(p_y) - torch.log(q_y)) + p_rest * (torch.log(p_rest) - torch.log(q_rest))
        # The non-target distributions: softmax over the classes c != y (gathered, so that no -inf enters).
        others = torch.arange(s.shape[-1]).expand_as(s)[~target].reshape(s.shape[0], -1)
        nckd = kl_terms(F.log_softmax(lp.gather(-1, others), dim=-1), F.log_softmax(lq.gather(-1, others), dim=-1))
        return target_weight * tckd + non_target_weight * nckd
    raise ValueError(divergence)


def counted_rows(n, labels, ignore_index, mask):
    counted = torch.ones(n, dtype=torch.bool)
    if labels is not None:
        counted &= labels != ignore_index
    if mask is not None:
        counted &= mask.reshape(-1).bool()
    return counted


def reduce(per_row, counted, reduction, normalizer=None):
    per_row = torch.where(counted, per_row, torch.zeros_like(per_row))
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    if reduction == "mean":
        return per_row.sum() / max(int(counted.sum()), 1)
    if reduction == "divide_by":
        return per_row.sum() / normalizer
    raise ValueError(reduction)


def kd_loss(s, t, labels, temperature=4.0, alpha=0.5, divergence="forward_kl", reduction="mean", normalizer=None,
            ignore_index=-100, label_smoothing=0.0, teacher_input="logits", scale_by_t_squared=True, mask=None,
            **params):
    """(loss, soft, hard) of alpha T^2 D + (1 - alpha) CE over [..., V] logits."""
    v = s.shape[-1]
    s2, t2 = s.reshape(-1, v), t.reshape(-1, v)
    y = labels.reshape(-1) if labels is not None else None
    counted = counted_rows(s2.shape[0], y, ignore_index, mask)
    scale = temperature**2 if scale_by_t_squared else 1.0
    soft = alpha * scale * divergence_per_row(s2, t2, y, temperature, divergence, teacher_input=teacher_input,
                                              **params)
    if y is not None and alpha < 1:
        hard = (1 - alpha) * F.cross_entropy(s2, y, reduction="none", ignore_index=ignore_index,
                                             label_smoothing=label_smoothing)
    else:
        hard = torch.zeros_like(soft)
    loss = reduce(soft + hard, counted, reduction, normalizer)
    if reduction == "none":
        return loss, soft[counted].sum(), hard[counted].sum()
    return loss, reduce(soft, counted, reduction, normalizer), reduce(hard, counted, reduction, normalizer)


def divergence_loss(s, t, temperature=1.0, divergence="forward_kl", reduction="mean", normalizer=None,
                    teacher_input="logits", scale_by_t_squared=True, mask=None, **params):
    loss, soft, _ = kd_loss(s, t, None, temperature=temperature, alpha=1.0, divergence=divergence,
                            reduction=reduction, normalizer=normalizer, teacher_input=teacher_input,
                            scale_by_t_squared=scale_by_t_squared, mask=mask, **params)
    return loss


def cross_entropy(s, labels, reduction="mean", normalizer=None, ignore_index=-100, label_smoothing=0.0, mask=None):
    v = s.shape[-1]
    y = labels.reshape(-1)
    counted = counted_rows(y.shape[0], y, ignore_index, mask)
    per_row = F.cross_entropy(s.reshape(-1, v), y, reduction="none", ignore_index=ignore_index,
                              label_smoothing=label_smoothing)
    return reduce(per_row, counted, reduction, normalizer)
