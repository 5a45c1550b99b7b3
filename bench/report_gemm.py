"""Print the GEMM comparison table: GFLOP/s medians of cygrad, NumPy and PyTorch, side by side.

    python bench/report_gemm.py [--repeat 15] [--threads 2,1] [--quick]
Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for NumPy's best kernel.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemm_cases import DL, SQUARE, flops, runners  # noqa: E402


def interleaved_medians(fns, repeat, min_time=0.02):
    """Median seconds per call of each callable, timing them in turn (A B C A B C ...)
    so that noise from a shared machine falls on all of them alike."""
    inner = {}
    for name, (fn, limit) in fns.items():
        with limit():
            fn()
            t0 = time.perf_counter()
            fn()
            inner[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, (fn, limit) in fns.items():
            with limit():
                t0 = time.perf_counter()
                for _ in range(inner[name]):
                    fn()
                times[name].append((time.perf_counter() - t0) / inner[name])
    return {name: float(np.median(t)) for name, t in times.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--threads", default="2,1")
    p.add_argument("--quick", action="store_true", help="skip 2048 and the float64 squares")
    args = p.parse_args()
    cases = [(c, np.float32) for c in SQUARE + DL] + [(c, np.float64) for c in SQUARE]
    if args.quick:
        cases = [(c, d) for c, d in cases if c[0] != "square2048" and not (d == np.float64 and c[0] != "square1024")]
    from threadpoolctl import threadpool_info
    blas = [f"{i['internal_api']} {i.get('architecture')}" for i in threadpool_info() if i["user_api"] == "blas"]
    import cygrad
    print(f"cygrad isa={cygrad.kernels.gemm.get_isa()}; numpy BLAS: {', '.join(blas)}")
    print("| shape | dtype | threads | cygrad GFLOP/s | numpy GFLOP/s | torch GFLOP/s | cygrad/numpy | cygrad/torch |")
    print("|---|---|---|---|---|---|---|---|")
    for threads in [int(t) for t in args.threads.split(",")]:
        for case, dtype in cases:
            med = interleaved_medians(runners(case, dtype, threads), args.repeat)
            gf = {name: flops(case) / t / 1e9 for name, t in med.items()}
            t = gf.get("torch")
            print(f"| {case[0]} | {np.dtype(dtype).name} | {threads} | {gf['cygrad']:.1f} | {gf['numpy']:.1f} | "
                  f"{'%.1f' % t if t else '-'} | {gf['cygrad'] / gf['numpy']:.2f} | "
                  f"{'%.2f' % (gf['cygrad'] / t) if t else '-'} |", flush=True)


if __name__ == "__main__":
    main()
