"""Small parameter-free modules of torch.nn: Identity, Softmax, LogSoftmax, Unflatten.

Each forward is one cygrad.nn.functional call or one Tensor op, so autograd records
the backward; names, arguments and defaults are torch.nn's.
"""
import math
import numbers
import operator

import numpy as np

from cygrad.nn import functional as F
from cygrad.nn._layer import Layer
from cygrad.nn.module import Module

__all__ = ["Identity", "Softmax", "LogSoftmax", "Unflatten"]


class Identity(Module):
    """Returns its input (torch.nn.Identity); any constructor arguments are ignored.

    A Tensor comes back as the same object; an ndarray comes back wrapped in a Tensor
    (no copy), as every other module returns Tensors.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return F._in(input) if isinstance(input, np.ndarray) else input


class _SoftmaxLike(Layer):
    def __init__(self, dim=None, *, dtype=None):
        super().__init__(dtype)
        self.dim = None if dim is None else operator.index(dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_SoftmaxLike):
    """exp(x) / sum exp(x) along dim (torch.nn.Softmax); dim=None picks torch's deprecated
    implicit dimension, with its warning."""

    def forward(self, input):
        return F.softmax(self._check_dtype(input), self.dim)


class LogSoftmax(_SoftmaxLike):
    """x - log(sum exp(x)) along dim (torch.nn.LogSoftmax); dim=None as Softmax."""

    def forward(self, input):
        return F.log_softmax(self._check_dtype(input), self.dim)


class Unflatten(Layer):
    """Dimension dim split into unflattened_size (torch.nn.Unflatten): (*, S, *) ->
    (*, U_1, ..., U_n, *) with U_1 * ... * U_n = S; one U_i may be -1 (inferred).

    A reshape through Tensor.reshape, so gradients flow. Named-tensor arguments (a str
    dim) are not supported.
    """

    def __init__(self, dim, unflattened_size, *, dtype=None):
        super().__init__(dtype)
        if isinstance(dim, str):
            F._unsupported("Unflatten", "a named dimension (str dim)")
        self.dim = operator.index(dim)
        self.unflattened_size = _check_sizes(unflattened_size)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

    def forward(self, input):
        x = F._in(self._check_dtype(input))
        shape = x.data.shape
        d = _wrap_dim(self.dim, len(shape))
        sizes = _resolve_sizes(self.unflattened_size, shape[d], d)
        return x.reshape(shape[:d] + sizes + shape[d + 1:])


def _check_sizes(sizes):
    """unflattened_size checked as torch: a tuple or list of ints, at least one, each
    >= 0 except at most one -1. Returned as given."""
    if not isinstance(sizes, (tuple, list)):
        raise TypeError(f"unflattened_size must be a tuple of ints, but found type "
                        f"{type(sizes).__name__}")
    for i, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"unflattened_size must be tuple of ints, but found element of "
                            f"type {type(s).__name__} at pos {i}")
        if s < -1:
            raise ValueError(f"invalid shape dimension {s} at index {i} of unflattened_size "
                             f"{sizes}")
    if not sizes:
        raise ValueError("unflatten: sizes must be non-empty")
    if sum(s == -1 for s in sizes) > 1:
        raise ValueError(f"only one dimension of unflattened_size {sizes} can be inferred")
    return sizes


def _wrap_dim(dim, ndim):
    """dim in [-ndim, ndim) as a non-negative axis (IndexError otherwise, as torch)."""
    if not -ndim <= dim < ndim:
        raise IndexError(f"Dimension out of range (expected to be in range of "
                         f"[{-ndim}, {ndim - 1}], but got {dim})")
    return dim % ndim


def _resolve_sizes(sizes, size, d):
    """The sizes as a tuple of ints with the -1 filled in; ValueError unless their product
    is `size`, the length of dimension d."""
    sizes = tuple(int(s) for s in sizes)
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if known == 0 or size % known:
            raise ValueError(f"unflatten: cannot infer the -1 in {list(sizes)} for dim {d} "
                             f"of size {size}")
        sizes = tuple(size // known if s == -1 else s for s in sizes)
    elif known != size:
        raise ValueError(f"unflatten: Provided sizes {list(sizes)} don't multiply up to the "
                         f"size of dim {d} ({size}) in the input tensor")
    return sizes
