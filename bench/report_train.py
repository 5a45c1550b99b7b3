"""Training-step time of the seed models, each implementation in its own process.

    python bench/report_train.py [--models mlp,cnn] [--batch 64] [--threads 2] [--rounds 5]
                                 [--impls cygrad,torch] [--also NAME=SRC_DIR ...]

One timed block per (implementation, round), implementations alternating, a settle pause
before each block (OpenMP and OpenBLAS threads spin for a while after a call and would
steal the next runtime's cores; in one process, cygrad would also share torch's libgomp).
Every implementation trains the same model from the same weights on the same batches
(cross-entropy, Adam 1e-3): cygrad.benchmark's train steps. `--also old=/path/to/src`
times another cygrad checkout (its src/ folder, built in place) through its own
cygrad.benchmark, e.g. the explicit-backward path before autograd. Prints medians (ms per
step) and the ratios to the first implementation. The torch process runs with
CYGRAD_MALLOC_TUNING=0: it imports cygrad (for the weights), and cygrad's malloc settings
(cygrad/_malloc.py) would otherwise speed torch up too.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(impl, model, batch, threads, steps, repeats):
    """Runs in the child: times `repeats` runs of `steps` train steps; prints JSON."""
    import cygrad as cg
    from cygrad import benchmark as B
    data = B.batches(model, batch)
    if impl == "torch":
        cg_model, *_ = B._cygrad_impl(model, "kernels", threads, 0)
        train_step, _, limit = B._torch_impl(model, cg_model.state_dict(), threads)
    else:
        _, train_step, _, limit = B._cygrad_impl(model, "kernels", threads, 0)
    times = []
    with limit():
        for i in range(max(5, steps // 4)):
            train_step(*data[i % len(data)])
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(steps):
                train_step(*data[i % len(data)])
            times.append((time.perf_counter() - t0) / steps)
    print(json.dumps({"times": times, "cygrad": cg.__file__}))


def run_block(impl, src, model, batch, threads, steps, repeats):
    env = dict(os.environ)
    if impl == "torch":  # torch at its own defaults: no malloc tuning by cygrad's import
        env["CYGRAD_MALLOC_TUNING"] = "0"
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    kind = "torch" if impl == "torch" else "cygrad"
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", kind, model,
                          str(batch), str(threads), str(steps), str(repeats)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["times"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5, help="blocks per implementation")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per block")
    p.add_argument("--impls", default="cygrad,torch")
    p.add_argument("--also", action="append", default=[], metavar="NAME=SRC_DIR",
                   help="another cygrad source tree to time (built in place)")
    p.add_argument("--settle", type=float, default=0.5)
    args = p.parse_args()
    if args.worker:
        impl, model, batch, threads, steps, repeats = args.worker
        worker(impl, model, int(batch), int(threads), int(steps), int(repeats))
        return
    impls = [(name, None) for name in args.impls.split(",") if name]
    impls += [tuple(a.split("=", 1)) for a in args.also]
    print(f"threads {args.threads}, batch {args.batch}, {args.rounds} alternating blocks of "
          f"{args.repeats} timed runs per implementation (median ms per step)")
    head = " | ".join(name for name, _ in impls)
    ratios = " | ".join(f"{impls[0][0]} vs {name}" for name, _ in impls[1:])
    print(f"| model | {head} | {ratios} |")
    print("|---" * (1 + 2 * len(impls) - 1) + "|")
    for model in args.models.split(","):
        steps = 100 if model == "mlp" else 10
        times = {name: [] for name, _ in impls}
        for _ in range(args.rounds):
            for name, src in impls:
                time.sleep(args.settle)
                times[name] += run_block(name, src, model, args.batch, args.threads, steps,
                                         args.repeats)
        med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        first = impls[0][0]
        cells = " | ".join(f"{med[name]:.3f}" for name, _ in impls)
        speed = " | ".join(f"{med[name] / med[first]:.2f}x" for name, _ in impls[1:])
        print(f"| {model} b{args.batch} | {cells} | {speed} |", flush=True)


if __name__ == "__main__":
    main()
