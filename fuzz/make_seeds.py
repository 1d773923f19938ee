#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_loss.cpp into fuzz/corpus/ (input layout: that file's header).

Each seed is a small, named starting point: every loss, float and double, every reduction, every
divergence and teacher input, the special values of the contract (docs/design.md), and each class of error.
libFuzzer mutates from these.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

LOSS = {"hinton": 0, "hinton_no_labels": 1, "kl": 2, "ce": 3}
REDUCE = {"none": 0, "sum": 1, "mean": 2, "divide_by": 3}
# Table indices of fuzz_loss.cpp (temperatures, alphas, smoothings, normalizers, scales).
T = {1: 0, 2: 1, 4: 2, 0.5: 3, 2.5: 4, 1e-3: 5, 1e3: 6, 16: 7, 17: 8, 0: 9, -1: 10, "inf": 11, "nan": 12, 1e-30: 13, 1e30: 14, 3: 15}
ALPHA = {0.5: 0, 0: 1, 1: 2, 0.3: 3, 0.9: 4, -0.1: 5, 1.5: 6}
EPS = {0: 0, 0.1: 1, 0.5: 2, 0.99: 3, 1: 4, -0.1: 5}
# The family block (fuzz_loss.cpp): divergence codes, teacher inputs, and the table indices of
# Jensen-Shannon's beta / the skews and of decoupled KD's weights.
DIVERGENCE = {"forward_kl": 0, "reverse_kl": 1, "jensen_shannon": 2, "skew_kl": 3, "skew_reverse_kl": 4,
              "total_variation": 5, "decoupled_kd": 6}
TEACHER = {"logits": 0, "log_probabilities": 1, "probabilities": 2}
UNIT = {0.5: 0, 0: 1, 1: 2, 0.1: 3, 0.9: 4, 0.25: 5, -0.1: 6, 1.5: 7, "nan": 8, "inf": 9, 1e-300: 10, 0.7: 12,
        0.05: 13, 0.99: 14}
WEIGHT = {1: 0, 8: 1, 0: 2, 0.5: 3, 2: 4, -1: 5, "nan": 6, "inf": 7, 1e-300: 8, 1e300: 9, 100: 10, 3: 11}
SPECIAL = {"-inf": 0, "+inf": 1, "nan": 2, "max": 3, "-max": 4, "min": 5, "denorm": 6, "-denorm": 7, "0": 8,
           "1e30": 10, "-1e30": 11, "1e-40": 14, "3": 15}


# The top-k block's header (fuzz_loss.cpp, read_top_k): modes, padding indices and mass tolerances
# by table index.
MODE = {"tail_bucket": 0, "renormalize": 1}
PADDING = {-1: 0, 3: 2, -7: 3}
MASS_TOLERANCE = {1e-4: 0, 0: 1, 1e-2: 2, 0.1: 3, 0.2: 4}


def top_k(k, mode="tail_bucket", padding=-1, int32=False, tolerance=1e-4):
    """The top-k header: a byte, then k (a byte below 40; the large values by their codes)."""
    large = {1024: 250, 1025: 251, 1023: 252, 300: 253, 513: 254}
    code = k if k < 40 else large[k]
    return bytes([MODE[mode] | (PADDING[padding] << 1) | (int32 << 3) | (MASS_TOLERANCE[tolerance] << 4), code])


def family(divergence="forward_kl", teacher="logits", divergence_loss=False, param=None, weights=(1, 8), top_k_block=None):
    """The family block: a byte, then beta / skew or decoupled KD's two weights (table indices), then
    the top-k header where top_k_block is given (top_k_distillation_loss instead of distillation_loss)."""
    b = bytes([DIVERGENCE[divergence] | (TEACHER[teacher] << 3) | (divergence_loss << 5) | ((top_k_block is not None) << 6)])
    if divergence in ("jensen_shannon", "skew_kl", "skew_reverse_kl"):
        value = 0.5 if param is None else param
        b += bytes([UNIT[value]]) if value in UNIT else bytes([16]) + struct.pack("<d", value)
    if divergence == "decoupled_kd":
        b += bytes([WEIGHT[weights[0]], WEIGHT[weights[1]]])
    if top_k_block is not None:
        b += top_k_block
    return b


