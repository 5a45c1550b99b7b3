"""Losses with their gradients, and L1/L2 penalties, the specification.

Each loss returns (loss: float, grad wrt its first argument). Elementwise terms
are formed in float64 and summed in float64 (so a float32 loss is exact to a few
ulps and independent of summation order); gradients are returned in the input
dtype. Formulas follow torch.nn.functional (reduction 'mean' divides by the number
of elements, or by N for cross_entropy; 'sum' does not divide).
"""
import numpy as np

from cygrad.reference._checks import check_ndim, float_array, same_dtype
from cygrad.reference._elementwise import like, nonneg, real, reduction_divisor

# torch clamps log() at -100 in binary_cross_entropy, and its gradient divides
# by max(p * (1 - p), 1e-12), that 1e-12 being a float32 constant.
LOG_CLAMP = -100.0
BCE_EPS = float(np.float32(1e-12))


def _difference(pred, target, reduction):
    """pred - target (in their dtype) and the reduction's scale, after the checks."""
    float_array(pred, "pred")
    like(target, "target", pred, "pred")
    return pred - target, reduction_divisor(reduction, pred.size)


def mse_loss(pred, target, reduction="mean"):
    """mean/sum of (pred - target)^2; grad = norm * (pred - target), norm = 2/n or 2 (as torch)."""
    d, scale = _difference(pred, target, reduction)
    loss = float(np.sum(np.square(d, dtype=np.float64))) * scale
    return loss, pred.dtype.type(2.0 * scale) * d


def l1_loss(pred, target, reduction="mean"):
    """mean/sum of |pred - target|; grad = sign(pred - target) / n or sign(pred - target),
    sign(0) = 0, NaN propagates (torch.nn.functional.l1_loss)."""
    d, scale = _difference(pred, target, reduction)
    loss = float(np.sum(np.abs(d), dtype=np.float64)) * scale
    return loss, pred.dtype.type(scale) * np.sign(d)


def _is_class_index(target):
    """True for native int32/int64 class indices, False for any other ndarray."""
    if not isinstance(target, np.ndarray):
        raise TypeError(f"target must be a numpy.ndarray, got {type(target).__name__}")
    return target.dtype in (np.int32, np.int64) and target.dtype.isnative


