"""Optimizer: torch.optim.Optimizer's API (parameter groups, state_dict) over flat buffers.

Layout. The optimizer's parameters, group after group, are views into ONE contiguous data
buffer and their gradients into one grad buffer (cygrad.nn.parameter.flatten); each group
is a contiguous slice of both, and every state buffer (momentum, moments, ...) is flat
with the same layout. A step is one kernel call per group on its slices, with the group's
hyperparameters read at that moment, so a change to `param_groups[i]['lr']` (a scheduler's)
applies at the next step. A model flattened by Sequential keeps its buffer when the
optimizer takes the parameters in model order; another grouping moves them to a new one.

Safety. When the parameters are moved again later (model.flat_buffers() or a second
optimizer wanting another order), this optimizer's buffers are stale: step(), zero_grad(),
`.data` and `.grad` then raise RuntimeError rather than update copies no layer reads.

Freezing. A parameter with requires_grad=False is skipped, as torch skips a parameter
without a gradient: its data, its state and its step count stay as they are. The kernel
runs on each run of adjacent trainable parameters (one call per group when none is frozen).
As in torch each parameter counts its own steps (state_dict()['state'][i]['step']).
"""
import math
import operator
import warnings

import numpy as np

from cygrad import backend
from cygrad.autograd import bump_versions, enable_grad
from cygrad.nn.module import Module
from cygrad.nn.parameter import Parameter, flatten, rebind_count
from cygrad.tensor import Tensor

# How each hyperparameter is checked wherever an optimizer has it (torch's ranges, and
# finite: an inf lr or eps gives inf/NaN parameters at the first step). Filled in below
# the checkers: key -> check(value, key, optimizer name) -> the value to keep.
_NONNEGATIVE = ("lr", "eps", "weight_decay", "momentum", "lr_decay", "alpha",
                "initial_accumulator_value", "tolerance_grad", "tolerance_change")
_FINITE = ("dampening",)
_FLAGS = ("maximize", "nesterov", "amsgrad", "centered", "decoupled_weight_decay")
_COUNTS = ("max_iter", "max_eval", "history_size")  # second-order iteration limits, >= 1


