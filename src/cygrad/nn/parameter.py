"""Parameters and the flat buffers they live in.

A model's parameters are views into ONE contiguous 1-D buffer and their gradients
views into another, so an optimizer update is a single kernel call over the whole
model (and a data-parallel all-reduce would be one call too).
"""
import numpy as np


class Parameter:
    """A trainable array: `data` (the values) and `grad` (its gradient), both ndarrays."""

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


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


def flatten(params):
    """Make `params` views into one data buffer and one grad buffer; return (data, grad).

    When the parameters already are adjacent views of one buffer (a model built by
    Sequential, or an optimizer created twice) the existing buffers are returned;
    otherwise new ones are allocated, the values copied in and every parameter's
    `data` and `grad` rebound to views of them.
    """
    params = list(params)
    if not params:
        raise ValueError("no parameters to optimize (got an empty parameter list)")
    dtypes = {p.data.dtype for p in params}
    if len(dtypes) != 1:
        raise TypeError(f"parameters mix dtypes {sorted(map(str, dtypes))}: use one dtype per model")
    data = _adjacent_views([p.data for p in params])
    grad = _adjacent_views([p.grad for p in params])
    if data is not None and grad is not None:
        return data, grad
    total = sum(p.size for p in params)
    data = np.empty(total, dtypes.pop())
    grad = np.zeros_like(data)
    offset = 0
    for p in params:
        n = p.size
        data[offset:offset + n] = p.data.reshape(-1)
        grad[offset:offset + n] = p.grad.reshape(-1)
        p.data = data[offset:offset + n].reshape(p.data.shape)
        p.grad = grad[offset:offset + n].reshape(p.grad.shape)
        offset += n
    return data, grad
