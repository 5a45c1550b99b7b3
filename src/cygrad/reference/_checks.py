"""Argument checks of the reference kernels: the same exceptions as the compiled ones."""
import numpy as np

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(x, name):
    """Check x is a C-contiguous float32/float64 ndarray; return its dtype."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOATS or not x.dtype.isnative:
        raise TypeError(f"{name} must be float32 or float64 (native byte order), got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    return x.dtype


def same_dtype(x, name, ref, ref_name):
    if x.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but {ref_name} has dtype {ref.dtype}: they must match")


def check_ndim(x, ndim, name):
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {x.ndim}-D array of shape {x.shape}")


def check_writeable(x, name):
    if not x.flags.writeable:
        raise ValueError(f"{name} is read-only")


def overlaps(x, y):
    """True if the memory ranges of two contiguous arrays intersect."""
    if x.nbytes == 0 or y.nbytes == 0:
        return False
    px, py = x.__array_interface__["data"][0], y.__array_interface__["data"][0]
    return px < py + y.nbytes and py < px + x.nbytes
