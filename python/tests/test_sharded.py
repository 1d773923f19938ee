"""The vocabulary-parallel loss from Python: the record merges in one process, then four processes
of a torch.distributed gloo group on loopback against the one-process kd_loss / divergence_loss.

Expected values: the merge's documented properties (shard_records.hpp: commutative to the bit, the
empty record its identity, merge_gathered_statistics a left fold in rank order), and the one-process
operators, which the other tests pin against PyTorch's composites.
"""

import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

import distill
import sharded_ranks

# tests/sharded.test.cpp's bounds for the sharded loss against the one-process call: a loss within
# 1e-5 (float) and 3e-14 (double) relative to max(1, |loss|), a gradient within 2e-6 and 4e-14 of its
# scale (alpha T + (1 - alpha), or T, times the reduction's weight). They are not bitwise: each shard
# cuts its columns into SIMD blocks of its own, so its partial sums round differently
# (docs/distributed.md), and decoupled KD's shards compute in double where one process computes in
# the input type. Rounding the losses to float32 on both sides adds at most an ulp (6e-8).
LOSS_TOLERANCE = {"float32": 1e-5, "float64": 3e-14}
GRAD_TOLERANCE = {"float32": 2e-6, "float64": 4e-14}


def bits(t):
    return t.view(torch.int64) if t.dtype == torch.float64 else t.view(torch.int32)


def shard_records(first, width, student, teacher, labels):
    """The statistics records of columns [first, first + width) of a batch, as a rank computes them."""
    kd = distill.ShardedLoss.for_kd_loss(first, student.shape[-1], temperature=2.0, alpha=0.5)
    return kd.statistics(student[:, first : first + width], teacher[:, first : first + width], labels)


def test_merge_row_statistics_is_commutative_to_the_bit_with_the_empty_record_as_identity():
    g = torch.Generator().manual_seed(3)
    s, t = 3 * torch.randn(6, 90, generator=g), 3 * torch.randn(6, 90, generator=g)
    y = torch.randint(0, 90, (6,), generator=g)
    a, b, c = shard_records(0, 20, s, t, y), shard_records(20, 45, s, t, y), shard_records(65, 25, s, t, y)
    empty = shard_records(20, 0, s, t, y)
    assert a.shape == (6, distill.STATISTICS_WIDTH) and a.dtype == torch.float64
    assert torch.equal(bits(distill.merge_row_statistics(a, b)), bits(distill.merge_row_statistics(b, a)))
    assert torch.equal(bits(distill.merge_row_statistics(a, empty)), bits(a))
    assert torch.equal(bits(distill.merge_row_statistics(empty, a)), bits(a))
    # merge_gathered_statistics is the left fold in rank order, to the bit.
    folded = distill.merge_row_statistics(distill.merge_row_statistics(a, b), c)
    assert torch.equal(bits(distill.merge_gathered_statistics(torch.stack([a, b, c]))), bits(folded))
    # The combined record covers the whole row (field `columns`, the 10th) and holds each label once.
    assert folded[:, 9].tolist() == [90.0] * 6 and folded[:, 10].tolist() == [1.0] * 6


def test_records_of_the_wrong_type_or_width_are_refused():
    a = torch.zeros(3, distill.STATISTICS_WIDTH, dtype=torch.float64)
    with pytest.raises(TypeError, match="merge_row_statistics: statistics records must be float64"):
        distill.merge_row_statistics(a.float(), a.float())
    with pytest.raises(ValueError, match=r"must be \[\.\.\., 13\]"):
        distill.merge_row_statistics(a[:, :12], a[:, :12])
    with pytest.raises(ValueError, match="one shape"):
        distill.merge_row_statistics(a, a[:2])
    with pytest.raises(ValueError, match=r"merge_gathered_statistics: the records must be \[R, N, 13\]"):
        distill.merge_gathered_statistics(a)  # one rank's [N, 13], not gathered [R, N, 13]
    kd = distill.ShardedLoss.for_kd_loss(0, 10)
    with pytest.raises(ValueError, match="the combined statistics span has 3 records but the logits have 2 rows"):
        kd.loss_and_grad(torch.zeros(2, 10), torch.zeros(2, 10), a, labels=torch.zeros(2, dtype=torch.int64))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_four_gloo_processes_equal_one_process(tmp_path):
    context = mp.start_processes(
        sharded_ranks.run_rank,
        args=(free_port(), str(tmp_path)),
        nprocs=sharded_ranks.RANKS,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 240
    while not context.join(timeout=1):  # raises, with the rank's traceback, where a rank failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the four ranks did not finish within 240 s")
    ranks = [torch.load(tmp_path / f"rank{k}.pt") for k in range(sharded_ranks.RANKS)]

    # Every rank has the same loss, to the bit, in every case.
    for k, rank in enumerate(ranks):
        reference = bits(rank["losses_by_rank"][0])
        for other in range(1, sharded_ranks.RANKS):
            differing = int((bits(rank["losses_by_rank"][other]) != reference).sum())
            assert differing == 0, f"on rank {k}: rank {other}'s losses differ from rank 0's in {differing} entries"

    cases = ranks[0]["cases"]
    assert len(cases) == 2 * 20 * len(sharded_ranks.REDUCTIONS)  # float and double, 20 cases, 4 reductions
    failures = []
    worst = {}
    for key in cases:
        per_rank = [rank["cases"][key] for rank in ranks]
        dtype = key.rsplit("/", 1)[1]
        loss_error = max(r["loss_error"] for r in per_rank)
        grad_error = max(r["grad_error"] for r in per_rank)
        worst[dtype] = tuple(max(w, e) for w, e in zip(worst.get(dtype, (0.0, 0.0)), (loss_error, grad_error)))
        if not all(r["finite"] for r in per_rank):
            failures.append(f"{key}: a non-finite loss or gradient")
        if "/mean/" in key:  # the phases were also called one by one
            # Forward KL follows from the statistics alone (one reduction); every other divergence takes two.
            if any(r["took_sums"] != ("forward_kl" not in key) for r in per_rank):
                failures.append(f"{key}: second reduction {[r['took_sums'] for r in per_rank]}")
            if not all(r["same_as_phases"] for r in per_rank):
                failures.append(f"{key}: the autograd call and the phases called one by one differ")
        if not (loss_error <= LOSS_TOLERANCE[dtype] and grad_error <= GRAD_TOLERANCE[dtype]):
            failures.append(f"{key}: loss error {loss_error:.2e}, gradient error {grad_error:.2e} of its scale")
    print("worst (loss relative error, gradient error / scale):", worst)
    assert not failures, "\n".join(failures)
