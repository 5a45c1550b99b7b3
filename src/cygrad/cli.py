"""Command line (`python -m cygrad` and the `cygrad` console script).

  cygrad --version                   cygrad <version>
  cygrad info                        version, OpenMP, instruction set, threads
  cygrad train mlp|cnn [options]     train on MNIST, evaluate on the test set each epoch;
                                     the history as JSON (--history, or beside --checkpoint),
                                     loss/accuracy curves with --plot FILE (matplotlib)
                                     (data-parallel: mpiexec -n K cygrad train cnn --distributed)
  cygrad eval CHECKPOINT             test accuracy of a checkpoint written by train
  cygrad bench [options]             training-step throughput vs reference and PyTorch
"""
import argparse
import sys
import time
from pathlib import Path

RECIPES = {"mlp": {"epochs": 10, "batch_size": 64}, "cnn": {"epochs": 5, "batch_size": 32}}
OPTIMIZERS = ("adam", "sgd", "momentum", "adagrad", "rmsprop", "adamw")


def _info(args):
    import cygrad
    cygrad.show_config()
    return 0


def make_optimizer(name, params, lr):
    from cygrad import optim
    if name == "sgd":
        return optim.SGD(params, lr=lr)
    if name == "momentum":
        return optim.SGD(params, lr=lr, momentum=0.9)
    return {"adam": optim.Adam, "adagrad": optim.Adagrad, "rmsprop": optim.RMSprop,
            "adamw": optim.AdamW}[name](params, lr=lr)


LR_SCHEDULES = ("none", "cosine", "step", "onecycle")


def make_scheduler(name, opt, epochs, steps_per_epoch):
    """--lr-schedule: cosine (CosineAnnealingLR over the epochs), step (StepLR: lr / 10
    every third of the epochs), onecycle (OneCycleLR up to --lr, stepped every batch), or
    none."""
    from cygrad.optim import lr_scheduler
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    if name == "step":
        return lr_scheduler.StepLR(opt, step_size=max(1, epochs // 3), gamma=0.1)
    if name == "onecycle":
        return lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"],
                                       total_steps=max(1, epochs * steps_per_epoch))
    return None


def _build(cg, arch, dtype, seed=None, batch_norm=False):
    """The model of `cygrad train` (--batch-norm: the CNN with batch normalisation)."""
    if batch_norm:
        if arch != "cnn":
            raise ValueError("--batch-norm is for the cnn (the mlp has no batch-norm variant)")
        return cg.models.cnn(dtype=dtype, seed=seed, batch_norm=True)
    return cg.models.BUILDERS[arch](dtype=dtype, seed=seed)


def _no_data_message(searched, download_error):
    from cygrad.data import FILES
    names = [n + ".gz" for split in ("train", "test") for n in FILES[split]]
    lines = ["cygrad: the MNIST files were not found. Looked in:"]
    lines += [f"  {d}" for d in searched]
    if download_error is not None:
        first = str(download_error).strip().splitlines()
        lines.append(f"and downloading them failed (offline?): {first[0] if first else download_error}")
        lines += [f"  {line.strip()}" for line in first[1:4]]
    lines += ["Put the four canonical IDX files (" + ", ".join(names) + ", .gz or not) in a folder",
              "and point cygrad at it:",
              "  python -m cygrad train mlp --data DIR",
              "  or: export CYGRAD_DATA=DIR"]
    return "\n".join(lines)


def _find_data(args):
    """The MNIST folder: --data, $CYGRAD_DATA, ~/.cache/cygrad/mnist, else a download; None
    (with a message on stderr) when none works."""
    from cygrad import data
    try:
        data.find_mnist(args.data, "train")
        return data.find_mnist(args.data, "test")
    except data.DataNotFoundError as e:
        searched = e.searched
    if args.no_download:
        print(_no_data_message(searched, None), file=sys.stderr)
        return None
    target = args.data if args.data is not None else data.default_roots()[-1]
    print(f"cygrad: MNIST not found locally, downloading into {target} ...", file=sys.stderr)
    try:
        return data.download_mnist(target, timeout=args.timeout)
    except OSError as e:
        print(_no_data_message(searched, e), file=sys.stderr)
        return None


def _train(args):
    import numpy as np
    import cygrad as cg
    rank = 0
    if args.distributed:
        from cygrad import distributed
        try:
            rank = distributed.init().rank
        except ImportError as e:  # the message says how to install mpi4py
            print(f"cygrad: error: {e}", file=sys.stderr)
            return 2
    recipe = RECIPES[args.model]
    epochs = args.epochs if args.epochs is not None else recipe["epochs"]
    batch_size = args.batch_size if args.batch_size is not None else recipe["batch_size"]
    root = _find_data(args)
    if root is None:
        return 2
    dtype = np.dtype(args.dtype)
    train_loader, test_loader = cg.data.mnist_loaders(
        root, batch_size=batch_size, flatten=args.model == "mlp", dtype=dtype, seed=args.seed)
    model = _build(cg, args.model, dtype, args.seed, args.batch_norm)
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr)
    scheduler = make_scheduler(args.lr_schedule, opt, epochs, len(train_loader))
    ranks = f"{distributed.init().size} ranks x " if args.distributed else ""
    if rank == 0:
        print(f"cygrad: training {args.model} ({model.num_parameters():,} parameters, {dtype.name}) "
              f"on MNIST from {root}: {opt}, batch {ranks}{batch_size}, {epochs} epochs, "
              f"{cg.get_num_threads()} threads, backend {cg.get_backend()}", file=sys.stderr)
    meta = {"arch": args.model, "dtype": dtype.name, "seed": args.seed, "batch_size": batch_size,
            "optimizer": args.optimizer, "lr": args.lr, "l1": args.l1,
            "lr_schedule": args.lr_schedule, "batch_norm": args.batch_norm}
    if args.lr_schedule != "none":  # the schedule is planned over this many epochs
        meta["schedule_epochs"] = epochs
    if args.resume and args.checkpoint and Path(args.checkpoint).exists() and rank == 0:
        saved = cg.io.read(args.checkpoint)[1]["meta"]
        changed = [f"{k} {saved[k]!r} -> {v!r}" for k, v in meta.items() if k in saved and saved[k] != v]
        if args.lr_schedule == "onecycle" and saved.get("schedule_epochs", epochs) != epochs:
            raise ValueError(f"{args.checkpoint} follows a one-cycle schedule planned over "
                             f"{saved['schedule_epochs']} epochs: resume it with --epochs "
                             f"{saved['schedule_epochs']}")
        if changed:
            print(f"cygrad: warning: resuming {args.checkpoint} with other settings than it was "
                  f"trained with ({', '.join(changed)}): the result will differ from an "
                  "uninterrupted run", file=sys.stderr)
    t0 = time.perf_counter()
    history = cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt, train_loader, epochs=epochs,
                           val_loader=test_loader, progress="epoch" if args.no_progress else True,
                           checkpoint=args.checkpoint, resume=args.resume, l1=args.l1, meta=meta,
                           distributed=args.distributed, scheduler=scheduler)
    wall = time.perf_counter() - t0
    if rank != 0:
        return 0
    _save_history(args, history)
    print("epoch  train_loss  train_acc  test_loss  test_acc  seconds  images/s")
    for i in range(len(history["epoch"])):
        print(f"{history['epoch'][i]:5d}  {history['loss'][i]:10.4f}  {history['accuracy'][i]:9.4f}"
              f"  {history['val_loss'][i]:9.4f}  {history['val_accuracy'][i]:8.4f}"
              f"  {history['seconds'][i]:7.1f}  {history['images_per_s'][i]:8,.0f}")
    if history["epoch"]:
        print(f"test accuracy {history['val_accuracy'][-1]:.4f} after epoch {history['epoch'][-1]}"
              f" ({wall:.1f} s this run)")
    return 0


