"""Activations and their derivatives, the specification (formulas of torch's CPU kernels).

Every function takes C-contiguous float32/float64 arrays and an optional `out`
of the same shape and dtype (out may be the input itself, for in-place use).
"""
import numpy as np

from cygrad.reference._checks import check_ndim, float_array
from cygrad.reference._elementwise import like, out_array, real


def _unary(x, out):
    float_array(x, "x")
    return out_array(out, x)


def _backward(grad_out, v, v_name, out, ndim=None):
    float_array(grad_out, "grad_out")
    if ndim is not None:
        check_ndim(grad_out, ndim, "grad_out")
    like(v, v_name, grad_out, "grad_out")
    return out_array(out, grad_out, "grad_out", ((v, v_name),))


def relu(x, out=None):
    """max(x, 0); NaN propagates (torch.relu)."""
    y = _unary(x, out)
    y[...] = np.where(x < 0, x.dtype.type(0), x)
    return y


def leaky_relu(x, negative_slope=0.01, out=None):
    """x if x > 0 else negative_slope * x (torch.nn.functional.leaky_relu)."""
    slope = real(negative_slope, "negative_slope")
    y = _unary(x, out)
    y[...] = np.where(x > 0, x, x * x.dtype.type(slope))
    return y


def sigmoid(x, out=None):
    """1 / (1 + exp(-x)) (torch.sigmoid)."""
    y = _unary(x, out)
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        y[...] = one / (one + np.exp(-x))
    return y


def tanh(x, out=None):
    """tanh(x) (torch.tanh)."""
    y = _unary(x, out)
    np.tanh(x, out=y)
    return y


def _row_exp(x):
    """exp(x - rowmax) and the row sums accumulated in float64 (sums are exact to ~1 ulp)."""
    check_ndim(x, 2, "x")
    if x.shape[1] == 0:  # no classes: nothing to normalize
        return np.zeros((x.shape[0], 1), x.dtype), x, np.ones((x.shape[0], 1))
    m = np.max(x, axis=1, keepdims=True)
    e = np.exp(x - m)
    return m, e, np.sum(e, axis=1, keepdims=True, dtype=np.float64)


def softmax(x, out=None):
    """exp(x - max) / sum exp(x - max) over the last axis of a 2-D x (torch.softmax(x, -1))."""
    float_array(x, "x")
    _, e, s = _row_exp(x)
    y = out_array(out, x)
    y[...] = e * (1.0 / s)
    return y


def log_softmax(x, out=None):
    """x - max - log(sum exp(x - max)) over the last axis of a 2-D x."""
    float_array(x, "x")
    m, _, s = _row_exp(x)
    y = out_array(out, x)
    y[...] = x - (m + np.log(s))
    return y


def _row_sums(v):
    """Sum over each row of a 2-D float64 array, added in ascending column order as the
    compiled kernels do (cumsum is sequential; np.sum would add pairwise)."""
    if v.shape[1] == 0:
        return np.zeros((v.shape[0], 1))
    return np.cumsum(v, axis=1)[:, -1:]


def softmax_backward(grad_out, y, out=None):
    """y * (grad_out - s), s = sum_j grad_out_j * y_j per row, from the output y = softmax(x)
    of a 2-D x (softmax' = diag(y) - y y^T). s in float64, each element formed in float64."""
    g = _backward(grad_out, y, "y", out, ndim=2)
    g64, y64 = grad_out.astype(np.float64), y.astype(np.float64)
    g[...] = y64 * (g64 - _row_sums(g64 * y64))
    return g


def log_softmax_backward(grad_out, y, out=None):
    """grad_out - exp(y) * s, s = sum_j grad_out_j per row, from the output y = log_softmax(x)
    of a 2-D x (exp(y) = softmax(x)). s in float64, each element formed in float64."""
    g = _backward(grad_out, y, "y", out, ndim=2)
    g64 = grad_out.astype(np.float64)
    g[...] = g64 - np.exp(y.astype(np.float64)) * _row_sums(g64)
    return g


def relu_backward(grad_out, x, out=None):
    """grad_out where x > 0, else 0 (torch threshold_backward: 0 where x <= 0)."""
    g = _backward(grad_out, x, "x", out)
    g[...] = np.where(x <= 0, grad_out.dtype.type(0), grad_out)
    return g


def leaky_relu_backward(grad_out, x, negative_slope=0.01, out=None):
    """grad_out where x > 0, else negative_slope * grad_out."""
    slope = real(negative_slope, "negative_slope")
    g = _backward(grad_out, x, "x", out)
    g[...] = np.where(x > 0, grad_out, grad_out * grad_out.dtype.type(slope))
    return g


def sigmoid_backward(grad_out, y, out=None):
    """grad_out * (1 - y) * y, from the output y = sigmoid(x) (sigma' = sigma(1 - sigma))."""
    g = _backward(grad_out, y, "y", out)
    g[...] = grad_out * (y.dtype.type(1) - y) * y
    return g


def tanh_backward(grad_out, y, out=None):
    """grad_out * (1 - y*y), from the output y = tanh(x)."""
    g = _backward(grad_out, y, "y", out)
    g[...] = grad_out * (y.dtype.type(1) - y * y)
    return g
