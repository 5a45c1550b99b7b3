"""Checkpoints: cg.save / cg.load as .npz files that can never run code.

Layout (all plain arrays, read with allow_pickle=False):
  model/<name>       each parameter, keys as torch's state_dict ("0.weight", ...)
  optim/<name>       each flat optimizer state buffer
  __meta__           JSON text: format version, optimizer type/step/hyperparameters, user meta
  __checksum__       sha256 over every other entry's name, dtype, shape and bytes
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
import zipfile
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
_META, _CHECKSUM = "__meta__", "__checksum__"


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


def save(path, model, optimizer=None, /, **meta):
    """Write model (and optimizer) state plus JSON-serialisable meta to `path` atomically."""
    path = Path(path)
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    info = {"format_version": FORMAT_VERSION, "meta": meta, "optimizer": None}
    if optimizer is not None:
        sd = optimizer.state_dict()
        arrays.update({f"optim/{k}": v for k, v in sd["state"].items()})
        info["optimizer"] = {"type": sd["type"], "step": sd["step"], "hyper": sd["hyper"]}
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
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version}, this cygrad reads {FORMAT_VERSION}")
    return arrays, info


def load(path, model, optimizer=None):
    """Restore model (and optimizer) from `path` in place; return the saved meta dict.

    Every key and shape is checked before anything is modified; a missing, extra or
    mismatched key raises CheckpointError naming the file and the key.
    """
    path = Path(path)
    arrays, info = read(path)
    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
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
    opt_sd = None
    if optimizer is not None:
        saved = info.get("optimizer")
        if saved is None:
            raise CheckpointError(f"{path}: has no optimizer state (key 'optim/...') to restore")
        if saved["type"] != type(optimizer).__name__:
            raise CheckpointError(f"{path}: key '__meta__' holds a {saved['type']} optimizer, "
                                  f"not a {type(optimizer).__name__}")
        buffers = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
        for k, v in optimizer.state.items():
            if k not in buffers:
                raise CheckpointError(f"{path}: key 'optim/{k}' is missing")
            if buffers[k].shape != v.shape:
                raise CheckpointError(f"{path}: key 'optim/{k}' has shape {buffers[k].shape}, "
                                      f"the optimizer's is {v.shape}")
        for k in buffers:
            if k not in optimizer.state:
                raise CheckpointError(f"{path}: key 'optim/{k}' is not a state of "
                                      f"{type(optimizer).__name__}({optimizer.hyper})")
        hyper = dict(saved["hyper"])
        if "betas" in hyper:
            hyper["betas"] = tuple(hyper["betas"])
        opt_sd = {"type": saved["type"], "step": saved["step"], "hyper": hyper, "state": buffers}
    model.load_state_dict(state)
    if opt_sd is not None:
        optimizer.load_state_dict(opt_sd)
    return info["meta"]


__all__ = ["save", "load", "read", "CheckpointError", "FORMAT_VERSION"]
