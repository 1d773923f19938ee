#!/usr/bin/env python3
"""Turns distill_bench's Google Benchmark JSON into the benchmark table.

    bench_report.py MAIN.json [--cached-allocator CACHED.json] [--json OUT.json] [--machine TEXT]
                    [--commit TEXT]

MAIN.json holds every implementation; CACHED.json (optional) the allocating peers run again under a
caching allocator (jemalloc via LD_PRELOAD): for those peers the faster of the two runs is reported.
Prints one markdown table on stdout, and a second one for the divergence family's cases (what our
kernel spends per element against the ops floor); --json writes the rows as a JSON array of objects
with the keys case, rows, cols, dtype, threads, ours_ms, floor_ms, reference_ms, eigen_naive_ms,
torch_autograd_ms, torch_fused_ms, temperature, ops_floor_ms, kernel_exps_per_element,
kernel_logs_per_element (null where absent). Python 3 standard library only.

Benchmark names are <case>/<impl>/<dtype>/<rows>x<cols>/threads:<n>[/real_time] (bench_common.hpp);
the divergence family's cases are named by the divergence alone (forward_kl, reverse_kl, jsd,
skew_kl, skew_reverse_kl, tvd, dkd) and carry their temperature as a counter, like every benchmark.
Times are medians of the repetitions (or the mean of the iterations without repetitions), in ms.
"""
import argparse
import json
import math
import sys

PEERS = ["reference", "eigen_naive", "torch_autograd", "torch_fused"]
# Peers that allocate their N x C temporaries on every call: a caching allocator may help them.
ALLOCATING = {"eigen_naive", "torch_autograd", "torch_fused"}
TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def load(path, clock="real"):
    """{(case, impl, dtype, rows, cols, threads): {"ms": float, "loss": float|None, "check": float|None}}

    clock "cpu" takes the CPU time of the benchmark thread for one-thread runs (robust to other work
    sharing the machine) and the wall-clock time for multi-thread runs, where the main thread's CPU
    time would miss the other threads' work."""
    with open(path) as f:
        data = json.load(f)
    medians, iterations = {}, {}
    for b in data.get("benchmarks", []):
        if b.get("error_occurred"):
            print(f"warning: {b.get('name')}: {b.get('error_message')}", file=sys.stderr)
            continue
        name = b.get("run_name", b["name"])
        parts = name.split("/")
        if len(parts) < 5:
            continue
        case, impl, dtype, shape, threads = parts[:5]
        rows, cols = (int(x) for x in shape.split("x"))
        key = (case, impl, dtype, rows, cols, int(threads.split(":")[1]))
        time = b["cpu_time"] if clock == "cpu" and key[-1] == 1 else b["real_time"]
        entry = {
            "ms": time * TO_MS[b.get("time_unit", "ns")],
            "loss": b.get("loss"),
            "check": b.get("check"),
            "temperature": b.get("temperature"),
            "exps": b.get("exp_per_element"),
            "logs": b.get("log_per_element"),
        }
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = entry
        else:
            iterations.setdefault(key, []).append(entry)
    for key, runs in iterations.items():
        if key not in medians:
            medians[key] = dict(runs[0], ms=sum(r["ms"] for r in runs) / len(runs))
    return data.get("context", {}), medians


def fmt_ms(v):
    if v is None:
        return "—"
    if v <= 0:
        return "0"
    decimals = max(0, 2 - int(math.floor(math.log10(v))))
    return f"{v:.{decimals}f}"


def fmt_ratio(v):
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:.0f}×"
    if v >= 10:
        return f"{v:.1f}×"
    return f"{v:.2f}×"


def fmt_temperature(t):
    return "—" if t is None else f"{t:g}"


def ratio(a, b):
    return a / b if a is not None and b else None


