"""Memory over a long training run: Python-traced memory (tracemalloc) and RSS must not grow.

    python bench/memory_check.py [--model mlp|cnn] [--steps 10000] [--traced-steps 1000]
Prints traced memory after warm-up and after --traced-steps more steps, and RSS after
warm-up and after --steps steps (without tracemalloc, which slows every allocation).
"""
import argparse
import gc
import tracemalloc

import numpy as np

import cygrad as cg
from cygrad import benchmark


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--traced-steps", type=int, default=1000)
    args = p.parse_args()
    model = cg.models.BUILDERS[args.model](seed=0)
    loss_fn = cg.nn.CrossEntropyLoss()
    opt = cg.optim.Adam(model.parameters(), lr=1e-3)
    data = benchmark.batches(args.model, args.batch_size)

    def step(i):
        x, y = data[i % len(data)]
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(200):
        step(i)
    r0 = rss_mib()
    for i in range(args.steps):
        step(i)
    r1 = rss_mib()
    tracemalloc.start()
    for i in range(100):
        step(i)
    gc.collect()  # count live memory, not cyclic garbage awaiting the collector
    t0, _ = tracemalloc.get_traced_memory()
    for i in range(args.traced_steps):
        step(i)
    gc.collect()
    t1, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{args.model} batch {args.batch_size}: RSS {r0:.1f} -> {r1:.1f} MiB over {args.steps} steps; "
          f"traced {t0 / 1024:.1f} -> {t1 / 1024:.1f} KiB over {args.traced_steps} steps "
          f"(peak {peak / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
