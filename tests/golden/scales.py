"""Tolerance scales shared by the golden generators (README.md, "Tolerance scales"): each
divergence's per-row loss scale and per-element gradient scale from its p, q and their logs, over a
row's classes (generate.py) or a top-k row's k + 1 categories (generate_top_k.py)."""
import torch


def finite_abs(x):
    """|x| where x is finite, 0 where it is +-inf (a masked class's log, whose weight is 0)."""
    return torch.where(torch.isfinite(x), x.abs(), torch.zeros_like(x))


def divergence_scale_terms(name, prm, p, q, lp, lq):
    """(per-row loss scale, per-element gradient scale) of every divergence but decoupled KD, before
    the T^2 and alpha factors. lambda_c: the size of the rounding error of the logs that element c's
    terms are made of, in units of the rounding unit: |log p| + |log q| + 2 (+ |log m| where a
    mixture m is taken)."""
    lam = finite_abs(lp) + finite_abs(lq) + 2
    rowsum = lambda x: x.sum(1)
    if name == "forward_kl":
        row_loss = rowsum(p * lam)
        g = p + q
    elif name == "reverse_kl":
        big = rowsum(q * lam)
        D = rowsum(torch.where(q > 0, q * (lq - lp), 0.0))
        row_loss = big
        g = q * (lam + finite_abs(D)[:, None] + big[:, None])
    elif name == "jensen_shannon":
        b = prm["beta"]
        m = b * p + (1 - b) * q
        lm = torch.log(m)
        lam = lam + finite_abs(lm)
        K = rowsum(torch.where(q > 0, q * (lq - lm), 0.0))
        big_k = rowsum(q * lam)
        row_loss = rowsum(m * lam)
        g = (1 - b) * q * (lam + finite_abs(K)[:, None] + big_k[:, None])
    elif name == "skew_kl":
        a = prm["skew"]
        m = a * p + (1 - a) * q
        lam = lam + finite_abs(torch.log(m))
        wv = torch.where(p * q > 0, p * q / m, 0.0)
        W, big_w = rowsum(wv), rowsum(wv * lam)
        row_loss = rowsum(p * lam)
        g = (1 - a) * (q * (W + big_w)[:, None] + wv * lam)
    elif name == "skew_reverse_kl":
        a = prm["skew"]
        m = (1 - a) * p + a * q
        lm = torch.log(m)
        lam = lam + finite_abs(lm)
        ratio = torch.where((q > 0) & (m > 0), q / m, 0.0)
        D = rowsum(torch.where(q > 0, q * (lq - lm), 0.0))
        S, big_s = rowsum(q * ratio), rowsum(q * ratio * lam)
        big = rowsum(q * lam)
        row_loss = big
        g = q * (lam + finite_abs(D)[:, None] + big[:, None] + a * (ratio + S[:, None]) * lam + a * big_s[:, None])
    elif name == "total_variation":
        row_loss = 0.5 * rowsum((p + q) * lam)
        g = q * (lam + 1 + 0.5 * rowsum(q * lam)[:, None])
    else:
        raise ValueError(name)
    return row_loss, g
