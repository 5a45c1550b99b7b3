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

_state = threading.local()
_default = "kernels"


def _check(name):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def set_backend(name):
    """Make `name` ('kernels' or 'reference') the active backend of this thread (and the default of new ones)."""
    global _default
    _default = _check(name)
    _state.name = _default


def get_backend():
    """The name of the active backend: 'kernels' or 'reference'."""
    return getattr(_state, "name", _default)


_modules = {}


def current():
    """The active backend's module (cygrad.kernels or cygrad.reference)."""
    name = get_backend()
    module = _modules.get(name)
    if module is None:
        module = _modules[name] = importlib.import_module("cygrad." + name)
    return module


@contextlib.contextmanager
def use_backend(name):
    """Run the enclosed block on backend `name`, then restore the previous one."""
    previous = get_backend()
    _state.name = _check(name)
    try:
        yield current()
    finally:
        _state.name = previous
