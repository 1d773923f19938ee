"""How the operators behave inside autograd: incoming gradients, repeated backward, no_grad, strided
inputs, thread counts, the raw operators."""

import torch

import distill
from helpers import make_inputs


def grad_of(fn, s):
    x = s.clone().requires_grad_(True)
    fn(x)
    return x.grad


def test_scalar_incoming_gradient_scales_the_gradient():
    s, t, y = make_inputs(seed=30)
    once = grad_of(lambda x: distill.kd_loss(x, t, y).backward(), s)
    thrice = grad_of(lambda x: (3.0 * distill.kd_loss(x, t, y)).backward(), s)
    torch.testing.assert_close(thrice, 3.0 * once, rtol=1e-15, atol=0)


def test_backward_twice_accumulates():
    # The first backward hands over the kept gradient; it must not be modified by the accumulation.
    s, t, y = make_inputs(seed=31)
    once = grad_of(lambda x: distill.kd_loss(x, t, y).backward(), s)

    def twice(x):
        loss = distill.kd_loss(x, t, y)
        loss.backward(retain_graph=True)
        loss.backward()

    torch.testing.assert_close(grad_of(twice, s), 2.0 * once, rtol=1e-15, atol=0)


def test_per_row_losses_take_a_per_row_incoming_gradient():
    s, t, y = make_inputs(shape=(2, 3, 7), seed=32)
    per_row = distill.kd_loss(s, t, y, reduction="none")
    assert per_row.shape == (6,)
    assert per_row[1].item() == 0.0  # the ignored row
    summed = distill.kd_loss(s, t, y, reduction="sum")
    torch.testing.assert_close(per_row.sum(), summed, rtol=1e-14, atol=0)
    w = torch.zeros(6, dtype=torch.float64)
    w[4] = 2.0
    g = grad_of(lambda x: (distill.kd_loss(x, t, y, reduction="none") * w).sum().backward(), s)
    g_all = grad_of(lambda x: distill.kd_loss(x, t, y, reduction="none").sum().backward(), s)
    assert torch.count_nonzero(g.reshape(6, 7)[[0, 1, 2, 3, 5]]) == 0
    torch.testing.assert_close(g.reshape(6, 7)[4], 2.0 * g_all.reshape(6, 7)[4], rtol=1e-15, atol=0)


def test_without_gradient_no_graph_and_the_same_loss():
    s, t, y = make_inputs(seed=33)
    x = s.clone().requires_grad_(True)
    with_graph = distill.kd_loss(x, t, y)
    with torch.no_grad():
        without = distill.kd_loss(x, t, y)
    assert with_graph.grad_fn is not None and without.grad_fn is None
    assert distill.kd_loss(s, t, y).grad_fn is None
    assert torch.equal(with_graph.detach(), without)  # loss() and loss_and_grad() give the same bits


def test_soft_and_hard_parts_are_detached_and_add_up():
    s, t, y = make_inputs(seed=34)
    loss, soft, hard = distill.kd_loss(s.clone().requires_grad_(True), t, y, return_parts=True)
    assert loss.requires_grad and not soft.requires_grad and not hard.requires_grad
    torch.testing.assert_close(loss.detach(), soft + hard, rtol=1e-14, atol=0)


def test_the_teacher_gets_no_gradient():
    s, t, y = make_inputs(seed=35)
    x, teacher = s.clone().requires_grad_(True), t.clone().requires_grad_(True)
    distill.kd_loss(x, teacher, y).backward()
    assert x.grad is not None and teacher.grad is None


def test_strided_inputs_give_the_contiguous_results():
    s, t, y = make_inputs(shape=(6, 10), seed=36)
    expected = distill.kd_loss(s, t, y, reduction="none")
    expected_grad = grad_of(lambda v: distill.kd_loss(v, t, y).backward(), s)

    # A slice of the vocabulary: rows 16 apart, read in place; the gradient flows back into the slice.
    wide = torch.zeros(6, 16, dtype=torch.float64)
    wide[:, :10] = s
    wide.requires_grad_(True)
    sliced = wide[:, :10]
    assert sliced.stride() == (16, 1)
    assert torch.equal(distill.kd_loss(sliced, t, y, reduction="none"), expected)
    distill.kd_loss(sliced, t, y).backward()
    assert torch.equal(wide.grad[:, :10], expected_grad) and torch.count_nonzero(wide.grad[:, 10:]) == 0

    # Classes not contiguous (a transposed layout): copied first, same results.
    transposed = s.t().contiguous().t().requires_grad_(True)
    assert transposed.stride() == (1, 6)
    assert torch.equal(distill.kd_loss(transposed, t.t().contiguous().t(), y, reduction="none"), expected)
    distill.kd_loss(transposed, t, y).backward()
    assert torch.equal(transposed.grad, expected_grad)


def test_leading_dimensions_flatten_into_rows():
    s, t, y = make_inputs(shape=(2, 3, 5), seed=37)
    flat = distill.kd_loss(s.reshape(6, 5), t.reshape(6, 5), y.reshape(6), reduction="none")
    assert torch.equal(distill.kd_loss(s, t, y, reduction="none"), flat)
    assert torch.equal(distill.kd_loss(s, t, y.reshape(6), reduction="none"), flat)


def test_the_extension_runs_at_parallel_for_in_parallel():
    # Built with -fopenmp: otherwise at::parallel_for would silently run the rows on one thread.
    assert torch.ops.distill.at_parallel_for_is_parallel()


def test_results_are_bitwise_the_same_on_one_and_two_threads():
    s, t, y = make_inputs(shape=(40, 3000), dtype=torch.float32, seed=38)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            x = s.clone().requires_grad_(True)
            loss = distill.kd_loss(x, t, y, divergence="jensen_shannon")
            loss.backward()
            results.append((loss.detach(), x.grad))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_empty_batch_gives_zero():
    s = torch.zeros(0, 5, dtype=torch.float64, requires_grad=True)
    loss = distill.kd_loss(s, torch.zeros(0, 5, dtype=torch.float64), torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and s.grad.shape == (0, 5)


def test_every_row_masked_out_gives_zero():
    s, t, y = make_inputs(shape=(4, 6), seed=39, ignored_rows=())
    x = s.clone().requires_grad_(True)
    loss = distill.divergence_loss(x, t, mask=torch.zeros(4, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(x.grad) == 0


def test_the_raw_operators_are_registered():
    s, t, y = make_inputs(seed=40)
    loss, soft, hard = torch.ops.distill.kd_loss(s, t, y, None, 4.0, 0.5, "forward_kl", 0.5, 0.1, 1.0, 8.0, "mean",
                                                 1.0, -100, 0.0, "logits", True, False)
    assert torch.equal(loss, distill.kd_loss(s, t, y))
    assert torch.equal(torch.ops.distill.softmax(s, 2.0), distill.softmax(s, 2.0))
