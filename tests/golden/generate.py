#!/usr/bin/python3
"""Golden reference values for distill, computed by PyTorch.

Run by hand with Debian's python3-torch (not a pyenv/venv python):

    /usr/bin/python3 tests/golden/generate.py

It rewrites tests/golden/golden.index (text) and tests/golden/golden.bin (little-endian arrays);
README.md beside this file describes the format. Everything is deterministic (fixed numpy seed,
no torch RNG), so regenerating with the same numpy/torch gives identical files.

How a reference is made (docs/design.md states the contract):
  * inputs are drawn in float64, rounded to the case's dtype, stored exactly in that dtype;
  * the rounded values are widened back to float64 tensors `s` (student logits, requires_grad),
    `t` (teacher logits), with `y` (int64 labels), `m` (bool row mask) and `k` (bool: row counted =
    mask and label != ignore_index) where the case has them;
  * the case's PyTorch expression -- stored verbatim in the index -- is evaluated with eval() in
    float64, and the gradient is torch.autograd.grad of that expression with respect to `s`; the
    divergence family's cases first execute their `expr_defs` (the log-probabilities and the row
    divergence, see "The divergence family" below).
So a float case checks the library's float arithmetic against a float64 reference of the very same
float inputs.

Besides the references, each loss case stores tolerance *scales* (not expected values): the size of
the terms whose rounding errors the result inherits (see README.md). As a check on the tolerances the
test uses, the script also evaluates every expression in float32 PyTorch and prints the largest
error of that float32 computation in units of those scales.
"""

import hashlib
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from scales import divergence_scale_terms, finite_abs

HERE = os.path.dirname(os.path.abspath(__file__))
INDEX = os.path.join(HERE, "golden.index")
BLOB = os.path.join(HERE, "golden.bin")

TEMPERATURES = [0.5, 1.0, 2.0, 4.0, 10.0]
ALPHAS = [0.0, 0.3, 1.0]
SMOOTHINGS = [0.0, 0.1]
REDUCTIONS = ["none", "sum", "mean", "divide_by"]
SMALL_C = [1, 2, 3, 7, 16, 17]
DTYPES = ["float", "double"]
NP_DTYPE = {"float": np.float32, "double": np.float64}
TAG = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64",
       np.dtype(np.int64): "i64", np.dtype(np.uint8): "u8"}

rng = np.random.default_rng(20240611)


def num(x):
    """A float literal that reads back as exactly the same double (Python's repr is shortest round-trip)."""
    return repr(float(x))


class Blob:
    """Concatenated little-endian arrays, 8-byte aligned; identical arrays are stored once."""

    def __init__(self):
        self.data = bytearray()
        self.seen = {}

    def add(self, array):
        array = np.ascontiguousarray(array)
        tag = TAG[array.dtype]
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        key = (tag, hashlib.sha256(raw).hexdigest())
        if key not in self.seen:
            self.data.extend(b"\0" * (-len(self.data) % 8))
            self.seen[key] = len(self.data)
            self.data.extend(raw)
        return f"{tag} {self.seen[key]} {array.size}"


# --------------------------------------------------------------------------------------------------
# Inputs


def draw_logits(n, c, dtype, style):
    """Logits of one of a few shapes seen in practice, rounded to dtype."""
    scale = {"narrow": 1.0, "wide": 4.0, "offset": 2.0, "peaked": 8.0}[style]
    x = rng.normal(0.0, scale, size=(n, c))
    if style == "offset":        # large common offset: the kernel must subtract the row max
        x += rng.choice([-60.0, 35.0, 80.0])
    return x.astype(NP_DTYPE[dtype])


def draw_teacher(student, style):
    """Teacher correlated with the student (as after some training) or independent of it."""
    n, c = student.shape
    s = student.astype(np.float64)
    if rng.random() < 0.6:
        t = 1.3 * s + rng.normal(0.0, 1.5, size=(n, c)) + rng.normal(0.0, 3.0)
    else:
        t = draw_logits(n, c, "double", style)
    return t.astype(student.dtype)


