"""Command line (`python -m cygrad` and the `cygrad` console script).

  cygrad --version                   cygrad <version>
  cygrad info                        version, OpenMP, instruction set, threads
  cygrad train mlp|cnn [options]     train on MNIST, evaluate on the test set each epoch;
                                     the history as JSON (--history, or beside --checkpoint),
                                     loss/accuracy curves with --plot FILE (matplotlib)
                                     (data-parallel: mpiexec -n K cygrad train cnn --distributed)
  cygrad eval CHECKPOINT             test accuracy of a checkpoint written by train
  cygrad bench [options]             training-step throughput vs reference and PyTorch

Every bad argument is a one-line error naming the flag, before any data is loaded.
`train --resume` continues a checkpoint with the settings it records (lr, optimizer, l1,
batch size, schedule, epochs, seed, data folder); a setting given that differs is applied,
announced and recorded in the checkpoint's meta (with the list of changes), so the meta is
always what the run did. A run that diverges (a non-finite loss) stops with exit status 1
and keeps its last finite checkpoint (--on-nan warn goes on).
"""
import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

RECIPES = {"mlp": {"epochs": 10, "batch_size": 64}, "cnn": {"epochs": 5, "batch_size": 32}}
OPTIMIZERS = ("adam", "sgd", "momentum", "adagrad", "rmsprop", "adamw")
LR_SCHEDULES = ("none", "cosine", "step", "onecycle")
# `train`'s settings other than the recipe's: recorded in every checkpoint, restored by --resume
DEFAULTS = {"lr": 1e-3, "optimizer": "adam", "l1": 0.0, "lr_schedule": "none",
            "batch_norm": False, "dtype": "float32", "seed": 0}
FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
         "optimizer": "--optimizer", "l1": "--l1", "lr_schedule": "--lr-schedule",
         "batch_norm": "--batch-norm", "dtype": "--dtype", "seed": "--seed"}
# settings that give the saved state its shape: a resumed run cannot change them
FIXED = ("optimizer", "lr_schedule", "batch_norm", "dtype")
MNIST_TRAIN = 60_000  # the largest useful batch: the whole MNIST training set


