"""Callbacks of cygrad.train.fit (Keras-like): EarlyStopping and CSVLogger.

The protocol. A callback is any object with some of these methods; fit calls those that
exist (Callback has them all, doing nothing):

  on_train_begin(model, history)  before the first epoch fit runs; `history` holds the
                                  epochs a resumed run restored (else empty lists)
  on_epoch_end(epoch, record)     after epoch `epoch` (0-based, as Keras; record["epoch"]
                                  is epoch + 1) was trained and validated, before its
                                  checkpoint is written; a true return value stops
                                  training after this epoch
  on_train_end(model, history)    after the last epoch, also after an early stop (not
                                  when an exception or Ctrl-C ends fit)
  state_dict() -> dict            state stored in every checkpoint: JSON-serialisable
                                  values, and ndarrays (stored as checkpoint arrays)
  load_state_dict(state)          on resume, right after on_train_begin, with the state
                                  of the checkpoint resumed from

Checkpoints and resume: every checkpoint holds each callback's state_dict() (keyed by
class name, "#2", "#3" ... for repeats) and which callback, if any, stopped the run. A
resumed run gives each callback its saved state back, so it continues exactly as the
uninterrupted run would (EarlyStopping's best value, patience count and best weights);
a callback without saved state starts fresh, and saved states no callback claims are
ignored. A run that a callback stopped is finished: resuming it trains no further epoch
(load the checkpoint with cg.load and call fit again to train on).

Distributed training: every rank sees the same epoch records, so callbacks run on every
rank and decide alike; one with `rank_zero_only = True` (CSVLogger) runs on rank 0 only,
and the decision to stop is rank 0's.
"""
import csv
import math
from pathlib import Path

import numpy as np


class Callback:
    """Base class of fit's callbacks (see the module docstring for the protocol)."""

    rank_zero_only = False

    def on_train_begin(self, model, history):
        """Called before the first epoch fit runs."""

    def on_epoch_end(self, epoch, record):
        """Called after each epoch; return True to stop training."""
        return False

    def on_train_end(self, model, history):
        """Called after the last epoch."""

    def state_dict(self):
        """State saved in checkpoints (JSON-serialisable values and ndarrays)."""
        return {}

    def load_state_dict(self, state):
        """Restore what state_dict returned (on resume)."""


def _direction(monitor, mode):
    """'min' or 'max' for a monitored history key; mode 'auto' infers it from the name."""
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}")
    name = monitor.removeprefix("val_")
    if name == "loss":
        return "min"
    if name in ("accuracy", "acc"):
        return "max"
    raise ValueError(f"EarlyStopping: cannot tell whether {monitor!r} should be minimised or "
                     "maximised; pass mode='min' or mode='max'")