def seed(loss="hinton", double=False, reduce="mean", check_finite=False, mask=None, no_t2=False, N=4, C=10,
         t=2, alpha=0.5, eps=0, ignore=0, normalizer=0, scale=0, style=0, softmax=False, no_rows=False, rng=1,
         labels=None, edits=(), family_block=None, top_k_edits=None):
    flags = (double << 0) | (LOSS[loss] << 1) | (REDUCE[reduce] << 3) | (check_finite << 5) | ((mask is not None) << 6) | (no_t2 << 7)
    b = bytes([flags, N, C & 0xFF, C >> 8])
    for value, table in ((t, T), (alpha, ALPHA), (eps, EPS)):
        b += bytes([table[value]]) if value in table else bytes([16]) + struct.pack("<d", value)
    b += bytes([ignore | (normalizer << 4) | ((family_block is not None) << 7),
                scale | (style << 3) | (softmax << 6) | (no_rows << 7)])
    b += struct.pack("<I", rng)
    if family_block is not None:
        b += family_block
    if loss in ("hinton", "ce"):
        b += bytes(labels if labels is not None else [(3 * i + 1) % 200 for i in range(N)])
    if mask is not None:
        b += bytes(mask)
    b += bytes([len(edits)])
    for e in edits:
        b += bytes(e)
    if top_k_edits is not None:  # after the dense edits: the top-k teacher is built from the edited teacher
        b += bytes([len(top_k_edits)])
        for e in top_k_edits:
            b += bytes(e)
    return b


def edit(kind, position, *value, teacher=False):
    return [kind | (0x80 if teacher else 0), position & 0xFF, position >> 8, *value]


# Top-k edits (fuzz_loss.cpp, apply_top_k_edit): kind, a slot among the N x k, what the kind reads.
TOP_K_EDIT = {"index": 0, "special_value": 1, "bound_value": 3, "row_padding": 4, "repeat": 5, "mask": 6, "shift": 7}
TOP_K_INDEX = {"padding": 0, "-1": 1, "C": 2, "C-1": 3, "0": 4, "int64_max": 6}


def top_k_edit(kind, slot, *value):
    return [TOP_K_EDIT[kind], slot & 0xFF, slot >> 8, *value]


