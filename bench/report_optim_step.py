"""Time of one optimizer step (Adam, lr 1e-3) on the MLP 784-128-64-10, each case in its
own process.

    python bench/report_optim_step.py [--rounds 5] [--threads 2] [--also NAME=SRC_DIR ...]

Cases: the model's parameters in one group; three groups (one per layer, the last first,
so the optimizer lays them out in a buffer of its own); one group with the middle layer
frozen (two kernel calls per step). `--also old=/path/to/src` times another cygrad
checkout's one-group step (e.g. the single-buffer optimizer before parameter groups).
Blocks alternate between implementations with a settle pause; prints medians (us per
step) and the ratio to the first implementation.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = ("one group", "three groups", "frozen layer")


def worker(case, threads, steps, repeats):
    """Runs in the child: times `repeats` runs of `steps` optimizer steps; prints JSON."""
    import numpy as np
    import cygrad as cg
    cg.set_num_threads(threads)
    model = cg.models.mlp(seed=0)
    layers = [model[0], model[2], model[4]]
    if case == "one group":
        params = model.parameters()
    elif case == "three groups":
        params = [{"params": m.parameters(), "lr": 1e-3 * (k + 1)}
                  for k, m in enumerate(layers[::-1])]
    else:
        for p in layers[1].parameters():
            p.requires_grad = False
        params = model.parameters()
    opt = cg.optim.Adam(params, lr=1e-3)
    opt.grad[...] = np.random.default_rng(0).standard_normal(opt.grad.size).astype(np.float32)
    for _ in range(max(5, steps // 4)):
        opt.step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.step()
        times.append((time.perf_counter() - t0) / steps)
    print(json.dumps({"times": times}))


def run_block(case, src, threads, steps, repeats):
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", case,
                          str(threads), str(steps), str(repeats)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["times"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5, help="blocks per implementation and case")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per block")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--also", action="append", default=[], metavar="NAME=SRC_DIR")
    p.add_argument("--settle", type=float, default=0.5)
    args = p.parse_args()
    if args.worker:
        case, threads, steps, repeats = args.worker
        worker(case, int(threads), int(steps), int(repeats))
        return
    runs = [("cygrad", None, case) for case in CASES]
    runs += [(name, src, "one group") for name, src in (a.split("=", 1) for a in args.also)]
    times = {(name, case): [] for name, _, case in runs}
    for _ in range(args.rounds):
        for name, src, case in runs:
            time.sleep(args.settle)
            times[name, case] += run_block(case, src, args.threads, args.steps, args.repeats)
    med = {key: statistics.median(t) * 1e6 for key, t in times.items()}
    first = med["cygrad", "one group"]
    print(f"Adam step, MLP 784-128-64-10 (109,386 float32 parameters), threads {args.threads}, "
          f"median us per step over {args.rounds} blocks")
    print("| implementation | case | us/step | vs cygrad one group |\n|---|---|---|---|")
    for name, _, case in runs:
        print(f"| {name} | {case} | {med[name, case]:.1f} | {med[name, case] / first:.2f}x |")


if __name__ == "__main__":
    main()
