"""Checkpoints: cg.save / cg.load as .npz files that can never run code.

Layout (all plain arrays, read with allow_pickle=False), format version 2:
  model/<name>          each parameter, keys as torch's state_dict ("0.weight", ...)
  optim/state/<i>/<k>   each array of the optimizer's state_dict()['state'][i] (parameter i's
                        exp_avg, ...; LBFGS's history under i = 0)
  extra/<name>          the arrays given to save(arrays=...) (callbacks' best weights, ...)
  __meta__              JSON text: format version, user meta, the optimizer's type, step
                        count, param_groups and the numbers of its state (steps, ...), and
                        the learning-rate scheduler's state_dict() (type and state)
  __checksum__          sha256 over every other entry's name, dtype, shape and bytes
Version 1 (cygrad 0.1: one flat buffer per optimizer state, optim/<name>, and the
optimizer's type, step and hyperparameters in __meta__) is still read.

Writing. save() holds the path's CheckpointLock while it writes (another process writing
the same path is refused with CheckpointInUseError naming its pid; a training run holds
the lock for its whole length), writes a temporary file beside the target (named with
this process's id; the umask applies to it as to any new file, and is never changed),
fsyncs it and renames it over the target, so a crash or Ctrl-C mid-save leaves the
previous checkpoint intact. A temporary file left by a killed process is removed by the
next save to the same path; a live writer's, or a user's file, never is. A failed write
(disk full, ...) raises OSError naming the file and keeps the previous checkpoint.

Reading. Sizes are checked before anything is decompressed (cygrad._npz): load() allows
exactly the model's arrays (keys, shapes, dtypes), optimizer state up to one float64
buffer of the parameters' size per state the optimizer keeps (a closure optimizer's
history: history_size of them for a list), extra arrays up to EXTRA_MODEL_COPIES times
the model plus EXTRA_SLACK bytes, and META_BYTES of JSON; read() alone allows the file's
own size plus META_BYTES. Every problem with the file is a CheckpointError naming it, and
load() changes nothing unless the whole file validates: the model's arrays, the optimizer's
state and hyperparameters (first given to a new optimizer of the same type, which takes a
step), the scheduler's state, the extra arrays.
"""
import hashlib
import inspect
import json
import errno
import numbers
import os
from pathlib import Path

import numpy as np

from cygrad import _npz
from cygrad._checkpoint_files import (CheckpointInUseError, CheckpointLock, check_path,
                                      create_temp, file_mode, remove_dead_temps)

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_META, _CHECKSUM = "__meta__", "__checksum__"
_STATE = "optim/state/"
_PARTS = ("model/", "optim/", "extra/")

META_BYTES = 64 << 20  # the JSON meta (a NumPy unicode string: 4 bytes a character)
EXTRA_MODEL_COPIES = 4  # extra arrays: this many copies of the model's arrays ...
EXTRA_SLACK = 64 << 20  # ... plus this many bytes, in all
EXTRA_MEMBERS = 4096
OPTIMIZER_MODEL_COPIES = 4  # state buffers allowed when load() is given no optimizer
FIRST_ORDER_STATES = 3  # buffers allowed at least (Adam with amsgrad has 3): a checkpoint of
#                         another first-order optimizer is then refused for its type, not size
READ_MEMBERS = 100_000  # read() without a model
SAVE_LOCK_TIMEOUT = 10.0  # seconds save() waits for another process's save to the same path


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, truncated, or does not match the model."""


def _digest(arrays):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        if a.nbytes:  # the bytes themselves, without a copy
            h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _plain(value):
    """NumPy scalars and small arrays in meta become plain JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _text(s):
    return np.array(s)  # a 0-d unicode array: no pickle needed


# -- save ----------------------------------------------------------------------------------------
def save(path, model, optimizer=None, /, *, scheduler=None, arrays=None, **meta):
    """Write model (and optimizer, and learning-rate scheduler) state plus
    JSON-serialisable meta to `path` atomically. `arrays`: extra named ndarrays
    (e.g. a callback's best weights), stored as plain arrays under 'extra/<name>' and
    given back by load(..., arrays={}). Holds the path's CheckpointLock while writing
    (waiting up to SAVE_LOCK_TIMEOUT seconds for another process's save); a path that
    cannot be written raises ValueError saying why (see check_path)."""
    path = Path(path)
    entries = _entries(model, optimizer, scheduler, arrays, meta)
    with CheckpointLock(path, timeout=SAVE_LOCK_TIMEOUT):
        _write(path, entries)
    return path