# -- argument types: each error is one line naming the flag ---------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors ("cygrad train: error: argument --epochs: ...")."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text, maximum=None, what=""):
    """argparse type: an integer >= 1 (and <= maximum, `what` saying why)."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    if maximum is not None and value > maximum:
        raise argparse.ArgumentTypeError(f"must be at most {maximum}{what}, got {value}")
    return value


def _batch_size(text):
    return positive_int(text, MNIST_TRAIN, " (the size of the MNIST training set)")


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _finite(low, strict):
    """argparse type: a finite float > low (strict) or >= low."""
    bound = f"{'>' if strict else '>='} {low:g}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {value}")
        return value
    return parse


def cpu_count():
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def capped_threads(n, flag="--threads"):
    """n, or the CPU count with a warning when n is larger (more threads than CPUs only
    makes OpenMP's threads wait for each other)."""
    cpus = cpu_count()
    if n > cpus:
        print(f"cygrad: warning: {flag} {n} is more than the {cpus} CPUs: using {cpus}",
              file=sys.stderr)
        return cpus
    return n


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
    if batch_norm and arch == "cnn":
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


def _mnist_in(folder):
    """The folder (or its mnist/ subfolder) holding both splits, else None."""
    from cygrad import data
    try:
        data.find_mnist(folder, "train")
        return data.find_mnist(folder, "test")
    except data.DataNotFoundError:
        return None


def _find_data(args, recorded=None):
    """The MNIST folder: --data; else `recorded` (the folder a checkpoint was trained from)
    while it holds the files; else $CYGRAD_DATA, ~/.cache/cygrad/mnist, else a download.
    None (with a message on stderr) when none works."""
    from cygrad import data
    if args.data is None and isinstance(recorded, str) and recorded:
        found = _mnist_in(recorded)
        if found is not None:
            return found
        print(f"cygrad: {args.checkpoint} was trained on MNIST from {recorded}, which no longer "
              "holds it: looking elsewhere", file=sys.stderr)
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


# -- train: settings, resume, the run ------------------------------------------------------
def _saved_meta(args, ctx):
    """The meta of the checkpoint --resume continues (None for a new run). Distributed:
    rank 0 reads it and every rank gets it."""
    import cygrad as cg
    if not args.resume:
        return None
    if ctx is None:
        return _read_meta(cg, args.checkpoint)
    with ctx.errors():
        meta = _read_meta(cg, args.checkpoint) if ctx.rank == 0 else None
    return ctx.bcast(meta)


def _read_meta(cg, checkpoint):
    if not Path(checkpoint).exists():
        return None
    return cg.io.read(checkpoint)[1].get("meta", {})


def _settings(args, saved):
    """(settings, changes): the recipe's defaults, overridden by the checkpoint's settings
    (resumed run), overridden by the flags given; `changes` maps each given setting that
    differs from the checkpoint's to (saved, given). ValueError for a change a resumed
    run cannot make, before any data is loaded."""
    given = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    settings = {"arch": args.model, **DEFAULTS, **RECIPES[args.model]}
    changes = {}
    if saved is not None:
        arch = saved.get("arch", args.model)
        if arch != args.model:
            raise ValueError(f"{args.checkpoint} holds the {arch} model: resume it with "
                             f"`cygrad train {arch} --resume`")
        settings.update({k: saved[k] for k in FLAGS if k in saved})
        changes = {k: (settings[k], v) for k, v in given.items() if k in saved and saved[k] != v}
    settings.update(given)
    for key in FIXED:
        if key in changes:
            raise ValueError(f"{FLAGS[key]}: {args.checkpoint} was trained with {key} "
                             f"{changes[key][0]!r}, which a resumed run cannot change to "
                             f"{changes[key][1]!r} (its saved state belongs to it): leave "
                             f"{FLAGS[key]} out, or start a new run with another --checkpoint")
    if settings["batch_norm"] and settings["arch"] != "cnn":
        raise ValueError("--batch-norm is for the cnn (the mlp has no batch-norm variant)")
    return settings, changes


def _check_schedule_plan(args, settings, saved, ranks):
    """A one-cycle schedule is planned for a number of steps: a resumed run must take them
    with the same epochs, batch size and ranks (the others continue their formula)."""
    if saved is None or settings["lr_schedule"] != "onecycle":
        return
    plan = {"epochs": saved.get("schedule_epochs", settings["epochs"]),
            "batch_size": saved.get("batch_size"), "ranks": saved.get("ranks", 1)}
    now = {"epochs": settings["epochs"], "batch_size": settings["batch_size"], "ranks": ranks}
    if plan != now:
        raise ValueError(f"{args.checkpoint} follows a one-cycle schedule planned over "
                         f"{plan['epochs']} epochs of batch {plan['batch_size']} on "
                         f"{plan['ranks']} rank(s): resume it with --epochs {plan['epochs']} "
                         f"--batch-size {plan['batch_size']} on {plan['ranks']} rank(s)")


def _meta(settings, saved, changes, root, ranks):
    """The meta every checkpoint of this run records: the settings in effect, the data
    folder, the ranks, the schedule's plan and every change a resume made."""
    meta = dict(settings, data=str(Path(root).resolve()), ranks=ranks)
    if settings["lr_schedule"] != "none":  # the plan of the scheduler's (restored) state
        meta["schedule_epochs"] = (saved or {}).get("schedule_epochs", settings["epochs"])
    log = list((saved or {}).get("changes", []))
    if changes:
        log.append({"after_epoch": saved.get("epoch", 0),
                    **{k: [old, new] for k, (old, new) in changes.items()}})
    if log:
        meta["changes"] = log
    return meta


def _finished(args, saved, epochs):
    """A line saying a resumed run has nothing left to do, else None."""
    done = int(saved.get("epoch", 0)) if saved else 0
    if saved and saved.get("stopped_by"):
        return f"{args.checkpoint} was stopped by {saved['stopped_by']} after epoch {done}"
    if saved and done >= epochs:
        return f"{args.checkpoint} has completed {done} epochs (--epochs {epochs})"
    return None


def _announce_resume(args, saved, settings, changes):
    done = int(saved.get("epoch", 0))
    print(f"cygrad: resuming {args.checkpoint} from epoch {done} (to epoch "
          f"{settings['epochs']})", file=sys.stderr)
    if changes:
        listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
        differ = ("" if set(changes) <= {"epochs", "data", "ranks"} else
                  ": the result will differ from an uninterrupted run")
        print(f"cygrad: notice: resuming with changed settings ({listed}){differ}",
              file=sys.stderr)
    if "epochs" in changes and settings["lr_schedule"] in ("cosine", "step"):
        print(f"cygrad: notice: the {settings['lr_schedule']} schedule stays planned over "
              f"{saved.get('schedule_epochs', changes['epochs'][0])} epochs (its saved state)",
              file=sys.stderr)


class _NewLearningRate:
    """fit callback of a resumed run given another --lr: once fit has restored the
    checkpoint (on_train_begin), every learning rate of the optimizer and scheduler is
    scaled by new / old, so the run goes on as if --lr had been the base lr from the
    start (its schedule included)."""

    KEYS = ("lr", "initial_lr", "max_lr", "min_lr")  # where schedulers keep learning rates

    def __init__(self, optimizer, scheduler, old, new):
        self.optimizer, self.scheduler, self.old, self.new = optimizer, scheduler, old, new

    def _scaled(self, lr):
        return self.new if lr == self.old else lr * (self.new / self.old)

    def on_train_begin(self, model, history):
        for group in self.optimizer.param_groups:
            for key in self.KEYS:
                if key in group:
                    group[key] = self._scaled(group[key])
        if self.scheduler is not None:
            self.scheduler.base_lrs = [self._scaled(lr) for lr in self.scheduler.base_lrs]
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]


