#!/usr/bin/python3
"""Golden reference values for distill::top_k_distillation_loss, computed by PyTorch.

Run by hand with Debian's python3-torch (not a pyenv/venv python):

    /usr/bin/python3 tests/golden/generate_top_k.py

It rewrites tests/golden/top_k.index (text) and tests/golden/top_k.bin (little-endian arrays), in
the format of golden.index / golden.bin (README.md beside this file), so golden.hpp loads them;
tests/golden_top_k.test.cpp runs the library on every case. Deterministic: one fixed numpy seed, no
torch RNG.

A case is the student's N x V logits `s` and the teacher as its top k classes: `ti` (N x k int64
indices, -1 = padding) and `tv` (N x k values: log-probabilities, probabilities or logits). The
case's `expr_defs` write the loss's definition out in float64 PyTorch (docs/math.md, "A teacher
kept as its top k classes"), over the k + 1 categories of each row -- the k classes and the tail,
every other class of the vocabulary:

    lq = F.log_softmax(s/T, 1); q = lq.exp()       the student over the whole row
    v = ti != -1; j = ti.clamp(min=0)              live slots; the padding's column is never used
    inK = <a scattered mask of the row's classes>
    Q = [q at the k classes, q_t = sum of q outside them]   (LQ: their logs, -inf at padding)
    P = [p_c, p_t]                                 as the mode says (below)
    d = <the divergence over the k + 1 columns of P, Q>

tail_bucket: p_c = the values (exp of log-probabilities), p_t = 1 - sum p_c; where sum p_c > 1 (the
values' rounding, within the library's mass_tolerance) or the row's classes are all V columns, p_c
is scaled to sum to 1 and p_t = 0 (docs/api.md). renormalize: p = softmax over the k classes of
logits / T or of log-probabilities, or the probabilities over their sum; p_t = 0. A padding slot is
a category with P = Q = 0, which adds nothing. The loss is alpha T^2 d plus (1 - alpha) times
F.cross_entropy on the full row, reduced like the dense losses' (README.md); the gradient is
torch.autograd.grad of it with respect to s.

Each case also stores the tolerance scales of README.md ("Tolerance scales", per divergence) taken
over the k + 1 categories; a column outside the k classes gets the tail's gradient scale times
q_j / q_t, its share of the tail (its gradient is that share of the tail's). The script prints how
far float32 PyTorch is from the float64 reference in units of those scales.
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
INDEX = os.path.join(HERE, "top_k.index")
BLOB = os.path.join(HERE, "top_k.bin")

NP_DTYPE = {"float": np.float32, "double": np.float64}
TAG = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64",
       np.dtype(np.int64): "i64", np.dtype(np.uint8): "u8"}
PADDING = -1
TEMPERATURES = [1.0, 2.5, 4.0]
REDUCTIONS = ["mean", "sum", "none"]
MODES = [("tail_bucket", "log_probabilities"), ("tail_bucket", "probabilities"),
         ("renormalize", "logits"), ("renormalize", "log_probabilities"), ("renormalize", "probabilities")]
DIVERGENCES = [("forward_kl", {}), ("reverse_kl", {}), ("jensen_shannon", {"beta": 0.5}),
               ("jensen_shannon", {"beta": 0.1}), ("skew_kl", {"skew": 0.1}),
               ("skew_reverse_kl", {"skew": 0.1}), ("total_variation", {})]
# Vocabulary sizes and k, cycled through by the cases (k is kept below V; k = V and V = 300 have
# their own cases).
VOCABULARIES = [5, 7, 9, 16, 17, 24, 33, 48, 64, 100, 150]
KS = [1, 2, 3, 4, 7, 10, 16, 20]

rng = np.random.default_rng(20261130)


def num(x):
    """A float literal that reads back as exactly the same double (Python's repr is shortest round-trip)."""
    return repr(float(x))


class Blob:
    """Concatenated little-endian arrays, 8-byte aligned; identical arrays are stored once (as generate.py)."""

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


def draw_logits(n, c, style):
    """Student logits in float64, of one of a few shapes (as generate.py's)."""
    scale = {"narrow": 1.0, "wide": 4.0, "offset": 2.0, "peaked": 8.0}[style]
    x = rng.normal(0.0, scale, size=(n, c))
    if style == "offset":
        x += rng.choice([-60.0, 35.0, 80.0])
    return x


def draw_teacher(s, style):
    """The teacher's full logits: correlated with the student, or independent of it."""
    n, c = s.shape
    if rng.random() < 0.6:
        return 1.3 * s + rng.normal(0.0, 1.5, size=(n, c)) + rng.normal(0.0, 3.0)
    return draw_logits(n, c, style)


def log_softmax_rows(x):
    return F.log_softmax(torch.tensor(x), 1).numpy()


def top_k_teacher(t, T, k, teacher_input, dtype):
    """The k most probable classes of each row of the teacher's softmax(t / T), in a shuffled order,
    and their values: t itself for logits, the log-probabilities log_softmax(t / T) or their exp
    (the soft targets are stored at the temperature one distils at), rounded to dtype."""
    n, c = t.shape
    lp = log_softmax_rows(t / T)
    idx = np.zeros((n, k), dtype=np.int64)
    val = np.zeros((n, k), dtype=np.float64)
    for i in range(n):
        order = np.argsort(-lp[i], kind="stable")[:k]
        order = order[rng.permutation(k)]
        idx[i] = order
        val[i] = {"logits": t[i], "log_probabilities": lp[i], "probabilities": np.exp(lp[i])}[teacher_input][order]
    return idx, val.astype(NP_DTYPE[dtype])


# --------------------------------------------------------------------------------------------------
# Expressions. Every string below is evaluated verbatim; the same string is written to the index.


def ce_expr(eps, how):
    args = ["s", "y"]
    if eps:
        args.append(f"label_smoothing={num(eps)}")
    if how != "mean":
        args.append(f"reduction='{how}'")
    return f"F.cross_entropy({', '.join(args)})"


def divergence_expr(name, prm):
    """Statements defining d, the row divergence over the k + 1 columns of P, Q (logs LP, LQ, -inf
    where the mass is 0). 0 log 0 = 0 is written with torch.where, placed so that autograd never
    multiplies 0 by inf on the student's side (generate.py's masked-class forms); a padding slot and
    an empty tail (k = V) are such 0s on both sides."""
    if name == "forward_kl":
        return ["d = torch.where(P > 0, P*(LP - LQ), 0.).sum(1)"]
    if name == "reverse_kl":
        return ["d = (Q*torch.where(Q > 0, LQ - LP, 0.)).sum(1)"]
    if name == "jensen_shannon":  # TRL's generalized_jsd_loss: m = b p + (1 - b) q
        b = num(prm["beta"])
        return ["live = (P > 0) | (Q > 0)",
                f"LM = torch.logsumexp(torch.stack([torch.where(live, LQ, 0.) + math.log(1-{b}), "
                f"torch.where(live, LP, 0.) + math.log({b})]), 0)",
                f"d = ({b}*torch.where(P > 0, P*(LP - LM), 0.) + (1-{b})*Q*torch.where(Q > 0, LQ - LM, 0.)).sum(1)"]
    if name == "skew_kl":  # DistiLLM: KL(p || a p + (1 - a) q)
        a = num(prm["skew"])
        return [f"LM = torch.log(torch.where(P > 0, {a}*P + (1-{a})*Q, 1.))",
                "d = (P*torch.where(P > 0, LP - LM, 0.)).sum(1)"]
    if name == "skew_reverse_kl":  # KL(q || (1 - a) p + a q)
        a = num(prm["skew"])
        return [f"LM = torch.log(torch.where(Q > 0, (1-{a})*P + {a}*Q, 1.))",
                "d = (Q*torch.where(Q > 0, LQ - LM, 0.)).sum(1)"]
    if name == "total_variation":
        return ["d = 0.5*(P - Q).abs().sum(1)"]
    raise ValueError(name)


def definitions(case):
    T = num(case["temperature"])
    V = case["student"].shape[1]
    mode, teacher_input = case["mode"], case["teacher_input"]
    defs = [f"lq = F.log_softmax(s/{T}, 1)", "q = lq.exp()",
            f"v = ti != {PADDING}", "j = ti.clamp(min=0)",
            # the row's classes as a mask over its V columns (scatter_add: padding adds 0 at column 0)
            "inK = torch.zeros_like(q).scatter_add(1, j, v.to(q.dtype)) > 0",
            "qt = torch.where(inK, 0., q).sum(1, keepdim=True)",
            "Q = torch.cat([torch.where(v, q.gather(1, j), 0.), qt], 1)",
            "LQ = torch.cat([torch.where(v, lq.gather(1, j), -math.inf), qt.log()], 1)"]
    if mode == "tail_bucket":
        pk = "tv.exp()" if teacher_input == "log_probabilities" else "tv"
        defs += [f"pk = torch.where(v, {pk}, 0.)", "mass = pk.sum(1, keepdim=True)",
                 f"scaled = (mass > 1) | (v.sum(1, keepdim=True) == {V})",
                 "pk = torch.where(scaled, pk/mass, pk)", "pt = torch.where(scaled, 0., 1 - mass)"]
    else:
        pk = {"logits": f"torch.where(v, tv/{T}, -math.inf).softmax(1)",
              "log_probabilities": "torch.where(v, tv, -math.inf).softmax(1)",
              "probabilities": "torch.where(v, tv, 0.)/torch.where(v, tv, 0.).sum(1, keepdim=True)"}[teacher_input]
        defs += [f"pk = {pk}", "pt = torch.zeros_like(qt)"]
    defs += ["P = torch.cat([pk, pt], 1)", "LP = P.log()"]
    defs += divergence_expr(case["divergence"], case["params"])
    return "; ".join(defs)


def expressions(case):
    """Total, soft, hard and per-row expressions, reduced as the dense losses' (README.md)."""
    T = num(case["temperature"])
    alpha, red, eps = case["alpha"], case["reduce"], case["label_smoothing"]
    labeled = case["labels"] is not None
    w = ("" if alpha == 1 else f"{num(alpha)}*") + f"{T}*{T}*"
    ce_w = f"(1-{num(alpha)})*"
    filt = case["filter"]
    if red == "none":
        wrap = (lambda e: f"torch.where(k, {e}, 0.)") if filt else (lambda e: f"({e})")
        rows = [f"{w}d"] + ([f"{ce_w}{ce_expr(eps, 'none')}"] if labeled else [])
        soft = f"{wrap(rows[0])}.sum()"
        hard = f"{wrap(rows[1])}.sum()" if labeled else None
        row_expr = wrap(" + ".join(rows))
        return f"{row_expr}.sum()", soft, hard, row_expr
    D = "d[k]" if filt else "d"
    soft = f"{w}{D}.mean()" if red == "mean" else f"{w}{D}.sum()"
    hard = f"{ce_w}{ce_expr(eps, red)}" if labeled else None
    return " + ".join(e for e in (soft, hard) if e), soft, hard, None


def environment(case, dtype=torch.float64):
    env = {"F": F, "torch": torch, "math": math}
    env["s"] = torch.tensor(case["student"].astype(np.float64), dtype=dtype).requires_grad_(True)
    env["ti"] = torch.tensor(case["indices"])
    env["tv"] = torch.tensor(case["values"].astype(np.float64), dtype=dtype)
    n = case["student"].shape[0]
    k = torch.ones(n, dtype=torch.bool)
    if case["labels"] is not None:
        env["y"] = torch.tensor(case["labels"])
        k &= env["y"] != -100
    env["k"] = k
    exec(case["expr_defs"], env)
    return env


# --------------------------------------------------------------------------------------------------
# Tolerance scales (README.md, "Tolerance scales"), over the k + 1 categories


def scales(case, env):
    name, prm = case["divergence"], case["params"]
    T, alpha = case["temperature"], case["alpha"]
    P, Q, LP, LQ = (env[x].detach() for x in ("P", "Q", "LP", "LQ"))
    s = env["s"].detach()
    n, c = s.shape
    row_loss, g = divergence_scale_terms(name, prm, P, Q, LP, LQ)
    # Per column: a teacher class has its category's scale; any other column its share of the
    # tail's, q_j / q_t (its gradient is that share of the tail element's).
    q, inK, v, j = env["q"].detach(), env["inK"], env["v"], env["j"]
    qt = env["qt"].detach()
    col = torch.where(qt > 0, g[:, -1:] * q / torch.where(qt > 0, qt, 1.0), 0.0)
    col = torch.where(inK, 0.0, col)
    col = col.scatter_add(1, j, torch.where(v, g[:, :-1], 0.0))
    row_loss = alpha * T * T * row_loss
    col = alpha * T * col
    if case["labels"] is not None:
        eps = case["label_smoothing"]
        lr = F.log_softmax(s, 1)
        r = lr.exp()
        y = torch.tensor(case["labels"]).clamp(0, c - 1)
        lr_y = lr.gather(1, y[:, None])[:, 0]
        fin = torch.where(torch.isinf(lr), 0.0, lr.abs() + 1)
        row_loss = row_loss + (1 - alpha) * ((1 - eps) * (finite_abs(lr_y) + 1) + eps / c * fin.sum(1))
        target = torch.full((n, c), eps / c, dtype=torch.float64)
        target[torch.arange(n), y] += 1 - eps
        col = col + (1 - alpha) * (r + target)
    row_grad = col.max(1).values
    k = env["k"]
    counted = int(k.sum())
    weight = {"none": 1.0, "sum": 1.0, "mean": 1.0 / max(counted, 1)}[case["reduce"]]
    row_loss = torch.where(k, row_loss, 0.0)
    row_grad = torch.where(k, row_grad, 0.0) * weight
    assert torch.isfinite(row_loss).all() and torch.isfinite(row_grad).all(), case["name"]
    return row_loss.numpy(), float(weight * row_loss.sum()), row_grad.numpy()


f32_worst = {}


def evaluate(case):
    case["expr_defs"] = definitions(case)
    total_e, soft_e, hard_e, rows_e = expressions(case)
    env = environment(case)
    k = env["k"]
    total = eval(total_e, env)
    out = {"expr": total_e, "expr_soft": soft_e, "expr_hard": hard_e, "expr_rows": rows_e,
           "expr_grad": f"torch.autograd.grad({total_e}, s)[0]", "rows_counted": int(k.sum())}
    out["total"] = total.item()
    out["soft"] = eval(soft_e, env).item()
    out["hard"] = eval(hard_e, env).item() if hard_e else 0.0
    close = lambda a, b: abs(a - b) <= 1e-12 * max(1.0, abs(b))
    if rows_e:
        out["rows"] = eval(rows_e, env).detach().numpy()
        assert close(float(out["rows"].sum()), out["total"]), case["name"]
    assert close(out["soft"] + out["hard"], out["total"]), case["name"]
    (grad,) = torch.autograd.grad(total, env["s"])
    out["grad"] = grad.numpy()
    assert math.isfinite(out["total"]) and np.isfinite(out["grad"]).all(), case["name"]
    # Every category with teacher mass has student mass (no case is +inf by construction).
    P, Q = env["P"].detach(), env["Q"].detach()
    assert not ((P > 0) & (Q == 0))[k].any(), case["name"]
    out["row_loss_scale"], out["loss_scale"], out["grad_scale"] = scales(case, env)

    # float32 PyTorch's distance from the reference, in units of the scales.
    env32 = environment(case, torch.float32)
    total32 = eval(total_e, env32)
    (grad32,) = torch.autograd.grad(total32, env32["s"])
    key = (case["mode"], case["divergence"])
    # (inf where float32 rounds a small teacher tail 1 - sum p to 0: reverse KL is then +inf)
    loss_err = abs(total32.item() - out["total"]) / max(out["loss_scale"], 1e-300)
    grad_err = float(np.max(np.abs(grad32.numpy().astype(np.float64) - out["grad"])
                            / np.maximum(out["grad_scale"], 1e-300)[:, None]))
    worst = f32_worst.get(key, (0.0, 0.0))
    f32_worst[key] = (max(worst[0], loss_err), max(worst[1], grad_err))
    return out


# --------------------------------------------------------------------------------------------------
# Cases


cases = []


def add(mode, teacher_input, divergence, dtype, T, labeled, reduce, n, V, k, *, padding=False,
        tail_zero=False, all_padding=False, ignore=False, tag=""):
    """One case. Row 0 may have a teacher tail of 0 (tail_bucket: its k classes hold all the
    teacher's mass), row 1 two padding slots, row 2 an ignored label, the last row only padding."""
    name, params = divergence
    style = rng.choice(["narrow", "wide", "offset", "peaked"])
    s64 = draw_logits(n, V, style)
    student = s64.astype(NP_DTYPE[dtype])
    t = draw_teacher(student.astype(np.float64), style)
    indices, values = top_k_teacher(t, T, k, teacher_input, dtype)
    if tail_zero:
        assert mode == "tail_bucket" and name != "reverse_kl"  # reverse KL is +inf there (p_t = 0 < q_t)
        if teacher_input == "probabilities":
            # Dyadic probabilities summing to exactly 1: the tail is 1 - 1 = 0.
            p = np.array([2.0 ** -(i + 1) for i in range(k - 1)] + [2.0 ** -(k - 1)])
            values[0] = p[rng.permutation(k)].astype(NP_DTYPE[dtype])
        else:
            # The teacher's log-probabilities over its k classes alone, raised by 5e-6: a top-k
            # mass of 1 + ~5e-6, above 1 within mass_tolerance, so scaled to 1 with a tail of 0.
            lp = log_softmax_rows(values[0:1].astype(np.float64))[0]
            values[0] = (lp + 5e-6).astype(NP_DTYPE[dtype])
    padding = padding and k >= 2 and n >= 2
    if padding:
        slots = rng.choice(k, size=min(2, k - 1), replace=False)
        indices[1, slots] = PADDING
        values[1, slots] = 3.0  # never read: as a log-probability or probability it would be refused
    if all_padding:
        assert mode == "tail_bucket"  # renormalize refuses a row without mass
        indices[-1] = PADDING
        values[-1] = 3.0
    labels = None
    if labeled:
        labels = rng.integers(0, V, size=n).astype(np.int64)
        if ignore:
            labels[2] = -100
    live = indices != PADDING
    if teacher_input != "logits":
        mass = np.where(live, values.astype(np.float64) if teacher_input == "probabilities"
                        else np.exp(values.astype(np.float64)), 0.0).sum(1)
        assert (mass <= 1 + 1e-4).all(), mass
    if teacher_input == "probabilities":
        assert (values[live] > 0).all()
    alpha, eps = (0.6, 0.1) if labeled else (1.0, 0.0)
    case = {"mode": mode, "teacher_input": teacher_input, "divergence": name, "params": params, "dtype": dtype,
            "temperature": T, "alpha": alpha, "label_smoothing": eps, "reduce": reduce, "student": student,
            "indices": indices, "values": values, "labels": labels, "filter": bool(ignore)}
    label = name if not params else f"{name}(" + ",".join(f"{a}={num(b)}" for a, b in params.items()) + ")"
    parts = [f"{len(cases):03d}", "top_k_distillation_loss", dtype, f"N={n}", f"V={V}", f"k={k}", f"T={num(T)}",
             mode, f"teacher={teacher_input}", label, reduce]
    parts += [f"alpha={num(alpha)}", f"eps={num(eps)}"] if labeled else ["no-labels"]
    for flag, text in ((tail_zero, "teacher-tail-0(row-0)"), (padding, "padding(row-1)"), (ignore, "ignored(row-2)"),
                       (all_padding, "all-padding(last-row)")):
        if flag:
            parts.append(text)
    parts.append(str(style))
    if tag:
        parts.append(tag)
    case["name"] = " ".join(parts)
    cases.append(case)


# Every (mode, teacher input, divergence) x dtype x {alpha 1 without labels, alpha 0.6 with labels
# and label smoothing 0.1}: each (mode, input, divergence) meets all three temperatures and all
# three reductions over its four cases; V and k cycle through their lists; padding, a teacher tail
# of 0, ignored rows and an all-padding row are spread over the cases.
i = 0
for m, (mode, teacher_input) in enumerate(MODES):
    for divergence in DIVERGENCES:
        if mode == "renormalize" and divergence[0] == "reverse_kl":
            continue  # refused: +inf wherever the student has mass outside the k classes
        for h, dtype in enumerate(["float", "double"]):
            for a, labeled in enumerate([False, True]):
                x = 2 * h + a
                V = VOCABULARIES[i % len(VOCABULARIES)]
                k = min(KS[(3 * i) % len(KS)], V - 1)
                n = 3 + i % 2
                add(mode, teacher_input, divergence, dtype, TEMPERATURES[(m + i // 4 + x) % 3], labeled,
                    REDUCTIONS[(m + i // 4 + 2 * x) % 3], n, V, k, padding=i % 2 == 0,
                    tail_zero=mode == "tail_bucket" and divergence[0] != "reverse_kl" and i % 3 != 1,
                    ignore=labeled and i % 5 < 2,
                    all_padding=mode == "tail_bucket" and n == 4 and i % 3 == 0)
                i += 1

# k = V: every class of the vocabulary is a teacher class, so there is no tail (and tail_bucket
# renormalises the values, docs/api.md); k = 1 over the smallest V; the longest row with the largest k.
add("tail_bucket", "log_probabilities", ("forward_kl", {}), "double", 2.5, True, "sum", 3, 12, 12, tag="k=V")
add("tail_bucket", "probabilities", ("jensen_shannon", {"beta": 0.5}), "float", 1.0, False, "none", 3, 9, 9, tag="k=V")
add("renormalize", "logits", ("skew_reverse_kl", {"skew": 0.1}), "float", 4.0, True, "mean", 3, 12, 12, tag="k=V")
add("renormalize", "log_probabilities", ("total_variation", {}), "double", 1.0, False, "sum", 3, 5, 1, padding=True)
add("tail_bucket", "log_probabilities", ("reverse_kl", {}), "float", 2.5, True, "mean", 3, 5, 1)
add("tail_bucket", "probabilities", ("skew_kl", {"skew": 0.1}), "float", 4.0, True, "none", 2, 300, 20,
    padding=True, tail_zero=True)
add("renormalize", "logits", ("jensen_shannon", {"beta": 0.1}), "double", 2.5, True, "sum", 2, 300, 20, padding=True)


# --------------------------------------------------------------------------------------------------
# Write


def main():
    blob = Blob()
    lines = [
        "# distill top_k_distillation_loss golden reference values, written by tests/golden/generate_top_k.py",
        f"# -- do not edit. torch {torch.__version__}, numpy {np.__version__}. Format: tests/golden/README.md.",
        "",
    ]
    counts = {}
    for case in cases:
        res = evaluate(case)
        key = (case["mode"], case["dtype"])
        counts[key] = counts.get(key, 0) + 1
        n, V = case["student"].shape
        w = lines.append
        w(f"case {case['name']}")
        w("kind top_k_distillation_loss")
        w(f"dtype {case['dtype']}")
        w(f"rows {n}")
        w(f"cols {V}")
        w(f"top_k {case['indices'].shape[1]}")
        w(f"mode {case['mode']}")
        w(f"padding_index {PADDING}")
        w(f"temperature {num(case['temperature'])}")
        w(f"divergence {case['divergence']}")
        for name, value in case["params"].items():
            w(f"{name} {num(value)}")
        w(f"teacher_input {case['teacher_input']}")
        w(f"alpha {num(case['alpha'])}")
        w("scale_by_t_squared 1")
        w(f"label_smoothing {num(case['label_smoothing'])}")
        w("ignore_index -100")
        w(f"reduce {case['reduce']}")
        w("normalizer 1.0")
        w(f"student {blob.add(case['student'])}")
        w(f"teacher_indices {blob.add(case['indices'])}")
        w(f"teacher_values {blob.add(case['values'])}")
        if case["labels"] is not None:
            w(f"labels {blob.add(case['labels'])}")
        w(f"expr_defs {case['expr_defs']}")
        for key in ("expr", "expr_soft", "expr_hard", "expr_rows", "expr_grad"):
            if res[key]:
                w(f"{key} {res[key]}")
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

    with open(INDEX, "w", encoding="ascii") as f:
        f.write("\n".join(lines))
    with open(BLOB, "wb") as f:
        f.write(blob.data)

    print(f"{len(cases)} cases: " + ", ".join(f"{m}/{d} {c}" for (m, d), c in sorted(counts.items())))
    print(f"{INDEX}: {os.path.getsize(INDEX)} bytes; {BLOB}: {os.path.getsize(BLOB)} bytes")
    print("float32 PyTorch's largest error vs the float64 reference, in units of the tolerance scales "
          "(the test allows 1e-6 for the loss and 2e-6 for the gradient in float):")
    for (mode, name), (loss_err, grad_err) in sorted(f32_worst.items()):
        print(f"  {mode:12s} {name:16s} loss {loss_err:.3g}  grad {grad_err:.3g}")


if __name__ == "__main__":
    sys.exit(main())
