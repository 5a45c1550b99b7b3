"""Vector norms and in-place scaling and clamping, the specification: what
cygrad.nn.utils.clip_grad_norm_ and clip_grad_value_ run on a flat gradient buffer.

vector_norm follows torch.linalg.vector_norm on the flattened array, its sum formed in
float64 whatever x's dtype. When the terms |x|^ord overflow or underflow float64 (while
max |x| is finite and not 0), the sum is formed again on |x| / max |x|, so a finite
norm is never returned as inf or 0.
"""
import math

import numpy as np

from cygrad.reference._checks import check_writeable, float_array
from cygrad.reference._elementwise import real

# Below this sum of terms, subnormal terms could have lost bits that matter:
# DBL_MIN / DBL_EPSILON, 2^-970.
RESCALE_BELOW = 2.0 ** -970


def parse_ord(ord):
    """ord as a float: a positive real number, inf, or the string 'inf'."""
    if isinstance(ord, str):
        if ord == "inf":
            return math.inf
        raise ValueError(f"ord must be a positive real number or inf, got {ord!r}")
    p = real(ord, "ord")
    if not p > 0.0:  # also refuses NaN
        raise ValueError(f"ord must be a positive real number or inf, got {ord!r}")
    return p


def _root(total, p):
    """total^(1/p), with p = 1 and p = 2 exact operations; overflow gives inf (C's pow)."""
    if p == 1.0:
        return total
    with np.errstate(over="ignore"):
        return math.sqrt(total) if p == 2.0 else float(np.power(total, 1.0 / p))


def vector_norm(x, ord=2.0):
    """(sum |x|^ord)^(1/ord) over all elements of x, as a Python float; ord = inf: max |x|
    (an error for an empty x, as in torch). NaN and inf propagate as in
    torch.linalg.vector_norm."""
    float_array(x, "x")
    p = parse_ord(ord)
    a = np.abs(x.reshape(-1).astype(np.float64))
    if p == math.inf:
        if a.size == 0:
            raise ValueError("vector_norm with ord=inf of an empty array is undefined "
                             "(max has no identity), as in torch")
        return float(np.max(a))  # NaN propagates
    with np.errstate(over="ignore", under="ignore"):
        total = float(np.sum(a ** p))
        if total > np.finfo(np.float64).max or total < RESCALE_BELOW:
            top = float(np.max(a, initial=0.0))
            if 0.0 < top < math.inf:
                return top * _root(float(np.sum((a * (1.0 / top)) ** p)), p)
    return _root(total, p)


def _in_place_target(x):
    float_array(x, "x")
    check_writeable(x, "x")


def _to_dtype(v, name, dtype):
    """A Python number rounded to dtype, as torch rounds a scalar argument."""
    with np.errstate(over="ignore"):
        return dtype.type(real(v, name))


def scale_(x, alpha):
    """x *= alpha in place (alpha rounded to x's dtype, as torch.Tensor.mul_); returns x."""
    _in_place_target(x)
    np.multiply(x, _to_dtype(alpha, "alpha", x.dtype), out=x)
    return x


def clamp_(x, min, max):
    """x = min(max(x, min), max) in place, as torch.Tensor.clamp_: NaN in x stays NaN, a
    NaN bound makes every element NaN, min > max sets every element to max; either bound
    may be None (not both). Bounds are rounded to x's dtype. Returns x."""
    _in_place_target(x)
    if min is None and max is None:
        raise ValueError("clamp_ needs at least one of min and max (both are None)")
    lo = _to_dtype(-math.inf if min is None else min, "min", x.dtype)
    hi = _to_dtype(math.inf if max is None else max, "max", x.dtype)
    if math.isnan(lo) or math.isnan(hi):
        x.fill(np.nan)
        return x
    np.copyto(x, lo, where=x < lo)
    np.copyto(x, hi, where=x > hi)
    return x