def _train(args):
    """`cygrad train`: settings (restored on --resume), data, then the run."""
    ctx = None
    if args.distributed:
        from cygrad import distributed
        try:
            ctx = distributed.init()
        except ImportError as e:  # the message says how to install mpi4py
            print(f"cygrad: error: {e}", file=sys.stderr)
            return 2
    rank, ranks = (0, 1) if ctx is None else (ctx.rank, ctx.size)
    if args.checkpoint and rank == 0:  # an unusable path fails now, not after epoch 1
        from cygrad import io
        try:
            io.check_path(args.checkpoint)
        except ValueError as e:
            raise ValueError(f"--checkpoint: {e}") from None
    saved = _saved_meta(args, ctx)
    settings, changes = _settings(args, saved)
    finished = _finished(args, saved, settings["epochs"])
    if finished:
        if rank == 0:
            print(f"cygrad: {finished}: nothing to do", file=sys.stderr)
        return 0
    _check_schedule_plan(args, settings, saved, ranks)
    if saved is not None and saved.get("ranks", 1) != ranks:
        changes["ranks"] = (saved.get("ranks", 1), ranks)
    if args.resume and saved is None and rank == 0:
        print(f"cygrad: {args.checkpoint} does not exist yet: starting a new run",
              file=sys.stderr)
    root = _train_data(args, saved, changes, ctx)
    if root is None:
        return 2
    return _run_training(args, settings, saved, changes, root, ctx)


def _train_data(args, saved, changes, ctx):
    """The MNIST folder (the checkpoint's by default, see _find_data), a changed one noted
    in `changes`; None when not found (on every rank, if any rank lacks it)."""
    root = _find_data(args, (saved or {}).get("data"))
    if ctx is not None:  # a rank without the data must not leave the others waiting
        ctx.agree("MNIST found (True/False)", root is not None)
        if root is None:
            return None
    if root is not None and saved is not None and \
            saved.get("data") not in (None, str(Path(root).resolve())):
        changes["data"] = (saved["data"], str(Path(root).resolve()))
    return root


