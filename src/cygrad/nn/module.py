"""Module: the base of layers and models (torch.nn.Module's API, forward only).

A module's forward runs functional ops (cygrad.nn.functional) on Tensors; each op
records its own graph node, so backward is `loss.backward()` and needs nothing from
the module. State belongs to the call, never to the module: a module may be called
any number of times (or appear twice in a model) before one backward.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from cygrad.autograd import no_grad
from cygrad.nn.parameter import Parameter, flatten

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers and models (torch.nn.Module's API): subclasses define
    __init__ (assigning Parameters and sub-modules as attributes) and forward."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        params, modules = self.__dict__.get("_parameters"), self.__dict__.get("_modules")
        if params is not None and name not in params and name not in modules and \
                not isinstance(value, (Parameter, Module)):
            object.__setattr__(self, name, value)  # the common case (caches in forward): no registry
            return
        if params is None:
            raise AttributeError(f"call Module.__init__() in {type(self).__name__}.__init__ first")
        params.pop(name, None)
        modules.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            modules[name] = value
        object.__setattr__(self, name, value)

    # -- computation ----------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def __call__(self, *args, **kwargs):
        try:
            return self.forward(*args, **kwargs)
        except (TypeError, ValueError, NotImplementedError) as e:
            _name_module(e, self)
            raise

    def backward(self, *args, **kwargs):
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
            yield from m._named_parameters(prefix + mname + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_modules(self, prefix=""):
        """(name, module) for this module ("" ) and every descendant, depth first."""
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self):
        return list(self._modules.values())

    def num_parameters(self):
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
        object.__setattr__(self, "training", bool(mode))
        for m in self._modules.values():
            m.train(mode)
        return self

    def eval(self):
        return self.train(False)

    # -- state ---------------------------------------------------------------------
    def state_dict(self):
        """OrderedDict name -> copy of the array; keys, shapes and layouts as torch.nn's."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, or anything np.asarray accepts, e.g. CPU torch tensors) in place.

        strict=True: missing or unexpected keys raise ValueError naming them. A shape
        mismatch always raises. Returns (missing_keys, unexpected_keys) like torch.
        """
        own = OrderedDict(self.named_parameters())
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
        for k, p in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            v = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v)
            if v.shape != p.data.shape:
                raise ValueError(f"load_state_dict: {k!r} has shape {v.shape} in the state dict "
                                 f"but {p.data.shape} in the model")
            values[k] = v
        for k, v in values.items():  # only after every key was checked: all or nothing
            own[k].data[...] = v
        return IncompatibleKeys(missing, unexpected)

    # -- display -------------------------------------------------------------------
    def extra_repr(self):
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

    def summary(self, input_shape, file=None):
        """Print each layer's output shape and parameter count (like Keras); return the text.

        input_shape excludes the batch dimension, e.g. (784,) or (1, 28, 28).
        """
        layers = self.children() or [self]
        dtype = next((p.dtype for p in self.parameters()), np.dtype(np.float32))
        x = np.zeros((1,) + tuple(input_shape), dtype)
        rows = [("Layer (type)", "Output Shape", "Param #")]
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for name, layer in zip(self._modules or ["0"], layers):
                    x = layer(x)
                    rows.append((f"{name} ({type(layer).__name__})",
                                 str((None,) + tuple(x.shape[1:])), f"{layer.num_parameters():,}"))
        finally:
            self.train(was_training)
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        fmt = lambda r: f"{r[0]:<{widths[0]}}{r[1]:<{widths[1]}}{r[2]:>{widths[2]}}"
        rule = "=" * sum(widths)
        lines = [rule, fmt(rows[0]), rule] + [fmt(r) for r in rows[1:]] + [
            rule, f"Total params: {self.num_parameters():,}", rule]
        text = "\n".join(lines)
        print(text, file=file)
        return text


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
