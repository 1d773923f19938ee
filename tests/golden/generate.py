#!/usr/bin/python3
"""Golden reference values for distill, computed by PyTorch.

Run by hand with Debian's python3-torch (not a pyenv/venv python):

    /usr/bin/python3 tests/golden/generate.py

It rewrites tests/golden/golden.index (text) and tests/golden/golden.bin (little-endian arrays);
README.md beside this file describes the format. Everything is deterministic (fixed numpy seed,
no torch RNG), so regenerating with the same numpy/torch gives identical files.

How a reference is made (DESIGN.md section 2 is the contract):
  * inputs are drawn in float64, rounded to the case's dtype, stored exactly in that dtype;
  * the rounded values are widened back to float64 tensors `s` (student logits, requires_grad),
    `t` (teacher logits), with `y` (int64 labels), `m` (bool row mask) and `k` (bool: row counted =
    mask and label != ignore_index) where the case has them;
  * the case's PyTorch expression -- stored verbatim in the index -- is evaluated with eval() in
    float64, and the gradient is torch.autograd.grad of that expression with respect to `s`.
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
        # DESIGN.md section 2: every row ignored under `mean` gives 0 and a zero gradient.
        assert counted == 0 and case["reduce"] == "mean" and math.isnan(total.item())
        out["note"] = ("DESIGN.md section 2: every row ignored under mean gives loss 0 and a zero "
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

# Options and corners from DESIGN.md section 2.
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
# Write


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
            print(f"  {kind:18s} {what:6s} {err:.3g}")


if __name__ == "__main__":
    sys.exit(main())
