"""Batch normalisation, the specification (torch.nn.functional.batch_norm's semantics).

x (N, C, *) is viewed as (N, C, L), L the product of the trailing axes: each channel's
statistics run over its n = N * L values. Everything is computed in float64 and the
results rounded once to x's dtype; the variance is the corrected two-pass one,
(sum d^2 - (sum d)^2 / n) / n with d = x - mean (about the corrected mean
mean + (sum d) / n), never E[x^2] - E[x]^2.
"""
import math

import numpy as np

from cygrad.reference._checks import check_ndim, check_writeable, float_array, same_dtype
from cygrad.reference._elementwise import real


def _as_ncl(x):
    """x (N, C, *) as (N, C, L), after the checks of an input of ndim >= 2."""
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (N, C, *), got shape {x.shape}")
    return x.reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))


def _channel_vector(v, name, x):
    """v: a (C,) array of x's dtype."""
    float_array(v, name)
    same_dtype(v, name, x, "x")
    if v.shape != (x.shape[1],):
        raise ValueError(f"{name} must have shape ({x.shape[1]},) (the channels of x, shape "
                         f"{x.shape}), got {v.shape}")


def _optional_pair(a, a_name, b, b_name, x, writeable):
    """True when a and b are both (C,) arrays of x's dtype, False when both are None."""
    if (a is None) != (b is None):
        raise ValueError(f"{a_name} and {b_name} must both be None or both be given")
    if a is None:
        return False
    for v, name in ((a, a_name), (b, b_name)):
        _channel_vector(v, name, x)
        if writeable:
            check_writeable(v, name)
    return True


