#!/usr/bin/env python3
"""Turns distill_bench's Google Benchmark JSON into the benchmark table.

    bench_report.py MAIN.json [--cached-allocator CACHED.json] [--json OUT.json] [--machine TEXT]
                    [--commit TEXT] [--exp-counts COUNTS.jsonl] [--callgrind CALLGRIND.OUT ...]

MAIN.json holds every implementation; CACHED.json (optional) the allocating peers run again under a
caching allocator (jemalloc via LD_PRELOAD): for those peers the faster of the two runs is reported.
Prints one markdown table on stdout, and a second one for the divergence family's cases (what our
kernel spends per element against the ops floor); --json writes the rows as a JSON array of objects
with the keys case, rows, cols, dtype, threads, ours_ms, floor_ms, ours_workspace_ms (the same call
with a workspace lent: distillation and KL rows over 1024 classes), reference_ms, eigen_naive_ms,
torch_autograd_ms, torch_fused_ms, onednn_ms, dense_ms (top-k cases: the dense loss on the same
student), temperature, ops_floor_ms, kernel_exps_per_element,
kernel_logs_per_element, exps_per_element, instructions_per_element_avx2, exp_floor_function
(null where absent). Python 3 standard library only.

The exp floor: distill_bench measures it once per candidate exponential (impl exp_floor_<name>:
ours, xsimd, sleef) and records each candidate's measured error in its context
(distill_exp_accuracy); the floor is the fastest candidate whose error is within EXP_ULP_BOUND on
normal results (a result below the smallest normal number may be flushed to 0, as our contract
allows) at the same thread count.

COUNTS.jsonl (distill_count_exps) gives the vector exponentials per element of one call of each
case; the callgrind files (distill_count_avx2 under valgrind, one dump per case, named by the
benchmark) give the instructions of one call, divided here by the case's elements.

Benchmark names are <case>/<impl>/<dtype>/<rows>x<cols>/threads:<n>[/real_time] (bench_common.hpp);
the divergence family's cases are named by the divergence alone (forward_kl, reverse_kl, jsd,
skew_kl, skew_reverse_kl, tvd, dkd) and carry their temperature as a counter, like every benchmark.
Times are medians of the repetitions (or the mean of the iterations without repetitions), in ms.
"""
import argparse
import json
import math
import sys

PEERS = ["reference", "eigen_naive", "torch_autograd", "torch_fused", "onednn", "dense"]
# Peers that compute another loss on purpose: the top-k cases' dense path has the whole teacher.
DIFFERENT_LOSS = {"dense"}
# Our exponential's documented bound (detail/simd/exp.hpp: at most 2 ulp on normal results, float and
# double): a candidate of the exp floor must be within it to count.
EXP_ULP_BOUND = 2.0
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


def exp_accuracy(context):
    """{(dtype, name): {"function": str, "max_ulp": float, "subnormal_max_ulp": float, "flushes": bool}}"""
    out = {}
    for line in context.get("distill_exp_accuracy", "").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        fields = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
        out[(parts[0], parts[1])] = {
            "function": parts[2],
            "max_ulp": float(fields.get("max_ulp", "nan")),
            "subnormal_max_ulp": float(fields.get("subnormal_max_ulp", "nan")),
            "flushes": fields.get("flushes_subnormals") == "1",
        }
    return out


def in_bound(acc, dtype):
    """Within EXP_ULP_BOUND on normal results, and, below the normal range, no farther from the exact
    value than a flush to 0 is (the smallest normal number: 2^23 or 2^52 smallest subnormals).
    NaN compares false: an unmeasured candidate is not in bound."""
    subnormal_limit = 2.0 ** (23 if dtype == "float" else 52)
    return acc is not None and acc["max_ulp"] <= EXP_ULP_BOUND and acc["subnormal_max_ulp"] <= subnormal_limit


def load_exp_counts(path):
    counts = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                row = json.loads(line)
                counts[row["name"]] = row.get("exps_per_element")
    return counts


