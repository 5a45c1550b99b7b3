"""Checkpoints: cg.save / cg.load as .npz files that can never run code.

Layout (all plain arrays, read with allow_pickle=False), format version 2:
  model/<name>          each parameter, keys as torch's state_dict ("0.weight", ...)
  optim/state/<i>/<k>   each array of the optimizer's state_dict()['state'][i] (parameter i's
                        exp_avg, ...; LBFGS's history under i = 0)
  __meta__              JSON text: format version, user meta, the optimizer's type, step
                        count, param_groups and the numbers of its state (steps, ...), and
                        the learning-rate scheduler's state_dict() (type and state)
  __checksum__          sha256 over every other entry's name, dtype, shape and bytes
Version 1 (cygrad 0.1: one flat buffer per optimizer state, optim/<name>, and the
optimizer's type, step and hyperparameters in __meta__) is still read.
The file is written to a temporary file in the same folder, fsynced and renamed over
the target, so a crash or Ctrl-C mid-save leaves the previous checkpoint intact. A process
killed mid-save leaves its temporary file behind; the next save to the same path deletes
it first, so at most one is ever left (saving one path from two processes at once is not
supported). A failed write (disk full, ...) raises OSError naming the file and keeps the
previous checkpoint.
"""
import hashlib
import json
import errno
import os
import re
import tempfile
from pathlib import Path

import numpy as np

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_META, _CHECKSUM = "__meta__", "__checksum__"
_STATE = "optim/state/"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, truncated, or does not match the model."""


def _digest(arrays):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _plain(value):
    """NumPy scalars and small arrays in meta become plain JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _text(s):
    return np.array(s)  # a 0-d unicode array: no pickle needed