def _entries(model, optimizer, scheduler, arrays, meta):
    """The checkpoint's named arrays, __meta__ and __checksum__ included."""
    entries = {f"model/{k}": v for k, v in model.state_dict().items()}
    for k, v in (arrays or {}).items():
        entries[f"extra/{k}"] = np.asarray(v)
        if entries[f"extra/{k}"].dtype.hasobject:
            raise TypeError(f"checkpoint array {k!r} holds Python objects: only plain arrays "
                            "(numbers, bools, strings) can be saved")
    info = {"format_version": FORMAT_VERSION, "meta": meta, "optimizer": None, "scheduler": None}
    if optimizer is not None:
        info["optimizer"] = _split_optimizer_state(optimizer.state_dict(), entries)
    if scheduler is not None:
        info["scheduler"] = {"type": type(scheduler).__name__, "state": scheduler.state_dict()}
    try:
        entries[_META] = _text(json.dumps(info, default=_plain))
    except TypeError as e:
        raise TypeError(f"checkpoint meta must be JSON-serialisable: {e}") from None
    entries[_CHECKSUM] = _text(_digest(entries))
    return entries


def _write(path, entries):
    """Write `entries` to a temporary file beside `path`, fsync it, rename it over `path`."""
    remove_dead_temps(path)
    tmp = None
    try:
        fd, tmp = create_temp(path)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **entries)
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
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


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


# -- read ----------------------------------------------------------------------------------------
def read(path):
    """(arrays, info) of a checkpoint after verifying format and checksum; CheckpointError
    otherwise. With no model to size them by, the arrays may declare at most the file's
    own size plus META_BYTES (an uncompressed member takes its size in the file)."""
    path = Path(path)
    size = _file_size(path)
    return _read(path, max_members=READ_MEMBERS, max_bytes=size + META_BYTES,
                 check=lambda members: _check_layout(path, members))


def _file_size(path):
    try:
        if path.is_file():
            return path.stat().st_size
    except OSError:
        pass
    what = "a folder, not a checkpoint file" if path.is_dir() else "no such checkpoint file"
    raise CheckpointError(f"{path}: {what}")


def _read(path, **limits):
    """read() with the given limits (see _npz.read)."""
    _file_size(path)
    try:
        arrays = _npz.read(path, **limits)
    except _npz.NpzError as e:
        raise CheckpointError(f"{path}: not a readable cygrad checkpoint: {e}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read: {e.strerror or e}") from None
    checksum = str(arrays.pop(_CHECKSUM))
    if _digest(arrays) != checksum:
        raise CheckpointError(f"{path}: checksum mismatch, the file is corrupt")
    return arrays, _parsed_meta(path, arrays.pop(_META))


def _check_layout(path, members):
    """The two text entries exist and are small 0-d strings (before any data is read)."""
    keys = {m.key: m for m in members}
    for required in (_META, _CHECKSUM):
        if required not in keys:
            raise CheckpointError(f"{path}: key {required!r} is missing (not a cygrad checkpoint)")
    for key, limit in ((_META, META_BYTES), (_CHECKSUM, 4 * 64)):
        m = keys[key]
        if m.shape != () or m.dtype.kind != "U" or m.nbytes > limit:
            raise CheckpointError(f"{path}: key {key!r} is a {m.dtype} array of shape {m.shape} "
                                  f"and {m.nbytes:,} bytes, not a text of at most {limit:,}")


def _parsed_meta(path, text):
    """The JSON in __meta__, its top-level structure checked."""
    try:
        info = json.loads(str(text))
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: key {_META!r} is not valid JSON ({type(e).__name__}: "
                              f"{str(e)[:200]})") from None
    if not isinstance(info, dict) or "format_version" not in info:
        raise CheckpointError(f"{path}: key {_META!r} is not checkpoint metadata "
                              "(no format_version)")
    version = info["format_version"]
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: format version {version!r}, this cygrad reads versions "
                              f"{', '.join(map(str, READABLE_VERSIONS))}")
    _require(path, info, {"meta": dict}, _META)
    for part in ("optimizer", "scheduler"):
        if info.get(part) is not None:
            _require(path, info, {part: dict}, _META)
            _require(path, info[part], {"type": str}, part)
    return info


