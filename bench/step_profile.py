"""Where a training step's time goes: forward, loss, zero_grad, backward, optimizer step
(medians over many steps, in microseconds), and the Python cost of the autograd tape.

    python bench/step_profile.py [--model mlp|cnn] [--batch 64] [--threads 2]
    PYTHONPATH=/path/to/old/src python bench/step_profile.py   # a checkout before autograd

Works on cygrad before autograd too (then backward is model.backward(loss_fn.backward(),
input_grad=False)), so the two profiles can be put side by side. The tape figures (only
with autograd): per recorded op, the extra forward time of a chain of tiny relu ops with
grad mode on over the same chain under no_grad, and the backward time per node.
"""
import argparse
import statistics
import time

import numpy as np

import cygrad as cg
from cygrad import benchmark

PHASES = ("forward", "loss", "zero_grad", "backward", "step")


def profile_step(model_name, batch, threads, steps=300):
    model = cg.models.BUILDERS[model_name](seed=0)
    loss_fn = cg.nn.CrossEntropyLoss()
    opt = cg.optim.Adam(model.parameters(), lr=1e-3)
    data = benchmark.batches(model_name, batch)
    autograd = hasattr(cg, "Tensor")
    samples = {k: [] for k in PHASES + ("total",)}
    with cg.threads(threads):
        for i in range(steps + 20):
            x, y = data[i % len(data)]
            t0 = time.perf_counter()
            logits = model(x)
            t1 = time.perf_counter()
            loss = loss_fn(logits, y)
            t2 = time.perf_counter()
            opt.zero_grad()
            t3 = time.perf_counter()
            if autograd:
                loss.backward()
            else:
                model.backward(loss_fn.backward(), input_grad=False)
            t4 = time.perf_counter()
            opt.step()
            t5 = time.perf_counter()
            if i >= 20:
                for k, a, b in zip(PHASES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
                    samples[k].append(b - a)
                samples["total"].append(t5 - t0)
    return {k: statistics.median(v) * 1e6 for k, v in samples.items()}


def tape_overhead(ops=50, reps=2000):
    """(forward µs per recorded op, backward µs per node) on a chain of tiny relu ops."""
    F = cg.nn.functional
    x = cg.tensor(np.ones((2, 4), np.float32), requires_grad=True)

    def chain():
        h = x
        for _ in range(ops):
            h = F.relu(h)
        return h

    def timed(fn):
        best = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps // ops):
                fn()
            best.append((time.perf_counter() - t0) / (reps // ops))
        return min(best)

    with cg.threads(1):
        recorded = timed(chain)
        with cg.no_grad():
            plain = timed(chain)
        both = timed(lambda: chain().sum().backward())
    forward = (recorded - plain) / ops * 1e6
    backward = (both - recorded) / ops * 1e6
    return forward, backward


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mlp", choices=("mlp", "cnn"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    prof = profile_step(args.model, args.batch, args.threads)
    print(f"cygrad at {cg.__file__}")
    print(f"{args.model} batch {args.batch}, {args.threads} threads: median µs per phase")
    print(" | ".join(f"{k} {prof[k]:.1f}" for k in PHASES + ("total",)))
    if hasattr(cg, "Tensor"):
        fwd, bwd = tape_overhead()
        print(f"tape: {fwd:.2f} µs per recorded op (forward, over no_grad), "
              f"{bwd:.2f} µs per node in backward (relu_backward on 2x4 included)")


if __name__ == "__main__":
    main()
