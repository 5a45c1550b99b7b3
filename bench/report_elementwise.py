"""Print the elementwise comparison: median time per call of cygrad, the NumPy
reference and PyTorch, side by side, with speed-ups (x > 1: cygrad is faster),
and adam_step's memory traffic against this machine's copy bandwidth.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=src python bench/report_elementwise.py [--repeat 11]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from elementwise_cases import LARGE, cases, threads  # noqa: E402

IMPLS = ["cygrad", "reference", "torch"]


def medians(fns, repeat, min_time=0.01):
    """Median seconds per call of each callable, timed in turn (A B C A B C ...) so
    that load from other processes on a shared machine falls on all alike."""
    inner = {}
    for name, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        inner[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / inner[name])
    return {name: float(np.median(t)) for name, t in times.items()}


def fmt(sec):
    if sec is None:
        return "-"
    return f"{sec * 1e3:.2f} ms" if sec >= 1e-3 else f"{sec * 1e6:.2f} us"


def copy_runners():
    """10M-float32 copies (NumPy: 1 thread; torch: its threads), timed with adam_step
    so that both see the same machine load. Bytes moved = read + written."""
    src = np.random.default_rng(0).standard_normal(LARGE).astype(np.float32)
    dst = np.empty_like(src)
    fns = {"copy numpy": lambda: np.copyto(dst, src)}
    try:
        import torch
        ts, td = torch.from_numpy(src), torch.from_numpy(dst)
        fns["copy torch"] = lambda: td.copy_(ts)
    except ImportError:
        pass
    return fns, 2 * src.nbytes


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    rows = []
    with threads(args.threads):
        for name, size, make in cases():
            fns = make()
            if name == "adam_step" and size == "10M":
                copies, copy_bytes = copy_runners()
                fns.update(copies)
            m = medians(fns, args.repeat)
            if name == "adam_step" and size == "10M":
                bw = {k: copy_bytes / m.pop(k) for k in copies}
            rows.append((name, size, m))
            del fns
    print(f"threads={args.threads}, medians of {args.repeat} interleaved repeats, float32")
    head = ["function", "size", "cygrad", "reference", "torch", "ref/cygrad", "torch/cygrad"]
    lines = [head]
    for name, size, m in rows:
        c = m["cygrad"]
        extra = {k: v for k, v in m.items() if k not in IMPLS}
        lines.append([name, size, fmt(c), fmt(m.get("reference")), fmt(m.get("torch")),
                      f"{m['reference'] / c:.1f}x", f"{m['torch'] / c:.2f}x" if "torch" in m else "-"])
        for k, v in extra.items():
            lines.append([f"  ({k})", size, "", "", fmt(v), "", f"{v / c:.2f}x"])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    for r in lines:
        print("| " + " | ".join(s.ljust(w) for s, w in zip(r, widths)) + " |")
    best = max(bw.values())
    print("\ncopy bandwidth (10M float32, bytes read + written, timed alongside adam_step): "
          + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in bw.items()))
    adam = next(m for name, size, m in rows if name == "adam_step" and size == "10M")
    moved = 28 * LARGE  # reads param, grad, exp_avg, exp_avg_sq; writes param, exp_avg, exp_avg_sq
    for k in ("cygrad", "torch"):
        if k in adam:
            rate = moved / adam[k]
            print(f"adam_step 10M {k}: {rate / 1e9:.1f} GB/s moved (28 B/element); "
                  f"copy bandwidth / this = {best / rate:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