def _class_targets(target, n, c):
    """Check a class-index target: shape (n,), C-contiguous, every index in [0, c)."""
    if target.ndim != 1 or target.shape[0] != n:
        raise ValueError(f"class-index target must have shape ({n},), got {target.shape}")
    if not target.flags.c_contiguous:
        raise ValueError("target must be C-contiguous (use numpy.ascontiguousarray)")
    bad = np.flatnonzero((target < 0) | (target >= c))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"target[{i}] = {int(target[i])} is out of range [0, {c})")


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """torch.nn.functional.cross_entropy on (N, C) logits, fused with its gradient.

    target: int32/int64 class indices (N,) in [0, C) (no ignore_index), or float
    class probabilities (N, C) of the logits' dtype. With smoothing eps the target
    distribution is t' = (1 - eps) * t + eps / C. loss_i = -sum_c t'_c log_softmax_c,
    grad_i = softmax * sum_c t'_c - t' (divided by N for 'mean').
    """
    float_array(logits, "logits")
    check_ndim(logits, 2, "logits")
    n, c = logits.shape
    if c < 1:
        raise ValueError("logits must have at least one class (shape (N, C) with C >= 1)")
    eps = real(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {eps}")
    scale = reduction_divisor(reduction, n)
    if _is_class_index(target):
        _class_targets(target, n, c)
        t = np.zeros((n, c))
        t[np.arange(n), target] = 1.0
        tsum = np.ones((n, 1))  # one-hot rows (smoothed or not) sum to 1 by definition
    elif target.dtype.kind == "f":
        float_array(target, "target")
        same_dtype(target, "target", logits, "logits")
        if target.shape != (n, c):
            raise ValueError(f"probability target must have shape {(n, c)}, got {target.shape}")
        t = target.astype(np.float64)
        tsum = None
    else:
        raise TypeError(f"target must be int32/int64 class indices or float probabilities, got {target.dtype}")
    t = (1.0 - eps) * t + eps / c if eps else t
    if tsum is None:
        tsum = np.sum(t, axis=1, keepdims=True)
    m = np.max(logits, axis=1, keepdims=True)
    e = np.exp(logits - m)  # in the input dtype, like the compiled kernel
    s = np.sum(e, axis=1, keepdims=True, dtype=np.float64)
    lse = m + np.log(s)
    logp = logits - lse
    loss = float(np.sum(-np.sum(t * logp, axis=1))) * scale
    grad = (e * (1.0 / s) * tsum - t) * scale
    return loss, grad.astype(logits.dtype)


def nll_loss(logp, target, reduction="mean"):
    """-logp[i, target_i] averaged (or summed) over the N rows of (N, C) logp; grad = -1/N
    (or -1) at (i, target_i), 0 elsewhere (torch.nn.functional.nll_loss, no weight or
    ignore_index). target: int32/int64 class indices (N,) in [0, C)."""
    float_array(logp, "logp")
    check_ndim(logp, 2, "logp")
    n, c = logp.shape
    scale = reduction_divisor(reduction, n)
    if not _is_class_index(target):
        raise TypeError(f"target must be int32/int64 class indices, got {target.dtype}")
    _class_targets(target, n, c)
    rows = np.arange(n)
    loss = -float(np.sum(logp[rows, target], dtype=np.float64)) * scale
    grad = np.zeros_like(logp)
    grad[rows, target] = logp.dtype.type(-scale)
    return loss, grad


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """(1 - y) * x - log(sigmoid(x)) in the stable form max(x, 0) - x*y + log1p(exp(-|x|));
    grad = (sigmoid(x) - y) / n (torch.nn.functional.binary_cross_entropy_with_logits)."""
    float_array(logits, "logits")
    like(target, "target", logits, "logits")
    scale = reduction_divisor(reduction, logits.size)
    x, y = logits.astype(np.float64), target.astype(np.float64)
    e = np.exp(-np.abs(x))
    loss = float(np.sum(np.maximum(x, 0.0) - x * y + np.log1p(e))) * scale
    sig = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return loss, ((sig - y) * scale).astype(logits.dtype)


def binary_cross_entropy(prob, target, reduction="mean"):
    """-(y * max(log p, -100) + (1 - y) * max(log(1 - p), -100)) (torch's clamp);
    grad = (1/n) * (p - y) / max(p * (1 - p), 1e-12). prob outside [0, 1] raises ValueError
    (as torch does), NaN propagates."""
    float_array(prob, "prob")
    like(target, "target", prob, "prob")
    bad = np.flatnonzero((prob < 0) | (prob > 1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"prob[{i}] = {float(prob.flat[i])} is outside [0, 1]")
    scale = reduction_divisor(reduction, prob.size)
    p, y = prob.astype(np.float64), target.astype(np.float64)
    with np.errstate(divide="ignore"):
        lp = np.maximum(np.log(p), LOG_CLAMP)
        lq = np.maximum(np.log(1.0 - p), LOG_CLAMP)
    loss = float(np.sum(-(y * lp + (1.0 - y) * lq))) * scale
    grad = scale * (p - y) / np.maximum((1.0 - p) * p, BCE_EPS)
    return loss, grad.astype(prob.dtype)


def l1_penalty(w, lam):
    """(lam * sum|w|, lam * sign(w)); sign(0) = 0. lam >= 0."""
    float_array(w, "w")
    lam = nonneg(lam, "lam")
    return lam * float(np.sum(np.abs(w), dtype=np.float64)), w.dtype.type(lam) * np.sign(w)


def l2_penalty(w, lam):
    """(0.5 * lam * sum w^2, lam * w). lam >= 0."""
    float_array(w, "w")
    lam = nonneg(lam, "lam")
    return 0.5 * lam * float(np.sum(np.square(w, dtype=np.float64))), w.dtype.type(lam) * w
