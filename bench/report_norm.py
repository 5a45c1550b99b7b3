"""Batch norm and vector_norm: median time per call of cygrad and PyTorch, side by side,
each library timed in its own process.

    PYTHONPATH=src python bench/report_norm.py [--threads 2,1] [--rounds 5] [--repeats 7]
                                              [--impls cygrad,torch,torch-autograd] [--idle 0.9]

One timed block per (implementation, round), implementations alternating, a settle pause
before each block (OpenMP threads spin for a while after a call and would steal the next
runtime's cores; in one process cygrad and torch would also share libgomp). "torch" is
PyTorch's kernels (aten.native_batch_norm and native_batch_norm_backward, what autograd
calls), "torch-autograd" F.batch_norm and autograd.grad as a training step runs them.
Cases: bench/norm_cases.py. Prints medians and torch/cygrad (> 1: cygrad is faster).
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
from norm_cases import CASES, case_id, runner, thread_limit  # noqa: E402
from report_gemm import block_medians  # noqa: E402


def worker(impl, threads, repeats):
    """Runs in the child: the median time per call of every case; prints them as JSON."""
    fns = {case_id(case): (runner(impl, case), lambda: thread_limit(impl, threads))
           for case in CASES}
    print(json.dumps(block_medians(fns, repeats, settle=0.0)))


def cpu_idle_fraction(window):
    """Fraction of the machine's CPU time idle over the next `window` seconds (Linux)."""
    def snapshot():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total
    idle0, total0 = snapshot()
    time.sleep(window)
    idle1, total1 = snapshot()
    return (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_idle(threshold, timeout=120.0):
    """On a shared machine: wait (up to timeout) until others leave the cores idle, so a
    block is not timed while another process holds a core its threads spin-wait for."""
    if threshold <= 0 or not os.path.exists("/proc/stat"):
        return
    deadline = time.monotonic() + timeout
    while cpu_idle_fraction(0.5) < threshold and time.monotonic() < deadline:
        pass


def run_block(impl, threads, repeats):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", impl,
                           str(threads), str(repeats)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(sec):
    return f"{sec * 1e3:.3f} ms" if sec >= 1e-3 else f"{sec * 1e6:.1f} us"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--threads", default="2,1")
    p.add_argument("--rounds", type=int, default=5, help="blocks per implementation")
    p.add_argument("--repeats", type=int, default=7, help="timed samples per case and block")
    p.add_argument("--impls", default="cygrad,torch,torch-autograd")
    p.add_argument("--settle", type=float, default=0.5)
    p.add_argument("--idle", type=float, default=0.0, metavar="FRACTION",
                   help="before each block wait until this fraction of the CPUs is idle "
                        "(e.g. 0.9 on a shared machine)")
    args = p.parse_args()
    if args.worker:
        impl, threads, repeats = args.worker
        worker(impl, int(threads), int(repeats))
        return
    impls = args.impls.split(",")
    print(f"float32, {args.rounds} alternating blocks per implementation, each in its own "
          f"process; median over the blocks of each block's median of {args.repeats} samples")
    print("| case | threads | " + " | ".join(impls) + " | "
          + " | ".join(f"{name}/{impls[0]}" for name in impls[1:]) + " |")
    print("|---" * (2 + 2 * len(impls) - 1) + "|")
    for threads in [int(t) for t in args.threads.split(",")]:
        samples = {name: {} for name in impls}
        for _ in range(args.rounds):
            for name in impls:
                time.sleep(args.settle)
                wait_for_idle(args.idle)
                for case, med in run_block(name, threads, args.repeats).items():
                    samples[name].setdefault(case, []).append(med)
        for case in map(case_id, CASES):
            med = {name: statistics.median(samples[name][case]) for name in impls}
            cells = " | ".join(fmt(med[name]) for name in impls)
            ratios = " | ".join(f"{med[name] / med[impls[0]]:.2f}" for name in impls[1:])
            print(f"| {case} | {threads} | {cells} | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
