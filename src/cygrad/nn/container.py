"""Containers (torch.nn's): Sequential, ModuleList, ModuleDict.

Children are registered as torch's add_module does (in `_modules`, in order, and as
attributes), so `parameters()`, `state_dict()` and `named_modules()` list them under
torch's names: `layers.0.weight`, `heads.cls.weight`. Slices and concatenations share
the modules; they never copy them.
"""
import operator
from collections import OrderedDict
from collections import abc

from cygrad.nn.activations import MaxPool2d, ReLU
from cygrad.nn.module import Module

__all__ = ["Sequential", "ModuleList", "ModuleDict"]


def _add_module(parent, name, module):
    """Register module as child `name` of parent, with torch's add_module checks.

    A name already among the children keeps its place (torch's order); a name taken by
    any other attribute or method is refused rather than shadowing it.
    """
    if not isinstance(module, Module):
        raise TypeError(f"{type(module).__name__} is not a Module subclass")
    if not isinstance(name, str):
        raise TypeError(f"module name should be a string. Got {type(name).__name__}")
    if "." in name:
        raise KeyError(f'module name can\'t contain ".", got: {name}')
    if name == "":
        raise KeyError('module name can\'t be empty string ""')
    if name not in parent._modules and hasattr(parent, name):
        raise KeyError(f"attribute '{name}' already exists")
    parent._modules[name] = module
    object.__setattr__(parent, name, module)


def _remove_module(parent, name):
    del parent._modules[name]
    parent.__dict__.pop(name, None)


def _set_children(parent, named):
    """Make the (name, module) pairs parent's children, in this order (no other change)."""
    for name in list(parent._modules):
        _remove_module(parent, name)
    for name, module in named:
        _add_module(parent, name, module)


class _Container(Module):
    """A module whose children are its contents."""

    def __setattr__(self, name, value):
        """Replacing a child (`setattr(seq, "1", m)`) keeps its place, as torch."""
        if isinstance(value, Module) and name in self.__dict__.get("_modules", ()):
            _add_module(self, name, value)
        else:
            super().__setattr__(name, value)


class _Indexed(_Container):
    """What Sequential and ModuleList share: children addressed by position."""

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def _key(self, idx):
        """The name of the child at position idx (negative counts from the end)."""
        idx = operator.index(idx)
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range")
        return next(k for i, k in enumerate(self._modules) if i == idx % n)

    def __setitem__(self, idx, module):
        _add_module(self, self._key(idx), module)

    def __delitem__(self, idx):
        """Remove the child(ren) at idx (int or slice); the rest are renumbered 0..n-1, as torch."""
        keys = list(self._modules)[idx] if isinstance(idx, slice) else [self._key(idx)]
        for key in keys:
            _remove_module(self, key)
        self._renumber(list(self._modules.values()))

    def _renumber(self, modules):
        _set_children(self, ((str(i), m) for i, m in enumerate(modules)))

    def pop(self, key):
        """Remove and return the child (or the container of children) at key."""
        v = self[key]
        del self[key]
        return v

    def append(self, module):
        """Add module at the end, named str(len(self)); returns self."""
        name = str(len(self))
        if name in self._modules:  # a named Sequential can hold a child called "2" already
            raise ValueError(f"append: a child is already named {name!r}")
        _add_module(self, name, module)
        return self

    def extend(self, modules):
        """Append every module of an iterable; returns self."""
        if not isinstance(modules, abc.Iterable):
            raise TypeError(f"{type(self).__name__}.extend should be called with an iterable, "
                            f"but got {type(modules).__name__}")
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        """Insert module before position index (-len <= index <= len); children are
        renumbered 0..n-1."""
        if not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        modules = list(self._modules.values())
        index = operator.index(index)
        if not -len(modules) <= index <= len(modules):
            raise IndexError(f"Index out of range: {index}")
        modules.insert(index, module)
        self._renumber(modules)
        return self


