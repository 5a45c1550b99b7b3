"""The training loop: fit (progress bar, validation, per-epoch checkpoints, resume, L1,
callbacks, a stop on divergence) and evaluate. The callbacks (EarlyStopping, CSVLogger)
live in cygrad.callbacks and are exported here too."""
import contextlib
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from cygrad import backend, io
from cygrad.autograd import no_grad
from cygrad.callbacks import Callback, CSVLogger, EarlyStopping
from cygrad.tensor import Tensor

HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images_per_s")
ON_NAN = ("stop", "warn")


class DivergenceError(ValueError):
    """fit stopped because training diverged: a loss, or the parameters after an epoch, are
    not finite. `.epoch` is 1-based; `.step` the 1-based batch of that epoch (None when
    the end-of-epoch check found it); `.value` the non-finite loss (None for parameters)."""

    def __init__(self, message, epoch, step=None, value=None):
        super().__init__(message)
        self.epoch, self.step, self.value = epoch, step, value


def _correct(logits, y):
    """Number of rows whose argmax is the target class, for class-index targets (N,) and
    for probability / one-hot targets (N, C) (the class is the row's argmax; ties: the
    first), as CrossEntropyLoss accepts both; None for anything else (regression)."""
    logits = logits.data if isinstance(logits, Tensor) else logits
    y = y.data if isinstance(y, Tensor) else np.asarray(y)
    if logits.ndim != 2 or logits.shape[1] < 2:
        return None
    if y.ndim == 1 and y.dtype.kind in "iu":
        target = y
    elif _probability_rows(y, logits.shape):
        target = y.argmax(axis=1)
    else:
        return None
    return int(np.count_nonzero(logits.argmax(axis=1) == target))


def _probability_rows(y, shape):
    """True for float targets shaped like the logits whose rows are distributions:
    entries in [0, 1], each row summing to 1 within 1e-3 (one-hot, smoothed, mixed)."""
    if y.shape != shape or y.dtype.kind != "f":
        return False
    return bool(np.all((y >= 0) & (y <= 1)) and np.all(np.abs(y.sum(axis=1) - 1) <= 1e-3))


def evaluate(model, loader, loss_fn=None, _dist=None):
    """{'loss': mean loss per sample (None without loss_fn), 'accuracy': fraction correct
    (None for non-classification)} over the loader, in eval mode (mode restored after)."""
    total, loss_sum, correct = _evaluate_sums(model, loader, loss_fn)
    if _dist is not None:  # each rank evaluated its shard
        total, loss_sum, c = _dist.sum([total, loss_sum, -1 if correct is None else correct])
        total, loss_sum, correct = int(total), float(loss_sum), None if correct is None else int(c)
    return {"loss": loss_sum / total if loss_fn is not None and total else None,
            "accuracy": correct / total if correct is not None and total else None}


def _evaluate_sums(model, loader, loss_fn):
    """(samples, loss sum, correct count or None) over the loader (nothing recorded)."""
    was_training = model.training
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    try:
        with no_grad():
            for xb, yb in loader:
                logits = model(xb)
                n = xb.shape[0]
                if loss_fn is not None:
                    loss_sum += _batch_sum(float(loss_fn(logits, yb)), n, loss_fn)
                c = _correct(logits, yb)
                correct = None if c is None or correct is None else correct + c
                total += n
    finally:
        model.train(was_training)
    return total, loss_sum, correct


def _batch_sum(loss, n, loss_fn):
    """A batch's loss summed over its n samples: loss * n for a mean, the loss itself for
    reduction='sum' (so loss sums / samples is the mean loss per sample either way)."""
    return loss if getattr(loss_fn, "reduction", "mean") == "sum" else loss * n


def _dropout_state(model):
    """Each Dropout's (seed, calls): where its mask stream continues."""
    return {name: [m.seed, m.calls] for name, m in model.named_modules() if hasattr(m, "calls")}


def _restore_dropout(model, state):
    for name, m in model.named_modules():
        if name in state and hasattr(m, "calls"):
            m.seed, m.calls = (int(v) for v in state[name])


def _progress_bar(total, desc, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=True, dynamic_ncols=True,
                file=sys.stderr)


