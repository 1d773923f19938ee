"""distill's fused knowledge-distillation losses as PyTorch operators with autograd.

    import distill
    loss = distill.kd_loss(student_logits, teacher_logits, labels, temperature=4.0, alpha=0.5)
    loss.backward()

Every loss runs distill's C++ kernel once in forward (loss and gradient together) and hands the kept
gradient back in backward. Logits are [..., V] float32 or float64 tensors on the CPU; labels int64
with one entry per row (the logits' leading shape, or flat). The operators are also reachable as
torch.ops.distill.kd_loss, divergence_loss, cross_entropy, softmax and log_softmax.

The vocabulary-parallel loss (each process holds some columns of every row) is ShardedLoss, with
all_reduce_statistics and all_reduce_sums over torch.distributed; docs/distributed.md has the guide.

On first import the C++ extension is compiled with torch.utils.cpp_extension (about a minute) into
build/python/ at the top of the repository (DISTILL_TORCH_BUILD_DIR overrides it) and reused after.
docs/python.md has the guide, docs/coming-from-pytorch.md maps PyTorch, torchdistill, TRL and Liger
options onto these.
"""

import os
from pathlib import Path

import torch

__all__ = [
    "kd_loss",
    "top_k_kd_loss",
    "divergence_loss",
    "cross_entropy",
    "softmax",
    "log_softmax",
    "ShardedLoss",
    "merge_row_statistics",
    "merge_gathered_statistics",
    "all_reduce_statistics",
    "all_reduce_sums",
    "STATISTICS_WIDTH",
    "SUMS_WIDTH",
]

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[1]

DIVERGENCES = (
    "forward_kl",
    "reverse_kl",
    "jensen_shannon",
    "skew_kl",
    "skew_reverse_kl",
    "total_variation",
    "decoupled_kd",
)


