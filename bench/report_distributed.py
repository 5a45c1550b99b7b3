"""Data-parallel throughput: one line per model with images/s, the median step and
Allreduce times (in the step: includes waiting for the slower rank; alone: after a Barrier), and the bytes each rank sends per step. Run it as

    OMP_NUM_THREADS=1 mpiexec -n 2 python bench/report_distributed.py   # 2 ranks x 1 thread
    OMP_NUM_THREADS=1 python bench/report_distributed.py                # 1 rank x 1 thread
    OMP_NUM_THREADS=2 python bench/report_distributed.py                # 1 rank x 2 threads

Synthetic MNIST-shaped float32 data; --batch is per rank (so K ranks take K x batch
images a step). The bandwidth a multi-host run needs for >= 90 % scaling is the
gradient bytes / (10 % of the step's compute time, i.e. without the Allreduce): a ring Allreduce sends and receives about
2 (K-1)/K x the buffer per rank, i.e. the buffer itself for K = 2.
"""
import argparse
import json
import time

import numpy as np

import cygrad as cg
from cygrad import distributed


def run(name, batch, steps, ctx):
    model = cg.models.BUILDERS[name](dtype=np.float32, seed=0)
    opt = cg.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = cg.nn.CrossEntropyLoss()
    shape = (784,) if name == "mlp" else (1, 28, 28)
    n = batch * ctx.size * 8
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    y = rng.integers(0, 10, n)
    loader = ctx.shard(cg.data.DataLoader(x, y, batch, seed=0))
    ctx.broadcast(model, opt)
    step_s, comm_s, done = [], [], 0
    while done < steps:
        for xb, yb in loader:
            t0 = time.perf_counter()
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            t1 = time.perf_counter()
            ctx.average_gradients(opt.grad)
            t2 = time.perf_counter()
            opt.step()
            step_s.append(time.perf_counter() - t0)
            comm_s.append(t2 - t1)
            done += 1
            if done == steps:
                break
    alone = []  # the Allreduce itself, ranks lined up by a Barrier first (no waiting time)
    for _ in range(50):
        ctx.comm.Barrier()
        t0 = time.perf_counter()
        ctx.average_gradients(opt.grad)
        alone.append(time.perf_counter() - t0)
    warm = max(steps // 10, 1)
    step, comm = np.median(step_s[warm:]), np.median(comm_s[warm:])
    step = ctx.max(step)  # the slowest rank sets the pace
    nbytes = opt.grad.nbytes
    return {"model": name, "ranks": ctx.size, "threads": cg.get_num_threads(),
            "batch_per_rank": batch, "images_per_s": round(batch * ctx.size / step),
            "step_ms": round(step * 1e3, 3), "allreduce_ms": round(ctx.max(comm) * 1e3, 3),
            "allreduce_alone_ms": round(ctx.max(np.median(alone)) * 1e3, 3),
            "parameters": int(opt.grad.size), "bytes_per_step": int(nbytes),
            "MB_s_for_90pct": round(nbytes / (0.1 * (step - comm)) / 1e6, 1)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--batch", default="64,32", help="per-rank batch of each model")
    p.add_argument("--steps", default="400,200")
    args = p.parse_args()
    ctx = distributed.init()
    for name, batch, steps in zip(args.models.split(","), args.batch.split(","),
                                  args.steps.split(",")):
        result = run(name, int(batch), int(steps), ctx)
        if ctx.rank == 0:
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