def fit(model, loss_fn, optimizer, train_loader, *, epochs, val_loader=None, progress=True,
        checkpoint=None, resume=False, l1=0.0, meta=None, distributed=False, callbacks=None,
        scheduler=None, on_nan="stop"):
    """Train for `epochs` epochs; return the history (a dict of per-epoch lists).

    Each step: forward, loss, zero_grad, backward, optional L1 (loss += l1 * sum|w|,
    grad += l1 * sign(w) over every parameter), optimizer step. After each epoch the
    validation loader is evaluated, the callbacks are called and, with `checkpoint`,
    model + optimizer + history + callback states are saved atomically (so Ctrl-C never
    loses the last checkpoint). resume=True with an existing checkpoint continues after
    its last epoch: the data order depends only on (seed, epoch) and all state is
    restored, so the result is bitwise identical to an uninterrupted run. `meta`
    (JSON-serialisable) is stored in every checkpoint. Accuracy is reported for
    class-index targets and for probability / one-hot targets (N, C), else None.
    callbacks: a list of callback objects (cygrad.callbacks: EarlyStopping, CSVLogger, or
    your own; the protocol, and what resume does with their state, is described there);
    one whose on_epoch_end returns True stops training after that epoch.
    scheduler: a cygrad.optim.lr_scheduler scheduler, stepped as torch's documentation
    says: after every optimizer step when its `interval` is "step" (OneCycleLR), else
    after every epoch (ReduceLROnPlateau with the epoch's val_loss, or its training loss
    without a validation loader). Its state is saved in every checkpoint and restored
    on resume.
    progress: True (a tqdm bar with loss, accuracy and images/s, and a line per epoch on
    stderr), 'epoch' (the lines only) or False (silent).
    on_nan: "stop" (default) raises DivergenceError at the first non-finite training loss
    (before that step's update), or after an epoch whose validation loss or parameters
    are not finite (before its checkpoint), naming the epoch and step: the checkpoint
    keeps the last finite epoch. "warn" warns once per epoch and goes on; a checkpoint is
    still never written with non-finite parameters.
    A resumed run that has already completed `epochs` epochs (or was stopped by a
    callback) trains nothing and returns the saved history.
    distributed=True (under `mpiexec -n K`, needs mpi4py): data-parallel over the MPI
    ranks (cygrad.distributed): rank 0's model and optimizer state are broadcast, each
    rank trains on its shard of every global batch, gradients are averaged with one
    Allreduce per step, the history holds metrics over all ranks, only rank 0 prints
    and writes the checkpoint, and an exception on any rank stops every rank.
    With `checkpoint`, fit holds the checkpoint's lock (cygrad.io.CheckpointLock) for
    the whole run: another process training into the same path is refused at its start
    with CheckpointInUseError naming this process.
    """
    _check_fit_args(epochs, l1, on_nan, progress)
    dist = None
    if distributed:
        from cygrad import distributed as dist_module
        dist = dist_module.init(model, optimizer)
        train_loader, val_loader = dist.shard(train_loader), dist.shard(val_loader, pad=False)
        progress = progress if dist.rank == 0 else False
    callbacks = _active(callbacks, dist)
    schedule = _Schedule(scheduler, val_loader is not None)
    lock = None
    if checkpoint is not None and (dist is None or dist.rank == 0):
        with _reported(dist):  # a second writer of this checkpoint is refused at once
            lock = io.CheckpointLock(checkpoint).acquire()
    try:
        history = {k: [] for k in HISTORY_KEYS}
        start, saved = 0, None
        if resume and checkpoint is not None:
            with _reported(dist):
                saved = _resume(checkpoint, model, optimizer, scheduler, dist)
            if saved is not None:
                start = int(saved.get("epoch", 0))
                history = {k: list(saved.get("history", {}).get(k, [])) for k in HISTORY_KEYS}
                _restore_dropout(model, saved.get("dropout", {}))
        stopped_by = (saved or {}).get("stopped_by")
        with _reported(dist):
            _begin(callbacks, model, history, (saved or {}).get("callbacks", {}))
        if progress and saved is not None and (stopped_by or start >= epochs):
            why = (f"was stopped by {stopped_by} after epoch {start}" if stopped_by
                   else f"has completed {start} epochs (epochs={epochs})")
            print(f"the run in {checkpoint} {why}: nothing to do", file=sys.stderr)
        guard = _Divergence(on_nan, checkpoint, start if saved is not None else None)
        for epoch in range(start, start if stopped_by else epochs):
            try:
                with _reported(dist):
                    record = _epoch(model, loss_fn, optimizer, train_loader, val_loader, l1, progress,
                                    epoch, epochs, dist, schedule, guard)
                    finite = guard.epoch_end(record, optimizer)
                    for k in HISTORY_KEYS:
                        history[k].append(record[k])
                    schedule.epoch_end(record)
                    stopped_by = _epoch_end(callbacks, epoch, record, dist)
                    if checkpoint is not None and finite and (dist is None or dist.rank == 0):
                        states, arrays = _states(callbacks)
                        io.save(checkpoint, model, optimizer, scheduler=scheduler, arrays=arrays,
                                epoch=epoch + 1, history=history, dropout=_dropout_state(model),
                                callbacks=states, stopped_by=stopped_by, **(meta or {}))
                    if dist is not None:
                        dist.check()  # rank 0's save succeeded (or every rank raises)
                    if checkpoint is not None and finite:
                        guard.saved = epoch + 1  # (every rank: for its messages)
            except KeyboardInterrupt:
                done = f"epoch {start}" if start else "nothing yet"
                where = "" if checkpoint is None else (
                    f"; the last checkpoint ({checkpoint}) is intact: resume with resume=True / --resume")
                print(f"\ninterrupted during epoch {epoch + 1} (completed: {done}){where}", file=sys.stderr)
                raise
            start = epoch + 1
            if stopped_by:
                if progress:
                    print(f"stopped by {stopped_by} after epoch {start}", file=sys.stderr)
                break
        for _, cb in callbacks:  # after the last collective: an error here is an uncaught one
            _call(cb, "on_train_end", model, history)
        return history
    finally:
        if lock is not None:
            lock.release()


