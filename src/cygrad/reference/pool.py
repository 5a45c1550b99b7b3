"""2-D max and average pooling, the specification (torch.nn.functional semantics).

x (N, C, H, W) with C, H, W >= 1 (N may be 0; torch refuses empty planes);
kernel_size, stride (None: kernel_size), padding: int or (h, w); padding at most
half the kernel; the limits of cygrad.reference._checks (GEOMETRY_MAX, PLANE_MAX). Output floor((H + 2p - k) / s) + 1, or with
ceil_mode=True the ceiling, less one when the last window would start past the
top/left padding plus the input; a ceil-mode window may overhang the padded input at
the bottom/right and is clipped there. Max-pool indices are int64, flat within each
H*W plane (torch's return_indices); the first maximum in scan order wins, NaN
propagates (the last NaN wins, as torch's `val > max || isnan(val)` scan).
Average pooling divides each window's sum by divisor_override when given, else by the
number of its positions inside the input (count_include_pad=False) or inside the
padded input (count_include_pad=True; the ceil-mode overhang does not count).
"""
import numpy as np

from cygrad.reference._checks import (avg_divisor, check_ndim, check_shape, float_array, nchw_shape,
                                      nonempty_planes, pool_geometry)


def _windows(xp, k, s, out):
    """(N, C, KH*KW, H_out, W_out) view of the padded input, taps in scan order."""
    (kh, kw), (sh, sw), (ho, wo) = k, s, out
    return np.stack([xp[..., i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                     for i in range(kh) for j in range(kw)], axis=-3)


def _pads(hw, k, s, p, out):
    """np.pad widths giving every window whole: p before; after, p or the ceil-mode
    overhang (the last window's end past the input and the top/left padding) if larger."""
    after = [max(p[i], (out[i] - 1) * s[i] + k[i] - hw[i] - p[i]) for i in range(2)]
    return ((0, 0), (0, 0), (p[0], after[0]), (p[1], after[1]))


def _divisors(hw, k, s, p, out, count_include_pad, divisor_override, dtype):
    """Divisor of each window, (1, 1, H_out, W_out) or a scalar, of the given dtype."""
    if divisor_override:
        return dtype.type(divisor_override)
    pads = _pads(hw, k, s, p, out)
    if count_include_pad:   # ones over the padded input, zeros over the overhang
        padded = (hw[0] + 2 * p[0], hw[1] + 2 * p[1])
        inside = np.pad(np.ones((1, 1) + padded), ((0, 0), (0, 0), (0, pads[2][1] - p[0]),
                                                    (0, pads[3][1] - p[1])))
    else:                   # ones over the input alone
        inside = np.pad(np.ones((1, 1) + tuple(hw)), pads)
    return _windows(inside, k, s, out).sum(axis=2).astype(dtype)


def _check_x(x, kernel_size, stride, padding, ceil_mode):
    """x: a float array (N, C, H, W) with C, H, W >= 1 (torch refuses empty planes);
    returns pool_geometry's (k, s, p, out)."""
    float_array(x, "x")
    check_ndim(x, 4, "x")
    nonempty_planes(x, "x")
    return pool_geometry(x.shape[2:], kernel_size, stride, padding, ceil_mode)


def _check_grad_out(grad_out, x_shape, out):
    float_array(grad_out, "grad_out")
    check_ndim(grad_out, 4, "grad_out")
    if out is None:
        out = grad_out.shape[2:]
    check_shape(grad_out, tuple(x_shape[:2]) + tuple(out), "grad_out")


def max_pool2d_forward(x, kernel_size, *, stride=None, padding=0, ceil_mode=False):
    """(y, indices) as torch.nn.functional.max_pool2d(..., ceil_mode, return_indices=True)."""
    k, s, p, out = _check_x(x, kernel_size, stride, padding, ceil_mode)
    h, w = x.shape[2:]
    pad = _pads((h, w), k, s, p, out)
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
    if not indices.flags.c_contiguous:
        raise ValueError("indices must be C-contiguous (use numpy.ascontiguousarray)")
    check_shape(indices, grad_out.shape, "indices")
    if indices.size and (indices.min() < 0 or indices.max() >= h * w):
        raise ValueError(f"indices must lie in [0, {h * w}) (flat index in an {h}x{w} plane)")
    grad_x = np.zeros((n * c, h * w), grad_out.dtype)
    planes, nout = np.arange(n * c)[:, None], grad_out.shape[2] * grad_out.shape[3]
    np.add.at(grad_x, (planes, indices.reshape(n * c, nout)), grad_out.reshape(n * c, nout))
    return grad_x.reshape(n, c, h, w)


def avg_pool2d_forward(x, kernel_size, *, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """y as torch.nn.functional.avg_pool2d: each window's sum / its divisor (module docstring)."""
    k, s, p, out = _check_x(x, kernel_size, stride, padding, ceil_mode)
    include_pad, override = avg_divisor(count_include_pad, divisor_override)
    win = _windows(np.pad(x, _pads(x.shape[2:], k, s, p, out)), k, s, out)
    div = _divisors(x.shape[2:], k, s, p, out, include_pad, override, x.dtype)
    return np.ascontiguousarray(win.sum(axis=2) / div)


def avg_pool2d_backward(grad_out, x_shape, kernel_size, *, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """grad_x (N, C, H, W): each output's gradient / its window's divisor, spread over
    the window's positions inside the input."""
    n, c, h, w = nchw_shape(x_shape, "x_shape")
    k, s, p, out = pool_geometry((h, w), kernel_size, stride, padding, ceil_mode)
    include_pad, override = avg_divisor(count_include_pad, divisor_override)
    _check_grad_out(grad_out, (n, c), out)
    (kh, kw), (sh, sw), (ho, wo) = k, s, out
    share = grad_out / _divisors((h, w), k, s, p, out, include_pad, override, grad_out.dtype)
    pads = _pads((h, w), k, s, p, out)
    xp = np.zeros((n, c, h + sum(pads[2]), w + sum(pads[3])), grad_out.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += share
    return np.ascontiguousarray(xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w])