def load_callgrind(paths):
    """{benchmark name: instructions of the dumped call} from callgrind dumps named by a client request."""
    counts = {}
    for path in paths:
        name, total = None, None
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("desc: Trigger: Client Request: "):
                    name = line.split("Client Request: ", 1)[1].strip()
                elif line.startswith("summary:") or line.startswith("totals:"):
                    total = int(line.split()[1])
        if name and total is not None:
            counts[name] = total
    return counts


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
    ap.add_argument("--exp-counts", help="distill_count_exps output: exponentials per element of one call")
    ap.add_argument("--callgrind", nargs="*", default=[], help="callgrind dumps of distill_count_avx2")
    args = ap.parse_args()

    context, results = load(args.main, args.clock)
    cached = load(args.cached, args.clock)[1] if args.cached else {}
    accuracy = exp_accuracy(context)
    exp_counts = load_exp_counts(args.exp_counts) if args.exp_counts else {}
    instructions = load_callgrind(args.callgrind)

    def exp_candidates(case, dtype, rows, cols, threads):
        """[(ms, name, accurate)] of the case's exp floors, one per candidate exponential."""
        out = []
        for (c, impl, d, r, co, t), v in results.items():
            if (c, d, r, co, t) != (case, dtype, rows, cols, threads) or not impl.startswith("exp_floor"):
                continue
            name = impl[len("exp_floor_"):] if impl.startswith("exp_floor_") else "ours"
            out.append((v["ms"], name, in_bound(accuracy.get((dtype, name)), dtype) if accuracy else True))
        return out

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
        accurate = sorted((ms, name) for ms, name, ok in exp_candidates(case, dtype, rows, cols, threads) if ok)
        exp = {"ms": accurate[0][0]} if accurate else None
        exp_name = accurate[0][1] if accurate else None
        floors = [(x["ms"], name) for x, name in ((mem, "mem"), (exp, "exp")) if x]
        floor_ms, limit = max(floors) if floors else (None, "—")
        if limit == "exp" and exp_name != "ours":
            limit = f"exp ({exp_name})"
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
            if p not in DIFFERENT_LOSS and not (agree(r["loss"], ours["loss"], dtype)
                                                and agree(r["check"], ours["check"], dtype)):
                mismatches.append(f"{case} {dtype} {rows}x{cols}: {p} loss {r['loss']} check {r['check']}"
                                  f" vs ours loss {ours['loss']} check {ours['check']}")
        # The same call with a workspace lent (distillation and KL rows over 1024 classes): the same bits.
        lent = get(case, "ours_workspace", dtype, rows, cols, threads)
        if lent and (lent["loss"] != ours["loss"] or lent["check"] != ours["check"]):
            mismatches.append(f"{case} {dtype} {rows}x{cols}: with a workspace loss {lent['loss']} check "
                              f"{lent['check']} vs without loss {ours['loss']} check {ours['check']}")
        one_thread = get(case, "ours", dtype, rows, cols, 1)
        speedup = ratio(one_thread["ms"], ours["ms"]) if threads > 1 and one_thread else None
        torch_best = min((peers[p] for p in ("torch_autograd", "torch_fused") if peers[p] is not None), default=None)
        table.append([
            case, f"{rows}×{cols}", dtype, str(threads), fmt_ms(ours["ms"]), fmt_ms(floor_ms), limit,
            fmt_ratio(ratio(ours["ms"], floor_ms)), fmt_ms(lent["ms"] if lent else None),
            fmt_ratio(ratio(lent["ms"], floor_ms) if lent else None), fmt_ratio(speedup),
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
        # Counts are of one call on one thread: they sit in the threads = 1 rows only.
        bench_name = f"{case}/ours/{dtype}/{rows}x{cols}/threads:1"
        counted_exps = exp_counts.get(bench_name) if threads == 1 else None
        counted_instructions = instructions.get(bench_name) if threads == 1 else None
        instructions_per_element = counted_instructions / (rows * cols) if counted_instructions else None
        table[-1][-1:-1] = [
            "—" if counted_exps is None else f"{counted_exps:.3g}",
            "—" if instructions_per_element is None else f"{instructions_per_element:.3g}",
        ]
        if exps is not None and counted_exps is not None and abs(counted_exps - exps) > 0.05 * exps:
            mismatches.append(f"{case} {dtype} {rows}x{cols}: the kernel evaluates {counted_exps:.3g} exps per "
                              f"element (counted), the suite's kernel_transcendentals says {exps}")
        json_rows.append({
            "case": case, "rows": rows, "cols": cols, "dtype": dtype, "threads": threads,
            "ours_ms": ours["ms"], "floor_ms": floor_ms, "ours_workspace_ms": lent["ms"] if lent else None,
            "reference_ms": peers["reference"], "eigen_naive_ms": peers["eigen_naive"],
            "torch_autograd_ms": peers["torch_autograd"], "torch_fused_ms": peers["torch_fused"],
            "onednn_ms": peers["onednn"], "dense_ms": peers["dense"],
            "temperature": ours["temperature"], "ops_floor_ms": ops["ms"] if ops else None,
            "kernel_exps_per_element": exps, "kernel_logs_per_element": logs,
            "exps_per_element": counted_exps, "instructions_per_element_avx2": instructions_per_element,
            "exp_floor_function": accuracy.get((dtype, exp_name), {}).get("function", exp_name) if exp_name else None,
        })

    header = ["case", "shape", "dtype", "threads", "ours (ms)", "floor (ms)", "limit", "ours / floor",
              "ours, workspace (ms)", "workspace / floor", "speedup vs 1 thread", "reference (ms)", "eigen naive (ms)", "torch autograd (ms)", "torch fused (ms)",
              "onednn (ms)", "dense (ms)", "reference / ours", "eigen / ours", "autograd / ours", "fused / ours",
              "onednn / ours", "dense / ours",
              "exps / element", "instr / element (AVX2)", "best torch / ours"]
    out = sys.stdout
    described = []
    if args.machine:
        described.append(f"machine: {args.machine}")
    described.append(f"SIMD arch: {context.get('distill_simd_arch', '?')} "
                     f"(flags: {context.get('distill_arch_flags', '?')}); "
                     f"cores seen: {context.get('num_cpus', '?')}; libtorch: {context.get('distill_torch', '?')}; "
                     f"oneDNN: {context.get('distill_onednn', '?')}; "
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
    if exp_counts or instructions:
        print("exps / element: vector exponentials of one call (distill_count_exps, lanes counted by "
              "detail/simd/exp.hpp's DISTILL_COUNT_EXP_CALLS hook); instr / element (AVX2): instructions of one call "
              "under callgrind, counted on the -mavx2 -mfma build (valgrind cannot run AVX-512 code).", file=out)

    # The exp floor's candidates: speed (ns per element, the median over the one-thread cases of at
    # least 100,000 elements) and accuracy, and which one the floor took.
    if accuracy:
        print(f"\nThe exp floor's candidates (the floor takes the fastest whose error is within {EXP_ULP_BOUND:g} ulp "
              "on normal results; below the normal range a candidate may flush to 0, as our contract allows: its error there must not exceed the smallest normal number):\n",
              file=out)
        print("| dtype | candidate | function | ns / element (1 thread) | max ulp, normal results | "
              "max ulp, subnormal results | flushes subnormals | in bound | fastest in bound |", file=out)
        print("|---|---|---|---:|---:|---:|---|---|---|", file=out)
        for (dtype, name), acc in accuracy.items():
            per_element = sorted(
                v["ms"] * 1e6 / (r * co * (v["exps"] or 1))
                for (c, impl, d, r, co, t), v in results.items()
                if impl == f"exp_floor_{name}" and d == dtype and t == 1 and r * co >= 100_000)
            ns = per_element[len(per_element) // 2] if per_element else None
            acc["ns"] = ns
        for dtype in sorted({d for d, _ in accuracy}):
            candidates = [(n, a) for (d, n), a in accuracy.items() if d == dtype]
            fastest = min((a["ns"], n) for n, a in candidates if in_bound(a, dtype) and a["ns"] is not None)[1] \
                if any(in_bound(a, dtype) and a["ns"] is not None for _, a in candidates) else None
            for name, acc in candidates:
                ns = "—" if acc["ns"] is None else f"{acc['ns']:.3f}"
                print(f"| {dtype} | {name} | `{acc['function']}` | {ns} | {acc['max_ulp']:.3g} | "
                      f"{acc['subnormal_max_ulp']:.3g} | {'yes' if acc['flushes'] else 'no'} | "
                      f"{'yes' if in_bound(acc, dtype) else 'no'} | {'yes' if name == fastest else ''} |", file=out)

    # The fixed cost of a call: the cases of one row, in microseconds per call.
    fixed = [(k, get(*k[:1], "ours", *k[1:])) for k in order if k[2] == 1 and k[4] == 1]
    if fixed:
        print("\nFixed cost per call (one row; microseconds per call, one thread):\n", file=out)
        print("| case | shape | dtype | ours (µs) | " + " | ".join(f"{p} (µs)" for p in PEERS) + " |", file=out)
        print("|---|---|---|---:|" + "---:|" * len(PEERS), file=out)
        for (case, dtype, rows, cols, threads), o in fixed:
            cells = []
            for p in PEERS:
                r = get(case, p, dtype, rows, cols, 1)
                c = cached.get((case, p, dtype, rows, cols, 1)) if p in ALLOCATING else None
                best = min([x["ms"] for x in (r, c) if x], default=None)
                cells.append("—" if best is None else f"{best * 1e3:.2f}")
            print(f"| {case} | {rows}×{cols} | {dtype} | {o['ms'] * 1e3:.2f} | " + " | ".join(cells) + " |", file=out)
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
