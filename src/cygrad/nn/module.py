"""Module: the base of layers and models (torch.nn.Module's API, forward only).

A module's forward runs functional ops (cygrad.nn.functional) on Tensors; each op
records its own graph node, so backward is `loss.backward()` and needs nothing from
the module. State belongs to the call, never to the module: a module may be called
any number of times (or appear twice in a model) before one backward.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from cygrad.autograd import no_grad
from cygrad.nn.init import float_dtype
from cygrad.nn.parameter import Parameter, flatten, flatten_is_shared
from cygrad.tensor import Tensor, to_arguments

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

_trace = None  # while summary() runs: the list of (module, output) of each call


class Module:
    """Base class of layers and models (torch.nn.Module's API): subclasses define
    __init__ (assigning Parameters and sub-modules as attributes) and forward."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        d = self.__dict__
        params, modules, buffers = d.get("_parameters"), d.get("_modules"), d.get("_buffers")
        if params is not None and name not in params and name not in modules and \
                name not in buffers and not isinstance(value, (Parameter, Module)):
            object.__setattr__(self, name, value)  # the common case: no registry
            return
        if params is None:
            raise AttributeError(f"call Module.__init__() in {type(self).__name__}.__init__ first")
        if name in buffers and not isinstance(value, (Parameter, Module)):
            self.register_buffer(name, value, persistent=name not in self._non_persistent)
            return
        # a replaced parameter or child keeps its place (torch's state_dict order)
        if isinstance(value, Parameter):
            modules.pop(name, None)
            buffers.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        else:
            params.pop(name, None)
            modules.pop(name, None)
            buffers.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        self._non_persistent.discard(name)
        object.__delattr__(self, name)

    def register_buffer(self, name, tensor, persistent=True):
        """Register a state array that is not a parameter (e.g. BatchNorm's running_mean):
        saved in state_dict (unless persistent=False) and by cg.save, converted by to(),
        never given to an optimizer. `tensor` is a Tensor, an ndarray or None."""
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"buffer name must be a non-empty string without '.', got {name!r}")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"attribute {name!r} already exists as a parameter or module")
        if tensor is not None:
            if isinstance(tensor, Parameter):
                raise TypeError(f"buffer {name!r} must not be a Parameter (register_parameter)")
            tensor = tensor.detach() if isinstance(tensor, Tensor) else Tensor(np.asarray(tensor))
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def register_parameter(self, name, param):
        """Add a Parameter (or None) under `name`, as torch's register_parameter."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign a {type(param).__name__} as parameter {name!r} "
                            "(a cygrad.nn.Parameter or None is required)")
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def add_module(self, name, module):
        """Add a child module under `name` (torch's add_module; also register_module)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str) or "." in name or not name:
            raise KeyError(f"module name must be a non-empty string without '.', got {name!r}")
        setattr(self, name, module)

    register_module = add_module

    # -- computation ----------------------------------------------------------------
    def forward(self, *args, **kwargs):
        """The computation of this module (subclasses define it); call the module, not
        forward, so that errors name the module."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def __call__(self, *args, **kwargs):
        try:
            out = self.forward(*args, **kwargs)
        except (TypeError, ValueError, NotImplementedError) as e:
            _name_module(e, self)
            raise
        if _trace is not None:
            _trace.append((self, out))
        return out

    def backward(self, *args, **kwargs):
        """Gone: backward is loss.backward() (autograd); this raises a TypeError saying so."""
        raise TypeError("Module.backward is gone: cygrad records the forward pass, so compute "
                        "a loss and call loss.backward() (it fills every parameter's .grad)")

    # -- parameters ----------------------------------------------------------------
    def named_parameters(self, prefix=""):
        """(name, Parameter) pairs in torch's order: own parameters, then children's; a
        parameter shared by several modules is listed once, under its first name."""
        seen = set()
        for name, p in self._named_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _named_parameters(self, prefix):
        for name, p in self._parameters.items():
            yield prefix + name, p
        for mname, m in self._modules.items():
            if m is not None:
                yield from m._named_parameters(prefix + mname + ".")

    def parameters(self):
        """Every Parameter of this module and its descendants, each once (a list)."""
        return [p for _, p in self.named_parameters()]

    def named_modules(self, prefix=""):
        """(name, module) for this module ("" ) and every descendant, depth first; a module
        reachable twice is listed once, as torch's."""
        seen = set()
        for name, m in self._walk_modules(prefix):
            if id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def _walk_modules(self, prefix):
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m._walk_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        """This module and every descendant (torch's modules())."""
        return [m for _, m in self.named_modules()]

    def named_children(self):
        """(name, module) of the direct children."""
        return [(n, m) for n, m in self._modules.items() if m is not None]

    def children(self):
        """The direct child modules (a list)."""
        return [m for m in self._modules.values() if m is not None]

    def named_buffers(self, prefix=""):
        """(name, Tensor) of every registered buffer, own first, then the children's."""
        for mname, m in self.named_modules():
            base = prefix + (mname + "." if mname else "")
            for name, b in m._buffers.items():
                if b is not None:
                    yield base + name, b

    def buffers(self):
        """Every registered buffer Tensor (a list)."""
        return [b for _, b in self.named_buffers()]

    def apply(self, fn):
        """Call fn(module) on every descendant, then on this module (children first, as
        torch's apply); returns self. E.g. model.apply(init_weights)."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad=True):
        """Set requires_grad on every parameter (False freezes them: no gradient is
        computed for them and optimizers leave them unchanged)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def num_parameters(self):
        """The number of scalar parameters (shared parameters counted once)."""
        return sum(p.data.size for p in self.parameters())

    def flat_buffers(self):
        """(data, grad): the one contiguous buffer of all parameters and the one of their gradients."""
        return flatten(self.parameters())

    def zero_grad(self, set_to_none=True):
        """Zero every parameter's gradient. (Gradients live in a flat buffer, so
        set_to_none, torch's default, zeroes them too.)"""
        for p in self.parameters():
            p.grad.fill(0)

    def train(self, mode=True):
        """Set training mode (dropout active, batch norm on batch statistics) on this
        module and its descendants; returns self."""
        object.__setattr__(self, "training", bool(mode))
        for m in self.children():
            m.train(mode)
        return self

    def eval(self):
        """train(False): evaluation mode; returns self."""
        return self.train(False)

    # -- state ---------------------------------------------------------------------
    def _named_state(self):
        """(key, Parameter or buffer Tensor) of the state_dict, in torch's order: a module's
        parameters, then its persistent buffers, then its children's; shared entries once."""
        seen, out = set(), []

        def walk(module, prefix):
            entries = list(module._parameters.items()) + [
                (n, b) for n, b in module._buffers.items() if n not in module._non_persistent]
            for name, t in entries:
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    out.append((prefix + name, t))
            for name, child in module._modules.items():
                if child is not None:
                    walk(child, prefix + name + ".")

        walk(self, "")
        return out

    def state_dict(self):
        """OrderedDict name -> copy of the array: parameters and persistent buffers, keys,
        shapes and layouts as torch.nn's."""
        return OrderedDict((name, t.data.copy()) for name, t in self._named_state())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, or anything np.asarray accepts, e.g. CPU torch tensors) in place
        into the parameters and buffers.

        strict=True: missing or unexpected keys raise ValueError naming them. A shape
        mismatch always raises. Returns (missing_keys, unexpected_keys) like torch.
        """
        own = OrderedDict(self._named_state())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(parts))
        values = {}
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            v = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v)
            if v.shape != t.data.shape:
                raise ValueError(f"load_state_dict: {k!r} has shape {v.shape} in the state dict "
                                 f"but {t.data.shape} in the model")
            values[k] = v
        for k, v in values.items():  # only after every key was checked: all or nothing
            own[k].data[...] = v
        return IncompatibleKeys(missing, unexpected)

    def to(self, *args, dtype=None, device=None):
        """Convert every floating-point parameter and buffer to `dtype` (torch's
        module.to(dtype), also a torch dtype or a name); 'cpu' is accepted as the device.
        Parameters stay in one flat buffer when they were; an optimizer must be created
        after the conversion (as in torch). Returns self."""
        dtype = to_arguments(args, dtype, device)
        if dtype is None:
            return self
        dtype = float_dtype(dtype)
        params = self.parameters()
        was_flat = bool(params) and flatten_is_shared(params)
        for p in params:
            if p.data.dtype != dtype:
                p._bind(p.data.astype(dtype), p.grad.astype(dtype))
        for m in self.modules():
            for name, b in m._buffers.items():
                if b is not None and b.data.dtype.kind == "f" and b.data.dtype != dtype:
                    b.data = b.data.astype(dtype)
            if isinstance(getattr(m, "dtype", None), np.dtype) and m.dtype.kind == "f":
                object.__setattr__(m, "dtype", dtype)  # built-in layers check their input
        if was_flat:
            flatten(params)
        return self

    def double(self):
        """to(float64)."""
        return self.to(np.float64)

    def float(self):
        """to(float32)."""
        return self.to(np.float32)

    # -- display -------------------------------------------------------------------
    def extra_repr(self):
        """The text inside this module's repr parentheses (subclasses override it)."""
        return ""

    def __repr__(self):
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"

    def summary(self, input_shape, file=None, dtype=None):
        """Print each layer call's output shape and parameter count (like Keras), in the
        order a forward pass of a batch of one runs them; return the text.

        input_shape excludes the batch dimension, e.g. (784,) or (1, 28, 28); a list of
        shapes for a forward with several inputs. dtype: the parameters' by default.
        """
        global _trace
        shapes = [input_shape] if not input_shape or not isinstance(input_shape[0], (tuple, list)) \
            else list(input_shape)
        dtype = dtype or next((p.dtype for p in self.parameters()), np.dtype(np.float32))
        inputs = [np.zeros((1,) + tuple(s), dtype) for s in shapes]
        names = {id(m): name for name, m in self.named_modules()}
        was_training, calls = self.training, []
        self.eval()
        try:
            _trace = calls
            with no_grad():
                self(*inputs)
        finally:
            _trace = None
            self.train(was_training)
        leaves = [(m, out) for m, out in calls if not m._modules] or calls[-1:]
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for m, out in leaves:
            rows.append((f"{names.get(id(m), '?') or type(m).__name__} ({type(m).__name__})",
                         _shape_text(out), f"{m.num_parameters():,}"))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        fmt = lambda r: f"{r[0]:<{widths[0]}}{r[1]:<{widths[1]}}{r[2]:>{widths[2]}}"
        rule = "=" * sum(widths)
        lines = [rule, fmt(rows[0]), rule] + [fmt(r) for r in rows[1:]] + [
            rule, f"Total params: {self.num_parameters():,}", rule]
        text = "\n".join(lines)
        print(text, file=file)
        return text


def _shape_text(out):
    if isinstance(out, (tuple, list)):
        return ", ".join(_shape_text(o) for o in out)
    return str((None,) + tuple(np.shape(out.data if isinstance(out, Tensor) else out))[1:])


def _name_module(error, module):
    """Prefix an error raised in a leaf module's forward with the module (once)."""
    if module._modules or getattr(error, "_cygrad_named", False):
        return
    if error.args and isinstance(error.args[0], str):
        error.args = (f"{module!r}: {error.args[0]}",) + error.args[1:]
    try:
        error._cygrad_named = True
    except AttributeError:  # an exception type without a __dict__
        pass