def _require(path, record, kinds, where):
    """Each key of `kinds` is in the dict `record`, its value of that type (an int: not a
    bool, and >= 0: every int required here is a count)."""
    for key, kind in kinds.items():
        if key not in record:
            raise CheckpointError(f"{path}: {where} has no {key!r}")
        value = record[key]
        if kind is int:
            ok = _is_count(value)
        else:
            ok = isinstance(value, kind)
        if not ok:
            expected = "a count (an int >= 0)" if kind is int else f"a {_JSON_NAMES[kind]}"
            raise CheckpointError(f"{path}: {where}.{key} is {_described(value)}, "
                                  f"expected {expected}")


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_JSON_NAMES = {dict: "JSON object", list: "JSON list", str: "string", bool: "bool"}


def _described(value):
    text = repr(value)
    return f"a {type(value).__name__} ({text[:60]}{'...' if len(text) > 60 else ''})"


# -- load ----------------------------------------------------------------------------------------
def load(path, model, optimizer=None, *, scheduler=None, arrays=None):
    """Restore model (and optimizer, and learning-rate scheduler) from `path` in place;
    return the saved meta dict. `arrays`: a dict that receives the extra arrays the
    checkpoint holds (save(..., arrays=...)).

    All or nothing: every key, shape, dtype and size is checked before anything is read
    (see the module's docstring for the caps), and the optimizer's hyperparameters and
    state and the scheduler's state before anything is modified; whatever does not fit
    raises CheckpointError naming the file and leaves model, optimizer and scheduler as
    they were.
    """
    path = Path(path)
    own = model.state_dict()  # what the arrays must match, and the backup
    stored, info = _read(path, **_load_limits(path, own, optimizer))
    state = {k[len("model/"):]: v for k, v in stored.items() if k.startswith("model/")}
    opt_sd = _optimizer_part(path, info, stored, optimizer)
    sched_sd = _scheduler_part(path, info, scheduler)
    loads = [(model, state, own)]  # model last: its checks are done
    if sched_sd is not None:
        loads.insert(0, (scheduler, sched_sd["state"], scheduler.state_dict()))
    if opt_sd is not None:
        loads.insert(0, (optimizer, opt_sd, optimizer.state_dict()))
    _apply(path, loads)
    if arrays is not None:
        arrays.update({k[len("extra/"):]: v for k, v in stored.items() if k.startswith("extra/")})
    return info["meta"]


def _load_limits(path, own, optimizer):
    """_npz.read's limits for loading into a model with state `own` and `optimizer`."""
    model_bytes = sum(v.nbytes for v in own.values())
    opt_bytes, opt_members = _optimizer_capacity(optimizer, own)
    caps = {"optim/": opt_bytes, "extra/": EXTRA_MODEL_COPIES * model_bytes + EXTRA_SLACK}

    def check(members):
        _check_layout(path, members)
        _check_model(path, own, members)
        for part, cap in caps.items():
            total = sum(m.nbytes for m in members if m.key.startswith(part))
            if total > cap:
                what = "optimizer state" if part == "optim/" else "extra arrays"
                raise CheckpointError(f"{path}: its {what} declare {total:,} bytes, more than "
                                      f"the {cap:,} allowed for this model and optimizer "
                                      "(a decompression bomb?)")
    return {"max_members": len(own) + opt_members + EXTRA_MEMBERS + 2, "check": check,
            "max_bytes": model_bytes + sum(caps.values()) + META_BYTES + 4 * 64}


def _optimizer_capacity(optimizer, own):
    """(bytes, members) the optimizer state of a checkpoint may take: one float64 buffer of
    the parameters' size per state buffer the optimizer can keep (a first-order
    optimizer's momentum, moments, ..., at least FIRST_ORDER_STATES; a closure optimizer's
    history vectors, history_size of them for a list), or OPTIMIZER_MODEL_COPIES of the
    model without an optimizer."""
    from cygrad.optim.second_order import FLOATS, VECTOR, VECTORS
    if optimizer is None:
        n = sum(v.size for v in own.values())
        return 8 * n * OPTIMIZER_MODEL_COPIES, len(own) * OPTIMIZER_MODEL_COPIES
    n = sum(p.data.size for p in optimizer.params)
    names = getattr(optimizer, "_all_state_names", ())
    history = [kind for _, kind in getattr(optimizer, "_history", ())]
    rows = optimizer.param_groups[0].get("history_size", 1)
    rows = rows if isinstance(rows, int) and rows > 0 else 1
    buffers = max(len(names), FIRST_ORDER_STATES)
    vectors = buffers + history.count(VECTOR) + rows * history.count(VECTORS)
    scalars = rows * history.count(FLOATS)
    return 8 * (vectors * n + scalars), len(optimizer.params) * buffers + len(history)


