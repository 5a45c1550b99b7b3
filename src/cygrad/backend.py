"""Which implementation the nn layer runs on: the compiled kernels or the NumPy reference.

`cygrad.kernels` and `cygrad.reference` expose the same functions with the same
signatures; layers, losses and optimizers look their functions up through
`current()` on every call, so switching the backend replays a whole training run
on the specification.
"""
import contextlib
import importlib
import threading

BACKENDS = ("kernels", "reference")


class _State(threading.local):
    """The active backend per thread; a thread that set none sees the class attributes
    (the default), read without a failed instance lookup (this runs on every op)."""

    name = "kernels"
    module = None


_state = _State()
_modules = {}


def _check(name):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def _module(name):
    module = _modules.get(name)
    if module is None:
        module = _modules[name] = importlib.import_module("cygrad." + name)
    return module


def _activate(target, name):
    target.name, target.module = name, _module(name)


def set_backend(name):
    """Make `name` ('kernels' or 'reference') the active backend of this thread (and the default of new ones)."""
    _check(name)
    _activate(_State, name)
    _activate(_state, name)


def get_backend():
    """The name of the active backend: 'kernels' or 'reference'."""
    return _state.name


def current():
    """The active backend's module (cygrad.kernels or cygrad.reference)."""
    module = _state.module
    if module is None:  # a thread on the default, before its first use: import it once
        module = _State.module = _module(_State.name)
    return module


@contextlib.contextmanager
def use_backend(name):
    """Run the enclosed block on backend `name`, then restore the previous one."""
    previous = _state.name
    _activate(_state, _check(name))
    try:
        yield current()
    finally:
        _activate(_state, previous)
