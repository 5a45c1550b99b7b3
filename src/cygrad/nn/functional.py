"""cygrad.nn.functional (import as F): torch.nn.functional's functions over cygrad's kernels.

Each call runs the active backend's forward kernel and, when an input requires a
gradient (and grad mode is on), records ONE graph node whose backward is the
backend's `*_backward` kernel (for the losses: the gradient the fused kernel computed
with the loss). Inputs may be Tensors or ndarrays; results are Tensors. Signatures
and defaults are torch's; options cygrad cannot compute (pooling dilation, a gradient
with respect to a loss's target, ...) raise UnsupportedError (a NotImplementedError)
rather than being ignored.
"""
import warnings

import numpy as np

from cygrad import backend
from cygrad.autograd import ACCUMULATED, buffer_grad, needs_grad
from cygrad.autograd import is_grad_enabled as _grad_on
from cygrad.tensor import Tensor, _unbroadcast, record, wrap
from cygrad.nn import init

__all__ = ["UnsupportedError", "linear", "conv2d", "batch_norm", "max_pool2d", "avg_pool2d",
           "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax", "dropout", "cross_entropy",
           "nll_loss", "mse_loss", "l1_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "flatten"]


def _in(x):
    """x as a Tensor (an ndarray or array-like is wrapped, not copied)."""
    if isinstance(x, Tensor):
        return x
    return wrap(x if type(x) is np.ndarray else np.asarray(x))


def _c(a, dtype=None):
    """a as a C-contiguous array (of dtype), a 0-d array staying 0-d (np.ascontiguousarray
    would make it 1-d)."""
    a = np.asarray(a, dtype=dtype)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


_ONES = {}


def _ones(n, dtype):
    """A read-only (1, n) row of ones (the bias gradient's GEMM operand), made once per
    size and dtype."""
    key = (n, dtype.char)
    row = _ONES.get(key)
    if row is None:
        row = np.ones((1, n), dtype)
        row.flags.writeable = False
        if len(_ONES) < 64:  # a few batch sizes in practice; never grows without bound
            _ONES[key] = row
    return row


def _same_dtype(fn, a, a_name, b, b_name):
    if a.dtype != b.dtype:
        raise TypeError(f"{fn}: {a_name} has dtype {a.dtype}, {b_name} has dtype {b.dtype}")


def _pair(v, name):
    """int or (h, w) -> (h, w), as torch's _pair (the kernels check the values)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return tuple(v)
    return v, v


class UnsupportedError(NotImplementedError, ValueError):
    """An option torch has and cygrad cannot compute (caught as either base class)."""


def _unsupported(fn, what):
    raise UnsupportedError(f"{fn}: {what} is not supported by cygrad")


# ---- layers with parameters -----------------------------------------------------------

def linear(input, weight, bias=None):
    """input @ weight.T + bias (torch.nn.functional.linear): input (*, in_features),
    weight (out_features, in_features), bias (out_features,) or None.

    Forward is one GEMM (bias preloaded, beta = 1). Backward: grad_weight += g.T @ x and
    grad_bias += ones @ g straight into the parameters' gradient buffers, and
    grad_input = g @ weight only when the input requires a gradient.
    """
    x, w = _in(input), _in(weight)
    xd, wd = x.data, w.data
    shape = xd.shape
    if wd.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {wd.shape}")
    out_f, in_f = wd.shape
    if not shape or shape[-1] != in_f:
        raise ValueError(f"linear: input has shape {shape}, expected (N, {in_f}) "
                         f"for a weight of shape {wd.shape}")
    if xd.dtype != wd.dtype:
        _same_dtype("linear", xd, "input", wd, "weight")
    K = backend.current()
    x2 = np.ascontiguousarray(xd if len(shape) == 2 else xd.reshape(-1, in_f))
    wd = np.ascontiguousarray(wd)
    n = x2.shape[0]
    if bias is None:
        b = None
        y = K.matmul(x2, wd, trans_b=True)
    else:
        b = _in(bias)
        bd = b.data
        if bd.shape != (out_f,) or bd.dtype != wd.dtype:
            if bd.shape != (out_f,):
                raise ValueError(f"linear: bias has shape {bd.shape}, expected ({out_f},)")
            _same_dtype("linear", bd, "bias", wd, "weight")
        y = np.empty((n, out_f), wd.dtype)
        y[...] = bd  # addmm as torch: y = b + x @ W.T
        K.matmul(x2, wd, trans_b=True, beta=1.0, out=y)
    if len(shape) != 2:
        y = y.reshape(shape[:-1] + (out_f,))
    need_x, need_w = x.requires_grad, w.requires_grad
    need_b = b is not None and b.requires_grad
    if not ((need_x or need_w or need_b) and _grad_on()):
        return wrap(y)

    def backward(g):
        g = np.ascontiguousarray(g).reshape(n, out_f)
        gx = gw = gb = None
        if need_w:  # dW += g.T @ x
            buf = buffer_grad(w)
            if buf is not None:
                K.matmul(g, x2, trans_a=True, beta=1.0, out=buf)
                gw = ACCUMULATED
            else:
                gw = K.matmul(g, x2, trans_a=True)
        if need_b:  # db += column sums of g, as a GEMM with a row of ones
            ones = _ones(n, g.dtype)
            buf = buffer_grad(b)
            if buf is not None:
                K.matmul(ones, g, beta=1.0, out=buf.reshape(1, out_f))
                gb = ACCUMULATED
            else:
                gb = K.matmul(ones, g).reshape(out_f)
        if need_x:  # dx = g @ W
            gx = K.matmul(g, wd).reshape(shape)
        return (gx, gw) if b is None else (gx, gw, gb)

    return record(y, "LinearBackward", backward, (x, w) if b is None else (x, w, b))


def _spatial(fn, xd, what):
    """(N, C, H, W) data and whether a batch axis was added to a 3-D (C, H, W) input."""
    if xd.ndim == 3:
        return np.ascontiguousarray(xd[None]), True
    if xd.ndim != 4:
        raise ValueError(f"{fn}: expected a 4-D input {what} (or 3-D without the batch), "
                         f"got shape {xd.shape}")
    return np.ascontiguousarray(xd), False


def _check_window(fn, shape, span, padding, kind):
    for d in (0, 1):
        if isinstance(span[d], int) and isinstance(padding[d], int) and \
                shape[2 + d] + 2 * padding[d] < span[d]:
            raise ValueError(f"{fn}: input of shape {shape} is smaller than the {kind} "
                             f"{tuple(span)} after padding {tuple(padding)}")


def _same_padding(kernel, dilation, stride):
    """padding='same' as ((top, left) symmetric padding, (extra bottom, extra right)): torch
    pads total = d*(k-1) with total // 2 before and the rest after."""
    if tuple(stride) != (1, 1):
        raise ValueError("conv2d: padding='same' needs stride 1 (as in torch)")
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return (total[0] // 2, total[1] // 2), (total[0] % 2, total[1] % 2)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution as torch.nn.functional.conv2d: input (N, C_in, H, W) or (C_in, H, W),
    weight (C_out, C_in / groups, KH, KW), bias (C_out,); padding an int, a pair, 'valid'
    or 'same' (an even dilated kernel gets the extra row/column at the bottom/right, as
    torch)."""
    x, w = _in(input), _in(weight)
    xd, batched = _spatial("conv2d", x.data, "(N, C_in, H, W)")
    wd = np.ascontiguousarray(w.data)
    if wd.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (C_out, C_in / groups, KH, KW), got shape "
                         f"{wd.shape}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    if xd.shape[1] != wd.shape[1] * groups:
        raise ValueError(f"conv2d: input has shape {x.data.shape}, expected "
                         f"(N, {wd.shape[1] * groups}, H, W) for a weight of shape {wd.shape}"
                         + (f" and groups={groups}" if groups != 1 else ""))
    _same_dtype("conv2d", xd, "input", wd, "weight")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    extra = (0, 0)
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        padding, extra = ((0, 0), extra) if padding == "valid" else \
            _same_padding(wd.shape[2:], dilation, stride)
    padding = _pair(padding, "padding")
    shape = xd.shape
    if extra != (0, 0):  # the uneven part of 'same' as explicit zeros after the input
        xd = np.pad(xd, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    span = [d * (k - 1) + 1 if isinstance(d, int) else k for k, d in zip(wd.shape[2:], dilation)]
    _check_window("conv2d", xd.shape, span, padding, "(dilated) kernel")
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    b = None if bias is None else _in(bias)
    K = backend.current()
    y = K.conv2d_forward(xd, wd, None if b is None else np.ascontiguousarray(b.data), **geometry)
    if batched:
        y = y[0]
    need_x, need_w = x.requires_grad, w.requires_grad
    need_b = b is not None and b.requires_grad
    if not ((need_x or need_w or need_b) and _grad_on()):
        return wrap(y)

    def backward(g):
        g = np.ascontiguousarray(g[None] if batched else g)
        gx, gw, gb = K.conv2d_backward(g, xd, wd, input_grad=need_x, **geometry)
        if gx is not None:
            gx = gx[:, :, :shape[2], :shape[3]] if extra != (0, 0) else gx
            gx = gx[0] if batched else gx
        return (gx, gw if need_w else None) + ((gb if need_b else None,) if b is not None else ())

    return record(y, "ConvolutionBackward", backward, (x, w) if b is None else (x, w, b))


# ---- normalisation ----------------------------------------------------------------------

def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation over axis 1 of (N, C, *) (torch.nn.functional.batch_norm).

    training=True: the batch's mean and biased variance normalise, and running_mean /
    running_var (when given) move towards the batch statistics by `momentum`, the
    variance unbiased, in place. training=False: the running statistics normalise.
    One node; its backward is the backend's batch_norm_backward.
    """
    x = _in(input)
    xd = x.data
    if xd.ndim < 2:
        raise ValueError(f"batch_norm: expected an input of at least 2 dimensions (N, C, ...), "
                         f"got shape {xd.shape}")
    w = None if weight is None else _in(weight)
    b = None if bias is None else _in(bias)
    stats = [None if r is None else (r.data if isinstance(r, Tensor) else r)
             for r in (running_mean, running_var)]
    K = backend.current()
    xd = np.ascontiguousarray(xd)
    wd = None if w is None else np.ascontiguousarray(w.data)
    y, mean, invstd = K.batch_norm_forward(
        xd, wd, None if b is None else np.ascontiguousarray(b.data), stats[0], stats[1],
        training=bool(training), momentum=0.0 if momentum is None else float(momentum), eps=eps)
    need_x = x.requires_grad
    need_w = w is not None and w.requires_grad
    need_b = b is not None and b.requires_grad
    if not ((need_x or need_w or need_b) and _grad_on()):
        return wrap(y)

    def backward(g):
        gx, gw, gb = K.batch_norm_backward(np.ascontiguousarray(g), xd, wd, mean, invstd,
                                           training=bool(training), input_grad=need_x)
        return (gx,) + tuple(grad if need else None for grad, need, t in
                             ((gw, need_w, w), (gb, need_b, b)) if t is not None)

    inputs = (x,) + tuple(t for t in (w, b) if t is not None)
    return record(y, "NativeBatchNormBackward", backward, inputs)


# ---- pooling --------------------------------------------------------------------------

def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over each window (torch.nn.functional.max_pool2d; stride defaults to kernel_size;
    ceil_mode as torch). With return_indices, also the flat index of each maximum within
    its H*W plane. dilation other than 1 is not supported."""
    if _pair(dilation, "dilation") != (1, 1):
        _unsupported("max_pool2d", f"dilation={dilation}")
    x = _in(input)
    xd, batched = _spatial("max_pool2d", x.data, "(N, C, H, W)")
    k, p = _pair(kernel_size, "kernel_size"), _pair(padding, "padding")
    _check_window("max_pool2d", xd.shape, k, p, "kernel")
    K = backend.current()
    y, indices = K.max_pool2d_forward(xd, kernel_size, stride=stride, padding=padding,
                                      ceil_mode=ceil_mode)
    shape = xd.shape
    if batched:
        y, out_idx = y[0], indices[0]
    else:
        out_idx = indices
    if needs_grad(x):
        def backward(g):
            gx = K.max_pool2d_backward(np.ascontiguousarray(g[None] if batched else g), indices, shape)
            return (gx[0] if batched else gx,)

        out = record(y, "MaxPool2DBackward", backward, (x,))
    else:
        out = wrap(y)
    return (out, wrap(out_idx)) if return_indices else out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Mean over each window (torch.nn.functional.avg_pool2d): ceil_mode, count_include_pad
    (padding counted in the divisor, the default) and divisor_override as torch."""
    options = dict(stride=stride, padding=padding, ceil_mode=ceil_mode,
                   count_include_pad=count_include_pad, divisor_override=divisor_override)
    x = _in(input)
    xd, batched = _spatial("avg_pool2d", x.data, "(N, C, H, W)")
    k, p = _pair(kernel_size, "kernel_size"), _pair(padding, "padding")
    _check_window("avg_pool2d", xd.shape, k, p, "kernel")
    K = backend.current()
    y = K.avg_pool2d_forward(xd, kernel_size, **options)
    shape = xd.shape
    if batched:
        y = y[0]
    if not needs_grad(x):
        return wrap(y)

    def backward(g):
        gx = K.avg_pool2d_backward(np.ascontiguousarray(g[None] if batched else g), shape,
                                   kernel_size, **options)
        return (gx[0] if batched else gx,)

    return record(y, "AvgPool2DBackward", backward, (x,))


# ---- activations ----------------------------------------------------------------------

def relu(input, inplace=False):
    """max(x, 0); derivative 1 where x > 0 (0 at 0, as torch). `inplace` is accepted and
    ignored: the result is always a new tensor (the input is left unchanged)."""
    x = _in(input)
    xd = _c(x.data)
    K = backend.current()
    y = K.relu(xd)
    if not needs_grad(x):
        return wrap(y)
    return record(y, "ReluBackward", lambda g: (K.relu_backward(_c(g), xd),), (x,))


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x if x > 0 else negative_slope * x (`inplace` accepted and ignored, as for relu)."""
    x = _in(input)
    xd = _c(x.data)
    K = backend.current()
    y = K.leaky_relu(xd, negative_slope)
    if not needs_grad(x):
        return wrap(y)
    return record(y, "LeakyReluBackward", lambda g: (K.leaky_relu_backward(
        _c(g), xd, negative_slope),), (x,))


def _from_output(node, kernel, input):
    """An activation whose derivative the backend computes from its output y."""
    x = _in(input)
    K = backend.current()
    y = getattr(K, kernel)(_c(x.data))
    if not needs_grad(x):
        return wrap(y)
    derivative = getattr(K, kernel + "_backward")
    return record(y, node, lambda g: (derivative(_c(g), y),), (x,))


def sigmoid(input):
    """1 / (1 + exp(-x)); derivative y (1 - y) from the output."""
    return _from_output("SigmoidBackward", "sigmoid", input)


def tanh(input):
    """tanh(x); derivative 1 - y^2 from the output."""
    return _from_output("TanhBackward", "tanh", input)


def _softmax_dim(fn, dim, ndim):
    if dim is None:  # torch's deprecated implicit choice
        warnings.warn(f"Implicit dimension choice for {fn} has been deprecated. Change the call "
                      "to include dim=X as an argument.", UserWarning, stacklevel=3)
        dim = 0 if ndim in (0, 1, 3) else 1
    d = int(dim)
    if not -max(ndim, 1) <= d < max(ndim, 1):
        raise IndexError(f"{fn}: dim {dim} is out of range for a {ndim}-D input")
    return d % max(ndim, 1)


def _rows(a, axis):
    """a with `axis` moved last, as a C-contiguous 2-D array of rows."""
    if a.ndim == 0:
        return a.reshape(1, 1)
    moved = a if axis == a.ndim - 1 else np.moveaxis(a, axis, -1)
    return np.ascontiguousarray(moved.reshape(-1, a.shape[axis]))


def _unrows(r, shape, axis):
    """The inverse of _rows for an array of `shape`."""
    if not shape:
        return r.reshape(())
    moved = shape[:axis] + shape[axis + 1:] + (shape[axis],)
    r = r.reshape(moved)
    return r if axis == len(shape) - 1 else np.moveaxis(r, -1, axis)


def _softmax(fn, kernel, input, dim, dtype):
    x = _in(input)
    if dtype is not None:
        x = x.to(dtype)
    shape = x.data.shape
    axis = _softmax_dim(fn, dim, len(shape))
    K = backend.current()
    y2 = getattr(K, kernel)(_rows(x.data, axis))
    y = _unrows(y2, shape, axis)
    if not needs_grad(x):
        return wrap(y)
    backward_kernel = getattr(K, kernel + "_backward")
    return record(y, "SoftmaxBackward" if kernel == "softmax" else "LogSoftmaxBackward",
                  lambda g: (_unrows(backward_kernel(_rows(g, axis), y2), shape, axis),), (x,))


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """exp(x) / sum exp(x) along dim (torch.nn.functional.softmax)."""
    return _softmax("softmax", "softmax", input, dim, dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """x - log(sum exp(x)) along dim (torch.nn.functional.log_softmax)."""
    return _softmax("log_softmax", "log_softmax", input, dim, dtype)


# ---- dropout --------------------------------------------------------------------------

def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p (training only), scale survivors by 1/(1-p).

    The mask comes from cygrad's counter-based generator, seeded by a draw from the
    global generator (cygrad.manual_seed), so runs repeat for any thread count.
    `inplace` is accepted and ignored (the result is a new tensor).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = _in(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return dropout_seeded(x, p, int(init.generator().integers(2**62)))


def dropout_seeded(input, p, seed):
    """Dropout with the mask of `seed` (nn.Dropout advances its seed by one per call)."""
    x = _in(input)
    xd = _c(x.data)
    K = backend.current()
    y, mask = K.dropout(xd, p, seed)
    if not needs_grad(x):
        return wrap(y)
    return record(y, "DropoutBackward",
                  lambda g: (K.dropout_backward(_c(g), mask, p),), (x,))


# ---- losses ---------------------------------------------------------------------------

def _reduction(fn, size_average, reduce, reduction):
    """torch's legacy size_average/reduce arguments as a reduction, then checked."""
    if size_average is None and reduce is None and reduction in ("mean", "sum", "none"):
        return reduction
    if size_average is not None or reduce is not None:
        warnings.warn("size_average and reduce args will be deprecated, please use "
                      "reduction='mean' or 'sum' instead.", UserWarning, stacklevel=3)
        if reduce is False:
            reduction = "none"
        else:
            reduction = "sum" if size_average is False else "mean"
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{fn}: {reduction!r} is not a valid value for reduction "
                         "(use 'mean', 'sum' or 'none')")
    return reduction


def _scaled(grad, g):
    """The saved d loss / d input times the upstream gradient of a reduced (0-d) loss."""
    return grad if g == 1 else grad * g


def _loss_output(name, loss, grad, x, upstream):
    """The loss as a tensor of the input's dtype (0-d, or the per-element losses for
    reduction='none'), with one node: the gradient the fused kernel returned with the
    loss, times the upstream gradient (upstream(grad, g) -> d / d input)."""
    out = np.array(loss, x.data.dtype) if np.ndim(loss) == 0 else loss
    if not needs_grad(x):
        return wrap(out)
    return record(out, name, lambda g: (upstream(grad, g),), (x,))


def _no_grad_for(fn, what, value):
    if isinstance(value, Tensor) and needs_grad(value):
        _unsupported(fn, f"a gradient with respect to {what}")


def _as_dtype_of(fn, name, value, like, shape=None):
    """value (Tensor/array-like) as a C-contiguous array of like's dtype (broadcast to
    shape when given), or None."""
    if value is None:
        return None
    _no_grad_for(fn, name, value)
    a = np.asarray(value.data if isinstance(value, Tensor) else value)
    if shape is not None:
        try:
            a = np.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"{fn}: {name} of shape {a.shape} does not broadcast to the input's "
                             f"shape {shape}") from None
    return _c(a, like.dtype)