SEEDS = {
    "hinton_float": seed(),
    "hinton_double_sum_smoothing": seed(double=True, reduce="sum", eps=0.1, t=4),
    "hinton_long_rows": seed(N=2, C=2500, t=2.5, alpha=0.3, eps=0.1, style=4),
    "hinton_no_labels": seed(loss="hinton_no_labels", alpha=1, t=4),
    "kl_none_per_row": seed(loss="kl", reduce="none", N=5, C=33, t=0.5, style=1),
    "kl_equal_rows": seed(loss="kl", N=3, C=17, style=2),
    "ce_divide_by": seed(loss="ce", reduce="divide_by", normalizer=5, eps=0.5),
    "ce_double_mask": seed(loss="ce", double=True, mask=[1, 0, 1, 1]),
    "teacher_masks": seed(style=5, C=40, t=2),
    "student_masks": seed(style=6, C=40, t=2),
    "mixed_masks_edits": seed(C=12, edits=[edit(4, 1, 3), edit(4, 14, 2, teacher=True)]),
    "all_minus_inf_row": seed(C=9, edits=[edit(2, 9)]),
    "all_minus_inf_teacher_row_ignored": seed(C=9, ignore=0, labels=[1, 230, 2, 3], edits=[edit(2, 9, teacher=True)]),
    "nan_logit": seed(C=8, edits=[edit(0, 5, SPECIAL["nan"])]),
    "nan_check_finite": seed(C=8, check_finite=True, edits=[edit(0, 13, SPECIAL["nan"])]),
    "plus_inf_teacher": seed(C=8, edits=[edit(0, 3, SPECIAL["+inf"], teacher=True)]),
    "huge_float": seed(C=6, edits=[edit(0, 0, SPECIAL["max"]), edit(0, 1, SPECIAL["-max"]), edit(0, 2, SPECIAL["1e30"], teacher=True)]),
    "subnormal_rows": seed(C=7, scale=7, double=False),
    "subnormal_double": seed(C=7, scale=7, double=True, edits=[edit(0, 2, SPECIAL["denorm"])]),
    "raw_bits": seed(C=5, edits=[edit(1, 2, 0x01, 0x00, 0x80, 0x7F), edit(1, 7, 0x00, 0x00, 0xC0, 0xFF, teacher=True)]),
    "single_class": seed(C=1, N=6, t=3, alpha=0.3, eps=0.1),
    "empty_batch": seed(N=0, C=10),
    "all_ignored_mean": seed(N=3, C=5, labels=[230, 231, 232]),
    "tiny_temperature": seed(t=1e-3, C=20),
    "huge_temperature": seed(t=1e3, C=20, style=1),
    "temperature_1e30": seed(t=1e30, C=20, double=True),
    "softmax": seed(softmax=True, C=30, edits=[edit(4, 2, 4)]),
    "error_bad_temperature": seed(t=0),
    "error_bad_alpha": seed(alpha=1.5),
    "error_bad_smoothing": seed(eps=1),
    "error_bad_normalizer": seed(reduce="divide_by", normalizer=2),
    "error_no_classes": seed(C=0),
    "error_label_out_of_range": seed(labels=[0, 240, 1, 2]),
    "error_label_negative": seed(labels=[0, 1, 241, 2]),
    "error_none_without_rows": seed(reduce="none", no_rows=True),
    "error_no_labels_alpha": seed(loss="hinton_no_labels", alpha=0.5),
    # The divergence family and the teacher inputs.
    "family_reverse_kl_teacher_masks": seed(C=40, style=5, family_block=family("reverse_kl")),
    "family_reverse_kl_student_masks": seed(C=40, style=6, alpha=1, family_block=family("reverse_kl")),
    "family_jensen_shannon_divergence_loss": seed(loss="kl", reduce="sum", C=33, family_block=family(
        "jensen_shannon", divergence_loss=True, param=0.1)),
    "family_jensen_shannon_ends": seed(loss="kl", double=True, C=17, style=1, family_block=family(
        "jensen_shannon", divergence_loss=True, param=1)),
    "family_skew_kl_log_probabilities": seed(C=50, t=4, style=3, family_block=family(
        "skew_kl", teacher="log_probabilities", param=0.1)),
    "family_skew_reverse_kl_probabilities": seed(double=True, C=20, style=5, family_block=family(
        "skew_reverse_kl", teacher="probabilities", param=0.7)),
    "family_skew_zero": seed(C=30, t=0.5, style=3, family_block=family("skew_reverse_kl", param=0)),
    "family_total_variation_equal_rows": seed(loss="kl", C=24, style=2, family_block=family(
        "total_variation", divergence_loss=True)),
    "family_decoupled_kd": seed(N=6, C=12, t=4, family_block=family("decoupled_kd")),
    "family_decoupled_kd_double_masks": seed(double=True, C=40, style=5, alpha=1, family_block=family(
        "decoupled_kd", weights=(0.5, 2))),
    "family_decoupled_kd_long_rows_probabilities": seed(N=2, C=2500, t=2.5, alpha=0.3, eps=0.1, family_block=family(
        "decoupled_kd", teacher="probabilities")),
    "family_decoupled_kd_zero_weight": seed(C=9, style=6, alpha=1, family_block=family("decoupled_kd", weights=(1, 0))),
    "family_kl_divergence_log_probabilities": seed(loss="kl", C=30, t=3, family_block=family(
        teacher="log_probabilities")),
    "family_probabilities_check_finite": seed(C=8, check_finite=True, family_block=family(
        "jensen_shannon", teacher="probabilities"), edits=[edit(0, 3, SPECIAL["1e30"], teacher=True)]),
    "error_family_bad_beta": seed(family_block=family("jensen_shannon", param=1.5)),
    "error_family_bad_skew": seed(family_block=family("skew_kl", param=-0.1)),
    "error_family_bad_weight": seed(family_block=family("decoupled_kd", weights=(1, -1))),
    "error_family_decoupled_kd_without_labels": seed(loss="hinton_no_labels", alpha=1, family_block=family("decoupled_kd")),
    "error_family_decoupled_kd_divergence_loss": seed(loss="kl", family_block=family("decoupled_kd", divergence_loss=True)),
    "error_family_negative_probability": seed(C=8, check_finite=True, family_block=family(teacher="probabilities"),
                                              edits=[edit(0, 5, SPECIAL["-1e30"], teacher=True)]),
    # top_k_distillation_loss: both modes, the teacher inputs each takes, padding, the edits' errors.
    "top_k_tail_bucket_log_probabilities": seed(C=40, t=2.5, alpha=0.3, eps=0.1, family_block=family(
        teacher="log_probabilities", top_k_block=top_k(8)), top_k_edits=[top_k_edit("index", 9, TOP_K_INDEX["padding"])]),
    "top_k_renormalize_logits_long_rows": seed(N=2, C=2500, t=2, style=3, family_block=family(
        "jensen_shannon", param=0.1, top_k_block=top_k(20, mode="renormalize")), top_k_edits=[]),
    "top_k_probabilities_no_labels_int32": seed(loss="hinton_no_labels", alpha=1, reduce="none", C=17, t=4, family_block=family(
        "skew_reverse_kl", teacher="probabilities", param=0.1, top_k_block=top_k(5, int32=True)), top_k_edits=[
        top_k_edit("mask", 2), top_k_edit("row_padding", 5)]),
    "top_k_all_classes_double": seed(double=True, C=12, reduce="sum", family_block=family(
        "total_variation", teacher="log_probabilities", top_k_block=top_k(12)), top_k_edits=[]),
    "top_k_more_slots_than_classes_padding_3": seed(C=9, family_block=family(
        "reverse_kl", teacher="log_probabilities", top_k_block=top_k(30, padding=3)), top_k_edits=[]),
    "top_k_mass_rounding": seed(C=20, style=1, family_block=family(
        "skew_kl", teacher="probabilities", param=0.1, top_k_block=top_k(6, tolerance=0.01)), top_k_edits=[
        top_k_edit("shift", 0, 0), top_k_edit("shift", 13, 2)]),
    "top_k_student_masks": seed(C=30, style=6, alpha=1, family_block=family(
        teacher="log_probabilities", top_k_block=top_k(10, mode="renormalize")), top_k_edits=[]),
    "error_top_k_index_out_of_range": seed(C=10, family_block=family(
        teacher="log_probabilities", top_k_block=top_k(3)), top_k_edits=[top_k_edit("index", 4, TOP_K_INDEX["C"])]),
    "error_top_k_repeated_index": seed(C=10, family_block=family(
        teacher="probabilities", top_k_block=top_k(4, mode="renormalize")), top_k_edits=[top_k_edit("repeat", 6, 1)]),
    "error_top_k_nan_value": seed(C=10, family_block=family(
        teacher="log_probabilities", top_k_block=top_k(4)), top_k_edits=[top_k_edit("special_value", 1, SPECIAL["nan"])]),
    "error_top_k_renormalize_without_mass": seed(C=10, alpha=1, family_block=family(
        teacher="logits", top_k_block=top_k(2, mode="renormalize")), top_k_edits=[top_k_edit("row_padding", 2)]),
    "error_top_k_tail_bucket_logits": seed(C=10, family_block=family(top_k_block=top_k(4)), top_k_edits=[]),
    "error_top_k_too_many_classes": seed(N=2, C=10, family_block=family(
        teacher="log_probabilities", top_k_block=top_k(1025)), top_k_edits=[]),
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"{len(SEEDS)} seeds in {OUT}")
