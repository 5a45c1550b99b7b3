"""Training-step and inference throughput: cygrad vs its NumPy reference vs PyTorch.

`python -m cygrad bench` runs this. Every implementation trains the same model from
the same initial weights on the same batches with the same loss (cross-entropy) and
optimizer (Adam, lr 1e-3), each in its own worker process, in alternating blocks after
a settle pause; figures are images/s, the median of the timed runs after warm-up.
"""
import argparse
import contextlib
import json
import os
import statistics
import time

import numpy as np

import cygrad as cg

MODELS = ("mlp", "cnn")
IMPLS = ("cygrad", "reference", "torch")


def input_shape(model, batch):
    return (batch, 784) if model == "mlp" else (batch, 1, 28, 28)


def batches(model, batch, count=4, seed=0):
    """A few fixed random batches (x float32 ~ normalised MNIST, y int64 labels)."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(input_shape(model, batch)).astype(np.float32),
             rng.integers(0, 10, batch).astype(np.int64)) for _ in range(count)]


@contextlib.contextmanager
def torch_threads(n):
    """Run the block with PyTorch on n intra-op threads, then restore its setting."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---- one implementation = (train_step(x, y), predict(x), thread limiter) ---------------

def _cygrad_impl(model_name, backend, threads, seed):
    model = cg.models.BUILDERS[model_name](seed=seed)
    loss_fn = cg.nn.CrossEntropyLoss()
    opt = cg.optim.Adam(model.parameters(), lr=1e-3)

    def train_step(x, y):
        with cg.use_backend(backend):
            model.train()
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()  # the input needs no gradient: none is computed (as torch)
            opt.step()
        return loss.item()

    def predict(x):
        with cg.use_backend(backend), cg.no_grad():
            model.eval()
            return model(x)

    @contextlib.contextmanager
    def limit():
        from threadpoolctl import threadpool_limits
        with cg.threads(threads), threadpool_limits(threads):
            yield

    return model, train_step, predict, limit


def _torch_model(model_name):
    import torch.nn as tnn
    if model_name == "mlp":
        return tnn.Sequential(tnn.Linear(784, 128), tnn.ReLU(), tnn.Linear(128, 64), tnn.ReLU(),
                              tnn.Linear(64, 10))
    return tnn.Sequential(tnn.Conv2d(1, 32, 3), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(32, 64, 3),
                          tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(1600, 128),
                          tnn.ReLU(), tnn.Linear(128, 10))


def _torch_impl(model_name, state_dict, threads):
    import torch
    model = _torch_model(model_name)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step(x, y):
        model.train()
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    def predict(x):
        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(x))

    return train_step, predict, lambda: torch_threads(threads)


def _throughput(fn, data, batch, steps, repeats, warmup):
    """images/s of each of `repeats` timed runs of `steps` calls, after `warmup` calls."""
    for i in range(warmup):
        fn(*data[i % len(data)])
    if steps is None:  # aim at ~0.25 s per repeat
        t0 = time.perf_counter()
        fn(*data[0])
        steps = max(1, min(500, int(0.25 / max(time.perf_counter() - t0, 1e-6))))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            fn(*data[i % len(data)])
        rates.append(batch * steps / (time.perf_counter() - t0))
    return rates


def run(models=MODELS, batch_sizes=(32, 64, 256), threads=(1, 2), steps=None, repeats=5,
        warmup=5, impls=IMPLS, progress=True, seed=0, rounds=2, settle=0.3):
    """Measure every (model, batch, threads) cell; returns a list of row dicts.

    Each implementation runs in its own worker process (python -m cygrad.benchmark),
    `rounds` times in alternating blocks after a `settle` pause, and the figure is the
    median over all its timed runs: in one process cygrad and torch would share torch's
    OpenMP runtime and slow each other (see cygrad._config.openmp_runtime).
    steps (None: ~0.25 s per repeat), repeats, rounds and every batch size and thread
    count must be positive integers (ValueError otherwise).
    """
    for name, values in (("batch_sizes", batch_sizes), ("threads", threads),
                         ("steps", () if steps is None else (steps,)), ("repeats", (repeats,)),
                         ("warmup", (warmup + 1,)), ("rounds", (rounds,))):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"bench: {name} must be positive integers, got {v!r}")
    import importlib.util
    impls = [i for i in impls if i != "torch" or importlib.util.find_spec("torch")]
    cells = [(m, b, t) for m in models for b in batch_sizes for t in threads]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(cells) * len(impls) * rounds, desc="cygrad bench", unit="block",
                   leave=False)
    rows = []
    for model_name, batch, nt in cells:
        rates = {(impl, mode): [] for impl in impls for mode in ("train", "eval")}
        for _ in range(rounds):
            for impl in impls:
                if bar is not None:
                    bar.set_postfix_str(f"{model_name} b{batch} {nt}t {impl}")
                time.sleep(settle)  # let the previous runtime's spinning threads go idle
                spec = dict(impl=impl, model=model_name, batch=batch, threads=nt, steps=steps,
                            # the reference backend is slow: fewer repeats
                            repeats=repeats if impl != "reference" else max(1, min(repeats, 3)),
                            warmup=warmup if impl != "reference" else 1, seed=seed)
                for mode, values in _in_worker(spec).items():
                    rates[impl, mode] += values
                if bar is not None:
                    bar.update()
        row = {"model": model_name, "batch": batch, "threads": nt}
        row.update({f"{impl}_{mode}": statistics.median(v) for (impl, mode), v in rates.items()})
        rows.append(row)
    if bar is not None:
        bar.close()
    return rows