def _check_fit_args(epochs, l1, on_nan, progress):
    """TypeError / ValueError naming the fit argument that cannot be used."""
    if isinstance(epochs, (bool, np.bool_)) or not isinstance(epochs, (int, np.integer)):
        raise TypeError(f"fit: epochs must be an int, got {type(epochs).__name__}")
    if epochs < 1:
        raise ValueError(f"fit: epochs must be >= 1, got {epochs}")
    if isinstance(l1, (bool, np.bool_)) or \
            not isinstance(l1, (int, float, np.integer, np.floating)):
        raise TypeError(f"fit: l1 must be a real number, got {type(l1).__name__}")
    if not (math.isfinite(l1) and l1 >= 0):
        raise ValueError(f"fit: l1 must be finite and >= 0, got {l1}")
    if on_nan not in ON_NAN:
        raise ValueError(f"fit: on_nan must be 'stop' or 'warn', got {on_nan!r}")
    if not (isinstance(progress, (bool, np.bool_))
            or (isinstance(progress, str) and progress == "epoch")):
        raise ValueError(f"fit: progress must be True, False or 'epoch', got {progress!r}")


class _Divergence:
    """fit's watch on non-finite values (see on_nan in fit's docstring). `saved`: the
    epoch of the last checkpoint written or resumed from (None: none)."""

    def __init__(self, on_nan, checkpoint, saved):
        self.on_nan, self.checkpoint, self.saved = on_nan, checkpoint, saved
        self.bad_steps = []  # (step, loss) of this epoch's non-finite training losses

    def loss(self, value, epoch, step):
        """Before step `step`'s update: stop (or note) a non-finite training loss."""
        if math.isfinite(value):
            return
        if self.on_nan == "stop":
            raise DivergenceError(f"training diverged: the loss is {value} at epoch {epoch}, "
                                  f"step {step}{self._kept()}{_ADVICE}", epoch, step, value)
        self.bad_steps.append((step, value))

    def epoch_end(self, record, optimizer):
        """After the epoch's validation: stop on (or warn about) non-finite losses or
        parameters; True when the parameters may be checkpointed."""
        bad = [f"{k} is {record[k]}" for k in ("loss", "val_loss")
               if record[k] is not None and not math.isfinite(record[k])]
        finite = bool(np.isfinite(optimizer.data).all())
        if not finite:
            bad.append("the parameters are not finite")
        steps, self.bad_steps = self.bad_steps, []
        if not bad and not steps:
            return True
        epoch = record["epoch"]
        if self.on_nan == "stop":
            raise DivergenceError(f"training diverged: after epoch {epoch} {', '.join(bad)}"
                                  f"{self._kept()}{_ADVICE}", epoch)
        if steps:
            bad.insert(0, f"the loss was not finite at {len(steps)} steps (first: step "
                          f"{steps[0][0]}, {steps[0][1]})")
        skipped = "" if finite or self.checkpoint is None else f"; not saved{self._kept()}"
        warnings.warn(f"epoch {epoch}: {'; '.join(bad)}{skipped}", RuntimeWarning, stacklevel=3)
        return finite

    def _kept(self):
        """What the checkpoint holds, for the messages."""
        if self.checkpoint is None:
            return ""
        if self.saved:
            return f" ({self.checkpoint} keeps epoch {self.saved})"
        return f" (nothing was saved to {self.checkpoint})"


