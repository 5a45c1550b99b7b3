"""Print the conv/pool comparison table: median ms of cygrad, the NumPy reference and
PyTorch side by side (forward + backward of the seed CNN's layers, a depthwise and a
grouped convolution), then conv2's GFLOP/s against the GEMM's own at conv2's im2col shape.

    python bench/report_conv.py [--ops conv2,depthwise,grouped] [--threads 2,1]
                                [--batches 32,64,256] [--rounds 5] [--repeat 5]

Each implementation runs in its own process (in one process cygrad and torch share
libgomp and slow each other down): for every case, `--rounds` blocks per
implementation, implementations alternating, a settle pause before each block (OpenMP
and OpenBLAS threads spin for a while after a call and would steal the next runtime's
cores), `--repeat` timed runs per block; the table shows the medians. The torch
process runs with CYGRAD_MALLOC_TUNING=0 (it imports cygrad for the cases, whose malloc
settings would otherwise apply to torch too).
Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for NumPy's best kernel.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from conv_cases import OPS, conv2_flops, gemm_runner, runners  # noqa: E402
from report_gemm import block_medians  # noqa: E402

IMPLS = ("cygrad", "reference", "torch")


def worker(impl, op, batch, threads, repeat, min_time=0.02):
    """Runs in the child: `repeat` timed runs (each enough calls for min_time) of one
    implementation after a warm-up; prints the seconds per call as JSON (null: missing)."""
    run = runners(op, batch, threads, impls=(impl,)).get(impl)
    if run is None:
        print(json.dumps(None))
        return
    fn, limit = run
    times = []
    with limit():
        fn()
        t0 = time.perf_counter()
        fn()
        inner = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - t0) / inner)
    print(json.dumps(times))


def run_block(impl, op, batch, threads, repeat):
    env = dict(os.environ)
    if impl == "torch":
        env["CYGRAD_MALLOC_TUNING"] = "0"
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", impl, op,
                          str(batch), str(threads), str(repeat)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def case_medians(op, batch, threads, args):
    """{implementation: median seconds} over alternating per-process blocks."""
    times = {impl: [] for impl in IMPLS}
    for r in range(args.rounds):
        order = IMPLS if r % 2 == 0 else IMPLS[::-1]
        for impl in order:
            time.sleep(args.settle)
            got = run_block(impl, op, batch, threads, args.repeat)
            if got is None:
                times.pop(impl, None)
            elif impl in times:
                times[impl] += got
    return {impl: statistics.median(t) for impl, t in times.items() if t}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--threads", default="2,1")
    p.add_argument("--batches", default="32,64,256")
    p.add_argument("--rounds", type=int, default=5, help="blocks per implementation and case")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per block")
    p.add_argument("--settle", type=float, default=0.3)
    p.add_argument("--no-gflops", action="store_true", help="skip conv2's GFLOP/s table")
    args = p.parse_args()
    if args.worker:
        impl, op, batch, threads, repeat = args.worker
        worker(impl, op, int(batch), int(threads), int(repeat))
        return
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    print(f"each implementation in its own process: {args.rounds} alternating blocks of "
          f"{args.repeat} timed runs per case, medians")
    print("| op (fwd+bwd) | batch | threads | cygrad ms | reference ms | torch ms "
          "| reference/cygrad | torch/cygrad |")
    print("|---|---|---|---|---|---|---|---|")
    for nt in threads:
        for batch in batches:
            for op in args.ops.split(","):
                med = case_medians(op, batch, nt, args)
                t = med.get("torch")
                print(f"| {op} | {batch} | {nt} | {med['cygrad'] * 1e3:.3f} | "
                      f"{med['reference'] * 1e3:.2f} | {'%.3f' % (t * 1e3) if t else '-'} | "
                      f"{med['reference'] / med['cygrad']:.1f} | "
                      f"{'%.2f' % (t / med['cygrad']) if t else '-'} |", flush=True)
    if args.no_gflops:
        return
    print("\n| conv2 fwd+bwd | batch | threads | conv GFLOP/s | GEMM GFLOP/s (im2col shape) | gap |")
    print("|---|---|---|---|---|---|")
    for nt in threads:
        for batch in batches:
            # cygrad alone, in this process: the convolution, then the same three GEMMs at
            # the whole batch's im2col shape
            med = block_medians({"conv": runners("conv2", batch, nt, impls=("cygrad",))["cygrad"],
                                 "gemm": gemm_runner(batch, nt)}, 11)
            gf, ggf = (conv2_flops(batch) / med[k] / 1e9 for k in ("conv", "gemm"))
            print(f"| conv2 | {batch} | {nt} | {gf:.0f} | {ggf:.0f} | {1 - gf / ggf:.0%} |", flush=True)


if __name__ == "__main__":
    main()
