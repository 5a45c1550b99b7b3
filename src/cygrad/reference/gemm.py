"""Matrix multiply, the specification: alpha * op(a) @ op(b) + beta * out."""
import numpy as np

from cygrad.reference._checks import check_ndim, check_writeable, float_array, overlaps, same_dtype
from cygrad.reference._elementwise import c_double


def matmul(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """alpha * op(a) @ op(b) + beta * out, op(x) = x.T when its trans flag is set.

    a, b: 2-D C-contiguous, both float32 or both float64. out: optional,
    C-contiguous, of the result's shape and dtype, not overlapping a or b;
    required when beta != 0 (beta == 0 never reads out). Returns out or a new array.
    Checks run in the compiled kernel's order, so both raise the same exception.
    """
    trans_a, trans_b = bool(trans_a), bool(trans_b)
    float_array(a, "a")
    float_array(b, "b")
    same_dtype(b, "b", a, "a")
    check_ndim(a, 2, "a")
    check_ndim(b, 2, "b")
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    (m, k), (kb, n) = opa.shape, opb.shape
    if k != kb:
        raise ValueError(
            f"shapes don't chain: op(a) is {m}x{k} (a {a.shape}, trans_a={bool(trans_a)}) but "
            f"op(b) is {kb}x{n} (b {b.shape}, trans_b={bool(trans_b)})")
    alpha, beta = c_double(alpha, "alpha"), c_double(beta, "beta")   # the kernel's C doubles
    if out is None:
        if beta != 0:
            raise ValueError("out is required when beta != 0")
    else:
        float_array(out, "out")
        same_dtype(out, "out", a, "a")
        check_ndim(out, 2, "out")
        if out.shape != (m, n):
            raise ValueError(f"out has shape {out.shape}, expected {(m, n)}")
        check_writeable(out, "out")
        if overlaps(out, a) or overlaps(out, b):
            raise ValueError("out must not overlap a or b")
    dtype = a.dtype.type
    # alpha == 0 or k == 0: a and b are not read (as in BLAS)
    result = dtype(alpha) * (opa @ opb) if k > 0 and alpha != 0 else np.zeros((m, n), a.dtype)
    if beta != 0:
        result = result + dtype(beta) * out
    if out is None:
        return np.ascontiguousarray(result, dtype=a.dtype)
    out[...] = result
    return out
