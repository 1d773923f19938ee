"""One rank of test_sharded's four-process gloo group (a module of its own, not a test file: the
spawned processes import it by name).

Every rank builds the same batch from the same seed (a stand-in for the models' outputs), keeps its
own columns of it, runs distill.ShardedLoss over torch.distributed, and compares its loss and its
columns of the gradient with the one-process kd_loss / divergence_loss on the whole batch, which it
can compute because it has the whole batch. It writes what it measured to rank<k>.pt for the test.
"""

import datetime
import os

import torch
import torch.distributed as dist

import distill

RANKS = 4
ROWS, VOCABULARY = 10, 203
WIDTHS = (61, 0, 97, 45)  # unequal shards; rank 1 holds no columns
FIRSTS = tuple(sum(WIDTHS[:k]) for k in range(RANKS))  # (0, 61, 61, 158)
MASKED_CLASSES = (3, 60, 61, 130, 190)  # -inf in student and teacher (padding classes), on ranks 0, 2 and 3
MASKED_ROW = 4  # its columns on rank 3, [158, 203), are all -inf: that rank's record of it is the empty record
IGNORED_ROW = 2  # label -100 (kd_loss) / mask False (divergence_loss): takes no part
ROW_WEIGHTS = torch.linspace(0.5, 1.5, ROWS, dtype=torch.float64)  # the incoming gradient under 'none'

# Each divergence with parameters away from its special cases, as tests/sharded.test.cpp takes them.
DIVERGENCES = {
    "forward_kl": {},
    "reverse_kl": {},
    "jensen_shannon": {"beta": 0.3},
    "skew_kl": {"skew": 0.2},
    "skew_reverse_kl": {"skew": 0.3},
    "total_variation": {},
    "decoupled_kd": {"target_weight": 1.5, "non_target_weight": 4.0},
}
REDUCTIONS = ("mean", "sum", "none", "divide_by")
NORMALIZER = 7.0  # for divide_by


def cases():
    """(name, loss, divergence, masked classes?, label smoothing). Label smoothing with -inf classes
    is an infinite cross-entropy (log q = -inf at them, in PyTorch too), so it runs on the batch
    without masked classes."""
    out = []
    for divergence in DIVERGENCES:
        out.append((f"kd_loss/{divergence}/masked", "kd_loss", divergence, True, 0.0))
        out.append((f"kd_loss/{divergence}/smoothed", "kd_loss", divergence, False, 0.1))
        if divergence != "decoupled_kd":  # needs labels: kd_loss only
            out.append((f"divergence_loss/{divergence}/masked", "divergence_loss", divergence, True, 0.0))
    return out


def make_batch(masked):
    """The whole batch, the same on every rank: float64 student and teacher [ROWS, VOCABULARY]
    (a teacher the student half agrees with), labels with one of them ignored, and a row mask."""
    g = torch.Generator().manual_seed(5)
    s = 2.0 * torch.randn(ROWS, VOCABULARY, generator=g, dtype=torch.float64)
    t = 0.6 * s + 1.5 * torch.randn(ROWS, VOCABULARY, generator=g, dtype=torch.float64)
    allowed = torch.tensor([c for c in range(VOCABULARY) if c not in MASKED_CLASSES])
    y = allowed[torch.randint(0, len(allowed), (ROWS,), generator=g)]
    y[0], y[1], y[3], y[MASKED_ROW] = 0, VOCABULARY - 1, 100, 20  # labels at both ends, and on every shard
    y[IGNORED_ROW] = -100
    if masked:
        for c in MASKED_CLASSES:
            s[:, c] = t[:, c] = float("-inf")
        s[MASKED_ROW, FIRSTS[3] :] = t[MASKED_ROW, FIRSTS[3] :] = float("-inf")
    mask = torch.ones(ROWS, dtype=torch.bool)
    mask[IGNORED_ROW] = False
    return s, t, y, mask


def options_of(loss, divergence, label_smoothing, reduction):
    o = dict(DIVERGENCES[divergence], divergence=divergence, reduction=reduction)
    if reduction == "divide_by":
        o["normalizer"] = NORMALIZER
    if loss == "kd_loss":
        o.update(temperature=2.0, alpha=0.6, label_smoothing=label_smoothing)
    else:
        o.update(temperature=0.7)
    return o