def _class_targets(fn, input, target):
    """(logits as rows (M, C), targets (M,) or (M, C), the per-row shape of the loss, a
    function mapping (M, C) back to the input's layout): torch's (C,), (N, C) and
    (N, C, d1, ...) inputs."""
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind in "iub":
        if t.dtype not in (np.int32, np.int64):
            t = t.astype(np.int64)
        indices = True
    elif t.dtype.kind == "f":
        indices = False
    else:
        raise TypeError(f"{fn}: target must hold class indices (integers) or class "
                        f"probabilities (floats), got {t.dtype}")
    xd = input.data
    shape = xd.shape
    if xd.ndim == 0:
        raise ValueError(f"{fn}: input must have a class dimension, got a 0-d input")
    if xd.ndim == 1:
        rows, row_shape = xd.reshape(1, -1), ()
        t = t.reshape(1) if indices else t.reshape(1, -1)
        back = lambda g: g.reshape(shape)  # noqa: E731
    elif xd.ndim == 2:
        rows, row_shape, back = xd, shape[:1], None
    else:
        rows, row_shape = _rows(xd, 1), shape[:1] + shape[2:]
        t = t.reshape(-1) if indices else _rows(np.asarray(t), 1)
        back = lambda g: _unrows(g, shape, 1)  # noqa: E731
    t = _c(t) if indices else _c(t, xd.dtype)
    return np.ascontiguousarray(rows), t, row_shape, back