def save(path, model, optimizer=None, /, *, scheduler=None, arrays=None, **meta):
    """Write model (and optimizer, and learning-rate scheduler) state plus
    JSON-serialisable meta to `path` atomically. `arrays`: extra named ndarrays
    (e.g. a callback's best weights), stored as plain arrays under 'extra/<name>' and
    given back by load(..., arrays={})."""
    path = Path(path)
    extra = {f"extra/{k}": np.asarray(v) for k, v in (arrays or {}).items()}
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update(extra)
    info = {"format_version": FORMAT_VERSION, "meta": meta, "optimizer": None, "scheduler": None}
    if optimizer is not None:
        info["optimizer"] = _split_optimizer_state(optimizer.state_dict(), arrays)
    if scheduler is not None:
        info["scheduler"] = {"type": type(scheduler).__name__, "state": scheduler.state_dict()}
    try:
        arrays[_META] = _text(json.dumps(info, default=_plain))
    except TypeError as e:
        raise TypeError(f"checkpoint meta must be JSON-serialisable: {e}") from None
    arrays[_CHECKSUM] = _text(_digest(arrays))
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        kept = "the previous checkpoint is unchanged" if path.exists() else "nothing was written"
        reason = e.strerror or str(e) or type(e).__name__
        if e.errno == errno.ENOSPC:
            reason = "no space left on device"
        raise OSError(e.errno, f"cannot save checkpoint {path}: {reason}; {kept}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _split_optimizer_state(sd, arrays):
    """The JSON part of an optimizer state_dict; its arrays go into `arrays`."""
    state = {}
    for i, entry in sd["state"].items():
        state[str(i)] = {}
        for name, value in entry.items():
            if isinstance(value, np.ndarray):
                arrays[f"{_STATE}{i}/{name}"] = value
            else:
                state[str(i)][name] = value
    return {"type": sd["type"], "step_count": sd["step_count"],
            "param_groups": sd["param_groups"], "state": state}


def _joined_optimizer_state(path, saved, arrays):
    """The optimizer state_dict a checkpoint holds (format 1: cygrad 0.1's flat one)."""
    buffers = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    if "hyper" in saved:  # format 1
        hyper = dict(saved["hyper"])
        return {"type": saved["type"], "step": saved["step"], "hyper": hyper, "state": buffers}
    state = {int(i): dict(entry) for i, entry in saved["state"].items()}
    for key, value in buffers.items():
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit() or \
                int(parts[1]) not in state:
            raise CheckpointError(f"{path}: key 'optim/{key}' is not part of the optimizer state")
        state[int(parts[1])][parts[2]] = value
    return {"type": saved["type"], "step_count": saved["step_count"],
            "param_groups": saved["param_groups"], "state": state}


def _remove_stale_temps(path):
    """Delete temporary files left by earlier saves to `path` that were killed mid-write."""
    pattern = re.compile(re.escape(path.name) + r"\.[A-Za-z0-9_]{8}\.tmp")  # mkstemp's names
    for name in os.listdir(path.parent):
        if pattern.fullmatch(name):
            try:
                os.unlink(path.parent / name)
            except FileNotFoundError:
                pass


def file_mode():
    """The permissions a newly created file gets under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory):
    try:  # make the rename itself durable (not possible on every platform)
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read(path):
    """(arrays, info) of a checkpoint after verifying format and checksum; CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    arrays, key = {}, None
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy array
            raise CheckpointError(f"{path}: a single NumPy array, not a cygrad checkpoint (.npz)")
        with npz:
            for key in npz.files:
                arrays[key] = npz[key]
                if not isinstance(arrays[key], np.ndarray):  # npz returns non-.npy members as bytes
                    raise CheckpointError(f"{path}: key {key!r} is not a NumPy array")
    except CheckpointError:
        raise
    except Exception as e:  # whatever numpy's parser raises on a mangled file (found by fuzzing:
        # a .npy header with a NUL byte and an open bracket raised tokenize.TokenError)
        where = f" (reading key {key!r})" if key else ""
        raise CheckpointError(f"{path}: not a readable cygrad checkpoint{where}: "
                              f"{type(e).__name__}: {e}") from None
    for required in (_META, _CHECKSUM):
        if required not in arrays:
            raise CheckpointError(f"{path}: key {required!r} is missing (not a cygrad checkpoint)")
    checksum = str(arrays.pop(_CHECKSUM))
    if _digest(arrays) != checksum:
        raise CheckpointError(f"{path}: checksum mismatch, the file is corrupt")
    try:
        info = json.loads(str(arrays.pop(_META)))
        version = info["format_version"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: key {_META!r} is not valid checkpoint metadata ({e})") from None
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: format version {version}, this cygrad reads versions "
                              f"{', '.join(map(str, READABLE_VERSIONS))}")
    return arrays, info


def load(path, model, optimizer=None, *, scheduler=None, arrays=None):
    """Restore model (and optimizer, and learning-rate scheduler) from `path` in place;
    return the saved meta dict. `arrays`: a dict that receives the extra arrays the
    checkpoint holds (save(..., arrays=...)).

    Every key and shape is checked before anything is modified; a missing, extra or
    mismatched key, or optimizer state that does not fit the optimizer (another type,
    other parameter groups or sizes), raises CheckpointError naming the file.
    """
    path = Path(path)
    stored, info = read(path)
    state = {k[len("model/"):]: v for k, v in stored.items() if k.startswith("model/")}
    _check_model(path, model, state)
    opt_sd = _saved_part(path, info, "optimizer", optimizer)
    if opt_sd is not None:
        opt_sd = _joined_optimizer_state(path, opt_sd, stored)
    sched_sd = _saved_part(path, info, "scheduler", scheduler)
    backup = optimizer.state_dict() if optimizer is not None else None
    try:
        if opt_sd is not None:
            optimizer.load_state_dict(opt_sd)
        if sched_sd is not None:
            scheduler.load_state_dict(sched_sd["state"])
    except (ValueError, TypeError, KeyError) as e:
        if backup is not None:  # all or nothing: the scheduler's state did not fit
            optimizer.load_state_dict(backup)
        raise CheckpointError(f"{path}: the saved state does not fit: {e}") from None
    model.load_state_dict(state)
    if arrays is not None:
        arrays.update({k[len("extra/"):]: v for k, v in stored.items() if k.startswith("extra/")})
    return info["meta"]


def _check_model(path, model, state):
    own = model.state_dict()
    for k, v in own.items():
        if k not in state:
            raise CheckpointError(f"{path}: key 'model/{k}' is missing (the model has it)")
        if state[k].shape != v.shape:
            raise CheckpointError(f"{path}: key 'model/{k}' has shape {state[k].shape}, "
                                  f"the model's is {v.shape}")
        if state[k].dtype != v.dtype:
            raise CheckpointError(f"{path}: key 'model/{k}' is {state[k].dtype}, the model is {v.dtype}")
    for k in state:
        if k not in own:
            raise CheckpointError(f"{path}: key 'model/{k}' is not in the model")


def _saved_part(path, info, what, target):
    """The checkpoint's record of the optimizer or scheduler (None when not asked for),
    of the target's type."""
    if target is None:
        return None
    saved = info.get(what)
    if saved is None:
        raise CheckpointError(f"{path}: has no {what} state to restore")
    if saved["type"] != type(target).__name__:
        raise CheckpointError(f"{path}: key '__meta__' holds a {saved['type']} {what}, "
                              f"not a {type(target).__name__}")
    return saved


__all__ = ["save", "load", "read", "CheckpointError", "FORMAT_VERSION", "READABLE_VERSIONS"]
