"""Module and Sequential: PyTorch-shaped containers with an explicit backward pass.

Each layer's forward (in train mode) caches what its backward needs; backward(grad_out)
adds the parameter gradients into `.grad` (accumulating, like torch) and returns the
gradient with respect to the input.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from cygrad.nn.parameter import Parameter, flatten

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers and models (torch.nn.Module's API, forward and backward explicit)."""

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
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_out, input_grad=True):
        """Add parameter gradients into .grad; return d loss / d input (None if not input_grad)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x):
        return self.forward(x)

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
        return sum(p.size for p in self.parameters())

    def flat_buffers(self):
        """(data, grad): the one contiguous buffer of all parameters and the one of their gradients."""
        return flatten(self.parameters())

    def zero_grad(self):
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
            for name, layer in zip(self._modules or ["0"], layers):
                x = layer(x)
                rows.append((f"{name} ({type(layer).__name__})",
                             str((None,) + x.shape[1:]), f"{layer.num_parameters():,}"))
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


class Sequential(Module):
    """Modules applied in order; children named "0", "1", ... as torch.nn.Sequential.

    On construction every parameter is moved into one flat data buffer and every
    gradient into one flat grad buffer. A layer caches one forward call for its
    backward, so one instance must not appear twice in a model that is trained.
    """

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential argument {i} is a {type(layer).__name__}, not a Module")
            setattr(self, str(i), layer)
        if self.parameters():
            self.flat_buffers()

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def _plan(self):
        """Layers in execution order, with each ReLU followed by a MaxPool2d run after it.

        max_pool(relu(x)) == relu(max_pool(x)) exactly (relu is monotone; a window
        whose max is <= 0 gives 0 and a zero gradient either way), and the ReLU then
        touches a quarter of the elements. Backward runs the same plan in reverse.
        """
        layers = list(self._modules.values())
        key = tuple(map(id, layers))
        if getattr(self, "_plan_key", None) != key:
            from cygrad.nn.activations import MaxPool2d, ReLU  # (activations imports this module)
            order = list(range(len(layers)))
            i = 0
            while i + 1 < len(layers):
                if type(layers[i]) is ReLU and type(layers[i + 1]) is MaxPool2d:
                    order[i], order[i + 1] = i + 1, i
                    i += 2
                else:
                    i += 1
            plan = [layers[i] for i in order]
            # without input_grad, layers before the first one with parameters need no backward
            first = next((j for j, m in enumerate(plan) if m.parameters()), len(plan))
            object.__setattr__(self, "_plan_cache", (plan, first))
            object.__setattr__(self, "_plan_key", key)
        return self._plan_cache

    def forward(self, x):
        for layer in self._plan()[0]:
            x = layer(x)
        return x

    def backward(self, grad_out, input_grad=True):
        plan, first_param = self._plan()
        first = 0 if input_grad else first_param
        for i in range(len(plan) - 1, first - 1, -1):
            grad_out = plan[i].backward(grad_out, input_grad=input_grad or i > first)
        return grad_out if input_grad else None
