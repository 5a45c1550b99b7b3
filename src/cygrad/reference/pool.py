"""2-D max and average pooling, the specification (torch.nn.functional semantics).

x (N, C, H, W); kernel_size, stride (None: kernel_size), padding: int or (h, w);
padding at most half the kernel; ceil_mode False; output
floor((H + 2p - k) / s) + 1. Max-pool indices are int64, flat within each H*W
plane (torch's return_indices); the first maximum in scan order wins, NaN
propagates (the last NaN wins, as torch's `val > max || isnan(val)` scan).
Average pooling counts the padding (count_include_pad=True): divisor KH*KW.
"""
import numpy as np

from cygrad.reference._checks import (check_ndim, check_shape, float_array, nchw_shape,
                                      pool_geometry)


def _windows(xp, k, s, out):
    """(N, C, KH*KW, H_out, W_out) view of the padded input, taps in scan order."""
    (kh, kw), (sh, sw), (ho, wo) = k, s, out
    return np.stack([xp[..., i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                     for i in range(kh) for j in range(kw)], axis=-3)


def _check_grad_out(grad_out, x_shape, out):
    float_array(grad_out, "grad_out")
    check_ndim(grad_out, 4, "grad_out")
    if out is None:
        out = grad_out.shape[2:]
    check_shape(grad_out, tuple(x_shape[:2]) + tuple(out), "grad_out")


def max_pool2d_forward(x, kernel_size, *, stride=None, padding=0):
    """(y, indices) as torch.nn.functional.max_pool2d(..., return_indices=True)."""
    float_array(x, "x")
    check_ndim(x, 4, "x")
    n, c, h, w = x.shape
    k, s, (ph, pw), out = pool_geometry((h, w), kernel_size, stride, padding)
    pad = ((0, 0), (0, 0), (ph, ph), (pw, pw))
    vals = _windows(np.pad(x, pad, constant_values=-np.inf), k, s, out)
    valid = _windows(np.pad(np.ones((1, 1, h, w), bool), pad), k, s, out)
    rows = _windows(np.pad(np.broadcast_to(np.arange(h)[:, None], (1, 1, h, w)), pad), k, s, out)
    flat = rows * w + _windows(np.pad(np.broadcast_to(np.arange(w), (1, 1, h, w)), pad), k, s, out)
    best = vals.max(axis=2, keepdims=True)               # NaN propagates
    first_max = np.argmax(valid & (vals == best), axis=2)
    nan = valid & np.isnan(vals)
    last_nan = nan.shape[2] - 1 - np.argmax(nan[:, :, ::-1], axis=2)
    pick = np.where(nan.any(axis=2), last_nan, first_max)[:, :, None]
    y = np.take_along_axis(vals, pick, axis=2)[:, :, 0]
    idx = np.take_along_axis(np.broadcast_to(flat, vals.shape), pick, axis=2)[:, :, 0]
    return np.ascontiguousarray(y), np.ascontiguousarray(idx, dtype=np.int64)


def max_pool2d_backward(grad_out, indices, x_shape):
    """grad_x (N, C, H, W): grad_out scattered (summed) to the positions in indices."""
    n, c, h, w = nchw_shape(x_shape, "x_shape")
    _check_grad_out(grad_out, (n, c), None)
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.dtype != np.int64:
        raise TypeError(f"indices must be int64, got {indices.dtype}")
    check_shape(indices, grad_out.shape, "indices")
    if indices.size and (indices.min() < 0 or indices.max() >= h * w):
        raise ValueError(f"indices must lie in [0, {h * w}) (flat index in an {h}x{w} plane)")
    grad_x = np.zeros((n * c, h * w), grad_out.dtype)
    planes = np.arange(n * c)[:, None]
    np.add.at(grad_x, (planes, indices.reshape(n * c, -1)), grad_out.reshape(n * c, -1))
    return grad_x.reshape(n, c, h, w)


def avg_pool2d_forward(x, kernel_size, *, stride=None, padding=0):
    """y as torch.nn.functional.avg_pool2d (count_include_pad=True, ceil_mode=False)."""
    float_array(x, "x")
    check_ndim(x, 4, "x")
    k, s, (ph, pw), out = pool_geometry(x.shape[2:], kernel_size, stride, padding)
    win = _windows(np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))), k, s, out)
    return np.ascontiguousarray(win.sum(axis=2) / x.dtype.type(k[0] * k[1]))


def avg_pool2d_backward(grad_out, x_shape, kernel_size, *, stride=None, padding=0):
    """grad_x (N, C, H, W): each output's gradient / (KH*KW) spread over its window."""
    n, c, h, w = nchw_shape(x_shape, "x_shape")
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = pool_geometry((h, w), kernel_size, stride, padding)
    _check_grad_out(grad_out, (n, c), (ho, wo))
    share = grad_out / grad_out.dtype.type(kh * kw)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), grad_out.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += share
    return np.ascontiguousarray(xp[:, :, ph:ph + h, pw:pw + w])
