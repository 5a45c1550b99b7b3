"""The training loop: fit (progress bar, validation, per-epoch checkpoints, resume, L1)
and evaluate."""
import sys
import time
from pathlib import Path

import numpy as np

from cygrad import backend, io

HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images_per_s")


def _correct(logits, y):
    """Number of rows whose argmax is the integer label (None for non-classification)."""
    if logits.ndim != 2 or logits.shape[1] < 2 or y.dtype.kind not in "iu" or y.ndim != 1:
        return None
    return int(np.count_nonzero(logits.argmax(axis=1) == y))


def evaluate(model, loader, loss_fn=None):
    """{'loss': mean loss per sample (None without loss_fn), 'accuracy': fraction correct
    (None for non-classification)} over the loader, in eval mode (mode restored after)."""
    was_training = model.training
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    try:
        for xb, yb in loader:
            logits = model(xb)
            n = xb.shape[0]
            if loss_fn is not None:
                loss = loss_fn(logits, yb)
                loss_sum += loss * n if loss_fn.reduction == "mean" else loss
            c = _correct(logits, yb)
            correct = None if c is None or correct is None else correct + c
            total += n
    finally:
        model.train(was_training)
    return {"loss": loss_sum / total if loss_fn is not None and total else None,
            "accuracy": correct / total if correct is not None and total else None}


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
        checkpoint=None, resume=False, l1=0.0, meta=None):
    """Train for `epochs` epochs; return the history (a dict of per-epoch lists).

    Each step: forward, loss, zero_grad, backward, optional L1 (loss += l1 * sum|w|,
    grad += l1 * sign(w) over every parameter), optimizer step. After each epoch the
    validation loader is evaluated and, with `checkpoint`, model + optimizer + history
    are saved atomically (so Ctrl-C never loses the last checkpoint). resume=True with
    an existing checkpoint continues after its last epoch: the data order depends only
    on (seed, epoch) and all state is restored, so the result is bitwise identical to an
    uninterrupted run. `meta` (JSON-serialisable) is stored in every checkpoint.
    progress: True (a tqdm bar with loss, accuracy and images/s, and a line per epoch on
    stderr), 'epoch' (the lines only) or False (silent).
    """
    history = {k: [] for k in HISTORY_KEYS}
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        saved = io.load(checkpoint, model, optimizer)
        start = int(saved.get("epoch", 0))
        history = {k: list(saved.get("history", {}).get(k, [])) for k in HISTORY_KEYS}
        _restore_dropout(model, saved.get("dropout", {}))
    for epoch in range(start, epochs):
        try:
            record = _epoch(model, loss_fn, optimizer, train_loader, val_loader, l1, progress,
                            epoch, epochs)
            for k in HISTORY_KEYS:
                history[k].append(record[k])
            if checkpoint is not None:
                io.save(checkpoint, model, optimizer, epoch=epoch + 1, history=history,
                        dropout=_dropout_state(model), **(meta or {}))
        except KeyboardInterrupt:
            done = f"epoch {start}" if start else "nothing yet"
            where = "" if checkpoint is None else (
                f"; the last checkpoint ({checkpoint}) is intact: resume with resume=True / --resume")
            print(f"\ninterrupted during epoch {epoch + 1} (completed: {done}){where}", file=sys.stderr)
            raise
        start = epoch + 1
    return history


def _epoch(model, loss_fn, optimizer, loader, val_loader, l1, progress, epoch, epochs):
    """Train one epoch and evaluate; return the history record."""
    if hasattr(loader, "set_epoch"):  # the data order depends on (seed, epoch) only
        loader.set_epoch(epoch)
    model.train()
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = _progress_bar(total, f"epoch {epoch + 1}/{epochs}", progress is True)
    seen, loss_sum, correct, t0 = 0, 0.0, 0, time.perf_counter()
    try:
        for i, (xb, yb) in enumerate(loader):
            loss, logits = _train_step(model, loss_fn, optimizer, xb, yb, l1)
            n = xb.shape[0]
            seen += n
            loss_sum += loss * n
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
    val = evaluate(model, val_loader, loss_fn) if val_loader is not None else {}
    record = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1),
              "accuracy": None if correct is None else correct / max(seen, 1),
              "val_loss": val.get("loss"), "val_accuracy": val.get("accuracy"),
              "seconds": seconds, "images_per_s": seen / max(seconds, 1e-9)}
    if progress:
        print(_epoch_line(record), file=sys.stderr)
    return record


def _train_step(model, loss_fn, optimizer, xb, yb, l1):
    """One optimisation step; returns (loss including any L1 penalty, logits)."""
    logits = model(xb)
    loss = loss_fn(logits, yb)
    optimizer.zero_grad()
    model.backward(loss_fn.backward(), input_grad=False)
    if l1:
        penalty, grad = backend.current().l1_penalty(optimizer.data, l1)
        optimizer.grad += grad
        loss += penalty
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


__all__ = ["fit", "evaluate"]
