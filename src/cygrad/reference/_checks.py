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


# ---- geometry of convolution and pooling (shared by both backends: pure Python, no arrays)
#
# Limits both backends apply, so that they refuse the same absurd geometry with the same
# ValueError instead of each failing its own way (C index arithmetic wrapping around,
# OverflowError from a C conversion, NumPy refusing a padded copy): torch has none of
# these, but nothing beyond them fits in memory.
GEOMETRY_MAX = 2**40    # a kernel size, stride, padding or dilation
PLANE_MAX = 2**31       # positions of a padded input plane (H + 2ph) x (W + 2pw)
SIZE_MAX = 2**60        # elements of an x_shape, or of one image's column matrix


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def int_pair(v, name, minimum):
    """(h, w) from an int or a pair of ints (as torch's _pair); each must be >= minimum."""
    if _is_int(v):
        p = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_int(e) for e in v):
        p = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if p[0] < minimum or p[1] < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    if max(p) > GEOMETRY_MAX:
        raise ValueError(f"{name} {v!r} is too large (at most 2**40)")
    return p


def _padded_plane(hw, p):
    """(H + 2ph, W + 2pw), at most PLANE_MAX positions."""
    padded = (hw[0] + 2 * p[0], hw[1] + 2 * p[1])
    if padded[0] * padded[1] > PLANE_MAX:
        raise ValueError(f"padding {p} on a {tuple(hw)} input: the padded input {padded} has "
                         "more than 2**31 positions: too large")
    return padded


def nchw_shape(v, name):
    """A 4-tuple of ints (N, C, H, W), N >= 0 and the others >= 1 (as torch's pooling
    input), of at most SIZE_MAX elements (N counted as 1 when 0)."""
    if not (isinstance(v, (tuple, list)) and len(v) == 4 and all(_is_int(e) for e in v)):
        raise TypeError(f"{name} must be a tuple of 4 ints (N, C, H, W), got {v!r}")
    s = tuple(int(e) for e in v)
    if s[0] < 0 or min(s[1:]) < 1:
        raise ValueError(f"{name} must have N >= 0 and C, H, W >= 1, got {s}")
    if max(s[0], 1) * s[1] * s[2] * s[3] > SIZE_MAX:
        raise ValueError(f"{name} {s} is too large (more than 2**60 elements)")
    return s


def nonempty_planes(x, name):
    """x (N, C, H, W) has C, H, W >= 1 (N may be 0), as torch's pooling input: a window
    over an empty plane has no maximum."""
    if 0 in x.shape[1:]:
        raise ValueError(f"{name} must have C, H, W >= 1 (N may be 0), got shape {x.shape}")


def check_groups(groups):
    """groups: an int >= 1 (torch.nn.functional.conv2d's groups)."""
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    return int(groups)


def check_conv_weight(x, weight, groups=1):
    """x (N, C_in, H, W) and weight (C_out, C_in/groups, KH, KW), both 4-D: groups divides
    C_in and C_out, the channels agree, no empty dim. Returns groups as an int."""
    groups = check_groups(groups)
    c_in, c_out = x.shape[1], weight.shape[0]
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide the input channels ({c_in}, x of shape "
                         f"{x.shape}) and the output channels ({c_out}, weight of shape "
                         f"{weight.shape})")
    if weight.shape[1] != c_in // groups:
        per_group = "" if groups == 1 else f" per group ({c_in} in {groups} groups)"
        raise ValueError(f"weight has {weight.shape[1]} input channels (shape {weight.shape}) "
                         f"but x has {c_in // groups}{per_group} (shape {x.shape})")
    if min(weight.shape) < 1:
        raise ValueError(f"weight must have no empty dimension, got shape {weight.shape}")
    return groups


def conv_geometry(hw, kernel_size, stride, padding, dilation, channels=None):
    """Parse conv arguments; return (k, s, p, d, (H_out, W_out)), each a (h, w) pair.

    Output size as torch.nn.Conv2d: floor((H + 2p - d*(k-1) - 1) / s) + 1. With channels
    (input channels per group), one image's column matrix, channels*KH*KW + 1 rows (the
    kernels' row of ones for the bias) by H_out*W_out, must have at most SIZE_MAX elements.
    """
    k = int_pair(kernel_size, "kernel_size", 1)
    s = int_pair(stride, "stride", 1)
    p = int_pair(padding, "padding", 0)
    d = int_pair(dilation, "dilation", 1)
    padded = _padded_plane(hw, p)
    out = tuple((padded[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))
    if min(out) < 1:
        raise ValueError(f"kernel_size {k} (dilation {d}) is larger than the padded input "
                         f"{padded}: no output")
    rows = 0 if channels is None else channels * k[0] * k[1] + 1
    if rows * out[0] * out[1] > SIZE_MAX:
        raise ValueError(f"kernel_size {k}, stride {s}, padding {p}, dilation {d} on a "
                         f"{tuple(hw)} input give {out} outputs and a ({rows}, "
                         f"{out[0] * out[1]}) column matrix: too large")
    return k, s, p, d, out


def _check_bool(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {v!r}")
    return bool(v)


def _pool_size(n, k, s, p, ceil_mode):
    """Output length along one axis, as torch's pooling_output_shape: floor or ceil of
    (n + 2p - k) / s, plus 1; in ceil mode minus 1 when the last window would start at
    or beyond n + p (in the right padding or past it)."""
    out = (n + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def pool_geometry(hw, kernel_size, stride, padding, ceil_mode=False):
    """Parse pooling arguments; return (k, s, p, (H_out, W_out)).

    As torch: stride None means kernel_size, padding at most half the kernel, output
    floor((H + 2p - k) / s) + 1, or with ceil_mode the ceil, less one when the last
    window would start past the top/left padding plus the input (windows then overhang
    the padded input at the bottom/right and are clipped).
    """
    k = int_pair(kernel_size, "kernel_size", 1)
    s = k if stride is None else int_pair(stride, "stride", 1)
    p = int_pair(padding, "padding", 0)
    ceil_mode = _check_bool(ceil_mode, "ceil_mode")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding {p} must be at most half of kernel_size {k}")
    padded = _padded_plane(hw, p)
    if padded[0] < k[0] or padded[1] < k[1]:
        raise ValueError(f"kernel_size {k} is larger than the padded input {padded}: no output")
    out = tuple(_pool_size(hw[i], k[i], s[i], p[i], ceil_mode) for i in range(2))
    return k, s, p, out


def avg_divisor(count_include_pad, divisor_override):
    """Parse avg_pool2d's divisor options: (count_include_pad as a bool, divisor_override
    as an int >= 1, or 0 for none)."""
    count_include_pad = _check_bool(count_include_pad, "count_include_pad")
    if divisor_override is None:
        return count_include_pad, 0
    if not _is_int(divisor_override):
        raise TypeError(f"divisor_override must be an int or None, got {divisor_override!r}")
    if not 1 <= divisor_override < 2**63:
        raise ValueError(f"divisor_override must be a positive int (int64), got {divisor_override}")
    return count_include_pad, int(divisor_override)


def check_shape(x, shape, name):
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)}")
