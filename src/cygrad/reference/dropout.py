"""Inverted dropout with a counter-based mask, the specification.

Element i (flat, C order) is dropped when the i-th output of the splitmix64
generator seeded with `seed` falls below p: u_i = mix(seed + (i + 1) * GAMMA),
dropped iff (u_i >> 11) < floor(p * 2**53). The mask depends only on (seed, i),
never on how the work is split between threads.

mask: uint8 array of x's shape, 1 = kept, 0 = dropped. Kept elements are scaled
by 1 / (1 - p), as torch.nn.functional.dropout in training mode.
"""
import numpy as np

from cygrad.reference._checks import float_array
from cygrad.reference._elementwise import out_array, real, same_shape

GAMMA = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def _mix(z):
    """splitmix64's output function (uint64 arithmetic wraps modulo 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * M1
    z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))


def _check_p(p):
    p = real(p, "p")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p}")
    return p


def _check_seed(seed):
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return int(seed)


def drop_threshold(p):
    """Elements whose 53-bit draw is below this are dropped (probability p)."""
    return int(p * 2.0**53)


def keep_mask(seed, p, n):
    """The flat uint8 keep-mask of n elements for this seed and p."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    u = _mix(np.uint64(seed) + i * GAMMA)
    return ((u >> np.uint64(11)) >= np.uint64(drop_threshold(p))).astype(np.uint8)


def _scaled(v, mask, p):
    """v * (mask * 1/(1-p)): a multiply even where dropped, so NaN/inf give NaN as in torch."""
    scale = v.dtype.type(1.0 / (1.0 - p))
    return v * np.where(mask != 0, scale, v.dtype.type(0))


def dropout(x, p, seed, out=None):
    """(y, mask): y = x * (mask / (1 - p)) with the counter-based mask above.

    seed: int in [0, 2**64). out: optional array like x (may be x itself)."""
    float_array(x, "x")
    p = _check_p(p)
    seed = _check_seed(seed)
    y = out_array(out, x)
    mask = keep_mask(seed, p, x.size).reshape(x.shape)
    y[...] = _scaled(x, mask, p)
    return y, mask


def dropout_backward(grad_out, mask, p):
    """grad_out * mask * (1 / (1 - p)): the gradient of dropout wrt x."""
    float_array(grad_out, "grad_out")
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy.ndarray, got {type(mask).__name__}")
    if mask.dtype != np.uint8:
        raise TypeError(f"mask must be uint8 (as returned by dropout), got {mask.dtype}")
    if not mask.flags.c_contiguous:
        raise ValueError("mask must be C-contiguous (use numpy.ascontiguousarray)")
    same_shape(mask, "mask", grad_out, "grad_out")
    p = _check_p(p)
    return _scaled(grad_out, mask, p)
