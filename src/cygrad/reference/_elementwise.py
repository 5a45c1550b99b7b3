"""Shared argument handling of the elementwise reference kernels."""
import numpy as np

from cygrad.reference._checks import check_writeable, float_array, overlaps, same_dtype


def same_shape(x, name, ref, ref_name):
    if x.shape != ref.shape:
        raise ValueError(f"{name} has shape {x.shape} but {ref_name} has shape {ref.shape}: they must match")


def like(x, name, ref, ref_name):
    """Check x is a float array of ref's dtype and shape."""
    float_array(x, name)
    same_dtype(x, name, ref, ref_name)
    same_shape(x, name, ref, ref_name)


def out_array(out, x, name="x", inputs=()):
    """The array a kernel writes: a new one like x, or `out` after checks.

    out may be x itself (in place); any other overlap with an input is refused.
    """
    if out is None:
        return np.empty_like(x)
    like(out, "out", x, name)
    check_writeable(out, "out")
    for a, a_name in ((x, name),) + tuple(inputs):
        if overlaps(out, a) and not _same_memory(out, a):
            raise ValueError(f"out overlaps {a_name} (only out={a_name} exactly, in place, is allowed)")
    return out


def _same_memory(a, b):
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.nbytes == b.nbytes


def real(v, name):
    """v as a Python float (TypeError for non-numbers)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    return float(v)


def c_double(v, name):
    """v as a compiled kernel reads an argument it declares `cdef double` (CPython's
    PyFloat_AsDouble): anything with __float__ or __index__, bools and 0-d arrays
    included; TypeError for the rest (a str is not a number, as float(str) would say)."""
    tp = type(v)
    if hasattr(tp, "__float__"):
        return float(v)   # OverflowError for an int beyond the double range, as the kernel
    if hasattr(tp, "__index__"):
        return float(v.__index__())
    raise TypeError(f"{name} must be a real number, got {tp.__name__}")


def nonneg(v, name):
    v = real(v, name)
    if not v >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def reduction_divisor(reduction, n):
    """1/n for 'mean' (NaN for an empty input, as torch); 1 for 'sum' and for 'none'
    (whose gradient is that of the sum of the per-element losses)."""
    if reduction == "mean":
        return 1.0 / n if n else float("nan")
    if reduction == "sum" or reduction == "none":
        return 1.0
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