class Sequential(_Indexed):
    """Modules applied in order (torch.nn.Sequential): Sequential(m0, m1, ...) names the
    children "0", "1", ...; Sequential(OrderedDict([(name, module), ...])) names them.

    On construction, parameters that own their memory (fresh layers) are moved into
    one flat data buffer and their gradients into one flat grad buffer; parameters
    that already are views of a buffer (of another model, or of an optimizer) are left
    where they are. A module may appear more than once (its parameters are listed
    once, and their gradient is the sum over its uses). `model[i:j]` is a Sequential
    sharing the same modules under the same names.
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            named = list(args[0].items())
        else:
            for i, layer in enumerate(args):
                if not isinstance(layer, Module):
                    hint = " (pass an OrderedDict to name the children)" if isinstance(
                        layer, dict) else ""
                    raise TypeError(f"Sequential argument {i} is a {type(layer).__name__}, "
                                    f"not a Module{hint}")
            named = [(str(i), m) for i, m in enumerate(args)]
        _set_children(self, named)
        params = self.parameters()
        if params and all(p.data.base is None and p.grad.base is None for p in params):
            self.flat_buffers()

    @classmethod
    def _sharing(cls, named):
        """A Sequential of these (name, module) pairs that leaves their parameters alone."""
        seq = cls.__new__(cls)
        Module.__init__(seq)
        _set_children(seq, named)
        return seq

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return self._sharing(list(self._modules.items())[idx])
        return self._modules[self._key(idx)]

    def __add__(self, other):
        """A new Sequential of self's modules then other's, numbered 0..n-1 (shared)."""
        if not isinstance(other, Sequential):
            raise ValueError("add operator supports only objects of Sequential class, but "
                             f"{type(other)} is given.")
        return self._sharing((str(i), m) for i, m in enumerate(list(self) + list(other)))

    def __iadd__(self, other):
        """Append other's modules (other must be a Sequential, as torch)."""
        if not isinstance(other, Sequential):
            raise ValueError("add operator supports only objects of Sequential class, but "
                             f"{type(other)} is given.")
        return self.extend(list(other))

    def _plan(self):
        """Layers in execution order, with each ReLU followed by a MaxPool2d run after it.

        max_pool(relu(x)) == relu(max_pool(x)) exactly (relu is monotone; a window
        whose max is <= 0 gives 0 and a zero gradient either way), and the ReLU then
        touches a quarter of the elements. A forward-time choice: the graph records
        the ops in the order they ran.
        """
        layers = list(self._modules.values())
        key = tuple(map(id, layers))
        if getattr(self, "_plan_key", None) != key:
            order = list(range(len(layers)))
            i = 0
            while i + 1 < len(layers):
                if type(layers[i]) is ReLU and type(layers[i + 1]) is MaxPool2d:
                    order[i], order[i + 1] = i + 1, i
                    i += 2
                else:
                    i += 1
            object.__setattr__(self, "_plan_cache", [layers[i] for i in order])
            object.__setattr__(self, "_plan_key", key)
        return self._plan_cache

    def forward(self, x):
        """x through every module in order (ReLU then MaxPool2d run as MaxPool2d then ReLU)."""
        for layer in self._plan():
            x = layer(x)
        return x


class ModuleList(_Indexed):
    """A list of modules, registered as children "0", "1", ... (torch.nn.ModuleList).

    Indexing (negative too), slices (a ModuleList of the same modules, renumbered),
    len, iteration, append, extend, insert, pop, `del`, `+` and `+=` behave as torch's.
    It has no forward: a model's forward iterates over it.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[self._key(idx)]

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other):
        """A new ModuleList of self's modules then other's (shared, not copied)."""
        return ModuleList(list(self) + list(other))


class ModuleDict(_Container):
    """An ordered dict of modules, registered as children under their keys
    (torch.nn.ModuleDict): [], in, len, iteration over keys, keys, values, items, update,
    pop, clear, `del`. Keys must be non-empty strings without "." that do not name a
    method or attribute of the ModuleDict (KeyError, as torch). It has no forward.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        _add_module(self, key, module)

    def __delitem__(self, key):
        _remove_module(self, key)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def clear(self):
        """Remove every module."""
        _set_children(self, ())

    def pop(self, key):
        """Remove the module under key and return it."""
        v = self[key]
        del self[key]
        return v

    def keys(self):
        """The names of the modules, in insertion order."""
        return self._modules.keys()

    def items(self):
        """(name, module) pairs, in insertion order."""
        return self._modules.items()

    def values(self):
        """The modules, in insertion order."""
        return self._modules.values()

    def update(self, modules):
        """Add or replace modules from a mapping, or from an iterable of (key, module) pairs."""
        if isinstance(modules, (abc.Mapping, ModuleDict)):
            pairs = list(modules.items())
        elif isinstance(modules, abc.Iterable):
            pairs = [_pair(j, m) for j, m in enumerate(modules)]
        else:
            raise TypeError("ModuleDict.update should be called with an iterable of key/value "
                            f"pairs, but got {type(modules).__name__}")
        for key, module in pairs:
            self[key] = module


def _pair(j, item):
    """Element j of ModuleDict.update's sequence as a (key, module) pair (torch's errors)."""
    if not isinstance(item, abc.Iterable):
        raise TypeError(f"ModuleDict update sequence element #{j} should be Iterable; is "
                        f"{type(item).__name__}")
    item = tuple(item)
    if len(item) != 2:
        raise ValueError(f"ModuleDict update sequence element #{j} has length {len(item)}; "
                         "2 is required")
    return item