def _check_model(path, own, members):
    """Model keys, shapes and dtypes as the model's, every key known (from the headers)."""
    found = set()
    for m in members:
        if m.key in (_META, _CHECKSUM):
            continue
        if not m.key.startswith(_PARTS):
            raise CheckpointError(f"{path}: key {m.key!r} is not part of a cygrad checkpoint")
        if not m.key.startswith("model/"):
            continue
        k = m.key[len("model/"):]
        if k not in own:
            raise CheckpointError(f"{path}: key 'model/{k}' is not in the model")
        if m.shape != own[k].shape:
            raise CheckpointError(f"{path}: key 'model/{k}' has shape {m.shape}, "
                                  f"the model's is {own[k].shape}")
        if m.dtype != own[k].dtype:
            raise CheckpointError(f"{path}: key 'model/{k}' is {m.dtype}, the model is "
                                  f"{own[k].dtype}")
        found.add(k)
    for k in own:
        if k not in found:
            raise CheckpointError(f"{path}: key 'model/{k}' is missing (the model has it)")


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


# -- the optimizer's part --------------------------------------------------------------------------
def _optimizer_part(path, info, stored, optimizer):
    """The optimizer state_dict the checkpoint holds, validated without touching
    `optimizer` (None when there is no optimizer to load)."""
    saved = _saved_part(path, info, "optimizer", optimizer)
    if saved is None:
        return None
    groups = _checked_optimizer_record(path, saved, optimizer)
    sd = _joined_optimizer_state(path, saved, stored)
    _check_hyperparameters(path, optimizer, groups)
    return sd


def _checked_optimizer_record(path, saved, optimizer):
    """Check the JSON record's structure against what saving `optimizer` would store;
    return its parameter groups (hyperparameters)."""
    if "hyper" in saved:  # format 1
        _require(path, saved, {"step": int, "hyper": dict}, "optimizer")
        _check_like(path, saved["hyper"], optimizer.hyper, "optimizer.hyper")
        return [saved["hyper"]]
    _require(path, saved, {"step_count": int, "param_groups": list, "state": dict}, "optimizer")
    _check_like(path, saved, _split_optimizer_state(optimizer.state_dict(), {}), "optimizer")
    for k, group in enumerate(saved["param_groups"]):
        where = f"optimizer.param_groups[{k}]"
        _require(path, group, {"params": list}, where)
        if not all(_is_count(i) for i in group["params"]):
            raise CheckpointError(f"{path}: {where}.params holds {_described(group['params'])}, "
                                  "not parameter numbers")
    for key, entry in saved["state"].items():
        if not key.isdigit() or not isinstance(entry, dict):
            raise CheckpointError(f"{path}: optimizer.state[{key!r}] is not the state of a "
                                  "parameter (a number and a JSON object)")
        if "step" in entry:
            _require(path, entry, {"step": int}, f"optimizer.state[{key!r}]")
    return saved["param_groups"]


def _joined_optimizer_state(path, saved, arrays):
    """The optimizer state_dict a checkpoint holds (format 1: cygrad 0.1's flat one)."""
    buffers = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    for key, value in buffers.items():
        if value.dtype.kind != "f":
            raise CheckpointError(f"{path}: key 'optim/{key}' is {value.dtype}, optimizer state "
                                  "is floating point")
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


def _check_hyperparameters(path, optimizer, groups):
    """Give each saved parameter group's hyperparameters to a new optimizer of the same
    type over one scratch parameter (its constructor's checks), load them into it (the
    state-dict checks) and let it take a step with a zero gradient (the kernel's checks):
    a value the optimizer cannot use fails here, before anything is loaded, and not at
    the first step() after."""
    from cygrad.nn.parameter import Parameter
    cls = type(optimizer)
    takes, needs = _constructor_arguments(cls)
    required = [getattr(optimizer, name, None) for name in needs]  # Newton's hessian_fn
    if any(value is None for value in required):
        return  # cannot build one: load_state_dict's own checks only
    dtype = optimizer.params[0].data.dtype
    for k, group in enumerate(groups):
        hyper = {key: v for key, v in group.items() if key not in ("params", "param_names")}
        try:
            trial = cls([Parameter(np.zeros(1, dtype))], *required,
                        **{key: hyper[key] for key in takes if key in hyper})
            sd = trial.state_dict()
            sd["param_groups"][0].update(hyper)
            trial.load_state_dict(sd)
            trial.step(lambda: 0.0)
        except Exception as e:
            raise CheckpointError(f"{path}: parameter group {k} of the saved {cls.__name__} "
                                  f"has hyperparameters it cannot use: {type(e).__name__}: "
                                  f"{e}") from None