class EarlyStopping(Callback):
    """Stop training when a monitored history value has stopped improving (Keras'
    EarlyStopping).

    monitor: a history key ("val_loss", "val_accuracy", "loss", "accuracy", ...).
    min_delta: an improvement must beat the best value by more than |min_delta|.
    patience: epochs without improvement after which training stops (0: at the first).
    mode: "min", "max", or "auto" (min for losses, max for accuracies).
    restore_best_weights: at the end of training (stopped early or not) copy the flat
    parameters of the best epoch back into the model.

    After training, `best` is the best monitored value, `best_epoch` its epoch and
    `stopped_epoch` the epoch after which training stopped (0: it did not), both as
    numbered in the history (1-based). A monitored value that is missing or None (e.g.
    val_loss without a val_loader) raises ValueError; a NaN never counts as improvement.
    The state, the best weights included, is saved in fit's checkpoints (the weights as a
    plain array beside the model's). The checkpoint's own parameters stay the last
    epoch's (what a resume continues from): the restore changes the model in memory;
    cg.save it to keep the best weights in a file.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False):
        if int(patience) != patience or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 0, got {patience!r}")
        self.monitor, self.min_delta, self.patience = str(monitor), abs(float(min_delta)), int(patience)
        self.mode = _direction(self.monitor, mode)
        self.restore_best_weights = bool(restore_best_weights)
        self._reset()

    def _reset(self):
        self.best, self.best_epoch, self.wait, self.stopped_epoch = None, 0, 0, 0
        self.best_weights, self.model = None, None

    def _improves(self, value):
        if self.best is None:
            return not math.isnan(value)
        if self.mode == "min":
            return value + self.min_delta < self.best
        return value - self.min_delta > self.best

    def on_train_begin(self, model, history):
        """Start afresh (a resumed run's state comes after, from load_state_dict)."""
        self._reset()
        self.model = model

    def on_epoch_end(self, epoch, record):
        """Update the best value and the patience count; True when patience is exhausted."""
        value = record.get(self.monitor)
        if value is None:
            available = [k for k, v in record.items() if v is not None]
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which this run does not "
                             f"report (available: {', '.join(available)}); a val_* key needs a "
                             "val_loader")
        value = float(value)
        if self.restore_best_weights and self.best_weights is None:  # as Keras: the first
            self.best_weights = self.model.flat_buffers()[0].copy()  # epoch is the best yet
            self.best_epoch = epoch + 1
        self.wait += 1
        if self._improves(value):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best_weights:
                self.best_weights = self.model.flat_buffers()[0].copy()
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch + 1
            return True
        return False

    def on_train_end(self, model, history):
        """restore_best_weights: copy the best epoch's parameters back into the model."""
        if self.restore_best_weights and self.best_weights is not None:
            model.flat_buffers()[0][...] = self.best_weights

    def state_dict(self):
        """best, best_epoch, wait, stopped_epoch and (restore_best_weights) the best weights."""
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state):
        """Continue from a saved state_dict (the weights must fit the model)."""
        self.best, self.best_epoch = state["best"], int(state["best_epoch"])
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        weights = state.get("best_weights")
        self.best_weights = None if weights is None else np.array(weights)
        if self.best_weights is not None and self.model is not None:
            flat = self.model.flat_buffers()[0]
            if self.best_weights.shape != flat.shape or self.best_weights.dtype != flat.dtype:
                raise ValueError(f"EarlyStopping: the saved best weights are "
                                 f"{self.best_weights.dtype} {self.best_weights.shape}, the "
                                 f"model's parameters {flat.dtype} {flat.shape}")

    def __repr__(self):
        return (f"EarlyStopping(monitor={self.monitor!r}, min_delta={self.min_delta}, "
                f"patience={self.patience}, mode={self.mode!r}, "
                f"restore_best_weights={self.restore_best_weights})")


class CSVLogger(Callback):
    """Write each epoch's history record as a CSV row (Keras' CSVLogger).

    The columns are the history keys (epoch, loss, accuracy, val_loss, val_accuracy,
    seconds, images_per_s); a None value is an empty field, floats are written in full
    precision. append=False starts the file anew with a header, and a resumed run first
    rewrites the rows of the epochs it restored, so the file equals that of an
    uninterrupted run. append=True adds rows to an existing file (a header only when the
    file is new or empty) and writes no rows for restored epochs. Each row is written
    and the file closed at once, so it can be read while training runs. Distributed: rank
    0 writes.
    """

    rank_zero_only = True

    def __init__(self, filename, separator=",", append=False):
        self.filename, self.separator, self.append = Path(filename), str(separator), bool(append)
        self._columns = None

    def on_train_begin(self, model, history):
        """Header (and the restored epochs' rows) unless appending to a non-empty file."""
        self._columns = list(history)  # fit's history keys, in order
        if self.append:
            if not self.filename.exists() or self.filename.stat().st_size == 0:
                self._write([self._columns], "w")
            return
        restored = [[history[k][i] for k in self._columns] for i in range(len(history["epoch"]))]
        self._write([self._columns] + restored, "w")

    def on_epoch_end(self, epoch, record):
        """Append this epoch's row."""
        self._write([[record.get(k) for k in self._columns]], "a")
        return False

    def _write(self, rows, mode):
        self.filename.parent.mkdir(parents=True, exist_ok=True)
        with open(self.filename, mode, newline="") as f:
            csv.writer(f, delimiter=self.separator).writerows(
                [["" if v is None else v for v in row] for row in rows])

    def __repr__(self):
        return f"CSVLogger({str(self.filename)!r}, separator={self.separator!r}, append={self.append})"


__all__ = ["Callback", "EarlyStopping", "CSVLogger"]