class Optimizer:
    """Base class: parameter groups over one flat (data, grad) buffer pair, flat state
    buffers and per-parameter step counts. Subclasses give their defaults and a `_update`."""

    #: every state buffer name the algorithm may keep (subclasses)
    _all_state_names = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # name -> flat buffer laid out as the data buffer
        self.step_count = 0  # calls of step()
        self._params, self._steps = [], []
        self._validated = None  # the groups' values when last checked (see _validate_groups)
        for group in _as_groups(params):
            self._append_group(group)
        self._layout()

    # -- what each optimizer defines -----------------------------------------------
    def _state_names(self, group):
        """State buffers a group needs with its current hyperparameters."""
        return ()

    def _initial(self, name, group):
        return 0.0

    def _update(self, F, group, sl, step):
        """Update the parameters in slice `sl` of the flat buffers (None: all of them) by
        one kernel call; `step` is the 1-based count of this update for each of them."""
        raise NotImplementedError

    def _slices(self, sl, *names):
        """(data, grad, *state buffers) restricted to slice sl (the buffers themselves
        for None; None for a state buffer the algorithm does not keep)."""
        state = self.state
        bufs = [self._data, self._grad] + [state.get(n) for n in names]
        return bufs if sl is None else [None if b is None else b[sl] for b in bufs]

    def _check_group(self, group):
        """Raise TypeError / ValueError naming a hyperparameter the algorithm cannot use;
        numbers given as NumPy scalars or 1-element arrays are stored back as floats (so
        the kernels get what they take). Run at construction, on load_state_dict and
        before every step (a value set later through param_groups is checked too)."""
        name = type(self).__name__
        for key, value in group.items():  # (only values are replaced: safe while iterating)
            check = _CHECKS.get(key)
            if check is not None:
                kept = check(value, key, name)
                if kept is not value:
                    group[key] = kept

    # -- groups ----------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group (a dict with 'params' and any hyperparameters; the others from
        `defaults`), as torch.optim.Optimizer.add_param_group. Every parameter moves
        into a new flat buffer that also holds the new ones; state is kept."""
        self._append_group(param_group)
        try:
            self._layout()
        except Exception:
            self.param_groups.pop()
            raise

    def _append_group(self, group):
        """Validate a group as torch does, fill in the defaults and append it."""
        if not isinstance(group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(group).__name__}")
        if "params" not in group:
            raise ValueError("a parameter group needs a 'params' entry")
        group = dict(group)
        params, names = _split_names(group["params"])
        params, names = _deduplicated(params, names)
        group["params"] = params
        if names is not None:
            group["param_names"] = names
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        taken = set()
        for other in self.param_groups:
            taken.update(map(id, other["params"]))
            if ("param_names" in other) != ("param_names" in group):
                raise ValueError("all optimizer param groups should be with/without names: cannot "
                                 "mix (name, parameter) pairs and bare parameters")
        if any(id(p) in taken for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self._check_group(group)
        self.param_groups.append(group)

    def _layout(self):
        """Flatten every group's parameters (in group order) into one buffer pair; keep
        the state of the parameters laid out before (they stay first, in order)."""
        params = [p for g in self.param_groups for p in g["params"]]
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self._validated = None
        old_total = self._offsets[-1] if self._params else 0
        self._data, self._grad = flatten(params)
        self._params = params
        self._offsets = np.cumsum([0] + [p.data.size for p in params]).tolist()
        self._views = [(p.data, p.grad) for p in params]
        self._seen = rebind_count()
        self._steps += [0] * (len(params) - len(self._steps))
        self._spans = []
        first = 0
        for g in self.param_groups:
            last = first + len(g["params"])
            lo, hi = self._offsets[first], self._offsets[last]
            whole = (lo, hi) == (0, self._data.size)
            self._spans.append((first, last, slice(lo, hi), whole))
            first = last
        for name, old in list(self.state.items()):
            self.state[name] = self._new_state(name)
            self.state[name][:old_total] = old
        self._ensure_state()

    def _new_state(self, name):
        buf = np.empty_like(self._data)
        for group, span in zip(self.param_groups, self._spans):
            buf[span[2]] = self._initial(name, group)
        return buf

    def _ensure_state(self):
        """Allocate the state buffers the groups need now (a hyperparameter changed
        between steps can add one: SGD's momentum, say)."""
        for group in self.param_groups:
            for name in self._state_names(group):
                if name not in self.state:
                    self.state[name] = self._new_state(name)

    # -- the public API --------------------------------------------------------------
    @property
    def data(self):
        """The flat buffer all parameters are views of (group after group)."""
        self._check_fresh()
        return self._data

    @data.setter
    def data(self, value):
        _assign(self.data, value)

    @property
    def grad(self):
        """The flat buffer all gradients are views of (e.g. for one Allreduce)."""
        self._check_fresh()
        return self._grad

    @grad.setter
    def grad(self, value):  # `opt.grad += g` lands here after adding in place
        _assign(self.grad, value)

    @property
    def params(self):
        """Every parameter, group after group (the order of the flat buffers)."""
        return list(self._params)

    @property
    def lr(self):
        """The first group's learning rate; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        for group in self.param_groups:
            group["lr"] = float(value)

    @property
    def hyper(self):
        """The first group's hyperparameters (a copy; change `param_groups` instead)."""
        return {k: v for k, v in self.param_groups[0].items() if k not in ("params", "param_names")}

    def zero_grad(self, set_to_none=True):
        """Zero every gradient (one fill of the flat gradient buffer; set_to_none, torch's
        default, zeroes too: the gradients are views of that buffer)."""
        self.grad.fill(0)

    def step(self, closure=None):
        """One update of every trainable parameter: a kernel call per group (per run of
        adjacent trainable parameters when some are frozen), with the groups' current
        hyperparameters. closure (optional, as torch): recomputes the loss and fills the
        gradients; it is called first (with grad mode on) and its loss returned."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        self._check_fresh()
        self._validate_groups()
        F = backend.current()
        moved = []
        for group, span in zip(self.param_groups, self._spans):
            for first, last, sl, step in self._runs(group, span):
                self._update(F, group, sl, step)
                self._advance(group, first, last)
                moved += self._params[first:last]
        self.step_count += 1
        bump_versions(moved)  # a graph recorded before must not backward through them
        return loss

    def _validate_groups(self):
        """Check every group (all valid before any group moves) and allocate the state
        they need, unless no hyperparameter changed since the last check (the usual
        step: one tuple comparison per group)."""
        signature = [tuple(g.values()) for g in self.param_groups]
        if signature == self._validated:
            return
        for group in self.param_groups:
            self._check_group(group)
        self._ensure_state()
        self._validated = [tuple(g.values()) for g in self.param_groups]  # (values normalised)

    # -- runs of trainable parameters -----------------------------------------------------
    def _next_steps(self, group, first, last):
        """The 1-based count of the next update of parameters first..last-1 (the kernel's
        `step`)."""
        return [s + 1 for s in self._steps[first:last]]

    def _advance(self, group, first, last):
        self._steps[first:last] = [s + 1 for s in self._steps[first:last]]

    def _runs(self, group, span):
        """(first, last, slice, step) for each run of adjacent trainable parameters of
        the group with the same step count: the whole group unless some are frozen."""
        first, last, whole_slice, whole = span
        if first == last:
            return []  # an empty group (torch allows one)
        steps = self._next_steps(group, first, last)
        if steps.count(steps[0]) == len(steps) and all(map(_trainable, group["params"])):
            return [(first, last, None if whole else whole_slice, steps[0])]  # the usual case
        trainable = [p.requires_grad for p in self._params[first:last]]
        runs, offsets = [], self._offsets
        for i, (step, on) in enumerate(zip(steps, trainable), start=first):
            if not on:
                continue
            if runs and runs[-1][1] == i and runs[-1][3] == step:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1, None, step])
        for run in runs:
            run[2] = slice(offsets[run[0]], offsets[run[1]])
        return runs

    def _check_fresh(self):
        """Raise if a parameter was moved to another buffer since this optimizer laid
        them out (one integer compare per call when nothing was)."""
        if self._seen == rebind_count():
            return
        for i, (p, (data, grad)) in enumerate(zip(self._params, self._views)):
            if p.data is not data or p.grad is not grad:
                raise RuntimeError(
                    f"{type(self).__name__}: parameter {i} (shape {p.data.shape}) was moved to "
                    "another flat buffer after this optimizer was created (model.flat_buffers(), "
                    "cygrad.nn.flatten, a Sequential or another optimizer grouping the parameters "
                    "in a different order), so this optimizer would update a stale copy. Create "
                    "the optimizer after the others, or give them the same parameter order.")
        self._seen = rebind_count()

    # -- state_dict ------------------------------------------------------------------------
    def state_dict(self):
        """torch's structure: {'state': {i: {'step': n, <buffer>: array}}, 'param_groups':
        [{<hyperparameters>, 'params': [i, ...]}]} with parameters numbered group after
        group, plus 'type' and 'step_count'. The arrays are copies, shaped as the
        parameters (views of one flat copy per buffer)."""
        groups, index = [], 0
        for group in self.param_groups:
            saved = {k: v for k, v in group.items() if k != "params"}
            saved["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(saved)
        return {"type": type(self).__name__, "step_count": self.step_count,
                "state": self._state_entries(), "param_groups": groups}

    def _present(self, group, i):
        """Names of the state buffers parameter i has (torch creates them on its first step)."""
        return [n for n in self._state_names(group) if n in self.state]

    def _state_entries(self):
        copies = {name: buf.copy() for name, buf in self.state.items()}
        entries = {}
        for group, (first, last, _, _) in zip(self.param_groups, self._spans):
            for i in range(first, last):
                p, lo, hi = self._params[i], self._offsets[i], self._offsets[i + 1]
                entry = {"step": self._steps[i]}
                for name in self._present(group, i):
                    entry[name] = copies[name][lo:hi].reshape(p.data.shape)
                entries[i] = entry
        return entries

    def load_state_dict(self, state_dict):
        """Restore hyperparameters (from the state dict, as torch), step counts and state.

        Accepts this class's state_dict() (groups and sizes must match: ValueError
        otherwise, before anything changes), the single-buffer format of cygrad 0.1
        ({'type', 'step', 'hyper', 'state': {name: flat array}}), and torch's own
        optimizer state_dict for the same algorithm (tensors are read as arrays)."""
        state_dict = self._upgrade(state_dict)
        kind = state_dict.get("type", type(self).__name__)
        if kind != type(self).__name__:
            raise ValueError(f"state dict of a {kind} loaded into a {type(self).__name__}")
        groups, order = self._loaded_groups(state_dict["param_groups"])
        entries = self._loaded_entries(state_dict.get("state", {}), order)
        self._check_complete(groups, entries)
        self.param_groups = groups  # from here on nothing raises
        self._validated = None
        self._restore(entries)
        self.step_count = int(state_dict.get("step_count", max(self._steps, default=0)))

    def _loaded_groups(self, saved_groups):
        """The groups a state dict's hyperparameters give, validated; and the map from
        the state dict's parameter numbers to this optimizer's."""
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"this {type(self).__name__} has {len(self.param_groups)}")
        groups, order, first = [], {}, 0
        for k, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"parameter group {k} of the state dict has "
                                 f"{len(saved['params'])} parameters, this optimizer's has "
                                 f"{len(group['params'])}")
            new = {key: v for key, v in saved.items() if key not in _TORCH_ONLY}
            new["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                new["param_names"] = group["param_names"]
            for key, value in self.defaults.items():
                new.setdefault(key, value)
            self._check_group(new)
            order.update((int(s), first + j) for j, s in enumerate(saved["params"]))
            first += len(group["params"])
            groups.append(new)
        return groups, order

    def _loaded_entries(self, saved_state, order):
        """{parameter index: (step, {name: flat values})} from a state dict's 'state',
        every name known and every size checked."""
        entries = {}
        for key, entry in saved_state.items():
            if int(key) not in order:
                raise ValueError(f"the state dict has state for parameter {key}, which is in "
                                 "none of its parameter groups")
            i = order[int(key)]
            size = self._params[i].data.size
            values = {}
            for name, value in entry.items():
                if name == "step" or value is None:  # torch: {'momentum_buffer': None}
                    continue
                if name not in self._all_state_names:
                    raise ValueError(f"state {name!r} of parameter {key} is not a state of "
                                     f"{type(self).__name__} ({', '.join(self._all_state_names)})")
                value = _array(value)
                if value.size != size:
                    raise ValueError(f"state {name!r} of parameter {key} has {value.size} "
                                     f"elements, the parameter has {size}")
                values[name] = value.reshape(-1)
            entries[i] = (int(float(entry.get("step", 0))), values)
        return entries

    def _restore(self, entries):
        """Rebuild state buffers and step counts from loaded entries (groups already set)."""
        self.state = {}
        names = {n for _, values in entries.values() for n in values}
        for name in names:
            self.state[name] = self._new_state(name)
        self._ensure_state()
        self._steps = [0] * len(self._params)
        for group, (first, last, _, _) in zip(self.param_groups, self._spans):
            for i in range(first, last):
                step, values = entries.get(i, (0, {}))
                self._restore_param(group, i, step, values)

    def _check_complete(self, groups, entries):
        """Every parameter that has taken steps has the state its group needs."""
        for group, (first, last, _, _) in zip(groups, self._spans):
            for i in range(first, last):
                step, values = entries.get(i, (0, {}))
                missing = [n for n in self._required(group) if n not in values]
                if step > 0 and missing:
                    raise ValueError(f"the state of parameter {i} (step {step}) lacks "
                                     f"{', '.join(map(repr, missing))}")

    def _restore_param(self, group, i, step, values):
        lo, hi = self._offsets[i], self._offsets[i + 1]
        for name, value in values.items():
            self.state[name][lo:hi] = value
        self._steps[i] = step

    def _required(self, group):
        """State a parameter that has taken steps must have."""
        return self._state_names(group)

    def _upgrade(self, state_dict):
        """cygrad 0.1's {'type', 'step', 'hyper', 'state': {name: flat}} as a state dict
        of today (its flat buffers laid out as ours: parameters in order)."""
        if "param_groups" in state_dict or "hyper" not in state_dict:
            return state_dict
        step = int(state_dict["step"])
        flat = {name: _array(v).reshape(-1) for name, v in state_dict["state"].items()}
        for name, v in flat.items():
            if v.size != self._offsets[-1]:
                raise ValueError(f"optimizer state {name!r} has shape {v.shape}, expected "
                                 f"({self._offsets[-1]},)")
        entries = {}
        for i in range(len(self._params)):
            lo, hi = self._offsets[i], self._offsets[i + 1]
            entries[i] = dict({n: v[lo:hi] for n, v in flat.items()}, step=step)
        groups = [dict(state_dict["hyper"], params=list(range(first, last)))
                  for first, last, _, _ in self._spans]
        return {"type": state_dict.get("type", type(self).__name__), "step_count": step,
                "state": entries, "param_groups": groups}

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines + [")"])


# keys torch's param_groups carry for its implementations, meaningless here
_TORCH_ONLY = ("foreach", "fused", "capturable", "differentiable")


def _as_groups(params):
    """The constructor's params as a list of group dicts (torch's rules)."""
    if isinstance(params, Module):
        params = params.parameters()
    if isinstance(params, Tensor):
        raise TypeError("params given to the optimizer should be an iterable of Parameters "
                        f"or dicts, but got a {type(params).__name__}")
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    if not isinstance(params[0], dict):
        params = [{"params": params}]
    return params


_trainable = operator.attrgetter("requires_grad")


def _split_names(params):
    """(parameters, names or None) of a group's 'params': Parameters or (name, Parameter)."""
    if isinstance(params, Tensor):
        params = [params]
    elif isinstance(params, (set, frozenset)):
        raise TypeError("optimizer parameters need to be organized in ordered collections, but "
                        "the ordering of parameters in sets will change between runs; use a list")
    params = list(params)
    named = [isinstance(p, tuple) for p in params]
    if any(named) and not all(named):
        raise ValueError("all optimizer params should be with/without names: some names are "
                         "missing")
    names = [n for n, _ in params] if params and all(named) else None
    if names is not None:
        params = [p for _, p in params]
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"optimizer can only optimize cygrad.nn.Parameter objects, but one of "
                            f"the params is a {type(p).__name__}")
    return params, names