def _run_training(args, settings, saved, changes, root, ctx):
    """Build loaders, model, optimizer and schedule from the settings; fit; report."""
    import numpy as np
    import cygrad as cg
    rank, ranks = (0, 1) if ctx is None else (ctx.rank, ctx.size)
    epochs, batch_size, arch = settings["epochs"], settings["batch_size"], settings["arch"]
    dtype = np.dtype(settings["dtype"])
    train_loader, test_loader = cg.data.mnist_loaders(
        root, batch_size=batch_size, flatten=arch == "mlp", dtype=dtype, seed=settings["seed"])
    model = _build(cg, arch, dtype, settings["seed"], settings["batch_norm"])
    opt = make_optimizer(settings["optimizer"], model.parameters(), settings["lr"])
    steps = len(train_loader)
    if ctx is not None:  # each rank takes len / ranks batches per epoch
        from cygrad.distributed import ShardedLoader
        steps = len(ShardedLoader(train_loader, 0, ranks))
    scheduler = make_scheduler(settings["lr_schedule"], opt, epochs, steps)
    callbacks = []
    if "lr" in changes:
        callbacks.append(_NewLearningRate(opt, scheduler, *changes["lr"]))
    if rank == 0:
        if saved is not None:
            _announce_resume(args, saved, settings, changes)
        per_rank = f"{ranks} ranks x " if ctx is not None else ""
        print(f"cygrad: training {arch} ({model.num_parameters():,} parameters, {dtype.name}) "
              f"on MNIST from {root}: {_recipe_line(settings)}, batch {per_rank}{batch_size}, "
              f"{epochs} epochs, "
              f"{cg.get_num_threads()} threads, backend {cg.get_backend()}", file=sys.stderr)
    t0 = time.perf_counter()
    history = cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt, train_loader, epochs=epochs,
                           val_loader=test_loader, progress="epoch" if args.no_progress else True,
                           checkpoint=args.checkpoint, resume=args.resume, l1=settings["l1"],
                           meta=_meta(settings, saved, changes, root, ranks),
                           distributed=args.distributed, scheduler=scheduler,
                           callbacks=callbacks, on_nan=args.on_nan)
    if rank == 0:
        _save_history(args, history)
        _print_table(history, time.perf_counter() - t0)
    return 0


def _recipe_line(settings):
    """The optimizer part of the banner, from the settings in effect: 'adam lr 0.001'
    (+ the schedule and L1 when there are)."""
    parts = [f"{settings['optimizer']} lr {settings['lr']:g}"]
    if settings["lr_schedule"] != "none":
        parts.append(f"{settings['lr_schedule']} schedule")
    if settings["l1"]:
        parts.append(f"l1 {settings['l1']:g}")
    return ", ".join(parts)


def _cell(value, spec):
    """value formatted by spec ('10.4f'), or '-' as wide when it is None."""
    return format(value, spec) if value is not None else "-".rjust(int(spec.split(".")[0]))


def _print_table(history, wall):
    """The per-epoch table on stdout ('-' where a value is missing)."""
    print("epoch  train_loss  train_acc  test_loss  test_acc  seconds  images/s")
    for i in range(len(history["epoch"])):
        print(f"{history['epoch'][i]:5d}  {_cell(history['loss'][i], '10.4f')}  "
              f"{_cell(history['accuracy'][i], '9.4f')}  {_cell(history['val_loss'][i], '9.4f')}  "
              f"{_cell(history['val_accuracy'][i], '8.4f')}  {history['seconds'][i]:7.1f}  "
              f"{history['images_per_s'][i]:8,.0f}")
    if history["epoch"] and history["val_accuracy"][-1] is not None:
        print(f"test accuracy {history['val_accuracy'][-1]:.4f} after epoch {history['epoch'][-1]}"
              f" ({wall:.1f} s this run)")


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
    root = _find_data(args, meta.get("data"))  # the folder it was trained from, first
    if root is None:
        return 2
    _, test_loader = cg.data.mnist_loaders(root, flatten=name == "mlp", dtype=dtype,
                                           test_batch_size=args.batch_size)
    result = cg.train.evaluate(model, test_loader, cg.nn.CrossEntropyLoss())
    if result["loss"] is None:
        raise ValueError(f"{root}: the MNIST test split holds no images")
    print(f"{args.checkpoint}: {name} after epoch {meta.get('epoch', '?')}: test loss "
          f"{result['loss']:.4f}, test accuracy {result['accuracy']:.4f}")
    return 0


def _data_options(p):
    p.add_argument("--data", metavar="DIR", help="folder with the MNIST IDX files "
                   "(default: $CYGRAD_DATA, then ~/.cache/cygrad/mnist, else download there)")
    p.add_argument("--no-download", action="store_true", help="never try to download MNIST")
    p.add_argument("--timeout", type=_finite(0, strict=True), default=20.0,
                   help="download timeout per file, seconds")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="kernel threads (default: OpenMP's; at most the CPU count)")
    p.add_argument("--backend", choices=("kernels", "reference"), default="kernels")


