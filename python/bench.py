"""distill's operators against the PyTorch composites they replace, forward + backward, one thread.

    /usr/bin/python3 python/bench.py [--rows 512] [--vocab 32000] [--repeats 11]

Each case builds the loss from float32 logits that require a gradient and calls backward(); the
gradient is reset to None before each call (both sides then allocate it, as a training step does).
One untimed warm-up call, then the median of --repeats calls, in wall-clock time and in the calling
thread's CPU time (torch.set_num_threads(1): every kernel runs on this thread).

Both sides allocate N x V tensors per call (distill its gradient, the composite its temporaries too),
and glibc hands every allocation this large fresh pages from the kernel: at 512 x 32000 the page
faults cost distill more than its kernel does. A caching allocator that keeps freed pages removes
that cost for both sides:

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
        /usr/bin/python3 python/bench.py
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distill  # noqa: E402  (built on first import)


def hinton_composite(s, t, y, temperature=4.0, alpha=0.5):
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1), reduction="batchmean")
    return alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def trl_jsd_composite(s, t, beta=0.5, temperature=1.0):
    """TRL's generalized_jsd_loss (GKD) for 0 < beta < 1, batchmean over the rows."""
    lq, lp = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    b = torch.tensor(beta, dtype=s.dtype)
    lm = torch.logsumexp(torch.stack([lq + torch.log1p(-b), lp + torch.log(b)]), dim=0)
    jsd = beta * F.kl_div(lm, lp, reduction="none", log_target=True) + (1 - beta) * F.kl_div(
        lm, lq, reduction="none", log_target=True)
    return jsd.sum() / s.shape[0]


def time_backward(loss_fn, s, repeats):
    wall, cpu = [], []
    for rep in range(repeats + 1):
        s.grad = None
        w0, c0 = time.perf_counter(), time.thread_time()
        loss_fn(s).backward()
        w1, c1 = time.perf_counter(), time.thread_time()
        if rep > 0:
            wall.append(w1 - w0)
            cpu.append(c1 - c0)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    s = (3.0 * torch.randn(args.rows, args.vocab)).requires_grad_(True)
    t = 0.5 * s.detach() + 2.0 * torch.randn(args.rows, args.vocab)
    y = torch.randint(0, args.vocab, (args.rows,))

    cases = [
        ("kd_loss, forward KL (T=4, alpha=0.5)",
         lambda x: distill.kd_loss(x, t, y, temperature=4.0, alpha=0.5),
         lambda x: hinton_composite(x, t, y)),
        ("divergence_loss, JSD beta=0.5 (TRL's GKD loss)",
         lambda x: distill.divergence_loss(x, t, divergence="jensen_shannon", beta=0.5, scale_by_t_squared=False),
         lambda x: trl_jsd_composite(x, t)),
    ]
    allocator = "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "glibc malloc"
    if allocator == "jemalloc" and os.environ.get("MALLOC_CONF"):
        allocator += f" ({os.environ['MALLOC_CONF']})"
    print(f"torch {torch.__version__}, {args.rows} x {args.vocab} float32, forward + backward, 1 thread, "
          f"median of {args.repeats}, {allocator}")
    print(f"{'case':<48} {'distill ms':>11} {'composite ms':>13} {'speedup':>8}   (thread CPU ms: distill, composite)")
    for name, ours, composite in cases:
        with torch.no_grad():  # the two losses agree before they are timed
            a, b = ours(s).item(), composite(s).item()
        assert abs(a - b) <= 1e-4 * max(1.0, abs(b)), (name, a, b)
        ours_wall, ours_cpu = time_backward(ours, s, args.repeats)
        comp_wall, comp_cpu = time_backward(composite, s, args.repeats)
        print(f"{name:<48} {ours_wall:>11.1f} {comp_wall:>13.1f} {comp_wall / ours_wall:>7.2f}x   "
              f"({ours_cpu:.1f}, {comp_cpu:.1f})")


if __name__ == "__main__":
    main()
