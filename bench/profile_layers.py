"""Where a training step's time goes, kernel call by kernel call (per layer): each kernel of
the active backend is wrapped with a timer, a few hundred steps run, and the table lists
milliseconds per step for each (kernel, first argument's shape), largest first.

    python bench/profile_layers.py [--model cnn] [--batch 64] [--threads 2] [--steps 100]

The remainder ("python and the rest") is the step time not spent inside kernels.
"""
import argparse
import time
from collections import defaultdict

import cygrad as cg
from cygrad import benchmark


def instrument(totals):
    """Wrap every kernel of cygrad.kernels with a timer adding into totals[(name, shape)];
    returns a function that restores them."""
    K = cg.kernels
    originals = {name: getattr(K, name) for name in K.__all__}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                shape = getattr(args[0], "shape", None) if args else None
                totals[name, shape] += time.perf_counter() - t0
        return timed

    for name, fn in originals.items():
        setattr(K, name, wrap(name, fn))
    return lambda: [setattr(K, n, f) for n, f in originals.items()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="cnn", choices=("mlp", "cnn"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    _, step, _, limit = benchmark._cygrad_impl(args.model, "kernels", args.threads, 0)
    data = benchmark.batches(args.model, args.batch)
    totals = defaultdict(float)
    with limit():
        for i in range(10):
            step(*data[i % len(data)])
        restore = instrument(totals)
        try:
            t0 = time.perf_counter()
            for i in range(args.steps):
                step(*data[i % len(data)])
            wall = time.perf_counter() - t0
        finally:
            restore()
    per_step = {k: v / args.steps * 1e3 for k, v in totals.items()}
    total = wall / args.steps * 1e3
    print(f"{args.model} batch {args.batch}, {args.threads} threads: {total:.3f} ms per step")
    print("| kernel | input shape | ms per step | share |")
    print("|---|---|---|---|")
    for (name, shape), ms in sorted(per_step.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {shape} | {ms:.3f} | {ms / total:.0%} |")
    rest = total - sum(per_step.values())
    print(f"| python and the rest | | {rest:.3f} | {rest / total:.0%} |")


if __name__ == "__main__":
    main()