def _train_parser(sub):
    p = sub.add_parser("train", help="train a model on MNIST (test set evaluated each epoch)",
                       description="Train on MNIST. With --resume, the settings below default to "
                       "the checkpoint's; a setting given that differs is applied, announced and "
                       "recorded in the checkpoint.")
    p.add_argument("model", choices=sorted(RECIPES))
    p.add_argument("--epochs", type=positive_int, help="train until this epoch (default 10 "
                   "for mlp, 5 for cnn)")
    p.add_argument("--batch-size", type=_batch_size, help="default 64 (mlp) or 32 (cnn)")
    p.add_argument("--lr", type=_finite(0, strict=True), help="learning rate (default 1e-3)")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="default adam; momentum = SGD with momentum 0.9")
    p.add_argument("--l1", type=_finite(0, strict=False),
                   help="L1 penalty strength (default 0; L2: use adamw)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="none (default); cosine: cosine annealing over the epochs; step: lr / 10 "
                        "every third of the epochs; onecycle: one cycle up to --lr, stepped "
                        "every batch")
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction,
                   help="cnn with batch normalisation after each convolution and the hidden layer")
    p.add_argument("--dtype", choices=("float32", "float64"), help="default float32")
    p.add_argument("--seed", type=_seed, help="initial weights and data order (default 0)")
    p.add_argument("--checkpoint", metavar="PATH", help="save model + optimizer after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    p.add_argument("--on-nan", choices=("stop", "warn"), default="stop",
                   help="a non-finite loss: stop (default; exit 1, the checkpoint keeps the last "
                        "finite epoch) or warn and go on")
    p.add_argument("--history", metavar="FILE", help="write the per-epoch history as JSON "
                   "(default with --checkpoint run.npz: run.history.json)")
    p.add_argument("--plot", metavar="FILE", help="draw loss and accuracy curves (train and "
                   "test) into FILE (.png, .pdf, .svg; needs matplotlib)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (a line per epoch only)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks (run under mpiexec -n K; needs "
                        "pip install 'cygrad[mpi]'); --batch-size is per rank")
    _data_options(p)
    p.set_defaults(func=_train, parser=p)


def build_parser():
    from cygrad import __version__
    parser = _Parser(prog="cygrad", description="cygrad command line")
    parser.add_argument("--version", action="version", version=f"cygrad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print version, OpenMP, instruction set and threads")
    p.set_defaults(func=_info)
    _train_parser(sub)
    p = sub.add_parser("eval", help="test accuracy of a checkpoint written by `cygrad train`")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--batch-size", type=_batch_size, default=1000)
    _data_options(p)
    p.set_defaults(func=_eval)

    from cygrad import benchmark
    benchmark.add_parser(sub)
    return parser


def _run(args):
    """args.func under the requested backend and thread count (both restored afterwards),
    warnings shown as one line each."""
    import contextlib
    import cygrad as cg
    with contextlib.ExitStack() as stack:
        if getattr(args, "backend", None):
            stack.enter_context(cg.use_backend(args.backend))
        if isinstance(getattr(args, "threads", None), int):  # (bench takes a list: its own)
            stack.enter_context(cg.threads(capped_threads(args.threads)))
        stack.enter_context(warnings.catch_warnings())
        warnings.showwarning = _one_line_warning
        return args.func(args)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"cygrad: warning: {message}", file=sys.stderr)


PLOT_FORMATS = ("png", "pdf", "svg", "svgz", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def _check_args(parser, args):
    """Checks across arguments (one-line errors, before anything runs)."""
    parser = getattr(args, "parser", parser)  # the subcommand's: "cygrad train: error: ..."
    if getattr(args, "resume", False) and not args.checkpoint:
        parser.error("argument --resume: needs --checkpoint PATH")
    if getattr(args, "plot", None) and Path(args.plot).suffix.lower()[1:] not in PLOT_FORMATS:
        parser.error(f"--plot {args.plot}: the file name must end in one of "
                     + ", ".join("." + f for f in PLOT_FORMATS))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    from cygrad.distributed import RemoteError
    from cygrad.io import CheckpointError
    from cygrad.train import DivergenceError
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("cygrad: interrupted", file=sys.stderr)
        return 130
    except (DivergenceError, RemoteError) as e:  # the run started and failed
        print(f"cygrad: error: {e}", file=sys.stderr)
        return 1
    except MemoryError as e:
        print(f"cygrad: error: out of memory ({e or 'MemoryError'}): try a smaller --batch-size",
              file=sys.stderr)
        return 1
    except (CheckpointError, ValueError, OSError) as e:  # bad files or arguments: no traceback
        print(f"cygrad: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
