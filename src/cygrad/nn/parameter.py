"""Parameters and the flat buffers they live in.

A model's parameters are views into ONE contiguous 1-D buffer and their gradients
views into another, so an optimizer update is a single kernel call over the whole
model (and a data-parallel all-reduce is one call too).

Whoever holds such a buffer (an optimizer) must notice when `flatten` moves a parameter
into a new one: every rebinding bumps `rebind_count()`, so a holder compares one
integer per step and checks its views only when the count changed.
"""
import numpy as np

from cygrad.tensor import Tensor, _check_float

_DATA = Tensor.data  # the slots of Tensor, which Parameter's properties guard
_GRAD = Tensor.grad
_rebinds = 0  # how many times flatten moved parameters into new buffers


def rebind_count():
    """A counter that grows whenever `flatten` rebinds parameters to new buffers."""
    return _rebinds


class Parameter(Tensor):
    """A trainable Tensor (requires_grad=True), as torch.nn.Parameter.

    `.data` and `.grad` are ndarrays; once a model or an optimizer has flattened its
    parameters they are views into the flat buffers, and stay so: `p.data = array`
    and `p.grad = array` copy into the view (shape checked; dtype cast safely), and
    `p.grad = None` zeroes it. `.grad` always exists (zeros before any backward).
    """

    __slots__ = ()
    _grad_is_buffer = True

    def __init__(self, data, requires_grad=True):
        arr = np.ascontiguousarray(data.data if isinstance(data, Tensor) else data)
        _check_float(arr, "Parameter")
        _DATA.__set__(self, arr)
        _GRAD.__set__(self, np.zeros_like(arr))
        self.requires_grad = bool(requires_grad)
        self._node = None
        self._version = 0

    @property
    def data(self):
        """The values (a view of the flat data buffer); assigning copies into it."""
        return _DATA.__get__(self)

    @data.setter
    def data(self, value):
        _copy_into(_DATA.__get__(self), value, "data")

    @property
    def grad(self):
        """The gradient (a view of the flat gradient buffer); assigning copies into it,
        None zeroes it."""
        return _GRAD.__get__(self)

    @grad.setter
    def grad(self, value):
        view = _GRAD.__get__(self)
        if value is None:
            view.fill(0)
        elif value is not view:
            _copy_into(view, value, "grad")

    def _bind(self, data, grad):
        """Make data and grad these views (of the flat buffers); holders of the old
        buffers notice through rebind_count()."""
        global _rebinds
        _rebinds += 1
        _DATA.__set__(self, data)
        _GRAD.__set__(self, grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _copy_into(view, value, what):
    value = np.asarray(value.data if isinstance(value, Tensor) else value)
    if value.shape != view.shape:
        raise ValueError(f"Parameter.{what} = array of shape {value.shape}: the parameter has "
                         f"shape {view.shape} (its {what} is a view of the model's flat buffer; "
                         "assignment copies into it)")
    if not np.can_cast(value.dtype, view.dtype, "same_kind"):
        raise TypeError(f"Parameter.{what} = array of dtype {value.dtype}: the parameter is "
                        f"{view.dtype}")
    view[...] = value


def _address(a):
    return a.__array_interface__["data"][0]


def _adjacent_views(arrays):
    """The 1-D view of a common base buffer covering `arrays` end to end, or None."""
    base = arrays[0].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    item = base.itemsize
    start = (_address(arrays[0]) - _address(base)) // item
    offset = start
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or \
                _address(a) != _address(base) + offset * item:
            return None
        offset += a.size
    return base if (start, offset) == (0, base.size) else base[start:offset]


def shared_buffers(params):
    """(data, grad): the 1-D views covering `params` end to end when they already are
    adjacent views of one data buffer and one grad buffer, else None. Rebinds nothing."""
    params = list(params)
    if not params:
        return None
    data = _adjacent_views([p.data for p in params])
    grad = _adjacent_views([p.grad for p in params])
    return None if data is None or grad is None else (data, grad)


def flatten(params):
    """Make `params` views into one data buffer and one grad buffer; return (data, grad).

    When the parameters already are adjacent views of one buffer (a model built by
    Sequential, or an optimizer created twice) the existing buffers are returned;
    otherwise new ones are allocated, the values copied in, every parameter's `data`
    and `grad` rebound to views of them, and `rebind_count()` bumped (so an optimizer
    still holding the old buffers raises instead of updating them).
    """
    global _rebinds
    params = list(params)
    if not params:
        raise ValueError("no parameters to optimize (got an empty parameter list)")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"parameter {i} is a {type(p).__name__}, not a cygrad.nn.Parameter")
    dtypes = {p.data.dtype for p in params}
    if len(dtypes) != 1:
        raise TypeError(f"parameters mix dtypes {sorted(map(str, dtypes))}: use one dtype per model")
    if len({id(p) for p in params}) != len(params):
        raise ValueError("a parameter is listed twice: each gets one slot in the flat buffer")
    shared = shared_buffers(params)
    if shared is not None:
        return shared
    _rebinds += 1
    total = sum(p.data.size for p in params)
    data = np.empty(total, dtypes.pop())
    grad = np.zeros_like(data)
    offset = 0
    for p in params:
        n = p.data.size
        data[offset:offset + n] = p.data.reshape(-1)
        grad[offset:offset + n] = p.grad.reshape(-1)
        p._bind(data[offset:offset + n].reshape(p.data.shape),
                grad[offset:offset + n].reshape(p.data.shape))
        offset += n
    return data, grad


def flatten_is_shared(params):
    """True when params already are adjacent views of one data and one gradient buffer."""
    params = list(params)
    return bool(params) and _adjacent_views([p.data for p in params]) is not None and \
        _adjacent_views([p.grad for p in params]) is not None