def _deduplicated(params, names):
    """Drop repeats of a parameter within a group, with torch's warning."""
    seen, keep = set(), []
    for j, p in enumerate(params):
        if id(p) not in seen:
            seen.add(id(p))
            keep.append(j)
    if len(keep) == len(params):
        return params, names
    warnings.warn("optimizer contains a parameter group with duplicate parameters; each is "
                  "kept once", UserWarning, stacklevel=4)
    return [params[j] for j in keep], None if names is None else [names[j] for j in keep]


def _assign(buf, value):
    """`opt.data = x` / `opt.grad = x` copy into the flat buffer (nothing to do for the
    buffer itself, as after `opt.grad += g`)."""
    if value is not buf:
        buf[...] = value


def _hyper_number(value, key, name, low=None):
    """A hyperparameter as a finite float (>= low when given). Accepts Python and NumPy
    real numbers and 1-element arrays or tensors (torch takes a 1-element tensor lr)."""
    if type(value) is float and math.isfinite(value) and (low is None or value >= low):
        return value  # the usual case, checked on every step: keep it cheap
    if isinstance(value, Tensor):
        value = value.data
    elif hasattr(value, "detach"):  # a torch tensor
        value = _array(value)
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"{key} for {name} must be a single number, got an array of shape "
                             f"{value.shape}")
        value = value.reshape(-1)[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError(f"{key} for {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (low is not None and not value >= low):
        bound = "" if low is None else f" and >= {low:g}"
        raise ValueError(f"invalid {key} for {name}: {value} (must be finite{bound})")
    return value


def _nonnegative(value, key, name):
    return _hyper_number(value, key, name, low=0.0)


def _flag(value, key, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{key} must be a bool for {name}, got {value!r}")
    return value


def _hyper_count(value, key, name):
    """An iteration limit: an int >= 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{key} for {name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"invalid {key} for {name}: {value} (must be >= 1)")
    return int(value)


def _betas(value, name, key="betas"):
    """Adam's (beta1, beta2): two numbers in [0, 1), as a tuple of floats."""
    if type(value) is tuple and len(value) == 2 and all(
            type(b) is float and 0.0 <= b < 1.0 for b in value):
        return value  # the usual case, checked on every step
    try:
        pair = tuple(value)
    except TypeError:
        raise TypeError(f"betas for {name} must be a pair of numbers, got "
                        f"{type(value).__name__}") from None
    if len(pair) != 2:
        raise ValueError(f"betas for {name} must be a pair of numbers, got {len(pair)} values")
    pair = tuple(_hyper_number(b, f"beta{i + 1}", name) for i, b in enumerate(pair))
    for i, b in enumerate(pair):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"invalid beta parameter at index {i}: {b} (must be in [0, 1))")
    return pair


_CHECKS = {**dict.fromkeys(_NONNEGATIVE, _nonnegative), **dict.fromkeys(_FINITE, _hyper_number),
           **dict.fromkeys(_FLAGS, _flag), **dict.fromkeys(_COUNTS, _hyper_count),
           "betas": lambda value, key, name: _betas(value, name)}


def _array(value):
    """An array from a state value (NumPy, or a torch tensor from torch's state_dict)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


__all__ = ["Optimizer"]