def gradient_scale(loss, reduction, rows_counted):
    """The gradient's size: (alpha T + (1 - alpha)) for kd_loss, T for divergence_loss, times the
    reduction's weight (the scale tests/sharded.test.cpp measures its tolerance against)."""
    per_row = 0.6 * 2.0 + 0.4 if loss == "kd_loss" else 0.7
    weight = {"mean": 1.0 / rows_counted, "sum": 1.0, "divide_by": 1.0 / NORMALIZER, "none": float(ROW_WEIGHTS.max())}
    return per_row * weight[reduction]


def backward(loss):
    """loss.backward(), or under 'none' the backward of a weighted sum of the rows' losses."""
    if loss.dim() == 1:
        (loss * ROW_WEIGHTS.to(loss.dtype)).sum().backward()
    else:
        loss.backward()


def run_case(rank, dtype, name, loss_kind, divergence, masked, label_smoothing, reduction):
    s, t, y, mask = make_batch(masked)
    s, t = s.to(dtype), t.to(dtype)
    options = options_of(loss_kind, divergence, label_smoothing, reduction)
    first, width = FIRSTS[rank], WIDTHS[rank]
    my_student = s[:, first : first + width].clone().requires_grad_(True)
    my_teacher = t[:, first : first + width]
    if loss_kind == "kd_loss":
        sharded = distill.ShardedLoss.for_kd_loss(first, VOCABULARY, **options)
        inputs = {"labels": y}
    else:
        sharded = distill.ShardedLoss.for_divergence_loss(first, VOCABULARY, **options)
        inputs = {"mask": mask}

    # The whole loss over the four processes, through autograd.
    loss = sharded(my_student, my_teacher, **inputs)
    backward(loss)

    # The same phases called one by one, under one reduction (each collective costs milliseconds with
    # four processes on two cores): the same functions of the same records, so the same bits.
    took_sums = same_as_phases = None
    if reduction == "mean":
        stats = distill.all_reduce_statistics(sharded.statistics(my_student.detach(), my_teacher, **inputs))
        took_sums = sharded.needs_sums(stats, dtype)
        sums = None
        if took_sums:
            sums = distill.all_reduce_sums(sharded.sums(my_student.detach(), my_teacher, stats, **inputs))
        phase_loss, phase_grad = sharded.loss_and_grad(my_student.detach(), my_teacher, stats, sums, **inputs)
        same_as_phases = torch.equal(phase_loss, loss.detach()) and torch.equal(phase_grad, my_student.grad)

    # One process, the whole batch.
    whole = s.clone().requires_grad_(True)
    if loss_kind == "kd_loss":
        expected = distill.kd_loss(whole, t, y, **options)
        rows_counted = int((y != -100).sum())
    else:
        expected = distill.divergence_loss(whole, t, mask=mask, **options)
        rows_counted = int(mask.sum())
    backward(expected)
    expected_grad = whole.grad[:, first : first + width]

    got, want = loss.detach().double(), expected.detach().double()
    grad_difference = (my_student.grad.double() - expected_grad.double()).abs()  # rank 1's is empty
    return {
        "loss": got.reshape(-1),  # for the bitwise comparison across ranks
        "loss_error": float(((got - want).abs() / want.abs().clamp(min=1.0)).max()),
        "grad_error": (float(grad_difference.max()) if grad_difference.numel() else 0.0)
        / gradient_scale(loss_kind, reduction, rows_counted),
        "finite": bool(torch.isfinite(got).all() and torch.isfinite(my_student.grad).all()),
        "took_sums": took_sums,
        "same_as_phases": same_as_phases,
    }


def run_rank(rank, port, out_dir):
    """torch.multiprocessing's entry point: rank `rank` of RANKS, gloo over loopback."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only, whatever the host name resolves to
    torch.set_num_threads(1)  # four processes on a couple of cores
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=RANKS,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        results = {}
        for dtype in (torch.float32, torch.float64):
            for name, loss_kind, divergence, masked, label_smoothing in cases():
                for reduction in REDUCTIONS:
                    key = f"{name}/{reduction}/{str(dtype).removeprefix('torch.')}"
                    results[key] = run_case(rank, dtype, name, loss_kind, divergence, masked, label_smoothing,
                                            reduction)
        # Every rank's losses, gathered: the test compares their bits.
        mine = torch.cat([r["loss"] for r in results.values()])
        every = [torch.empty_like(mine) for _ in range(RANKS)]
        dist.all_gather(every, mine)
        for r in results.values():
            del r["loss"]
        torch.save({"cases": results, "losses_by_rank": every}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
