#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_loss.cpp into fuzz/corpus/ (input layout: that file's header).

Each seed is a small, named starting point: every loss, float and double, every reduction, the
special values of DESIGN.md section 2, and each class of error. libFuzzer mutates from these.
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
SPECIAL = {"-inf": 0, "+inf": 1, "nan": 2, "max": 3, "-max": 4, "min": 5, "denorm": 6, "-denorm": 7, "0": 8,
           "1e30": 10, "-1e30": 11, "1e-40": 14, "3": 15}


def seed(loss="hinton", double=False, reduce="mean", check_finite=False, mask=None, no_t2=False, N=4, C=10,
         t=2, alpha=0.5, eps=0, ignore=0, normalizer=0, scale=0, style=0, softmax=False, no_rows=False, rng=1,
         labels=None, edits=()):
    flags = (double << 0) | (LOSS[loss] << 1) | (REDUCE[reduce] << 3) | (check_finite << 5) | ((mask is not None) << 6) | (no_t2 << 7)
    b = bytes([flags, N, C & 0xFF, C >> 8])
    for value, table in ((t, T), (alpha, ALPHA), (eps, EPS)):
        b += bytes([table[value]]) if value in table else bytes([16]) + struct.pack("<d", value)
    b += bytes([ignore | (normalizer << 4), scale | (style << 3) | (softmax << 6) | (no_rows << 7)])
    b += struct.pack("<I", rng)
    if loss in ("hinton", "ce"):
        b += bytes(labels if labels is not None else [(3 * i + 1) % 200 for i in range(N)])
    if mask is not None:
        b += bytes(mask)
    b += bytes([len(edits)])
    for e in edits:
        b += bytes(e)
    return b


def edit(kind, position, *value, teacher=False):
    return [kind | (0x80 if teacher else 0), position & 0xFF, position >> 8, *value]


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
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"{len(SEEDS)} seeds in {OUT}")
