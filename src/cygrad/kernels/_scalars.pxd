# Python scalars read by the kernels, with the argument named in errors.
cdef inline double real(object v, str name) except? -1.0:
    """v as a C double; TypeError for bools and non-numbers (same rule as the reference)."""
    cdef type tp = type(v)
    if tp is float or tp is int:
        return <double>v
    import numpy
    if isinstance(v, (bool, numpy.bool_)) or not isinstance(
            v, (int, float, numpy.integer, numpy.floating)):
        raise TypeError(f"{name} must be a real number, got {tp.__name__}")
    return float(v)

cdef inline double nonneg(object v, str name) except? -1.0:
    cdef double d = real(v, name)
    if not d >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be >= 0, got {d}")
    return d

cdef inline double reduction_divisor(object reduction, Py_ssize_t n) except? -1.0:
    """1/n for 'mean' (NaN for an empty input, as torch); 1 for 'sum' and for 'none'
    (whose gradient is that of the sum of the per-element losses)."""
    if reduction == "mean":
        return 1.0 / n if n else float("nan")
    if reduction == "sum" or reduction == "none":
        return 1.0
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