_ADVICE = "; lower the learning rate, or pass on_nan='warn' (--on-nan warn) to go on anyway"


# -- callbacks (protocol: cygrad/callbacks.py) ----------------------------------------------

def _active(callbacks, dist):
    """[(checkpoint key, callback)] of the callbacks that run on this rank; the key is the
    class name, with #2, #3, ... for repeats (so a resumed run finds each one's state)."""
    keyed, seen = [], {}
    for cb in callbacks or ():
        name = type(cb).__name__
        seen[name] = seen.get(name, 0) + 1
        key = name if seen[name] == 1 else f"{name}#{seen[name]}"
        if dist is None or dist.rank == 0 or not getattr(cb, "rank_zero_only", False):
            keyed.append((key, cb))
    return keyed


def _call(cb, method, *args):
    fn = getattr(cb, method, None)
    return None if fn is None else fn(*args)


def _begin(callbacks, model, history, states):
    """on_train_begin, then (resumed run) each callback's saved state back."""
    for key, cb in callbacks:
        _call(cb, "on_train_begin", model, history)
        if key in states and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(states[key])


def _epoch_end(callbacks, epoch, record, dist):
    """on_epoch_end of every callback; the key of the first that asks to stop, or None
    (distributed: rank 0's decision)."""
    stop = None
    for key, cb in callbacks:
        if _call(cb, "on_epoch_end", epoch, dict(record)) and stop is None:
            stop = key
    return stop if dist is None else dist.bcast(stop)


def _states(callbacks):
    """(JSON states, arrays) of the callbacks for a checkpoint: ndarray fields (e.g. best
    weights) go into the checkpoint as arrays, named in the JSON state."""
    states, arrays = {}, {}
    for key, cb in callbacks:
        if not hasattr(cb, "state_dict"):
            continue
        state = dict(cb.state_dict())
        for field, value in state.items():
            if isinstance(value, np.ndarray):
                name = f"callback/{key}/{field}"
                arrays[name] = value
                state[field] = {"__array__": name}
        states[key] = state
    return states, arrays


def _with_arrays(states, arrays):
    """The callback states of a checkpoint with their array fields filled in."""
    def fill(value):
        if isinstance(value, dict) and set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return value
    return {key: {f: fill(v) for f, v in state.items()} for key, state in states.items()}


class _Schedule:
    """How fit steps a learning-rate scheduler (see fit's docstring)."""

    def __init__(self, scheduler, has_validation):
        self.scheduler, self.has_validation = scheduler, has_validation
        self.interval = None if scheduler is None else getattr(scheduler, "interval", "epoch")
        if scheduler is not None and self.interval not in ("epoch", "step"):
            raise ValueError(f"fit: the scheduler {type(scheduler).__name__} has interval "
                             f"{self.interval!r} (it mixes per-step and per-epoch schedules): "
                             "step it yourself in your own loop")
        from cygrad.optim.lr_scheduler import ReduceLROnPlateau
        self.plateau = isinstance(scheduler, ReduceLROnPlateau)

    def batch_end(self):
        if self.interval == "step":
            self.scheduler.step()

    def epoch_end(self, record):
        if self.interval != "epoch":
            return
        if self.plateau:
            self.scheduler.step(record["val_loss"] if self.has_validation else record["loss"])
        else:
            self.scheduler.step()


def _reported(dist):
    """Distributed: report an exception to the other ranks (so none waits forever)."""
    return contextlib.nullcontext() if dist is None else dist.errors()


def _load(checkpoint, model, optimizer, scheduler):
    """The checkpoint's meta with the callbacks' array fields filled in (None without a
    checkpoint file); model, optimizer and scheduler restored in place."""
    if not Path(checkpoint).exists():
        return None
    arrays = {}
    saved = io.load(checkpoint, model, optimizer, scheduler=scheduler, arrays=arrays)
    saved["callbacks"] = _with_arrays(saved.get("callbacks", {}), arrays)
    return saved