def _load_extension():
    from torch.utils import cpp_extension

    build_dir = Path(os.environ.get("DISTILL_TORCH_BUILD_DIR", _REPO / "build" / "python"))
    build_dir.mkdir(parents=True, exist_ok=True)
    include_dirs = [os.environ.get("DISTILL_INCLUDE_DIR", str(_REPO / "include"))]
    include_dirs += [d for d in ("/usr/include/eigen3",) if Path(d).is_dir()]
    cpp_extension.load(
        name="distill_torch_ops",
        sources=[str(_HERE / "_ops.cpp")],
        # -fopenmp: at::parallel_for, the operators' executor, is an inline template that runs on
        # one thread in a unit compiled without OpenMP (Debian's libtorch uses the OpenMP backend).
        extra_cflags=["-O2", "-march=native", "-std=c++20", "-DNDEBUG", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        extra_include_paths=include_dirs,
        build_directory=str(build_dir),
        is_python_module=False,  # the operators register themselves with the dispatcher
        verbose=bool(os.environ.get("DISTILL_VERBOSE_BUILD")),
    )


_load_extension()
_ops = torch.ops.distill


def _reduction_args(name, reduction, normalizer):
    if reduction == "divide_by":
        if normalizer is None:
            raise ValueError(f"{name}: reduction='divide_by' needs normalizer=")
        return reduction, float(normalizer)
    if normalizer is not None:
        raise ValueError(f"{name}: normalizer= applies to reduction='divide_by' only, got reduction={reduction!r}")
    return reduction, 1.0


def _divergence_args(name, divergence, beta, skew, target_weight=None, non_target_weight=None):
    """The parameters of the chosen divergence; one given for another divergence is an error (it
    would be silently ignored: beta means other things in torchdistill, TRL and Liger)."""
    owners = {
        "beta": ("jensen_shannon",),
        "skew": ("skew_kl", "skew_reverse_kl"),
        "target_weight": ("decoupled_kd",),
        "non_target_weight": ("decoupled_kd",),
    }
    given = {"beta": beta, "skew": skew, "target_weight": target_weight, "non_target_weight": non_target_weight}
    for key, value in given.items():
        if value is not None and divergence not in owners[key]:
            raise ValueError(
                f"{name}: {key}= applies to divergence={' or '.join(map(repr, owners[key]))} only, "
                f"got divergence={divergence!r}"
            )
    return (
        0.5 if beta is None else float(beta),
        0.1 if skew is None else float(skew),
        1.0 if target_weight is None else float(target_weight),
        8.0 if non_target_weight is None else float(non_target_weight),
    )


def _result(parts, return_parts):
    return tuple(parts) if return_parts else parts[0]


def kd_loss(
    student,
    teacher,
    labels,
    temperature=4.0,
    alpha=0.5,
    divergence="forward_kl",
    beta=None,
    skew=None,
    target_weight=None,
    non_target_weight=None,
    reduction="mean",
    normalizer=None,
    ignore_index=-100,
    label_smoothing=0.0,
    teacher_input="logits",
    scale_by_t_squared=True,
    mask=None,
    check_finite=False,
    return_parts=False,
):
    """alpha * T^2 * D(softmax(teacher / T), softmax(student / T)) + (1 - alpha) * CE(student, labels).

    alpha weights the soft (teacher) term, as in Hinton et al.; torchdistill's alpha weights the hard
    term. D is `divergence` (forward_kl, reverse_kl, jensen_shannon with `beta`, skew_kl and
    skew_reverse_kl with `skew`, total_variation, decoupled_kd with `target_weight` and
    `non_target_weight`). Rows whose label is `ignore_index`, or whose `mask` entry is False, take
    no part in either term. labels=None is pure distillation (alpha must be 1).

    reduction: 'mean' (sum / rows that count: PyTorch's 'batchmean'), 'sum', 'none' (one loss per
    row, shape [N]), or 'divide_by' with `normalizer`. teacher_input: 'logits' (softened by T),
    'log_probabilities' or 'probabilities' (used as given). Returns the loss, or (loss, soft, hard)
    with return_parts=True (soft and hard are detached numbers for logging).
    """
    beta, skew, target_weight, non_target_weight = _divergence_args(
        "kd_loss", divergence, beta, skew, target_weight, non_target_weight
    )
    reduction, normalizer = _reduction_args("kd_loss", reduction, normalizer)
    parts = _ops.kd_loss(
        student,
        teacher,
        labels,
        mask,
        float(temperature),
        float(alpha),
        divergence,
        beta,
        skew,
        target_weight,
        non_target_weight,
        reduction,
        normalizer,
        int(ignore_index),
        float(label_smoothing),
        teacher_input,
        bool(scale_by_t_squared),
        bool(check_finite),
    )
    return _result(parts, return_parts)


def top_k_kd_loss(
    student,
    indices,
    values,
    labels=None,
    temperature=1.0,
    alpha=1.0,
    mode="tail_bucket",
    divergence="forward_kl",
    beta=None,
    skew=None,
    reduction="mean",
    normalizer=None,
    ignore_index=-100,
    label_smoothing=0.0,
    teacher_input="log_probabilities",
    padding_index=-1,
    mass_tolerance=1e-4,
    scale_by_t_squared=True,
    mask=None,
    check_finite=False,
    return_parts=False,
):
    """kd_loss against a teacher kept as its top k classes per row.

    indices (int64 or int32) and values (the student's dtype) are [..., k], with the student's leading
    shape; an index equal to padding_index is no class (a row with fewer than k). mode='tail_bucket'
    (values: the teacher's log-probabilities or probabilities over the whole vocabulary) compares the
    two distributions on the k classes plus one tail category holding the rest of each one's mass;
    mode='renormalize' renormalises the teacher over its k classes (the tail's teacher mass is 0).
    Log-probabilities and probabilities are the teacher's soft targets as given (T applies to the
    student and to logits). Every divergence of kd_loss but decoupled_kd; reverse_kl needs tail_bucket.
    labels=None is pure distillation (alpha must be 1). The gradient covers the student's whole row.
    """
    beta, skew, _, _ = _divergence_args("top_k_kd_loss", divergence, beta, skew)
    reduction, normalizer = _reduction_args("top_k_kd_loss", reduction, normalizer)
    parts = _ops.top_k_kd_loss(
        student,
        indices,
        values,
        labels,
        mask,
        float(temperature),
        float(alpha),
        divergence,
        beta,
        skew,
        reduction,
        normalizer,
        int(ignore_index),
        float(label_smoothing),
        teacher_input,
        bool(scale_by_t_squared),
        bool(check_finite),
        mode,
        int(padding_index),
        float(mass_tolerance),
    )
    return _result(parts, return_parts)


def divergence_loss(
    student,
    teacher,
    temperature=1.0,
    divergence="forward_kl",
    beta=None,
    skew=None,
    reduction="mean",
    normalizer=None,
    teacher_input="logits",
    scale_by_t_squared=True,
    mask=None,
    check_finite=False,
    return_parts=False,
):
    """T^2 * D(softmax(teacher / T), softmax(student / T)) per row, reduced; no labels.

    Every divergence of kd_loss but decoupled_kd (which needs labels). mask: bool or uint8, one entry
    per row, False = the row does not count (e.g. labels != -100 for TRL's masking). With
    scale_by_t_squared=False the T^2 factor is left out (TRL and Liger do not apply it).
    """
    beta, skew, _, _ = _divergence_args("divergence_loss", divergence, beta, skew)
    reduction, normalizer = _reduction_args("divergence_loss", reduction, normalizer)
    parts = _ops.divergence_loss(
        student,
        teacher,
        mask,
        float(temperature),
        divergence,
        beta,
        skew,
        reduction,
        normalizer,
        teacher_input,
        bool(scale_by_t_squared),
        bool(check_finite),
    )
    return _result(parts, return_parts)


def cross_entropy(
    student,
    labels,
    reduction="mean",
    normalizer=None,
    ignore_index=-100,
    label_smoothing=0.0,
    mask=None,
    check_finite=False,
):
    """F.cross_entropy(student, labels, ignore_index=, label_smoothing=) over [..., V] logits (classes
    last), with 'mean' over the rows that count (0, not NaN, when none does)."""
    reduction, normalizer = _reduction_args("cross_entropy", reduction, normalizer)
    parts = _ops.cross_entropy(
        student, labels, mask, reduction, normalizer, int(ignore_index), float(label_smoothing), bool(check_finite)
    )
    return parts[0]


def softmax(x, temperature=1.0):
    """softmax(x / temperature) over the last dimension, differentiable."""
    return _ops.softmax(x, float(temperature))


def log_softmax(x, temperature=1.0):
    """log_softmax(x / temperature) over the last dimension, differentiable."""
    return _ops.log_softmax(x, float(temperature))


# ---- the vocabulary over processes ----------------------------------------------------------------

STATISTICS_WIDTH = 13  # doubles in a row's statistics record (distill::row_statistics)
SUMS_WIDTH = 4  # doubles in a row's sums record (distill::row_sums)


def merge_row_statistics(a, b):
    """The library's merge of two statistics records, row by row: a and b float64 [..., 13] of one
    shape. Exact in exact arithmetic, commutative to the bit, associative up to rounding (so a
    reduction must fix its bracketing to give the same bits run after run)."""
    return _ops.merge_row_statistics(a, b)


def merge_gathered_statistics(gathered):
    """Every rank's records, float64 [R, N, 13] (rank-major: rank 0's block first) -> [N, 13], each
    row's R records folded left in rank order with merge_row_statistics."""
    return _ops.merge_gathered_statistics(gathered)


def _gather(tensor, group):
    import torch.distributed as dist

    tensor = tensor.contiguous()
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, tensor, group=group)  # parts[k]: rank k's tensor (its rank in `group`)
    return parts


