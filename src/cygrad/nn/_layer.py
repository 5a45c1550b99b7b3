"""What cygrad's built-in layers share: an optional dtype their input must have."""
from cygrad.nn.init import float_dtype
from cygrad.nn.module import Module
from cygrad.tensor import Tensor


class Layer(Module):
    """A leaf module. dtype: float32 or float64 for layers with parameters (their inputs
    must match); None (the default of parameter-free layers) accepts either."""

    def __init__(self, dtype=None):
        super().__init__()
        self.dtype = None if dtype is None else float_dtype(dtype)

    def _check_dtype(self, x):
        """TypeError when x (Tensor or array) is not of this layer's dtype; x unchanged."""
        if self.dtype is not None:
            dtype = x.data.dtype if isinstance(x, Tensor) else getattr(x, "dtype", None)
            if dtype != self.dtype:
                raise TypeError(f"input has dtype {dtype}, the layer is {self.dtype}")
        return x


def pair(v, name):
    """int or (h, w) -> (h, w) of ints."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)
