"""What every layer shares: input checks, and the forward cache its backward reads."""
import numpy as np

from cygrad.nn.init import float_dtype
from cygrad.nn.module import Module


class Layer(Module):
    """A leaf module whose forward caches (in train mode) what backward needs.

    dtype: float32 or float64 for layers with parameters (their inputs must match);
    None (the default of parameter-free layers) accepts either.
    """

    def __init__(self, dtype=None):
        super().__init__()
        self.dtype = None if dtype is None else float_dtype(dtype)
        self._cache = None

    def _input(self, x, ndim=None, what=None):
        """x as a C-contiguous array of this layer's dtype, else ValueError/TypeError naming the layer."""
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self!r}: input must be a numpy.ndarray, got {type(x).__name__}")
        if ndim is not None and x.ndim != ndim:
            raise ValueError(f"{self!r}: expected a {ndim}-D input {what or ''}, got shape {x.shape}")
        if self.dtype is not None and x.dtype != self.dtype:
            raise TypeError(f"{self!r}: input has dtype {x.dtype}, the layer is {self.dtype}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{self!r}: input must be float32 or float64, got {x.dtype}")
        return np.ascontiguousarray(x)

    def _save(self, *values):
        """Cache values for backward in train mode (drop any stale cache in eval mode)."""
        self._cache = values if self.training else None

    def _saved(self, grad_out, out_shape_index=None):
        """The cached values, after checking forward ran in train mode and grad_out's shape."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward "
                               "(or forward ran in eval mode, which caches nothing)")
        if not isinstance(grad_out, np.ndarray) or grad_out.dtype != self._out_dtype:
            raise TypeError(f"{type(self).__name__}.backward: grad_out must be a "
                            f"{self._out_dtype} ndarray like the forward output")
        if grad_out.shape != self._out_shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_out has shape {grad_out.shape}, "
                             f"forward produced {self._out_shape}")
        return self._cache

    def _output(self, y):
        self._out_shape, self._out_dtype = y.shape, y.dtype
        return y


def pair(v, name):
    """int or (h, w) -> (h, w) of ints."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)