def agree(a, b, dtype):
    if a is None or b is None:
        return True
    tol = 2e-3 if dtype == "float" else 1e-6
    return abs(a - b) <= tol * max(abs(a), abs(b)) + 1e-5


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("main")
    ap.add_argument("--cached-allocator", dest="cached")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--machine", default="")
    ap.add_argument("--commit", default="")
    ap.add_argument("--clock", choices=["real", "cpu"], default="real",
                    help="cpu: one-thread rows use the thread's CPU time (for runs on a busy machine)")
    ap.add_argument("--other-cpu", type=float, help="CPU seconds other processes used during the run")
    ap.add_argument("--wall", type=float, help="wall-clock seconds of the run")
    args = ap.parse_args()

    context, results = load(args.main, args.clock)
    cached = load(args.cached, args.clock)[1] if args.cached else {}

    # Rows in the order the binary ran them.
    order = []
    for (case, impl, dtype, rows, cols, threads) in results:
        row_key = (case, dtype, rows, cols, threads)
        if impl == "ours" and row_key not in order:
            order.append(row_key)

    def get(case, impl, dtype, rows, cols, threads):
        return results.get((case, impl, dtype, rows, cols, threads))

    table, ops_table, json_rows, mismatches = [], [], [], []
    cached_used = False
    for (case, dtype, rows, cols, threads) in order:
        ours = get(case, "ours", dtype, rows, cols, threads)
        mem = get(case, "mem_floor", dtype, rows, cols, threads)
        exp = get(case, "exp_floor", dtype, rows, cols, threads)
        floors = [(x["ms"], name) for x, name in ((mem, "mem"), (exp, "exp")) if x]
        floor_ms, limit = max(floors) if floors else (None, "—")
        peers, marks = {}, {}
        for p in PEERS:
            # The peers run on one thread: they sit in the threads = 1 rows only.
            r = get(case, p, dtype, rows, cols, 1) if threads == 1 else None
            if r is None:
                peers[p] = None
                continue
            peers[p], marks[p] = r["ms"], ""
            c = cached.get((case, p, dtype, rows, cols, 1)) if p in ALLOCATING else None
            if c and c["ms"] < r["ms"]:
                peers[p], marks[p] = c["ms"], " ʲ"
                cached_used = True
            if not (agree(r["loss"], ours["loss"], dtype) and agree(r["check"], ours["check"], dtype)):
                mismatches.append(f"{case} {dtype} {rows}x{cols}: {p} loss {r['loss']} check {r['check']}"
                                  f" vs ours loss {ours['loss']} check {ours['check']}")
        one_thread = get(case, "ours", dtype, rows, cols, 1)
        speedup = ratio(one_thread["ms"], ours["ms"]) if threads > 1 and one_thread else None
        torch_best = min((peers[p] for p in ("torch_autograd", "torch_fused") if peers[p] is not None), default=None)
        table.append([
            case, f"{rows}×{cols}", dtype, str(threads), fmt_ms(ours["ms"]), fmt_ms(floor_ms), limit,
            fmt_ratio(ratio(ours["ms"], floor_ms)), fmt_ratio(speedup),
            *(fmt_ms(peers[p]) + (marks.get(p) or "") for p in PEERS),
            *(fmt_ratio(ratio(peers[p], ours["ms"])) for p in PEERS),
            fmt_ratio(ratio(torch_best, ours["ms"])),
        ])
        ops = get(case, "ops_floor", dtype, rows, cols, threads)
        exps = int(ops["exps"]) if ops and ops["exps"] is not None else None
        logs = int(ops["logs"]) if ops and ops["logs"] is not None else None
        if ops:
            ops_table.append([
                case, f"{rows}×{cols}", dtype, str(threads), fmt_temperature(ours["temperature"]),
                str(exps), str(logs), fmt_ms(ours["ms"]), fmt_ms(exp["ms"] if exp else None),
                fmt_ms(ops["ms"]), fmt_ratio(ratio(ours["ms"], floor_ms)), fmt_ratio(ratio(ops["ms"], floor_ms)),
                fmt_ratio(ratio(ours["ms"], ops["ms"])),
            ])
        json_rows.append({
            "case": case, "rows": rows, "cols": cols, "dtype": dtype, "threads": threads,
            "ours_ms": ours["ms"], "floor_ms": floor_ms,
            "reference_ms": peers["reference"], "eigen_naive_ms": peers["eigen_naive"],
            "torch_autograd_ms": peers["torch_autograd"], "torch_fused_ms": peers["torch_fused"],
            "temperature": ours["temperature"], "ops_floor_ms": ops["ms"] if ops else None,
            "kernel_exps_per_element": exps, "kernel_logs_per_element": logs,
        })

    header = ["case", "shape", "dtype", "threads", "ours (ms)", "floor (ms)", "limit", "ours / floor",
              "speedup vs 1 thread", "reference (ms)", "eigen naive (ms)", "torch autograd (ms)", "torch fused (ms)",
              "reference / ours", "eigen / ours", "autograd / ours", "fused / ours", "best torch / ours"]
    out = sys.stdout
    described = []
    if args.machine:
        described.append(f"machine: {args.machine}")
    described.append(f"SIMD arch: {context.get('distill_simd_arch', '?')} "
                     f"(flags: {context.get('distill_arch_flags', '?')}); "
                     f"exp floor measures {context.get('distill_exp_floor_function', '?')}; "
                     f"cores seen: {context.get('num_cpus', '?')}; libtorch: {context.get('distill_torch', '?')}; "
                     f"load average at start: {', '.join(f'{x:.2f}' for x in context.get('load_avg', [])) or '?'}")
    if args.commit:
        described.append(f"commit: {args.commit}")
    print("\n".join(described) + "\n", file=out)
    print("| " + " | ".join(header) + " |", file=out)
    print("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|", file=out)
    for r in table:
        print("| " + " | ".join(r) + " |", file=out)
    clock = ("wall-clock" if args.clock == "real" else
             "CPU time of the benchmark thread on one thread, wall-clock on more")
    print("\nfloor = max(memory floor, exp floor) at the row's thread count; limit names the larger. "
          f"Times are medians (ms, {clock}); ratios come from the same run.", file=out)
    if cached_used:
        print("ʲ = faster under the caching allocator (jemalloc, LD_PRELOAD) than under glibc malloc.", file=out)
    if ops_table:
        ops_header = ["case", "shape", "dtype", "threads", "T", "exps / element", "logs / element", "ours (ms)",
                      "exp floor (ms)", "ops floor (ms)", "ours / floor", "ops floor / floor", "ours / ops floor"]
        print("\nThe divergence family: the exponentials and logarithms our kernel spends per element "
              "(loss_and_grad), and the ops floor that measures them alone "
              f"({context.get('distill_exp_floor_function', '?')}, "
              f"{context.get('distill_log_floor_function', '?')}; L1-resident, no memory traffic). "
              "The floor keeps k = 2 exps (q and p).\n", file=out)
        print("| " + " | ".join(ops_header) + " |", file=out)
        print("|" + "|".join("---" if i < 3 else "---:" for i in range(len(ops_header))) + "|", file=out)
        for r in ops_table:
            print("| " + " | ".join(r) + " |", file=out)
    if args.other_cpu is not None and args.wall:
        share = args.other_cpu / args.wall
        print(f"\nOther processes used {args.other_cpu:.1f} CPU-seconds during the {args.wall:.0f} s run "
              f"({100 * share:.0f}% of one core).", file=out)
        if share > 0.05:
            print("warning: the machine was shared during the run: absolute times, and the multi-thread "
                  "rows most, are noisy.", file=out)
    load_avg = context.get("load_avg") or []
    cpus = context.get("num_cpus") or 1
    if load_avg and load_avg[0] > 0.75 * cpus:
        print(f"\nwarning: the load average was {load_avg[0]:.2f} on {cpus} cores when the run started: other "
              "work shared the machine, absolute times (and multi-thread rows most) are noisy.", file=out)
    if mismatches:
        print("\nwarning: implementations disagree (loss or gradient checksum):", file=out)
        for m in mismatches:
            print(f"- {m}", file=out)
        for m in mismatches:
            print(f"warning: implementations disagree: {m}", file=sys.stderr)

    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(json_rows, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