def _flag(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    return bool(v)


def _forward_checks(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """(x as (N, C, L), training, momentum, eps, has running stats) after every check."""
    float_array(x, "x")
    x3 = _as_ncl(x)
    training = _flag(training, "training")
    momentum, eps = real(momentum, "momentum"), real(eps, "eps")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if not 0.0 <= eps < math.inf:
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    _optional_pair(weight, "weight", bias, "bias", x, False)
    running = _optional_pair(running_mean, "running_mean", running_var, "running_var", x, training)
    if training and x3.shape[0] * x3.shape[2] == 1:
        raise ValueError("Expected more than 1 value per channel when training, "
                         f"got input size {x.shape}")
    if not training and not running:
        raise ValueError("running_mean and running_var are required when training=False")
    return x3, training, momentum, eps, running


def _per_channel(v, default, c):
    """(1, C, 1) float64 view of a (C,) array, or of `default` when v is None."""
    v = np.full(c, default, np.float64) if v is None else v.astype(np.float64)
    return v.reshape(1, c, 1)


def _batch_stats(x64, eps):
    """(mean, m2, invstd) per channel of (N, C, L) float64 values (n >= 1 per channel)."""
    n = x64.shape[0] * x64.shape[2]
    mean = x64.sum(axis=(0, 2)) / n
    d = x64 - mean.reshape(1, -1, 1)
    dev = np.sum(d, axis=(0, 2))
    m2 = np.sum(d * d, axis=(0, 2)) - dev ** 2 / n  # squares about mean + dev / n
    mean = mean + dev / n  # the mean with its rounding error removed
    m2 = np.where(m2 < 0.0, 0.0, m2)  # NaN stays NaN
    var = m2 / n
    with np.errstate(divide="ignore"):  # torch's InvStd: 0 when var and eps are both 0
        invstd = np.where((var == 0.0) & (eps == 0.0), 0.0, 1.0 / np.sqrt(var + eps))
    return mean, m2, invstd


def batch_norm_forward(x, weight, bias, running_mean, running_var, *, training, momentum=0.1,
                       eps=1e-5):
    """torch.nn.functional.batch_norm on x (N, C, *): returns (y, save_mean, save_invstd).

    training=True: per-channel batch mean and biased variance over N and the trailing
    axes; y = (x - mean) * invstd * weight + bias, invstd = 1 / sqrt(var + eps); the
    running statistics, when given, are updated in place as torch does:
    rm = (1 - momentum) * rm + momentum * mean, rv likewise with the unbiased variance.
    training=False: the running statistics normalise. weight/bias (C,) or both None;
    running_mean/running_var (C,) or both None, all of x's dtype. save_mean and
    save_invstd are (C,) float64 (NaN for an empty batch in training, whose y is empty
    and whose running statistics stay as they are, as in torch).
    """
    x3, training, momentum, eps, running = _forward_checks(
        x, weight, bias, running_mean, running_var, training, momentum, eps)
    n, c = x3.shape[0] * x3.shape[2], x3.shape[1]
    x64 = x3.astype(np.float64)
    if training and n == 0:
        return np.empty_like(x), np.full(c, np.nan), np.full(c, np.nan)
    if training:
        mean, m2, invstd = _batch_stats(x64, eps)
    else:
        mean = running_mean.astype(np.float64)
        invstd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    scale = invstd.reshape(1, c, 1) * _per_channel(weight, 1.0, c)
    y = (x64 - mean.reshape(1, c, 1)) * scale + _per_channel(bias, 0.0, c)
    if training and running:  # after y: weight and bias are read before any update
        running_mean[...] = momentum * mean + (1.0 - momentum) * running_mean.astype(np.float64)
        running_var[...] = (momentum * (m2 / (n - 1))
                            + (1.0 - momentum) * running_var.astype(np.float64))
    return y.astype(x.dtype).reshape(x.shape), mean, invstd


def _stat_vector(v, name, c):
    """v: a C-contiguous (C,) float64 array (save_mean, save_invstd)."""
    if float_array(v, name) != np.float64:
        raise TypeError(f"{name} must be float64 (as batch_norm_forward returns it), got {v.dtype}")
    check_ndim(v, 1, name)
    if v.shape[0] != c:
        raise ValueError(f"{name} must have shape ({c},), got {v.shape}")


def batch_norm_backward(grad_out, x, weight, save_mean, save_invstd, *, training,
                        input_grad=True):
    """Gradients of batch_norm_forward: (grad_x or None, grad_weight or None, grad_bias or None).

    xhat = (x - mean) * invstd; grad_bias = sum g; grad_weight = sum g * xhat (both None
    when weight is None); training=True: grad_x = weight * invstd * (g - grad_bias / n -
    xhat * grad_weight / n); training=False (the statistics are constants): grad_x =
    g * weight * invstd. grad_x is None when input_grad=False (and not computed).
    save_mean, save_invstd: the (C,) float64 arrays batch_norm_forward returned.
    """
    float_array(x, "x")
    x3 = _as_ncl(x)
    float_array(grad_out, "grad_out")
    same_dtype(grad_out, "grad_out", x, "x")
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out has shape {grad_out.shape} but x has shape {x.shape}: "
                         "they must match")
    if weight is not None:
        _channel_vector(weight, "weight", x)
    n, c = x3.shape[0] * x3.shape[2], x3.shape[1]
    _stat_vector(save_mean, "save_mean", c)
    _stat_vector(save_invstd, "save_invstd", c)
    training, input_grad = _flag(training, "training"), _flag(input_grad, "input_grad")
    g64, x64 = grad_out.reshape(x3.shape).astype(np.float64), x3.astype(np.float64)
    d = x64 - save_mean.reshape(1, c, 1)
    grad_bias = g64.sum(axis=(0, 2))
    grad_weight = np.sum(g64 * d, axis=(0, 2)) * save_invstd if n else np.zeros(c)
    grad_x = None
    if input_grad:
        k = (_per_channel(weight, 1.0, c) * save_invstd.reshape(1, c, 1))
        if training and n > 0:
            q = (save_invstd * grad_weight / n).reshape(1, c, 1)
            g64 = (g64 - (grad_bias / n).reshape(1, c, 1)) - d * q
        grad_x = (g64 * k).astype(x.dtype).reshape(x.shape)
    if weight is None:
        return grad_x, None, None
    return grad_x, grad_weight.astype(x.dtype), grad_bias.astype(x.dtype)