def _history_path(args):
    """--history FILE, else the checkpoint's name with .history.json (run.npz ->
    run.history.json), else None."""
    if args.history:
        return Path(args.history)
    if args.checkpoint:
        return Path(args.checkpoint).with_suffix(".history.json")
    return None


def _save_history(args, history):
    """Write the history as JSON (and with --plot, its curves) after training."""
    path = _history_path(args)
    if path is not None:
        _write_json(path, history)
        print(f"cygrad: history written to {path}", file=sys.stderr)
    if args.plot and _plot_history(history, args.plot):
        print(f"cygrad: loss and accuracy curves written to {args.plot}", file=sys.stderr)
    elif args.plot:
        print(f"cygrad: --plot needs matplotlib, which is not installed (pip install "
              f"matplotlib): {args.plot} not written", file=sys.stderr)


def _write_json(path, obj):
    """JSON to `path` atomically (a temporary file in the same folder, then a rename)."""
    import json
    import os
    import tempfile
    from cygrad.io import file_mode
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _plot_history(history, path):
    """Loss and accuracy per epoch, train and test, side by side, saved to `path` with
    matplotlib (an optional package: False when it is not installed). Series that are all
    None are left out."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return False
    fig = Figure(figsize=(10, 4), layout="constrained")
    epochs = history["epoch"]
    for ax, (title, keys) in zip(fig.subplots(1, 2), (("loss", ("loss", "val_loss")),
                                                     ("accuracy", ("accuracy", "val_accuracy")))):
        for key, label in zip(keys, ("train", "test")):
            points = [(e, v) for e, v in zip(epochs, history[key]) if v is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.savefig(path)
    return True


def _eval(args):
    import numpy as np
    import cygrad as cg
    _, info = cg.io.read(args.checkpoint)
    meta = info.get("meta", {})
    name = meta.get("arch")
    if name not in cg.models.BUILDERS:
        raise cg.CheckpointError(f"{args.checkpoint}: key '__meta__' does not say which model it "
                                 f"holds (arch={name!r}); was it written by `cygrad train`?")
    dtype = np.dtype(meta.get("dtype", "float32"))
    model = _build(cg, name, dtype, batch_norm=bool(meta.get("batch_norm")))
    cg.load(args.checkpoint, model)
    root = _find_data(args)
    if root is None:
        return 2
    _, test_loader = cg.data.mnist_loaders(root, flatten=name == "mlp", dtype=dtype,
                                           test_batch_size=args.batch_size)
    result = cg.train.evaluate(model, test_loader, cg.nn.CrossEntropyLoss())
    print(f"{args.checkpoint}: {name} after epoch {meta.get('epoch', '?')}: test loss "
          f"{result['loss']:.4f}, test accuracy {result['accuracy']:.4f}")
    return 0


def _data_options(p):
    p.add_argument("--data", metavar="DIR", help="folder with the MNIST IDX files "
                   "(default: $CYGRAD_DATA, then ~/.cache/cygrad/mnist, else download there)")
    p.add_argument("--no-download", action="store_true", help="never try to download MNIST")
    p.add_argument("--timeout", type=float, default=20.0, help="download timeout per file, seconds")
    p.add_argument("--threads", type=int, metavar="N", help="kernel threads (default: OpenMP's)")
    p.add_argument("--backend", choices=("kernels", "reference"), default="kernels")


def build_parser():
    from cygrad import __version__
    parser = argparse.ArgumentParser(prog="cygrad", description="cygrad command line")
    parser.add_argument("--version", action="version", version=f"cygrad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print version, OpenMP, instruction set and threads")
    p.set_defaults(func=_info)

    p = sub.add_parser("train", help="train a model on MNIST (test set evaluated each epoch)")
    p.add_argument("model", choices=sorted(RECIPES))
    p.add_argument("--epochs", type=int, help="default 10 (mlp) or 5 (cnn)")
    p.add_argument("--batch-size", type=int, help="default 64 (mlp) or 32 (cnn)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                   help="momentum = SGD with momentum 0.9")
    p.add_argument("--l1", type=float, default=0.0, help="L1 penalty strength (L2: use adamw)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="none",
                   help="cosine: cosine annealing over the epochs; step: lr / 10 every third "
                        "of the epochs; onecycle: one cycle up to --lr, stepped every batch")
    p.add_argument("--batch-norm", action="store_true",
                   help="cnn with batch normalisation after each convolution and the hidden layer")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--checkpoint", metavar="PATH", help="save model + optimizer after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    p.add_argument("--history", metavar="FILE", help="write the per-epoch history as JSON "
                   "(default with --checkpoint run.npz: run.history.json)")
    p.add_argument("--plot", metavar="FILE", help="draw loss and accuracy curves (train and "
                   "test) into FILE (.png, .pdf, .svg; needs matplotlib)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and data order")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (a line per epoch only)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks (run under mpiexec -n K; needs "
                        "pip install 'cygrad[mpi]'); --batch-size is per rank")
    _data_options(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="test accuracy of a checkpoint written by `cygrad train`")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--batch-size", type=int, default=1000)
    _data_options(p)
    p.set_defaults(func=_eval)

    from cygrad import benchmark
    benchmark.add_parser(sub)
    return parser


def _run(args):
    """args.func under the requested backend and thread count (both restored afterwards)."""
    import contextlib
    import cygrad as cg
    with contextlib.ExitStack() as stack:
        if getattr(args, "backend", None):
            stack.enter_context(cg.use_backend(args.backend))
        if isinstance(getattr(args, "threads", None), int):  # (bench takes a list: its own)
            stack.enter_context(cg.threads(args.threads))
        return args.func(args)


PLOT_FORMATS = ("png", "pdf", "svg", "svgz", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "resume", False) and not args.checkpoint:
        build_parser().error("--resume needs --checkpoint PATH")
    if getattr(args, "plot", None) and Path(args.plot).suffix.lower()[1:] not in PLOT_FORMATS:
        build_parser().error(f"--plot {args.plot}: the file name must end in one of "
                             + ", ".join("." + f for f in PLOT_FORMATS))
    from cygrad.io import CheckpointError
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("cygrad: interrupted", file=sys.stderr)
        return 130
    except (CheckpointError, ValueError, OSError) as e:  # bad files or arguments: no traceback
        print(f"cygrad: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
