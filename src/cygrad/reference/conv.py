"""2-D convolution, the specification: im2col / col2im and conv2d forward and backward.

Layouts and semantics as PyTorch: x (N, C_in, H, W), weight (C_out, C_in/groups, KH, KW),
y (N, C_out, H_out, W_out) with H_out = floor((H + 2p - d*(KH-1) - 1) / s) + 1
(torch.nn.Conv2d, zero padding). With groups G, output channels
[g*C_out/G, (g+1)*C_out/G) see input channels [g*C_in/G, (g+1)*C_in/G) only.

cols layout (both backends, and torch.nn.functional.unfold): shape
(N, C_in*KH*KW, H_out*W_out); row (c*KH + i)*KW + j, column oh*W_out + ow holds
x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] (0 outside the input). Then
conv2d is, per image, weight.reshape(C_out, -1) @ cols[n]; with groups, per image
and group, the group's block of weight rows @ its block of cols rows (a channel's
rows are contiguous, so a group's are too).

Both backends refuse the same absurd geometry (cygrad.reference._checks: a value
beyond 2**40, a padded plane beyond 2**31 positions, one image's column matrix
beyond 2**60 elements) with a ValueError naming it, checked before bias and grad_out.
"""
import numpy as np

from cygrad.reference._checks import (check_conv_weight, check_ndim, check_shape, conv_geometry,
                                      float_array, nchw_shape, same_dtype)


def _tap(i, d, s, n_out):
    """Slice of the padded input read by kernel tap i along one axis."""
    return slice(i * d, i * d + s * (n_out - 1) + 1, s)


def _unfold(x, geometry):
    """cols (N, C*KH*KW, H_out*W_out) of x (module docstring), geometry already checked."""
    n, c = x.shape[:2]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = geometry
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, c, kh, kw, ho, wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, _tap(i, dh, sh, ho), _tap(j, dw, sw, wo)]
    return cols.reshape(n, c * kh * kw, ho * wo)


def _fold(cols, x_shape, geometry):
    """The adjoint of _unfold: cols back to x_shape, overlapping patches summed."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = geometry
    c6 = cols.reshape(n, c, kh, kw, ho, wo)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, _tap(i, dh, sh, ho), _tap(j, dw, sw, wo)] += c6[:, :, i, j]
    return np.ascontiguousarray(xp[:, :, ph:ph + h, pw:pw + w])


def im2col(x, kernel_size, *, stride=1, padding=0, dilation=1):
    """Unfold x (N, C, H, W) into cols (N, C*KH*KW, H_out*W_out), as torch's F.unfold.

    See the module docstring for the layout. col2im is its adjoint.
    """
    float_array(x, "x")
    check_ndim(x, 4, "x")
    return _unfold(x, conv_geometry(x.shape[2:], kernel_size, stride, padding, dilation,
                                    channels=x.shape[1]))


def col2im(cols, x_shape, kernel_size, *, stride=1, padding=0, dilation=1):
    """Fold cols (N, C*KH*KW, H_out*W_out) back to (N, C, H, W), summing overlapping
    patches: the adjoint of im2col (<im2col(x), c> == <x, col2im(c)>), as torch's F.fold."""
    float_array(cols, "cols")
    check_ndim(cols, 3, "cols")
    n, c, h, w = nchw_shape(x_shape, "x_shape")
    geometry = conv_geometry((h, w), kernel_size, stride, padding, dilation, channels=c)
    (kh, kw), _, _, _, (ho, wo) = geometry
    check_shape(cols, (n, c * kh * kw, ho * wo), "cols")
    return _fold(cols, (n, c, h, w), geometry)


def _check_conv(x, weight, groups, stride, padding, dilation):
    """x, weight, groups and the geometry, in the kernels' order; (groups, geometry)."""
    float_array(x, "x")
    float_array(weight, "weight")
    same_dtype(weight, "weight", x, "x")
    check_ndim(x, 4, "x")
    check_ndim(weight, 4, "weight")
    groups = check_conv_weight(x, weight, groups)
    return groups, conv_geometry(x.shape[2:], weight.shape[2:], stride, padding, dilation,
                                 channels=x.shape[1] // groups)


def _grouped(a, groups):
    """(N, R, L) -> (N, groups, R/groups, L): each group's block of rows."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, a.shape[2])


def conv2d_forward(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1):
    """y = conv2d(x, weight) + bias, as torch.nn.functional.conv2d.

    x (N, C_in, H, W), weight (C_out, C_in/groups, KH, KW), bias (C_out,) or None;
    returns y (N, C_out, H_out, W_out) of x's dtype. Group g's outputs are its weight
    rows @ its cols rows (module docstring).
    """
    groups, geometry = _check_conv(x, weight, groups, stride, padding, dilation)
    if bias is not None:
        float_array(bias, "bias")
        same_dtype(bias, "bias", x, "x")
        check_shape(bias, (weight.shape[0],), "bias")
    n, c_out = x.shape[0], weight.shape[0]
    cols = _unfold(x, geometry)
    # (G, C_out/G, K/G) @ (N, G, K/G, L) -> (N, C_out, H_out*W_out)
    y = (weight.reshape(groups, c_out // groups, -1) @ _grouped(cols, groups)).reshape(
        n, c_out, cols.shape[2])
    if bias is not None:
        y += bias[:, None]
    return np.ascontiguousarray(y.reshape((n, c_out) + geometry[-1]))


def conv2d_backward(grad_out, x, weight, *, stride=1, padding=0, dilation=1, groups=1,
                    input_grad=True):
    """Gradients of conv2d_forward: (grad_x or None, grad_weight, grad_bias).

    With g = grad_out (N, C_out, L) and cols = im2col(x):
    grad_weight = sum_n g[n] @ cols[n]^T, grad_bias = sum over n and L of g,
    grad_x = col2im(W^T @ g[n]) (skipped, None, when input_grad is False); with
    groups, each group's blocks of g, cols and W rows alone.
    """
    groups, geometry = _check_conv(x, weight, groups, stride, padding, dilation)
    float_array(grad_out, "grad_out")
    same_dtype(grad_out, "grad_out", x, "x")
    check_ndim(grad_out, 4, "grad_out")
    n, c_out = x.shape[0], weight.shape[0]
    ho, wo = geometry[-1]
    check_shape(grad_out, (n, c_out, ho, wo), "grad_out")
    g = grad_out.reshape(n, c_out, ho * wo)
    cols = _unfold(x, geometry)
    grad_b = g.sum(axis=(0, 2))
    gg, cg = _grouped(g, groups), _grouped(cols, groups)     # (N, G, rows, L) blocks
    grad_w = (gg @ cg.transpose(0, 1, 3, 2)).sum(axis=0).reshape(weight.shape)
    grad_x = None
    if input_grad:
        wg = weight.reshape(groups, c_out // groups, -1)
        grad_x = _fold((wg.transpose(0, 2, 1) @ gg).reshape(cols.shape), x.shape, geometry)
    return grad_x, np.ascontiguousarray(grad_w), np.ascontiguousarray(grad_b)