def _class_loss(fn, kernel, node, input, target, weight, reduction, **opts):
    _no_grad_for(fn, "the target", target)
    x = _in(input)
    xd, t = x.data, target
    if type(t) is np.ndarray and t.dtype == np.int64 and t.ndim == 1 and xd.ndim == 2 and \
            t.flags.c_contiguous and xd.flags.c_contiguous:  # the usual (N, C) call, as is
        rows, row_shape, back = xd, xd.shape[:1], None
    else:
        rows, t, row_shape, back = _class_targets(fn, x, target)
    w = None if weight is None else _as_dtype_of(fn, "weight", weight, xd)
    loss, grad = getattr(backend.current(), kernel)(rows, t, reduction=reduction, weight=w, **opts)
    if reduction != "none":
        if back is None:
            return _loss_output(node, loss, grad, x, _scaled)
        return _loss_output(node, loss, grad, x, lambda grad, g: back(_scaled(grad, g)))
    back = back or (lambda g: g)
    # per-row losses in the target's layout; the gradient scales row by row
    return _loss_output(node, loss.reshape(row_shape), grad, x,
                        lambda grad, g: back(grad * np.reshape(g, (-1, 1))))


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of logits against class indices or class probabilities
    (torch.nn.functional.cross_entropy), fused with its gradient (softmax - target) / N.

    input (N, C), (C,) or (N, C, d1, ...); weight: class weights (C,) ('mean' then
    divides by the summed weights of the counted rows); targets equal to ignore_index
    count for nothing; label_smoothing and reduction='none' as torch.
    """
    reduction = _reduction("cross_entropy", size_average, reduce, reduction)
    return _class_loss("cross_entropy", "cross_entropy", "CrossEntropyBackward", input, target,
                       weight, reduction, label_smoothing=label_smoothing,
                       ignore_index=ignore_index)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood of log-probabilities (N, C) at class indices
    (torch.nn.functional.nll_loss): -mean(weight[t_i] * input[i, t_i]), with weight and
    ignore_index as cross_entropy."""
    reduction = _reduction("nll_loss", size_average, reduce, reduction)
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind == "f":
        raise TypeError(f"nll_loss: target must hold class indices (integers), got {t.dtype}")
    return _class_loss("nll_loss", "nll_loss", "NllLossBackward", input, target, weight,
                       reduction, ignore_index=ignore_index)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """mean (or sum, or each) of (input - target)^2 (torch.nn.functional.mse_loss); a
    target of another shape is broadcast with torch's warning."""
    if weight is not None:
        _unsupported("mse_loss", "weight=")
    reduction = _reduction("mse_loss", size_average, reduce, reduction)
    return _difference_loss("mse_loss", "MseLossBackward", input, target, reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """mean (or sum, or each) of |input - target| (torch.nn.functional.l1_loss);
    derivative sign(x - t)."""
    if weight is not None:
        _unsupported("l1_loss", "weight=")
    reduction = _reduction("l1_loss", size_average, reduce, reduction)
    return _difference_loss("l1_loss", "L1LossBackward", input, target, reduction)


def _difference_loss(fn, node, input, target, reduction):
    """mse_loss and l1_loss: functions of input - target, so d/d target = -d/d input."""
    x = _in(input)
    t = target if isinstance(target, Tensor) else None
    xd = x.data
    td = np.asarray(t.data if t is not None else target)
    xs = xd
    if td.shape != xd.shape:
        warnings.warn(f"Using a target size ({td.shape}) that is different to the input size "
                      f"({xd.shape}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", UserWarning,
                      stacklevel=3)
        xs, td = np.broadcast_arrays(xd, td)
    loss, grad = getattr(backend.current(), fn)(_c(xs), _c(td, xd.dtype), reduction=reduction)
    out = np.array(loss, xd.dtype) if reduction != "none" else loss
    need_x = x.requires_grad
    need_t = t is not None and t.requires_grad
    if not ((need_x or need_t) and _grad_on()):
        return wrap(out)

    def backward(g):
        full = _scaled(grad, g) if reduction != "none" else grad * g
        gx = _unbroadcast(full, xd.shape, xd.dtype) if need_x else None
        if t is None:
            return (gx,)
        return gx, (_unbroadcast(-full, t.data.shape, t.data.dtype) if need_t else None)

    return record(out, node, backward, (x,) if t is None else (x, t))


def _binary_loss(fn, kernel, node, input, target, reduction, **weights):
    _no_grad_for(fn, "the target", target)
    x = _in(input)
    xd = _c(x.data)
    td = np.asarray(target.data if isinstance(target, Tensor) else target)
    if td.shape != xd.shape:
        raise ValueError(f"{fn}: target size ({td.shape}) must be the same as input size "
                         f"({xd.shape})")
    weights = {k: _as_dtype_of(fn, k, v, xd, xd.shape) for k, v in weights.items()}
    loss, grad = getattr(backend.current(), kernel)(xd, _c(td, xd.dtype), reduction=reduction,
                                                    **weights)
    if reduction != "none":
        return _loss_output(node, loss, grad, x, _scaled)
    return _loss_output(node, loss, grad, x, lambda grad, g: grad * g)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    """-(t log p + (1 - t) log(1 - p)) on probabilities, log clamped at -100 (torch);
    weight (broadcast to the input) rescales each element's loss."""
    reduction = _reduction("binary_cross_entropy", size_average, reduce, reduction)
    return _binary_loss("binary_cross_entropy", "binary_cross_entropy", "BinaryCrossEntropyBackward",
                        input, target, reduction, weight=weight)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """Binary cross-entropy on logits, in the stable form max(x,0) - x t + log(1 + exp(-|x|));
    weight and pos_weight (the positive examples' weight, broadcast along the last
    dimension) as torch."""
    reduction = _reduction("binary_cross_entropy_with_logits", size_average, reduce, reduction)
    return _binary_loss("binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits",
                        "BinaryCrossEntropyWithLogitsBackward", input, target, reduction,
                        weight=weight, pos_weight=pos_weight)


def flatten(input, start_dim=0, end_dim=-1):
    """Dimensions start_dim..end_dim merged into one (torch.flatten)."""
    return _in(input).flatten(start_dim, end_dim)