def _constructor_arguments(cls):
    """(keyword arguments the optimizer's constructor takes, those it requires), `params`
    left out."""
    after_params = list(inspect.signature(cls).parameters.values())[1:]
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    needs = [p.name for p in after_params if p.default is p.empty and p.kind in named[:1]]
    takes = [p.name for p in after_params if p.kind in named and p.name not in needs]
    return takes, needs


# -- the scheduler's part --------------------------------------------------------------------------
def _scheduler_part(path, info, scheduler):
    """The scheduler record the checkpoint holds, its state checked against what the
    scheduler's own state_dict() holds (None when there is no scheduler to load)."""
    saved = _saved_part(path, info, "scheduler", scheduler)
    if saved is None:
        return None
    _require(path, saved, {"state": dict}, "scheduler")
    own = scheduler.state_dict()
    unknown = sorted(set(saved["state"]) - set(own))
    if unknown:
        raise CheckpointError(f"{path}: the saved {type(scheduler).__name__} has keys "
                              f"{unknown[:5]} this one does not")
    _check_like(path, saved["state"], own, "scheduler.state", none_ok=False)
    if "last_epoch" in saved["state"] and not isinstance(saved["state"]["last_epoch"], int):
        raise CheckpointError(f"{path}: scheduler.state.last_epoch is "
                              f"{_described(saved['state']['last_epoch'])}, expected an int")
    return saved


# -- structure of JSON values ----------------------------------------------------------------------
def _check_like(path, value, like, where, none_ok=True):
    """CheckpointError unless the JSON `value` has the structure of `like`, what saving the
    live object would store there: a bool for a bool, a number (not a bool) for a number,
    a string for a string, a list for a list or tuple (each item like the template's item
    at its place, or its last), a dict for a dict (each key the template has, recursively).
    Where the template holds None or another type, anything goes; with none_ok, a value
    None is taken for a number, bool or string too (an optimizer's fields such as LBFGS's
    t are None until set, and a fresh optimizer's template may hold a number there)."""
    leaf = not isinstance(like, (list, tuple, dict))
    if like is None or (value is None and none_ok and leaf):
        return
    if isinstance(like, (bool, np.bool_)):
        ok = isinstance(value, bool)
    elif isinstance(like, numbers.Real):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(like, str):
        ok = isinstance(value, str)
    elif isinstance(like, (list, tuple)):
        ok = isinstance(value, list)
        for i, item in enumerate(value if ok and like else ()):
            _check_like(path, item, like[min(i, len(like) - 1)], f"{where}[{i}]", none_ok)
    elif isinstance(like, dict):
        ok = isinstance(value, dict)
        for key, item in (value.items() if ok else ()):
            if key in like:
                _check_like(path, item, like[key], f"{where}.{key}", none_ok)
    else:
        return
    if not ok:
        raise CheckpointError(f"{path}: {where} is {_described(value)}, expected a "
                              f"{type(like).__name__} like {like!r:.60}")


# -- applying it -----------------------------------------------------------------------------------
def _apply(path, loads):
    """target.load_state_dict(state) for each (target, state, backup) in order; if one
    raises (or Ctrl-C), load the backups of those already loaded and raise
    CheckpointError."""
    done = []
    try:
        for target, state, backup in loads:
            done.append((target, backup))
            target.load_state_dict(state)
    except BaseException as e:
        failed = _restored(done)
        if not isinstance(e, Exception):
            raise
        raise CheckpointError(f"{path}: the saved state does not fit: {type(e).__name__}: "
                              f"{e}{failed}") from None


def _restored(done):
    """Load each backup (the last loaded first); a note on any that could not be."""
    notes = []
    for target, backup in reversed(done):
        try:
            target.load_state_dict(backup)
        except Exception as e:
            notes.append(f"; restoring the {type(target).__name__} failed too: "
                         f"{type(e).__name__}: {e}")
    return "".join(notes)


__all__ = ["save", "load", "read", "check_path", "file_mode", "CheckpointError",
           "CheckpointLock", "CheckpointInUseError", "FORMAT_VERSION", "READABLE_VERSIONS"]