def _resume(checkpoint, model, optimizer, scheduler, dist):
    """Load the checkpoint if it exists (distributed: rank 0 reads it and broadcasts the
    state, so any number of ranks can resume); its meta, or None."""
    if dist is None:
        return _load(checkpoint, model, optimizer, scheduler)
    saved = _load(checkpoint, model, optimizer, scheduler) if dist.rank == 0 else None
    saved = dist.bcast(saved)
    if saved is not None:
        dist.broadcast(model, optimizer)
        if scheduler is not None:
            scheduler.load_state_dict(dist.bcast(scheduler.state_dict()))
    return saved


def _epoch(model, loss_fn, optimizer, loader, val_loader, l1, progress, epoch, epochs, dist=None,
           schedule=None, guard=None):
    """Train one epoch and evaluate; return the history record. guard (a _Divergence)
    sees every step's loss before its update."""
    if hasattr(loader, "set_epoch"):  # the data order depends on (seed, epoch) only
        loader.set_epoch(epoch)
    model.train()
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = _progress_bar(total, f"epoch {epoch + 1}/{epochs}", progress is True)
    seen, loss_sum, correct, t0 = 0, 0.0, 0, time.perf_counter()
    try:
        for i, (xb, yb) in enumerate(loader):
            check = None if guard is None else (lambda value: guard.loss(value, epoch + 1, i + 1))
            loss, logits = _train_step(model, loss_fn, optimizer, xb, yb, l1, dist, check)
            if schedule is not None:
                schedule.batch_end()
            n = xb.shape[0]
            seen += n
            loss_sum += _batch_sum(loss, n, loss_fn)
            c = _correct(logits, yb)
            correct = None if c is None or correct is None else correct + c
            if bar is not None:
                bar.update(1)
                if i % 25 == 0 or i + 1 == total:
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    post = {"loss": f"{loss_sum / seen:.4f}", "img/s": f"{rate:,.0f}"}
                    if correct is not None:
                        post["acc"] = f"{correct / seen:.4f}"
                    bar.set_postfix(post, refresh=False)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    if dist is not None:  # metrics over every rank's shard
        seen, loss_sum, c = dist.sum([seen, loss_sum, -1 if correct is None else correct])
        seen, loss_sum, correct = int(seen), float(loss_sum), None if correct is None else int(c)
        seconds = dist.max(seconds)
    if not seen:
        raise ValueError(f"fit: the training loader gave no samples in epoch {epoch + 1} "
                         "(an empty dataset?)")
    val = evaluate(model, val_loader, loss_fn, _dist=dist) if val_loader is not None else {}
    record = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1),
              "accuracy": None if correct is None else correct / max(seen, 1),
              "val_loss": val.get("loss"), "val_accuracy": val.get("accuracy"),
              "seconds": seconds, "images_per_s": seen / max(seconds, 1e-9)}
    if progress:
        print(_epoch_line(record), file=sys.stderr)
    return record


def _train_step(model, loss_fn, optimizer, xb, yb, l1, dist=None, check=None):
    """One optimisation step; returns (loss including any L1 penalty, logits).
    Distributed: the gradient is averaged over the ranks (before the L1 term, which is
    the same on every rank); the returned loss is this rank's. check(loss), when given,
    runs before the update (it raises to stop a diverged run before it moves)."""
    logits = model(xb)
    loss = loss_fn(logits, yb)
    optimizer.zero_grad()
    loss.backward()  # the input needs no gradient: none is computed for it
    loss = float(loss)
    if dist is not None:
        dist.average_gradients(optimizer.grad, getattr(loss_fn, "reduction", "mean"))
    if l1:
        penalty, grad = backend.current().l1_penalty(optimizer.data, l1)
        optimizer.grad += grad
        loss += penalty
    if check is not None:
        check(loss)
    optimizer.step()
    return loss, logits


def _epoch_line(r):
    parts = [f"epoch {r['epoch']}", f"loss {r['loss']:.4f}"]
    if r["accuracy"] is not None:
        parts.append(f"acc {r['accuracy']:.4f}")
    if r["val_loss"] is not None:
        parts.append(f"val_loss {r['val_loss']:.4f}")
    if r["val_accuracy"] is not None:
        parts.append(f"val_acc {r['val_accuracy']:.4f}")
    parts.append(f"{r['seconds']:.1f} s ({r['images_per_s']:,.0f} images/s)")
    return "  ".join(parts)


__all__ = ["fit", "evaluate", "DivergenceError", "Callback", "EarlyStopping", "CSVLogger",
           "HISTORY_KEYS"]