def all_reduce_statistics(records, group=None):
    """The statistics records of every rank in `group` (torch.distributed), merged: float64 [N, 13]
    in, the combined [N, 13] out, the same bits on every rank.

    torch.distributed has no user-defined reduction, so this gathers every rank's records
    (all_gather: copies, no arithmetic, so every rank receives the same bits of every record) and
    folds them in rank order (merge_gathered_statistics): the same function of the same inputs in the
    same order on every rank gives the same bits, whatever algorithm the gather used. Each rank
    receives R records a row (104 R bytes), still far less than a row of logits."""
    return merge_gathered_statistics(torch.stack(_gather(records, group)))


def all_reduce_sums(sums, group=None):
    """The sums records of every rank in `group`, added: float64 [N, 4] in and out, the same bits on
    every rank. Gathered and added in rank order rather than by all_reduce(SUM), whose order of
    addition is the backend's (gloo's and NCCL's depend on the algorithm, and a rank may add in
    another order than its peers); elementwise additions of the same values in the same order are
    the same bits everywhere."""
    parts = _gather(sums, group)
    total = parts[0].clone()
    for part in parts[1:]:
        total += part
    return total


class ShardedLoss:
    """kd_loss or divergence_loss over a vocabulary split across processes: this process holds the
    columns [first_column, first_column + Vr) of every row of the student's and teacher's logits
    (Vr = their last dimension; 0 is allowed), the labels index the whole vocabulary of `vocabulary`
    classes, and labels, mask and options are the same on every rank. Built by for_kd_loss or
    for_divergence_loss, with the options of kd_loss and divergence_loss.

        loss = distill.ShardedLoss.for_kd_loss(first_column=c0, vocabulary=V, temperature=2.0, alpha=0.5)(
            student_shard, teacher_shard, labels)      # over torch.distributed's default group
        loss.backward()                                # student_shard.grad: this rank's columns

    Calling it runs the three phases with all_reduce_statistics and all_reduce_sums and returns the
    whole loss, the same bits on every rank, differentiable in this rank's student columns (the
    gradient is computed in forward, as kd_loss's is). Every rank must call backward on it (the
    loss is replicated, not a share: do not add it over ranks). statistics, needs_sums, sums and
    loss_and_grad are the phases themselves, for other collectives: records are float64 tensors.
    """

    def __init__(self, first_column, vocabulary, labelled, options):
        # options: the operators' arguments after first_column, vocabulary and labelled (temperature,
        # alpha, divergence, beta, skew, target_weight, non_target_weight, reduction, normalizer,
        # ignore_index, label_smoothing, teacher_input, scale_by_t_squared, check_finite).
        self.first_column = int(first_column)
        self.vocabulary = int(vocabulary)
        self.labelled = bool(labelled)
        self._arguments = (self.first_column, self.vocabulary, self.labelled) + tuple(options)

    @classmethod
    def for_kd_loss(
        cls,
        first_column,
        vocabulary,
        temperature=4.0,
        alpha=0.5,
        divergence="forward_kl",
        beta=None,
        skew=None,
        target_weight=None,
        non_target_weight=None,
        reduction="mean",
        normalizer=None,
        ignore_index=-100,
        label_smoothing=0.0,
        teacher_input="logits",
        scale_by_t_squared=True,
        check_finite=False,
    ):
        """kd_loss's loss (alpha T^2 D + (1 - alpha) CE, every divergence) over the shards."""
        beta, skew, target_weight, non_target_weight = _divergence_args(
            "ShardedLoss", divergence, beta, skew, target_weight, non_target_weight
        )
        reduction, normalizer = _reduction_args("ShardedLoss", reduction, normalizer)
        options = (float(temperature), float(alpha), divergence, beta, skew, target_weight, non_target_weight,
                   reduction, normalizer, int(ignore_index), float(label_smoothing), teacher_input,
                   bool(scale_by_t_squared), bool(check_finite))
        return cls(first_column, vocabulary, True, options)

    @classmethod
    def for_divergence_loss(
        cls,
        first_column,
        vocabulary,
        temperature=1.0,
        divergence="forward_kl",
        beta=None,
        skew=None,
        reduction="mean",
        normalizer=None,
        teacher_input="logits",
        scale_by_t_squared=True,
        check_finite=False,
    ):
        """divergence_loss's loss (T^2 D, no labels; every divergence but decoupled_kd) over the shards."""
        beta, skew, target_weight, non_target_weight = _divergence_args("ShardedLoss", divergence, beta, skew)
        reduction, normalizer = _reduction_args("ShardedLoss", reduction, normalizer)
        options = (float(temperature), 1.0, divergence, beta, skew, target_weight, non_target_weight, reduction,
                   normalizer, -100, 0.0, teacher_input, bool(scale_by_t_squared), bool(check_finite))
        return cls(first_column, vocabulary, False, options)

    # ---- the phases: records are float64 [N, 13] (statistics) and [N, 4] (sums) ----

    def statistics(self, student, teacher, labels=None, mask=None):
        """1. This rank's columns -> one statistics record per row, to be merged across ranks
        (all_reduce_statistics, or any reduction by merge_row_statistics)."""
        return _ops.sharded_statistics(student, teacher, labels, mask, *self._arguments)

    def needs_sums(self, combined, dtype):
        """Whether the combined records call for phase 2 (`dtype`: the logits'). It reads the records
        and the options only, so every rank holding the same records takes the same branch."""
        return _ops.sharded_needs_sums(combined, dtype, *self._arguments)

    def sums(self, student, teacher, combined, labels=None, mask=None):
        """2. This rank's sums against the combined statistics, to be added across ranks
        (all_reduce_sums, or any sum)."""
        return _ops.sharded_sums(student, teacher, labels, mask, combined, *self._arguments)

    def loss_and_grad(self, student, teacher, combined, combined_sums=None, labels=None, mask=None,
                      return_parts=False):
        """3. (loss, grad): the whole loss (student's dtype; [N] under reduction 'none'), the same
        bits on every rank, and this rank's columns of dL/dstudent (for 'none': of each row's own
        loss). Not differentiable: call the object for autograd. With return_parts=True,
        (loss, soft, hard, grad). combined_sums may be None when needs_sums was False."""
        loss, soft, hard, grad = _ops.sharded_loss_and_grad(
            student, teacher, labels, mask, combined, combined_sums, True, *self._arguments
        )
        return (loss, soft, hard, grad) if return_parts else (loss, grad)

    def loss(self, student, teacher, combined, combined_sums=None, labels=None, mask=None, return_parts=False):
        """3. without the gradient: the loss alone (or (loss, soft, hard))."""
        loss, soft, hard, _ = _ops.sharded_loss_and_grad(
            student, teacher, labels, mask, combined, combined_sums, False, *self._arguments
        )
        return (loss, soft, hard) if return_parts else loss

    # ---- the whole loss over torch.distributed, with autograd ----

    def __call__(self, student, teacher, labels=None, mask=None, group=None, return_parts=False):
        """The three phases with all_reduce_statistics and all_reduce_sums over `group` (default: the
        whole world); every rank of the group must call it, with the same labels, mask and options.
        Returns the loss (or (loss, soft, hard)), differentiable in `student` (this rank's columns)."""
        if torch.is_grad_enabled() and student.requires_grad:
            loss, soft, hard = _ShardedFunction.apply(student, teacher, labels, mask, self, group)
        else:
            loss, soft, hard, _ = self._run(student, teacher, labels, mask, group, with_grad=False)
        return (loss, soft, hard) if return_parts else loss

    def _run(self, student, teacher, labels, mask, group, with_grad):
        stats = all_reduce_statistics(self.statistics(student, teacher, labels, mask), group)
        sums = None
        if self.needs_sums(stats, student.dtype):  # the same answer on every rank: the collectives match
            sums = all_reduce_sums(self.sums(student, teacher, stats, labels, mask), group)
        if with_grad:
            return self.loss_and_grad(student, teacher, stats, sums, labels, mask, return_parts=True)
        return self.loss(student, teacher, stats, sums, labels, mask, return_parts=True) + (None,)


class _ShardedFunction(torch.autograd.Function):
    """Forward computes the loss and this rank's gradient columns together (one sweep each, as the
    one-process losses do); backward hands the kept gradient back, scaled by the incoming one."""

    @staticmethod
    def forward(ctx, student, teacher, labels, mask, sharded, group):
        loss, soft, hard, grad = sharded._run(student, teacher, labels, mask, group, with_grad=True)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(soft, hard)
        return loss, soft, hard

    @staticmethod
    def backward(ctx, incoming, _soft, _hard):
        (grad,) = ctx.saved_tensors
        if incoming.dim() == 0:
            scaled = grad if incoming.item() == 1.0 else grad * incoming
        else:  # reduction 'none': row i's gradient times the incoming gradient's entry i
            scaled = grad * incoming.reshape(grad.shape[:-1] + (1,))
        return scaled, None, None, None, None, None