def draw_labels(n, c, ignore, ignore_index, *, all_ignored=False):
    y = rng.integers(0, c, size=n).astype(np.int64)
    if all_ignored:
        y[:] = ignore_index
    elif ignore and n > 1:
        count = max(1, n // 3)
        rows = rng.choice(n, size=count, replace=False)
        y[rows] = ignore_index
        if (y == ignore_index).all():
            y[0] = 0
    return y


# --------------------------------------------------------------------------------------------------
# Expressions. Every string below is evaluated verbatim; the same string is written to the index.


def kl_rows(S, Tt, T, masked):
    if masked:  # F.kl_div gives 0 * (-inf - -inf) = nan where both mask a class; 0 log 0 = 0 wanted
        return (f"torch.where(F.softmax({Tt}/{T},1) > 0, F.softmax({Tt}/{T},1) * "
                f"(F.log_softmax({Tt}/{T},1) - F.log_softmax({S}/{T},1)), 0.).sum(1)")
    return f"F.kl_div(F.log_softmax({S}/{T},1), F.softmax({Tt}/{T},1), reduction='none').sum(1)"


def kl_reduced(S, Tt, T, masked, how):
    if masked:
        return kl_rows(S, Tt, T, masked) + (".mean()" if how == "batchmean" else ".sum()")
    return f"F.kl_div(F.log_softmax({S}/{T},1), F.softmax({Tt}/{T},1), reduction='{how}')"


def ce_expr(S, Y, eps, ii, how):
    args = [S, Y]
    if ii != -100:
        args.append(f"ignore_index={ii}")
    if eps:
        args.append(f"label_smoothing={num(eps)}")
    if how != "mean":
        args.append(f"reduction='{how}'")
    return f"F.cross_entropy({', '.join(args)})"


def build_expressions(case):
    """PyTorch expressions (strings) for total, soft and hard parts, and the per-row vector."""
    kind, red = case["kind"], case["reduce"]
    T = num(case["temperature"])
    alpha = case["alpha"]
    has_kl = kind == "kl_divergence" or (kind == "distillation_loss" and alpha > 0)
    has_ce = kind == "cross_entropy" or (kind == "distillation_loss" and alpha < 1)
    masked = case.get("neg_inf", False)
    filt = case["filter"]          # some row not counted: KL must drop it too
    has_mask = case.get("mask") is not None
    eps, ii = case["label_smoothing"], case["ignore_index"]

    if kind == "distillation_loss":
        kl_w = "" if alpha == 1 else f"{num(alpha)}*"
        ce_w = "" if alpha == 0 else f"(1-{num(alpha)})*"
    else:
        kl_w = ce_w = ""
    t2 = f"{T}*{T}*" if case["scale_by_t_squared"] else ""

    S_, T_ = ("s[k]", "t[k]") if filt else ("s", "t")
    Sce, Yce = ("s[m]", "y[m]") if has_mask else ("s", "y")

    soft = hard = None
    if red == "none":
        rows = []
        if has_kl:
            rows.append(f"{kl_w}{t2}{kl_rows('s', 't', T, masked)}")
        if has_ce:
            rows.append(f"{ce_w}{ce_expr('s', 'y', eps, ii, 'none')}")
        wrap = (lambda e: f"torch.where(k, {e}, 0.)") if filt else (lambda e: f"({e})")
        row_expr = wrap(" + ".join(rows))
        if has_kl:
            soft = f"{wrap(rows[0])}.sum()"
        if has_ce:
            hard = f"{wrap(rows[-1])}.sum()"
        total = f"{row_expr}.sum()"
        return total, soft, hard, row_expr

    how = {"sum": "sum", "divide_by": "sum", "mean": "batchmean"}[red]
    if has_kl:
        soft = f"{kl_w}{t2}{kl_reduced(S_, T_, T, masked, how)}"
    if has_ce:
        hard = f"{ce_w}{ce_expr(Sce, Yce, eps, ii, 'mean' if how == 'batchmean' else 'sum')}"
    if red == "divide_by":
        n = num(case["normalizer"])
        soft = soft and f"{soft} / {n}"
        hard = hard and f"{hard} / {n}"
    total = " + ".join(e for e in (soft, hard) if e)
    return total, soft, hard, None


# --------------------------------------------------------------------------------------------------
# Evaluation


def tensors(case, dtype=torch.float64, grad=True):
    env = {"F": F, "torch": torch}
    s = torch.tensor(case["student"].astype(np.float64), dtype=dtype)
    env["s"] = s.requires_grad_(grad)
    if case.get("teacher") is not None:
        env["t"] = torch.tensor(case["teacher"].astype(np.float64), dtype=dtype)
    if case.get("labels") is not None:
        env["y"] = torch.tensor(case["labels"])
    if case.get("mask") is not None:
        env["m"] = torch.tensor(case["mask"] != 0)
    n = case["student"].shape[0]
    k = torch.ones(n, dtype=torch.bool)
    if case.get("mask") is not None:
        k &= env["m"]
    if case.get("labels") is not None and len(case["labels"]):
        k &= env["y"] != case["ignore_index"]
    env["k"] = k
    return env


def scales(case, k):
    """Tolerance scales (float64): per-row loss scale and per-row gradient scale, see README.md."""
    kind, T = case["kind"], case["temperature"]
    s = torch.tensor(case["student"].astype(np.float64))
    n, c = s.shape
    alpha = {"kl_divergence": 1.0, "cross_entropy": 0.0}.get(kind, case["alpha"])
    row_loss = torch.zeros(n, dtype=torch.float64)
    row_grad = torch.zeros(n, dtype=torch.float64)
    if alpha > 0:
        t = torch.tensor(case["teacher"].astype(np.float64))
        lp, lq = F.log_softmax(t / T, 1), F.log_softmax(s / T, 1)
        p, q = lp.exp(), lq.exp()
        # log p = y - log Z_p with Z_p in [1, C] (max subtracted): its rounding error is a few ulps
        # of max(1, |log p|) -- hence the 1s (e.g. Z = 1 + 1e-9 is 1 in float).
        term = torch.where(p > 0, p * (lp.abs() + lq.abs() + 2), 0.0).sum(1)
        kl_t = T * T if case["scale_by_t_squared"] else 1.0
        g_t = T if case["scale_by_t_squared"] else 1.0 / T
        row_loss += alpha * kl_t * term
        row_grad_kl = alpha * g_t * (p + q)
    else:
        row_grad_kl = torch.zeros(n, c, dtype=torch.float64)
    if alpha < 1:
        eps = case["label_smoothing"]
        lr = F.log_softmax(s, 1)
        r = lr.exp()
        y = torch.tensor(case["labels"]).clamp(0, c - 1)
        lr_y = lr.gather(1, y[:, None])[:, 0]
        finite = torch.where(torch.isinf(lr), 0.0, lr.abs() + 1)
        row_loss += (1 - alpha) * ((1 - eps) * (lr_y.abs() + 1) + eps / c * finite.sum(1))
        target = torch.full((n, c), eps / c, dtype=torch.float64)
        target[torch.arange(n), y] += 1 - eps
        row_grad_ce = (1 - alpha) * (r + target)
    else:
        row_grad_ce = torch.zeros(n, c, dtype=torch.float64)
    row_grad = (row_grad_kl + row_grad_ce).max(1).values
    counted = int(k.sum())
    weight = {"none": 1.0, "sum": 1.0, "mean": 1.0 / max(counted, 1),
              "divide_by": 1.0 / case.get("normalizer", 1.0)}[case["reduce"]]
    row_loss = torch.where(k, row_loss, 0.0)
    row_grad = torch.where(k, row_grad, 0.0) * weight
    return row_loss.numpy(), float(weight * row_loss.sum()), row_grad.numpy()


f32_worst = {}


def note_f32(kind, dtype, what, err):
    key = (kind, dtype, what)
    f32_worst[key] = max(f32_worst.get(key, 0.0), err)


def evaluate_loss_case(case):
    total_e, soft_e, hard_e, rows_e = build_expressions(case)
    env = tensors(case)
    k = env["k"]
    counted = int(k.sum())
    total = eval(total_e, env)
    grad_target = total
    out = {"expr": total_e, "expr_soft": soft_e, "expr_hard": hard_e, "expr_rows": rows_e,
           "expr_grad": f"torch.autograd.grad({total_e}, s)[0]", "rows_counted": counted}
    if case.get("all_ignored"):
        # docs/design.md: every row ignored under `mean` gives 0 and a zero gradient.
        assert counted == 0 and case["reduce"] == "mean" and math.isnan(total.item())
        out["note"] = ("docs/design.md: every row ignored under mean gives loss 0 and a zero "
                       "gradient; PyTorch's expression gives nan")
        out.update(total=0.0, soft=0.0, hard=0.0, grad=np.zeros(case["student"].shape))
        return out
    out["total"] = total.item()
    out["soft"] = eval(soft_e, env).item() if soft_e else 0.0
    out["hard"] = eval(hard_e, env).item() if hard_e else 0.0
    if rows_e:
        rows = eval(rows_e, env)
        out["rows"] = rows.detach().numpy()
        assert abs(rows.sum().item() - out["total"]) <= 1e-12 * max(1.0, abs(out["total"]))
    assert abs(out["soft"] + out["hard"] - out["total"]) <= 1e-12 * max(1.0, abs(out["total"]))
    (grad,) = torch.autograd.grad(grad_target, env["s"])
    out["grad"] = grad.numpy()
    assert np.isfinite(out["grad"]).all() and math.isfinite(out["total"]), case["name"]

    row_loss_scale, loss_scale, row_grad_scale = scales(case, k)
    out.update(row_loss_scale=row_loss_scale, loss_scale=loss_scale, grad_scale=row_grad_scale)

    # How far is float32 PyTorch from the float64 reference, in units of the tolerance scales?
    env32 = tensors(case, torch.float32)
    total32 = eval(total_e, env32)
    (grad32,) = torch.autograd.grad(total32, env32["s"])
    kind, dt = case["kind"], case["dtype"]
    note_f32(kind, dt, "loss", abs(total32.item() - out["total"]) / max(loss_scale, 1e-300))
    gscale = np.maximum(row_grad_scale, 1e-300)[:, None]
    note_f32(kind, dt, "grad", float(np.max(np.abs(grad32.numpy() - out["grad"]) / gscale)))
    return out


def evaluate_softmax_case(case):
    T = num(case["temperature"])
    fn = "F.softmax" if case["kind"] == "softmax" else "F.log_softmax"
    expr = f"{fn}(s/{T},1)"
    env = tensors(case, grad=False)
    result = eval(expr, env).numpy()
    env32 = tensors(case, torch.float32, grad=False)
    r32 = eval(expr, env32).numpy().astype(np.float64)
    s = case["student"].astype(np.float64) / case["temperature"]
    if case["kind"] == "softmax":
        scale = np.max(result, axis=1, keepdims=True)
    else:
        scale = np.abs(s) + np.abs(result)
    note_f32(case["kind"], case["dtype"], "output", float(np.max(np.abs(r32 - result) / scale)))
    return {"expr": expr, "output": result}


# --------------------------------------------------------------------------------------------------
# Cases


cases = []


def add(kind, dtype, n, c, *, T=1.0, alpha=0.5, eps=0.0, reduce="mean", normalizer=None,
        ignore=False, ignore_index=-100, scale_t2=True, mask=False, neg_inf=False, style=None,
        no_labels=False, all_ignored=False, share=None, tag=""):
    style = style or rng.choice(["narrow", "wide", "offset", "peaked"])
    if share is not None:
        student, teacher, labels = share
    else:
        student = draw_logits(n, c, dtype, style)
        teacher = draw_teacher(student, style) if kind in ("kl_divergence", "distillation_loss") else None
        labels = None
        if kind in ("cross_entropy", "distillation_loss"):
            labels = draw_labels(n, c, ignore, ignore_index, all_ignored=all_ignored)
            if no_labels:
                labels = np.zeros(0, dtype=np.int64)
    if neg_inf:
        # Teacher masks some classes (vocabulary padding); the student masks a subset of them.
        cols = rng.choice(c, size=max(2, c // 5), replace=False)
        if teacher is not None:
            teacher = teacher.copy()
            teacher[:, cols] = -np.inf
        student = student.copy()
        student[:, cols[: len(cols) // 2]] = -np.inf
        if labels is not None and len(labels):
            keep = np.setdiff1d(np.arange(c), cols[: len(cols) // 2])
            labels = np.where(labels >= 0, rng.choice(keep, size=n), labels)
    row_mask = None
    if mask:
        row_mask = (rng.random(n) < 0.7).astype(np.uint8)
        row_mask[0] = 1
        row_mask[-1] = 0
    if reduce == "divide_by" and normalizer is None:
        normalizer = float(rng.choice([3.0, 12.5, 1000.0]))
    case = {
        "kind": kind, "dtype": dtype, "student": student, "teacher": teacher, "labels": labels,
        "mask": row_mask, "temperature": T, "alpha": alpha, "label_smoothing": eps,
        "ignore_index": ignore_index, "scale_by_t_squared": scale_t2, "reduce": reduce,
        "normalizer": normalizer if reduce == "divide_by" else 1.0, "neg_inf": neg_inf,
        "all_ignored": all_ignored, "style": style,
    }
    k = np.ones(n, dtype=bool)
    if row_mask is not None:
        k &= row_mask != 0
    if labels is not None and len(labels):
        k &= labels != ignore_index
    case["filter"] = not k.all()
    parts = [f"{len(cases):03d}", kind, dtype, f"N={n}", f"C={c}"]
    if kind != "cross_entropy":
        parts.append(f"T={num(T)}")
    if kind == "distillation_loss":
        parts.append(f"alpha={num(alpha)}")
    if kind in ("cross_entropy", "distillation_loss"):
        parts.append(f"eps={num(eps)}")
    parts.append(reduce if reduce != "divide_by" else f"divide_by={num(normalizer)}")
    if case["filter"]:
        parts.append("ignored/masked-rows")
    if ignore_index != -100:
        parts.append(f"ignore_index={ignore_index}")
    if not scale_t2:
        parts.append("no-T^2")
    if neg_inf:
        parts.append("-inf-classes")
    if no_labels:
        parts.append("no-labels")
    parts.append(style)
    if tag:
        parts.append(tag)
    case["name"] = " ".join(parts)
    cases.append(case)
    return student, teacher, labels


def add_softmax(kind, dtype, n, c, T, style=None):
    style = style or rng.choice(["narrow", "wide", "offset", "peaked"])
    student = draw_logits(n, c, dtype, style)
    cases.append({"kind": kind, "dtype": dtype, "student": student, "temperature": T,
                  "style": style, "name": f"{len(cases):03d} {kind} {dtype} N={n} C={c} T={num(T)} {style}"})


def small_rows():
    return int(rng.choice([1, 2, 3, 5, 8]))


def covering(grid, secondary, required):
    """Give every case of `grid` (a list of dicts) values of the `secondary` dimensions such that each
    pair of dimensions in `required` occurs in every combination of values. The values come from the
    first seed that achieves it, so the design is deterministic and checked, not hoped for."""
    for seed in range(100000):
        r = np.random.default_rng(seed)
        out = [dict(g, **{name: pick(r) for name, pick in secondary.items()}) for g in grid]
        if all(len({(o[a], o[b]) for o in out}) == len({o[a] for o in out}) * len({o[b] for o in out})
               for a, b in required):
            return out
    raise RuntimeError("no covering assignment found")


def choice(values, weights=None):
    return lambda r: values[r.choice(len(values), p=weights)]


PRIMARY = ("T", "alpha", "reduce", "dtype")

# Distillation: every (T, alpha, reduction, dtype); C, eps, ignored rows and T^2 scaling are spread so
# that each meets every value of each of those (and each other).
grid = [dict(T=T, alpha=alpha, reduce=reduce, dtype=dtype)
        for T in TEMPERATURES for alpha in ALPHAS for reduce in REDUCTIONS for dtype in DTYPES]
design = covering(
    grid,
    {"C": choice(SMALL_C), "eps": choice(SMOOTHINGS), "ignore": choice([False, True]),
     "scale_t2": choice([True, False], [0.85, 0.15])},
    [(a, b) for a in ("C", "eps", "ignore") for b in PRIMARY]
    + [("eps", "ignore"), ("C", "eps"), ("C", "ignore"), ("scale_t2", "alpha"), ("scale_t2", "dtype"),
       ("scale_t2", "reduce")])
for d in design:
    add("distillation_loss", d["dtype"], small_rows() + 1, d["C"], T=d["T"], alpha=d["alpha"],
        eps=d["eps"], reduce=d["reduce"], ignore=d["ignore"], scale_t2=d["scale_t2"])

# KL divergence: every (T, reduction, dtype); C, T^2 scaling and a row mask spread across them.
grid = [dict(T=T, reduce=reduce, dtype=dtype) for T in TEMPERATURES for reduce in REDUCTIONS for dtype in DTYPES]
design = covering(
    grid,
    {"C": choice(SMALL_C), "scale_t2": choice([True, False], [0.75, 0.25]),
     "mask": choice([False, True], [0.75, 0.25])},
    [("C", "dtype"), ("C", "reduce"), ("scale_t2", "dtype"), ("scale_t2", "reduce"), ("mask", "dtype"),
     ("mask", "reduce"), ("scale_t2", "T")])
for d in design:
    add("kl_divergence", d["dtype"], small_rows(), d["C"], T=d["T"], reduce=d["reduce"],
        scale_t2=d["scale_t2"], mask=d["mask"])

# Cross entropy: every (eps, ignored rows, reduction, dtype); C and a row mask spread across them.
grid = [dict(eps=eps, ignore=ignore, reduce=reduce, dtype=dtype)
        for eps in SMOOTHINGS for ignore in (False, True) for reduce in REDUCTIONS for dtype in DTYPES]
design = covering(
    grid,
    {"C": choice(SMALL_C), "mask": choice([False, True], [0.75, 0.25])},
    [("C", "dtype"), ("C", "eps"), ("C", "ignore"), ("mask", "dtype"), ("mask", "eps"), ("mask", "ignore")])
for d in design:
    add("cross_entropy", d["dtype"], small_rows() + 1, d["C"], eps=d["eps"], ignore=d["ignore"],
        reduce=d["reduce"], mask=d["mask"])

# Options and corners from docs/design.md.
add("cross_entropy", "float", 6, 3, eps=0.1, ignore=True, ignore_index=-1, reduce="mean",
    tag="custom-ignore-index")
add("distillation_loss", "double", 6, 7, T=2.0, alpha=0.3, eps=0.1, ignore=True, ignore_index=-1,
    reduce="sum", tag="custom-ignore-index")
add("cross_entropy", "float", 4, 7, eps=0.1, reduce="mean", all_ignored=True, tag="all-ignored")
add("distillation_loss", "double", 3, 16, T=4.0, alpha=0.3, reduce="mean", all_ignored=True,
    tag="all-ignored")
add("distillation_loss", "float", 5, 7, T=4.0, alpha=1.0, reduce="mean", no_labels=True)
add("distillation_loss", "double", 4, 17, T=2.0, alpha=1.0, reduce="none", no_labels=True)
add("distillation_loss", "float", 7, 16, T=2.0, alpha=0.3, eps=0.1, ignore=True, mask=True,
    reduce="mean", tag="mask+ignore")
add("kl_divergence", "float", 4, 16, T=2.0, reduce="mean", neg_inf=True)
add("kl_divergence", "double", 3, 17, T=0.5, reduce="none", neg_inf=True)
add("distillation_loss", "double", 5, 17, T=4.0, alpha=0.3, reduce="sum", ignore=True, neg_inf=True)
add("distillation_loss", "float", 4, 16, T=1.0, alpha=0.3, reduce="mean", neg_inf=True)
add("cross_entropy", "double", 4, 16, reduce="sum", neg_inf=True)
add("kl_divergence", "float", 3, 16, T=0.5, reduce="mean", style="offset", tag="large-offset")
add("cross_entropy", "float", 3, 17, eps=0.1, reduce="sum", style="offset", tag="large-offset")

# Long rows: C = 1000 (4 rows) and C = 32000 (2 rows float, 1 row double). Inputs are shared
# between cases of the same dtype to keep the files small.
big = add("kl_divergence", "float", 4, 1000, T=2.0, reduce="mean", style="wide")
s4, t4, _ = big
y4 = draw_labels(4, 1000, True, -100)
add("distillation_loss", "float", 4, 1000, T=4.0, alpha=0.3, eps=0.1, reduce="sum",
    share=(s4, t4, y4))
add("cross_entropy", "float", 4, 1000, eps=0.1, reduce="mean", share=(s4, None, y4))
bigd = add("distillation_loss", "double", 4, 1000, T=1.0, alpha=0.3, reduce="none", ignore=True,
           style="wide")
add("kl_divergence", "double", 4, 1000, T=10.0, reduce="divide_by", normalizer=4096.0,
    share=(bigd[0], bigd[1], None))
huge = add("distillation_loss", "float", 2, 32000, T=2.0, alpha=0.3, eps=0.1, reduce="mean",
           style="wide")
add("kl_divergence", "float", 2, 32000, T=1.0, reduce="sum", share=(huge[0], huge[1], None))
add("cross_entropy", "double", 1, 32000, eps=0.1, reduce="none", style="wide")

# softmax / log_softmax with temperature: every (C, T) for small C, both dtypes at C = 1000.
i = 0
for kind in ("softmax", "log_softmax"):
    for c in SMALL_C:
        for T in TEMPERATURES:
            add_softmax(kind, DTYPES[i % 2], small_rows(), c, T)
            i += 1
    for dtype, T in (("float", 0.5), ("double", 4.0)):
        add_softmax(kind, dtype, 3, 1000, T)


# --------------------------------------------------------------------------------------------------
# The divergence family: divergence_loss, and distillation_loss with its `divergence` option.
#
# These cases come after all the others and draw from the same random stream, so the cases above
# (and their bytes in both files) are exactly what they were before the family existed.
#
# A family case's expressions share definitions, `expr_defs`: Python statements (separated by "; ")
# executed before the expressions are evaluated, as a user writes them on separate lines:
#   lq = F.log_softmax(s/T, 1); q = lq.exp()           the student, always softened by T
#   lp = <the teacher's log-probabilities>; p = lp.exp()
#        teacher logits:            F.log_softmax(t/T, 1)
#        teacher log-probabilities: F.log_softmax(t, 1)          (T does not apply; renormalised)
#        teacher probabilities:     torch.log(t/t.sum(1, keepdim=True))   (T does not apply)
#   d = <the divergence of each row>                   one value per row, before alpha and T^2
# and the expressions reduce `d` like the loss: d[k].sum(), d[k].mean(), torch.where(k, ..., 0.).

FAMILY_DIVERGENCES = (
    [("forward_kl", {}), ("reverse_kl", {})]
    + [("jensen_shannon", {"beta": b}) for b in (0.0, 0.1, 0.5, 0.9, 1.0)]
    + [("skew_kl", {"skew": a}) for a in (0.0, 0.1, 0.5, 1.0)]
    + [("skew_reverse_kl", {"skew": a}) for a in (0.0, 0.1, 0.5, 1.0)]
    + [("total_variation", {})]
)
DKD_DIVERGENCES = [("decoupled_kd", {"target_weight": wt, "non_target_weight": wn})
                   for wt, wn in ((1.0, 8.0), (0.0, 1.0), (1.0, 0.0), (2.0, 0.5))]
TEACHER_INPUTS = ["logits", "log_probabilities", "probabilities"]


def divergence_label(name, params):
    """forward_kl, jensen_shannon(beta=0.1), decoupled_kd(target_weight=1.0,non_target_weight=8.0)."""
    if not params:
        return name
    return f"{name}(" + ",".join(f"{key}={num(v)}" for key, v in params.items()) + ")"


def effective_divergence(name, params):
    """TRL's generalized_jsd_loss is forward KL at beta = 0 and reverse KL at beta = 1 exactly."""
    if name == "jensen_shannon" and params["beta"] in (0.0, 1.0):
        return "forward_kl" if params["beta"] == 0.0 else "reverse_kl"
    return name


def divergence_defs(case):
    """The statements that define lq, q, lp, p and the row divergence d (see above)."""
    T = num(case["temperature"])
    name, prm = case["divergence"], case["params"]
    masked = case["neg_inf"] is not None
    c = case["student"].shape[1]
    teacher = {
        "logits": f"F.log_softmax(t/{T}, 1)",
        "log_probabilities": "F.log_softmax(t, 1)",
        "probabilities": "torch.log(t/t.sum(1, keepdim=True))",
    }[case["teacher_input"]]
    defs = [f"lq = F.log_softmax(s/{T}, 1)", "q = lq.exp()", f"lp = {teacher}", "p = lp.exp()"]
    # Where a class is masked (-inf) the definitions' 0 log 0 = 0 is written with torch.where, placed
    # so that autograd never multiplies 0 by inf on the student's side (PyTorch's own F.kl_div gives
    # nan there, and so would its backward). A log taken where its weight is 0 is replaced by log 1
    # (JSD's stacked inputs by 0 where neither side gives mass, `live`): the derivative of log or
    # logsumexp there is 0/0 even though nothing uses the value.
    kl = "reduction='none', log_target=True"
    if name == "forward_kl" or (name == "jensen_shannon" and prm["beta"] == 0.0):
        # TRL at beta = 0: F.kl_div(student_log_probs, teacher_log_probs, log_target=True)
        d = "torch.where(p > 0, p*(lp - lq), 0.).sum(1)" if masked else f"F.kl_div(lq, lp, {kl}).sum(1)"
    elif name == "reverse_kl" or (name == "jensen_shannon" and prm["beta"] == 1.0):
        # TRL at beta = 1: F.kl_div(teacher_log_probs, student_log_probs, log_target=True)
        d = "(q*torch.where(q > 0, lq - lp, 0.)).sum(1)" if masked else f"F.kl_div(lp, lq, {kl}).sum(1)"
    elif name == "jensen_shannon":
        b = num(prm["beta"])
        if masked:
            defs.append("live = (p > 0) | (q > 0)")
            defs.append(f"lm = torch.logsumexp(torch.stack([torch.where(live, lq, 0.) + math.log(1-{b}), "
                        f"torch.where(live, lp, 0.) + math.log({b})]), 0)")
            d = (f"({b}*torch.where(p > 0, p*(lp - lm), 0.) + "
                 f"(1-{b})*q*torch.where(q > 0, lq - lm, 0.)).sum(1)")
        else:  # TRL's generalized_jsd_loss, its mixture and its two F.kl_div terms
            defs.append(f"lm = torch.logsumexp(torch.stack([lq + math.log(1-{b}), lp + math.log({b})]), 0)")
            d = f"({b}*F.kl_div(lm, lp, {kl}) + (1-{b})*F.kl_div(lm, lq, {kl})).sum(1)"
    elif name == "skew_kl":  # DistiLLM: KL(p || a p + (1 - a) q)
        a = num(prm["skew"])
        if masked:
            defs.append(f"lm = torch.log(torch.where(p > 0, {a}*p + (1-{a})*q, 1.))")
            d = "(p*torch.where(p > 0, lp - lm, 0.)).sum(1)"
        else:
            d = f"(p*(lp - torch.log({a}*p + (1-{a})*q))).sum(1)"
    elif name == "skew_reverse_kl":  # DistiLLM: KL(q || (1 - a) p + a q)
        a = num(prm["skew"])
        if masked:
            defs.append(f"lm = torch.log(torch.where(q > 0, (1-{a})*p + {a}*q, 1.))")
            d = "(q*torch.where(q > 0, lq - lm, 0.)).sum(1)"
        else:
            d = f"(q*(lq - torch.log((1-{a})*p + {a}*q))).sum(1)"
    elif name == "total_variation":
        d = "0.5*(p - q).abs().sum(1)"
    elif name == "decoupled_kd":
        wt, wn = num(prm["target_weight"]), num(prm["non_target_weight"])
        # Zhao et al. 2022 written out. g marks the target class (an ignored row's -100 is clamped
        # to 0 for one_hot, a class no case masks; such a row is dropped below). b = [p_y, 1 - p_y]
        # with 1 - p_y summed over the other classes; p_hat, q_hat are the distributions over
        # c != y, by log_softmax over the other classes (the target's -inf there is the class left
        # out; left out of the sum with torch.where, as F.kl_div gives nan at -inf).
        defs += [f"g = F.one_hot(y.clamp(min=0), {c}).bool()",
                 "bt = torch.stack([p[g], torch.where(g, 0., p).sum(1)], 1)",
                 "bs = torch.stack([q[g], torch.where(g, 0., q).sum(1)], 1)",
                 "lpn = F.log_softmax(lp.masked_fill(g, -math.inf), 1)",
                 "lqn = F.log_softmax(lq.masked_fill(g, -math.inf), 1)",
                 "tckd = F.kl_div(bs.log(), bt, reduction='none').sum(1)",
                 f"nckd = torch.where(lpn > -math.inf, F.kl_div(lqn, lpn, {kl}), 0.).sum(1)"]
        # A weight of 0 leaves its term out, as alpha = 0 does (0 * inf would be nan where the
        # other side masks a class).
        d = " + ".join(f"{wv}*{term}" for wv, term in ((wt, "tckd"), (wn, "nckd")) if float(wv) != 0)
    else:
        raise ValueError(name)
    defs.append(f"d = {d}")
    return "; ".join(defs)


def family_expressions(case):
    """expr_defs and the total, soft, hard and per-row expressions of a family case."""
    kind, red = case["kind"], case["reduce"]
    T = num(case["temperature"])
    alpha = case["alpha"] if kind == "distillation_loss" else 1.0
    has_ce = kind == "distillation_loss" and alpha < 1
    filt, has_mask = case["filter"], case["mask"] is not None
    w = ("" if alpha == 1 else f"{num(alpha)}*") + (f"{T}*{T}*" if case["scale_by_t_squared"] else "")
    ce_w = f"(1-{num(alpha)})*"
    eps, ii = case["label_smoothing"], case["ignore_index"]
    defs = divergence_defs(case)
    if red == "none":
        wrap = (lambda e: f"torch.where(k, {e}, 0.)") if filt else (lambda e: f"({e})")
        rows = [f"{w}d"] + ([f"{ce_w}{ce_expr('s', 'y', eps, ii, 'none')}"] if has_ce else [])
        soft = f"{wrap(rows[0])}.sum()"
        hard = f"{wrap(rows[1])}.sum()" if has_ce else None
        row_expr = wrap(" + ".join(rows))
        return defs, f"{row_expr}.sum()", soft, hard, row_expr
    D = "d[k]" if filt else "d"
    Sce, Yce = ("s[m]", "y[m]") if has_mask else ("s", "y")
    soft = f"{w}{D}.mean()" if red == "mean" else f"{w}{D}.sum()"
    hard = None
    if has_ce:
        hard = f"{ce_w}{ce_expr(Sce, Yce, eps, ii, 'mean' if red == 'mean' else 'sum')}"
    if red == "divide_by":
        n = num(case["normalizer"])
        soft = f"{soft} / {n}"
        hard = hard and f"{hard} / {n}"
    total = " + ".join(e for e in (soft, hard) if e)
    return defs, total, soft, hard, None


def family_scales(case, k):
    """Tolerance scales of a family case (README.md, "Tolerance scales"): per-row loss scale, the
    reduced loss scale and the per-row gradient scale."""
    kind, T = case["kind"], case["temperature"]
    alpha = case["alpha"] if kind == "distillation_loss" else 1.0
    name = effective_divergence(case["divergence"], case["params"])
    prm = case["params"]
    s = torch.tensor(case["student"].astype(np.float64))
    t = torch.tensor(case["teacher"].astype(np.float64))
    n, c = s.shape
    lq = F.log_softmax(s / T, 1)
    lp = {"logits": lambda: F.log_softmax(t / T, 1), "log_probabilities": lambda: F.log_softmax(t, 1),
          "probabilities": lambda: torch.log(t / t.sum(1, keepdim=True))}[case["teacher_input"]]()
    q, p = lq.exp(), lp.exp()
    # Every divergence but decoupled KD: the scales the top-k generator shares (scales.py).
    if name != "decoupled_kd":
        row_loss, g = divergence_scale_terms(name, prm, p, q, lp, lq)
    else:
        lam = finite_abs(lp) + finite_abs(lq) + 2
        rowsum = lambda x: x.sum(1)
        wt, wn = prm["target_weight"], prm["non_target_weight"]
        y = torch.tensor(case["labels"]).clamp(min=0)
        gm = F.one_hot(y, c).bool()
        P, Q = rowsum(torch.where(gm, 0.0, p)), rowsum(torch.where(gm, 0.0, q))
        lam_p = rowsum(torch.where(gm, 0.0, p * lam)) / P   # relative error of P = 1 - p_y
        lam_q = rowsum(torch.where(gm, 0.0, q * lam)) / Q
        logs = finite_abs(torch.log(P)) + finite_abs(torch.log(Q)) + 2
        A = rowsum(torch.where(gm | (p == 0), 0.0, p * (lp - lq)))
        nckd = finite_abs(A / P - torch.log(P) + torch.log(Q))
        row_loss = (wt * ((p * lam)[gm] + P * logs)
                    + wn * (lam_p + lam_q + nckd * lam_p + logs))
        g = ((q / Q[:, None]) * (wt * (Q + P) + wn)[:, None] * (lam + lam_q[:, None])
             + wn * (p / P[:, None]) * (lam + lam_p[:, None]))
        g = torch.where(gm, (wt * (P * lam_p + Q * lam_q))[:, None], g)
    t2 = T * T if case["scale_by_t_squared"] else 1.0
    g_t = T if case["scale_by_t_squared"] else 1.0 / T
    row_loss = alpha * t2 * row_loss
    row_grad = alpha * g_t * g
    if alpha < 1:
        eps = case["label_smoothing"]
        lr = F.log_softmax(s, 1)
        r = lr.exp()
        y = torch.tensor(case["labels"]).clamp(0, c - 1)
        lr_y = lr.gather(1, y[:, None])[:, 0]
        fin = torch.where(torch.isinf(lr), 0.0, lr.abs() + 1)
        row_loss = row_loss + (1 - alpha) * ((1 - eps) * (finite_abs(lr_y) + 1) + eps / c * fin.sum(1))
        target = torch.full((n, c), eps / c, dtype=torch.float64)
        target[torch.arange(n), y] += 1 - eps
        row_grad = row_grad + (1 - alpha) * (r + target)
    row_grad = row_grad.max(1).values
    counted = int(k.sum())
    weight = {"none": 1.0, "sum": 1.0, "mean": 1.0 / max(counted, 1),
              "divide_by": 1.0 / case["normalizer"]}[case["reduce"]]
    row_loss = torch.where(k, row_loss, 0.0)
    row_grad = torch.where(k, row_grad, 0.0) * weight
    assert torch.isfinite(row_loss).all() and torch.isfinite(row_grad).all(), case["name"]
    return row_loss.numpy(), float(weight * row_loss.sum()), row_grad.numpy()


def infinite_rows(case):
    """Rows whose divergence is +inf by definition: a class only the student masks under forward
    KL, skew KL with skew 0 and decoupled KD's NCKD (when weighted); a class only the teacher masks
    under reverse KL and skew reverse KL with skew 0. Mixtures with a weight above 0 stay finite."""
    name = effective_divergence(case["divergence"], case["params"])
    prm = case["params"]
    student_masks = np.isneginf(case["student"])
    teacher = case["teacher"]
    teacher_masks = teacher == 0 if case["teacher_input"] == "probabilities" else np.isneginf(teacher)
    only_student = (student_masks & ~teacher_masks).any(1)
    only_teacher = (teacher_masks & ~student_masks).any(1)
    if name == "forward_kl" or (name == "skew_kl" and prm["skew"] == 0):
        return only_student
    if name == "reverse_kl" or (name == "skew_reverse_kl" and prm["skew"] == 0):
        return only_teacher
    if name == "decoupled_kd" and prm["non_target_weight"] > 0:
        return only_student  # labels are on classes neither side masks
    return np.zeros(len(only_student), dtype=bool)


def family_env(case, dtype=torch.float64):
    env = tensors(case, dtype)
    env["math"] = math
    exec(case["expr_defs"], env)
    return env


def evaluate_family_case(case):
    defs, total_e, soft_e, hard_e, rows_e = family_expressions(case)
    case["expr_defs"] = defs
    env = family_env(case)
    k = env["k"]
    total = eval(total_e, env)
    out = {"expr_defs": defs, "expr": total_e, "expr_soft": soft_e, "expr_hard": hard_e, "expr_rows": rows_e,
           "expr_grad": f"torch.autograd.grad({total_e}, s)[0]", "rows_counted": int(k.sum())}
    out["total"] = total.item()
    out["soft"] = eval(soft_e, env).item()
    out["hard"] = eval(hard_e, env).item() if hard_e else 0.0
    close = lambda a, b: a == b or abs(a - b) <= 1e-12 * max(1.0, abs(b))
    if rows_e:
        out["rows"] = eval(rows_e, env).detach().numpy()
        assert close(float(out["rows"].sum()), out["total"]), case["name"]
    assert close(out["soft"] + out["hard"], out["total"]), case["name"]
    (grad,) = torch.autograd.grad(total, env["s"])
    grad = grad.numpy().copy()
    # A row is +inf exactly where the definition divides by 0: a class one side masks and the other
    # gives mass, in the direction that puts the 0 under a log (checked against the masks).
    expected_inf = infinite_rows(case)
    d = env["d"].detach().numpy()
    assert (np.isinf(d[k.numpy()]) == expected_inf[k.numpy()]).all(), case["name"]
    assert not np.isnan(d[k.numpy()]).any() and (out["total"] == math.inf) == expected_inf[k.numpy()].any()
    bad = ~np.isfinite(grad)
    if bad.any():
        # The loss is +inf in those rows, and so is its derivative: PyTorch gives inf - inf = nan
        # or -inf there. Stored as NaN: not compared (README.md).
        assert out["total"] == math.inf, case["name"]
        grad[bad] = np.nan
        out["note"] = ("expect_grad is NaN where PyTorch's gradient is not finite (rows whose loss is "
                       "+inf, through a masked class); those elements are not compared")
    out["grad"] = grad
    row_loss_scale, loss_scale, row_grad_scale = family_scales(case, k)
    out.update(row_loss_scale=row_loss_scale, loss_scale=loss_scale, grad_scale=row_grad_scale)

    # float32 PyTorch's distance from the reference, in units of the scales (finite values only).
    env32 = family_env(case, torch.float32)
    total32 = eval(total_e, env32)
    (grad32,) = torch.autograd.grad(total32, env32["s"])
    what = f"{case['kind']}/{effective_divergence(case['divergence'], case['params'])}"
    if math.isfinite(out["total"]):
        note_f32(what, case["dtype"], "loss", abs(total32.item() - out["total"]) / max(loss_scale, 1e-300))
    err = np.abs(grad32.numpy().astype(np.float64) - grad) / np.maximum(row_grad_scale, 1e-300)[:, None]
    err = err[np.isfinite(grad)]
    note_f32(what, case["dtype"], "grad", float(np.nan_to_num(err, nan=np.inf).max(initial=0.0)))
    return out


def as_teacher_input(t, teacher_input):
    """Logits -> the values the case passes: logits, log_softmax(t) or softmax(t), in t's dtype."""
    if teacher_input == "logits":
        return t
    x = torch.tensor(t.astype(np.float64))
    v = F.log_softmax(x, 1) if teacher_input == "log_probabilities" else F.softmax(x, 1)
    return v.numpy().astype(t.dtype)


def add_family(kind, dtype, n, c, divergence, *, T=1.0, alpha=1.0, eps=0.0, reduce="mean", normalizer=None,
               ignore=False, mask=False, teacher_input="logits", scale_t2=True, neg_inf=None, identical=False,
               style=None, share=None, tag=""):
    name, params = divergence
    style = style or rng.choice(["narrow", "wide", "offset", "peaked"])
    labeled = kind == "distillation_loss"
    if share is not None:
        student, teacher, labels = share
    else:
        student = draw_logits(n, c, dtype, style)
        teacher = student.copy() if identical else draw_teacher(student, style)
        labels = draw_labels(n, c, ignore, -100) if labeled else None
    if neg_inf is not None:
        # One side masks cols (vocabulary padding), the other the same in odd rows and a subset of
        # them in even rows: "teacher" is the teacher masking more, "student" the student. So every
        # case has rows where both mask the same classes and rows where one side masks more.
        # Class 0 stays unmasked: decoupled_kd's expression gives an ignored row label 0 (below).
        cols = 1 + rng.choice(c - 1, size=max(2, c // 5), replace=False)
        more, fewer = (teacher, student) if neg_inf == "teacher" else (student, teacher)
        more, fewer = more.copy(), fewer.copy()
        more[:, cols] = -np.inf
        fewer[:, cols[: len(cols) // 2]] = -np.inf
        fewer[1::2, cols] = -np.inf
        teacher, student = (more, fewer) if neg_inf == "teacher" else (fewer, more)
        if labels is not None:  # labels on classes neither side masks
            keep = np.setdiff1d(np.arange(c), cols)
            labels = np.where(labels >= 0, rng.choice(keep, size=n), labels)
    teacher_masks = np.isneginf(teacher)
    teacher = as_teacher_input(teacher, teacher_input)
    if teacher_input == "probabilities":  # no class the teacher keeps may round to probability 0
        assert (teacher[~teacher_masks] > 0).all()
    row_mask = None
    if mask:
        row_mask = (rng.random(n) < 0.7).astype(np.uint8)
        row_mask[0] = 1
        row_mask[-1] = 0
    if reduce == "divide_by" and normalizer is None:
        normalizer = float(rng.choice([3.0, 12.5, 1000.0]))
    case = {
        "kind": kind, "dtype": dtype, "student": student, "teacher": teacher, "labels": labels,
        "mask": row_mask, "temperature": T, "alpha": alpha if labeled else 1.0,
        "label_smoothing": eps if labeled else 0.0, "ignore_index": -100, "scale_by_t_squared": scale_t2,
        "reduce": reduce, "normalizer": normalizer if reduce == "divide_by" else 1.0, "neg_inf": neg_inf,
        "divergence": name, "params": params, "teacher_input": teacher_input, "style": style, "family": True,
    }
    k = np.ones(n, dtype=bool)
    if row_mask is not None:
        k &= row_mask != 0
    if labels is not None:
        if not (k & (labels != -100)).any():  # the mask keeps row 0: let it count
            labels = labels.copy()
            labels[0] = 0
        k &= labels != -100
    case["labels"] = labels
    case["filter"] = not k.all()
    parts = [f"{len(cases):03d}", kind, dtype, f"N={n}", f"C={c}", f"T={num(T)}"]
    if labeled:
        parts += [f"alpha={num(alpha)}", f"eps={num(eps)}"]
    parts.append(divergence_label(name, params))
    parts.append(f"teacher={teacher_input}")
    parts.append(reduce if reduce != "divide_by" else f"divide_by={num(normalizer)}")
    if case["filter"]:
        parts.append("ignored/masked-rows")
    if not scale_t2:
        parts.append("no-T^2")
    if neg_inf:
        parts.append(f"-inf-classes({neg_inf}-side)")
    if identical:
        parts.append("identical-inputs")
    parts.append(style)
    if tag:
        parts.append(tag)
    case["name"] = " ".join(parts)
    cases.append(case)
    return student, teacher, labels


# divergence_loss: every (divergence with its parameter, T, dtype), the reduction cycling so that
# each divergence, each T and each dtype meets all four; C (1 to 17), the teacher's input form, a
# row mask and the T^2 factor spread by the covering design.
grid = [dict(div=i, T=T, dtype=dtype, reduce=REDUCTIONS[(i + j + 2 * h) % 4])
        for i in range(len(FAMILY_DIVERGENCES)) for j, T in enumerate(TEMPERATURES)
        for h, dtype in enumerate(DTYPES)]
design = covering(
    grid,
    {"C": choice(list(range(1, 18))), "teacher": choice(TEACHER_INPUTS),
     "mask": choice([False, True], [0.7, 0.3]), "scale_t2": choice([True, False], [0.8, 0.2])},
    [("teacher", "div"), ("teacher", "reduce"), ("teacher", "dtype"), ("teacher", "T"), ("mask", "div"),
     ("mask", "reduce"), ("mask", "dtype"), ("scale_t2", "dtype"), ("scale_t2", "reduce"), ("C", "dtype")])
for d in design:
    add_family("divergence_loss", d["dtype"], small_rows() + 1, d["C"], FAMILY_DIVERGENCES[d["div"]], T=d["T"],
               reduce=d["reduce"], mask=d["mask"], teacher_input=d["teacher"], scale_t2=d["scale_t2"])

# distillation_loss: every (divergence, decoupled_kd included with four weight pairs) x (alpha in
# {0.3, 1}) x (dtype); T and the reduction cycle so that each divergence meets four temperatures
# (decoupled_kd all five over its weight pairs) and all four reductions; C, label smoothing,
# ignored rows, a row mask and the teacher's input form spread by the covering design.
DISTILL_DIVERGENCES = FAMILY_DIVERGENCES + DKD_DIVERGENCES
grid = [dict(div=i, alpha=alpha, dtype=dtype, T=TEMPERATURES[(i + 2 * a + h) % 5],
             reduce=REDUCTIONS[(i + a + 2 * h) % 4])
        for i in range(len(DISTILL_DIVERGENCES)) for a, alpha in enumerate([0.3, 1.0])
        for h, dtype in enumerate(DTYPES)]
design = covering(
    grid,
    {"C": choice(list(range(2, 18))), "eps": choice(SMOOTHINGS), "ignore": choice([False, True]),
     "mask": choice([False, True], [0.75, 0.25]), "teacher": choice(TEACHER_INPUTS)},
    [("eps", "alpha"), ("eps", "dtype"), ("eps", "reduce"), ("ignore", "alpha"), ("ignore", "dtype"),
     ("ignore", "reduce"), ("mask", "alpha"), ("mask", "reduce"), ("teacher", "alpha"), ("teacher", "dtype"),
     ("teacher", "reduce"), ("eps", "ignore")])
for d in design:
    add_family("distillation_loss", d["dtype"], small_rows() + 1, d["C"], DISTILL_DIVERGENCES[d["div"]],
               T=d["T"], alpha=d["alpha"], eps=d["eps"], reduce=d["reduce"], ignore=d["ignore"], mask=d["mask"],
               teacher_input=d["teacher"])

# -inf (masked) classes, the teacher masking more and the student masking more, for every
# divergence; where the definition divides by 0 (a class the student masks under forward-type
# divergences, one the teacher masks under reverse-type ones) the row's value is +inf and stored so.
for i, div in enumerate(DISTILL_DIVERGENCES):
    for side in ("teacher", "student"):
        dtype = DTYPES[(i + (side == "student")) % 2]
        c = [7, 16, 17][i % 3]
        T = TEMPERATURES[(2 * i + (side == "student")) % 5]
        teacher_input = TEACHER_INPUTS[(i + 2 * (side == "student")) % 3]
        reduce = REDUCTIONS[(i + 3 * (side == "student")) % 4]
        if div[0] == "decoupled_kd":
            add_family("distillation_loss", dtype, 5, c, div, T=T, alpha=[0.3, 1.0][i % 2], reduce=reduce,
                       ignore=True, teacher_input=teacher_input, neg_inf=side)
        else:
            add_family("divergence_loss", dtype, 4, c, div, T=T, reduce=reduce, teacher_input=teacher_input,
                       neg_inf=side)

# Identical inputs (teacher = student): every divergence is 0 and so is its gradient.
for i, div in enumerate(DISTILL_DIVERGENCES):
    if div[0] == "decoupled_kd" and div[1]["target_weight"] not in (1.0, 0.0):
        continue
    kind = "distillation_loss" if div[0] == "decoupled_kd" else "divergence_loss"
    add_family(kind, DTYPES[i % 2], 3, [5, 16, 17][i % 3], div, T=TEMPERATURES[i % 5], reduce="sum",
               identical=True)

# Decoupled KD where the target class holds nearly all the mass (label = the teacher's argmax, peaked
# logits at a low temperature): 1 - p_y and 1 - q_y are tiny and must be summed, not subtracted.
for i, (dtype, T) in enumerate((("float", 0.5), ("double", 0.5), ("float", 1.0))):
    s_conf = draw_logits(4, 16, dtype, "peaked")
    t_conf = draw_teacher(s_conf, "peaked")
    y_conf = np.argmax(t_conf, axis=1).astype(np.int64)
    add_family("distillation_loss", dtype, 4, 16, DKD_DIVERGENCES[i % 2], T=T, alpha=[1.0, 0.3][i % 2],
               reduce="sum", style="peaked", share=(s_conf, t_conf, y_conf), tag="confident-target")

# Long rows: C = 1000 (4 rows) for each divergence in float (inputs shared), and in double for
# three of them; C = 2500 (2 rows, so each row is cut into segments whose sums merge) in float.
LONG = [("forward_kl", {}), ("reverse_kl", {}), ("jensen_shannon", {"beta": 0.5}), ("skew_kl", {"skew": 0.1}),
        ("skew_reverse_kl", {"skew": 0.1}), ("total_variation", {}), DKD_DIVERGENCES[0]]
long_f = None
for i, div in enumerate(LONG):
    kind = "distillation_loss" if div[0] == "decoupled_kd" else "divergence_loss"
    share = None
    if long_f is not None:
        share = (long_f[0], long_f[1], draw_labels(4, 1000, True, -100) if kind == "distillation_loss" else None)
    out = add_family(kind, "float", 4, 1000, div, T=[1.0, 2.0, 4.0][i % 3], alpha=0.3, eps=0.1,
                     reduce=REDUCTIONS[i % 4], style="wide", share=share)
    if long_f is None:
        long_f = out
long_d = None
for i, div in enumerate([LONG[2], LONG[4], LONG[6]]):
    kind = "distillation_loss" if div[0] == "decoupled_kd" else "divergence_loss"
    share = None
    if long_d is not None:
        share = (long_d[0], long_d[1], draw_labels(4, 1000, False, -100) if kind == "distillation_loss" else None)
    out = add_family(kind, "double", 4, 1000, div, T=10.0, alpha=0.3, reduce="mean", style="wide", share=share)
    if long_d is None:
        long_d = out
seg = add_family("divergence_loss", "float", 2, 2500, LONG[2], T=2.0, reduce="sum", style="wide",
                 tag="segmented-rows")
add_family("distillation_loss", "float", 2, 2500, LONG[6], T=2.0, alpha=1.0, reduce="mean",
           share=(seg[0], seg[1], np.array([2100, 17], dtype=np.int64)), tag="segmented-rows")


# --------------------------------------------------------------------------------------------------
# Write


def write_family_case(case, blob, w):
    """The fields of a family case, after the common ones (README.md: "Keys")."""
    res = evaluate_family_case(case)
    kind = case["kind"]
    w(f"divergence {case['divergence']}")
    for key, value in case["params"].items():
        w(f"{key} {num(value)}")
    w(f"teacher_input {case['teacher_input']}")
    if kind == "distillation_loss":
        w(f"alpha {num(case['alpha'])}")
    w(f"scale_by_t_squared {int(case['scale_by_t_squared'])}")
    if kind == "distillation_loss":
        w(f"label_smoothing {num(case['label_smoothing'])}")
        w(f"ignore_index {case['ignore_index']}")
    w(f"reduce {case['reduce']}")
    w(f"normalizer {num(case['normalizer'])}")
    w(f"teacher {blob.add(case['teacher'])}")
    if case["labels"] is not None:
        w(f"labels {blob.add(case['labels'])}")
    if case["mask"] is not None:
        w(f"mask {blob.add(case['mask'])}")
    w(f"expr_defs {res['expr_defs']}")
    for key in ("expr", "expr_soft", "expr_hard", "expr_rows", "expr_grad"):
        if res[key]:
            w(f"{key} {res[key]}")
    if "note" in res:
        w(f"note {res['note']}")
    w(f"expect_total {num(res['total'])}")
    w(f"expect_soft {num(res['soft'])}")
    w(f"expect_hard {num(res['hard'])}")
    w(f"expect_rows_counted {res['rows_counted']}")
    if "rows" in res:
        w(f"expect_rows {blob.add(res['rows'].astype(np.float64))}")
    w(f"expect_grad {blob.add(res['grad'].astype(np.float64))}")
    w(f"loss_scale {num(res['loss_scale'])}")
    w(f"row_loss_scale {blob.add(res['row_loss_scale'])}")
    w(f"grad_scale {blob.add(res['grad_scale'])}")
    w("end")
    w("")


def main():
    blob = Blob()
    lines = [
        "# distill golden reference values, written by tests/golden/generate.py -- do not edit.",
        f"# torch {torch.__version__}, numpy {np.__version__}. Format: tests/golden/README.md.",
        "",
    ]
    counts = {}
    for case in cases:
        kind, dtype = case["kind"], case["dtype"]
        counts[(kind, dtype)] = counts.get((kind, dtype), 0) + 1
        n, c = case["student"].shape
        w = lines.append
        w(f"case {case['name']}")
        w(f"kind {kind}")
        w(f"dtype {dtype}")
        w(f"rows {n}")
        w(f"cols {c}")
        w(f"temperature {num(case['temperature'])}")
        w(f"student {blob.add(case['student'])}")
        if kind in ("softmax", "log_softmax"):
            res = evaluate_softmax_case(case)
            w(f"expr {res['expr']}")
            w(f"expect_output {blob.add(res['output'])}")
            w("end")
            w("")
            continue
        if case.get("family"):
            write_family_case(case, blob, w)
            continue
        res = evaluate_loss_case(case)
        if kind == "distillation_loss":
            w(f"alpha {num(case['alpha'])}")
        if kind != "cross_entropy":
            w(f"scale_by_t_squared {int(case['scale_by_t_squared'])}")
        if kind != "kl_divergence":
            w(f"label_smoothing {num(case['label_smoothing'])}")
            w(f"ignore_index {case['ignore_index']}")
        w(f"reduce {case['reduce']}")
        w(f"normalizer {num(case['normalizer'])}")
        if case["teacher"] is not None:
            w(f"teacher {blob.add(case['teacher'])}")
        if case["labels"] is not None:
            w(f"labels {blob.add(case['labels'])}")
        if case["mask"] is not None:
            w(f"mask {blob.add(case['mask'])}")
        w(f"expr {res['expr']}")
        if res["expr_soft"]:
            w(f"expr_soft {res['expr_soft']}")
        if res["expr_hard"]:
            w(f"expr_hard {res['expr_hard']}")
        if res["expr_rows"]:
            w(f"expr_rows {res['expr_rows']}")
        w(f"expr_grad {res['expr_grad']}")
        if "note" in res:
            w(f"note {res['note']}")
        w(f"expect_total {num(res['total'])}")
        w(f"expect_soft {num(res['soft'])}")
        w(f"expect_hard {num(res['hard'])}")
        w(f"expect_rows_counted {res['rows_counted']}")
        if "rows" in res:
            w(f"expect_rows {blob.add(res['rows'].astype(np.float64))}")
        w(f"expect_grad {blob.add(res['grad'].astype(np.float64))}")
        if "loss_scale" in res:
            w(f"loss_scale {num(res['loss_scale'])}")
            w(f"row_loss_scale {blob.add(res['row_loss_scale'])}")
            w(f"grad_scale {blob.add(res['grad_scale'])}")
        w("end")
        w("")

    with open(INDEX, "w", encoding="ascii") as f:
        f.write("\n".join(lines))
    with open(BLOB, "wb") as f:
        f.write(blob.data)

    print(f"{len(cases)} cases: " + ", ".join(f"{k[0]}/{k[1]} {v}" for k, v in sorted(counts.items())))
    print(f"{INDEX}: {os.path.getsize(INDEX)} bytes; {BLOB}: {os.path.getsize(BLOB)} bytes")
    print("float cases: float32 PyTorch's largest error vs the float64 reference, in units of the "
          "tolerance scales (the test allows 1e-6 for the loss and log_softmax, 2e-6 for "
          "gradients and softmax):")
    for (kind, dtype, what), err in sorted(f32_worst.items()):
        if dtype == "float":
            print(f"  {kind:34s} {what:6s} {err:.3g}")


if __name__ == "__main__":
    sys.exit(main())
