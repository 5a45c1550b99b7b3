"""Training-step and inference throughput: cygrad vs its NumPy reference vs PyTorch.

`python -m cygrad bench` runs this. Every implementation trains the same model from
the same initial weights on the same batches with the same loss (cross-entropy) and
optimizer (Adam, lr 1e-3), in one process, side by side; figures are images/s,
median of repeats after warm-up.
"""
import argparse
import contextlib
import json
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
    """Median images/s of `repeats` timed runs of `steps` calls, after `warmup` calls."""
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
    return statistics.median(rates)


def run(models=MODELS, batch_sizes=(32, 64, 256), threads=(1, 2), steps=None, repeats=5,
        warmup=5, impls=IMPLS, progress=True, seed=0):
    """Measure every (model, batch, threads) cell; returns a list of row dicts.
    steps (None: ~0.25 s per repeat), repeats and every batch size and thread count must
    be positive integers (ValueError otherwise)."""
    for name, values in (("batch_sizes", batch_sizes), ("threads", threads),
                         ("steps", () if steps is None else (steps,)), ("repeats", (repeats,)),
                         ("warmup", (warmup + 1,))):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"bench: {name} must be positive integers, got {v!r}")
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    impls = [i for i in impls if i != "torch" or have_torch]
    cells = [(m, b, t) for m in models for b in batch_sizes for t in threads]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(cells) * len(impls) * 2, desc="cygrad bench", unit="run", leave=False)
    rows = []
    for model_name, batch, nt in cells:
        data = batches(model_name, batch)
        row = {"model": model_name, "batch": batch, "threads": nt}
        state = None
        for impl in impls:
            if impl == "torch":
                train_step, predict, limit = _torch_impl(model_name, state, nt)
            else:
                model, train_step, predict, limit = _cygrad_impl(
                    model_name, "kernels" if impl == "cygrad" else "reference", nt, seed)
                if state is None:
                    state = {k: np.array(v) for k, v in model.state_dict().items()}
            # the reference backend is slow: fewer repeats
            reps = repeats if impl != "reference" else max(1, min(repeats, 3))
            time.sleep(0.3)  # let the previous runtime's spinning threads go idle (OpenBLAS spins ~0.1 s)
            with limit():
                for mode, fn in (("train", train_step), ("eval", lambda x, y: predict(x))):
                    if bar is not None:
                        bar.set_postfix_str(f"{model_name} b{batch} {nt}t {impl} {mode}")
                    row[f"{impl}_{mode}"] = _throughput(fn, data, batch, steps, reps,
                                                        warmup if impl != "reference" else 1)
                    if bar is not None:
                        bar.update()
        rows.append(row)
    if bar is not None:
        bar.close()
    return rows


def format_table(rows):
    """Markdown tables (train, then eval) with images/s and ratios."""
    out = []
    for mode in ("train", "eval"):
        out.append(f"\n{mode} (images/s, median)\n")
        out.append("| model | batch | threads | cygrad | reference | torch | cygrad/torch | cygrad/reference |")
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
    rows = run(models, args.batch_size, threads, steps=args.steps,
               repeats=args.repeats, impls=impls, progress=not args.no_progress)
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
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--no-reference", action="store_true", help="skip the (slow) NumPy reference backend")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=main)
    return p
