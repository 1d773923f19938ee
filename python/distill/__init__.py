"""distill's fused knowledge-distillation losses as PyTorch operators with autograd.

    import distill
    loss = distill.kd_loss(student_logits, teacher_logits, labels, temperature=4.0, alpha=0.5)
    loss.backward()

Every loss runs distill's C++ kernel once in forward (loss and gradient together) and hands the kept
gradient back in backward. Logits are [..., V] float32 or float64 tensors on the CPU; labels int64
with one entry per row (the logits' leading shape, or flat). The operators are also reachable as
torch.ops.distill.kd_loss, divergence_loss, cross_entropy, softmax and log_softmax.

On first import the C++ extension is compiled with torch.utils.cpp_extension (about a minute) into
build/python/ at the top of the repository (DISTILL_TORCH_BUILD_DIR overrides it) and reused after.
docs/python.md has the guide, docs/coming-from-pytorch.md maps PyTorch, torchdistill, TRL and Liger
options onto these.
"""

import os
from pathlib import Path

import torch

__all__ = ["kd_loss", "divergence_loss", "cross_entropy", "softmax", "log_softmax"]

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