def _in_worker(spec):
    """{'train': [images/s per timed run], 'eval': [...]} of one implementation, measured
    in a fresh process (torch: without cygrad's malloc settings, as a torch user runs)."""
    import subprocess
    import sys
    env = dict(os.environ)
    if spec["impl"] == "torch":
        env["CYGRAD_MALLOC_TUNING"] = "0"
    out = subprocess.run([sys.executable, "-c", _WORKER, json.dumps(spec)],
                         capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"bench worker {spec['impl']} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# a worker process: torch (when measured) is imported before cygrad, so that it runs on its
# own OpenMP runtime as a torch user's process does
_WORKER = """
import json, sys
spec = json.loads(sys.argv[1])
if spec["impl"] == "torch":
    import torch
from cygrad.benchmark import _worker
print(json.dumps(_worker(spec)))
"""


def _worker(spec):
    """The body of one worker process: time train and eval of one implementation."""
    impl, model_name, batch, nt = spec["impl"], spec["model"], spec["batch"], spec["threads"]
    data = batches(model_name, batch)
    if impl == "torch":
        cg_model, *_ = _cygrad_impl(model_name, "kernels", nt, spec["seed"])  # the same weights
        train_step, predict, limit = _torch_impl(model_name, cg_model.state_dict(), nt)
    else:
        _, train_step, predict, limit = _cygrad_impl(
            model_name, "kernels" if impl == "cygrad" else "reference", nt, spec["seed"])
    result = {}
    with limit():
        for mode, fn in (("train", train_step), ("eval", lambda x, y: predict(x))):
            result[mode] = _throughput(fn, data, batch, spec["steps"], spec["repeats"],
                                       spec["warmup"])
    return result


def format_table(rows):
    """Markdown tables (train, then eval) with images/s and ratios."""
    out = []
    for mode in ("train", "eval"):
        out.append(f"\n{mode} (images/s, median)\n")
        out.append("| model | batch | threads | cygrad | reference | torch | cygrad/torch "
                   "| cygrad/reference |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in rows:
            c, ref, t = r.get(f"cygrad_{mode}"), r.get(f"reference_{mode}"), r.get(f"torch_{mode}")
            fmt = lambda v: f"{v:,.0f}" if v else "-"
            ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
            out.append(f"| {r['model']} | {r['batch']} | {r['threads']} | {fmt(c)} | {fmt(ref)} | {fmt(t)} "
                       f"| {ratio(c, t)} | {ratio(c, ref)} |")
    return "\n".join(out)


def main(args):
    """Entry point of `python -m cygrad bench` (args from cygrad.cli)."""
    from cygrad.cli import capped_threads
    models = MODELS if args.model == "all" else (args.model,)
    threads = tuple(dict.fromkeys(capped_threads(n) for n in args.threads))  # capped, once each
    impls = IMPLS if not args.no_reference else ("cygrad", "torch")
    rows = run(models, args.batch_size, threads, steps=args.steps, repeats=args.repeats,
               impls=impls, progress=not args.no_progress, rounds=args.rounds)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": cg.config(), "rows": rows}, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


def _positive_ints(text):
    """argparse type: comma-separated positive integers ("32,64,256")."""
    from cygrad.cli import positive_int
    values = tuple(positive_int(v) for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers, got {text!r}")
    return values


def add_parser(sub):
    from cygrad.cli import positive_int
    p = sub.add_parser("bench", help="training-step throughput: cygrad vs reference vs PyTorch")
    p.add_argument("--model", choices=["mlp", "cnn", "all"], default="all")
    p.add_argument("--batch-size", type=_positive_ints, default=(32, 64, 256),
                   help="comma-separated batch sizes (default 32,64,256)")
    p.add_argument("--threads", type=_positive_ints, default=(1, 2),
                   help="comma-separated thread counts (default 1,2; at most the CPU count)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="steps per timed repeat (default: ~0.25 s)")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="timed runs per block")
    p.add_argument("--rounds", type=positive_int, default=2,
                   help="blocks per implementation, alternating, each in its own process")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--no-reference", action="store_true", help="skip the (slow) NumPy reference backend")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=main)
    return p
