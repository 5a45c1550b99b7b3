"""Losses with their gradients, and L1/L2 penalties, the specification.

Each loss returns (loss, grad wrt its first argument). Elementwise terms are formed
in float64 and summed in float64 (so a float32 loss is exact to a few ulps and
independent of summation order); gradients are returned in the input dtype. Formulas,
arguments and defaults follow torch.nn.functional: reduction 'mean' divides by the
number of elements (by N, or by the kept rows' class weights, for cross_entropy and
nll_loss), 'sum' does not divide, and 'none' returns the per-element losses (per-row
for cross_entropy and nll_loss) in the input dtype with grad = d (their sum) / d input.
"""
import math

import numpy as np

from cygrad.reference._checks import check_ndim, float_array, same_dtype
from cygrad.reference._elementwise import like, nonneg, real, reduction_divisor

# torch clamps log() at -100 in binary_cross_entropy, and its gradient divides
# by max(p * (1 - p), 1e-12), that 1e-12 being a float32 constant.
LOG_CLAMP = -100.0
BCE_EPS = float(np.float32(1e-12))


def _reduced(terms, scale, reduction, dtype):
    """The loss from its per-element terms: as dtype for 'none', else their float64 sum
    times scale."""
    if reduction == "none":
        return terms.astype(dtype)
    return float(np.sum(terms, dtype=np.float64)) * scale


def _weighted(terms, grad, weight):
    """terms and grad (float64) times the per-element weight, if any."""
    if weight is None:
        return terms, grad
    w = weight.astype(np.float64)
    return terms * w, grad * w


def _optional_like(x, name, ref, ref_name):
    """x is None, or a float array of ref's dtype and shape."""
    if x is not None:
        like(x, name, ref, ref_name)


def _difference(pred, target, reduction):
    """pred - target (in their dtype) and the reduction's scale, after the checks."""
    float_array(pred, "pred")
    like(target, "target", pred, "pred")
    return pred - target, reduction_divisor(reduction, pred.size)


def mse_loss(pred, target, reduction="mean"):
    """mean/sum of (pred - target)^2; grad = norm * (pred - target), norm = 2/n or 2 (as torch).
    reduction='none': the squares and 2 (pred - target)."""
    d, scale = _difference(pred, target, reduction)
    loss = _reduced(np.square(d, dtype=np.float64), scale, reduction, pred.dtype)
    return loss, pred.dtype.type(2.0 * scale) * d


def l1_loss(pred, target, reduction="mean"):
    """mean/sum of |pred - target|; grad = sign(pred - target) / n or sign(pred - target),
    sign(0) = 0, NaN propagates (torch.nn.functional.l1_loss). reduction='none': each
    |pred - target| and its sign."""
    d, scale = _difference(pred, target, reduction)
    return _reduced(np.abs(d), scale, reduction, pred.dtype), pred.dtype.type(scale) * np.sign(d)


# ---- class-index targets (cross_entropy, nll_loss) ------------------------------------

def _is_class_index(target):
    """True for native int32/int64 class indices, False for any other ndarray."""
    if not isinstance(target, np.ndarray):
        raise TypeError(f"target must be a numpy.ndarray, got {type(target).__name__}")
    return target.dtype in (np.int32, np.int64) and target.dtype.isnative


def _ignore_index(v):
    """ignore_index: any int (TypeError otherwise); None when no int64 target can equal it."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"ignore_index must be an int, got {type(v).__name__}")
    v = int(v)
    return v if -2**63 <= v < 2**63 else None


def _class_targets(target, n, c, ignore):
    """Check a class-index target: shape (n,), C-contiguous, every index in [0, c) or equal
    to ignore (an int or None). Returns the mask of the rows kept (not ignored)."""
    if target.ndim != 1 or target.shape[0] != n:
        raise ValueError(f"class-index target must have shape ({n},), got {target.shape}")
    if not target.flags.c_contiguous:
        raise ValueError("target must be C-contiguous (use numpy.ascontiguousarray)")
    kept = np.ones(n, bool) if ignore is None else target != np.int64(ignore)
    bad = np.flatnonzero(((target < 0) | (target >= c)) & kept)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"target[{i}] = {int(target[i])} is out of range [0, {c})")
    return kept


def _class_weight(weight, c, ref, ref_name):
    """Class weights (C,) of ref's dtype as float64, or None."""
    if weight is None:
        return None
    float_array(weight, "weight")
    same_dtype(weight, "weight", ref, ref_name)
    if weight.shape != (c,):
        raise ValueError(f"weight must have shape ({c},) (one per class), got {weight.shape}")
    return weight.astype(np.float64)


def _class_mean_scale(target, kept, w):
    """1 / (sum of w[target_i] over the kept rows; their count without w): torch's 'mean'
    for class targets. NaN when that sum is 0 (as torch: its loss is then 0/0)."""
    total = float(np.sum(w[target[kept]])) if w is not None else float(np.count_nonzero(kept))
    return 1.0 / total if total != 0.0 else math.nan


def _class_setup(x, x_name, reduction, weight, ignore_index):
    """Checks shared by cross_entropy and nll_loss after the input's own: the reduction's
    scale, the class weights (float64 or None) and the ignore_index (int or None)."""
    n, c = x.shape
    scale = reduction_divisor(reduction, n)
    return scale, _class_weight(weight, c, x, x_name), _ignore_index(ignore_index)


def _probabilities(target, logits, ignore_index):
    """A float probability target, checked (logits' dtype and shape; ignore_index < 0: no
    class index can equal it, and torch refuses one >= 0), as float64."""
    float_array(target, "target")
    same_dtype(target, "target", logits, "logits")
    if target.shape != logits.shape:
        raise ValueError(f"probability target must have shape {logits.shape}, got {target.shape}")
    if ignore_index >= 0:
        raise ValueError(f"ignore_index = {ignore_index} applies to class-index targets only: "
                         "with probability targets it must be negative (as torch)")
    return target.astype(np.float64)


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0, weight=None,
                  ignore_index=-100):
    """torch.nn.functional.cross_entropy on (N, C) logits, fused with its gradient.

    target: int32/int64 class indices (N,), each in [0, C) or equal to ignore_index, or
    float class probabilities (N, C) of the logits' dtype (ignore_index must then be
    negative, as torch; it matches nothing). weight: class weights (C,) of the logits'
    dtype, or None. With smoothing eps the target row is
    t'_c = w_c ((1 - eps) t_c + eps / C) (torch weights its smoothing term too);
    loss_i = -sum_c t'_c log_softmax_c, grad_i = softmax * sum_c t'_c - t'. A row whose
    target is ignore_index has loss 0 and gradient 0. 'mean' divides by the sum of
    w[target_i] over the rows not ignored (their count without weight; NaN when it is 0,
    as torch) for class targets, by N for probabilities. 'none': the (N,) row losses
    and the undivided gradient.
    """
    float_array(logits, "logits")
    check_ndim(logits, 2, "logits")
    n, c = logits.shape
    if c < 1:
        raise ValueError("logits must have at least one class (shape (N, C) with C >= 1)")
    eps = real(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {eps}")
    scale, w, ignore = _class_setup(logits, "logits", reduction, weight, ignore_index)
    kept = None
    if _is_class_index(target):
        kept = _class_targets(target, n, c, ignore)
        if reduction == "mean":
            scale = _class_mean_scale(target, kept, w)
        t = np.zeros((n, c))
        t[np.flatnonzero(kept), target[kept]] = 1.0
        tsum = np.ones((n, 1))  # one-hot rows (smoothed or not) sum to 1 by definition
    elif target.dtype.kind == "f":
        t = _probabilities(target, logits, ignore_index)
        tsum = None
    else:
        raise TypeError(f"target must be int32/int64 class indices or float probabilities, got {target.dtype}")
    t = (1.0 - eps) * t + eps / c if eps else t
    if w is not None:
        t = t * w
    if tsum is None or w is not None:
        tsum = np.sum(t, axis=1, keepdims=True)
    m = np.max(logits, axis=1, keepdims=True)
    e = np.exp(logits - m)  # in the input dtype, like the compiled kernel
    s = np.sum(e, axis=1, keepdims=True, dtype=np.float64)
    lse = m + np.log(s)
    logp = logits - lse
    rows = -np.sum(t * logp, axis=1)
    grad = (e * (1.0 / s) * tsum - t) * scale
    if kept is not None and not kept.all():
        rows[~kept] = 0.0
        grad[~kept] = 0.0
    return _reduced(rows, scale, reduction, logits.dtype), grad.astype(logits.dtype)


def nll_loss(logp, target, reduction="mean", weight=None, ignore_index=-100):
    """-w[t_i] * logp[i, t_i] over the N rows of (N, C) logp, summed, or divided by the sum
    of w[t_i] over the rows not ignored for 'mean' (torch.nn.functional.nll_loss; without
    weight w = 1). grad = -w[t_i] / that sum (or -w[t_i]) at (i, t_i), 0 elsewhere. target:
    int32/int64 class indices (N,), each in [0, C) or equal to ignore_index (a row with
    loss 0 and gradient 0). 'none': the (N,) row losses and the undivided gradient."""
    float_array(logp, "logp")
    check_ndim(logp, 2, "logp")
    n, c = logp.shape
    scale, w, ignore = _class_setup(logp, "logp", reduction, weight, ignore_index)
    if not _is_class_index(target):
        raise TypeError(f"target must be int32/int64 class indices, got {target.dtype}")
    kept = _class_targets(target, n, c, ignore)
    if reduction == "mean":
        scale = _class_mean_scale(target, kept, w)
    rows, cls = np.flatnonzero(kept), target[kept]
    grad = np.zeros_like(logp)
    if w is None:
        picked = logp[rows, cls]
        grad[rows, cls] = logp.dtype.type(-scale)
    else:
        picked = logp[rows, cls] * w[cls]  # w_{t_i} logp[i, t_i] in float64
        grad[rows, cls] = -(w[cls] * scale)
    if reduction == "none":
        loss = np.zeros(n, logp.dtype)
        loss[rows] = -picked
        return loss, grad
    return -float(np.sum(picked, dtype=np.float64)) * scale, grad


# ---- binary cross-entropy --------------------------------------------------------------

def binary_cross_entropy_with_logits(logits, target, reduction="mean", weight=None,
                                     pos_weight=None):
    """(1 - y) * x - log(sigmoid(x)) in the stable form max(x, 0) - x*y + log1p(exp(-|x|));
    grad = (sigmoid(x) - y) / n (torch.nn.functional.binary_cross_entropy_with_logits).

    pos_weight p (logits' shape and dtype; the caller broadcasts torch's): the term is
    (1 - y) x + (1 + (p - 1) y) * softplus(-x), torch's -[p y log sigmoid(x) +
    (1 - y) log(1 - sigmoid(x))], grad (1 + (p - 1) y) sigmoid(x) - p y. weight (same
    shape and dtype) multiplies each term and its gradient. 'mean' divides by n.
    """
    float_array(logits, "logits")
    like(target, "target", logits, "logits")
    _optional_like(weight, "weight", logits, "logits")
    _optional_like(pos_weight, "pos_weight", logits, "logits")
    scale = reduction_divisor(reduction, logits.size)
    x, y = logits.astype(np.float64), target.astype(np.float64)
    e = np.exp(-np.abs(x))
    sig = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if pos_weight is None:
        terms = np.maximum(x, 0.0) - x * y + np.log1p(e)
        grad = (sig - y) * scale
    else:
        p = pos_weight.astype(np.float64)
        lw = 1.0 + (p - 1.0) * y
        terms = (1.0 - y) * x + lw * (np.maximum(-x, 0.0) + np.log1p(e))
        grad = (lw * sig - p * y) * scale
    terms, grad = _weighted(terms, grad, weight)
    return _reduced(terms, scale, reduction, logits.dtype), grad.astype(logits.dtype)


def binary_cross_entropy(prob, target, reduction="mean", weight=None):
    """-(y * max(log p, -100) + (1 - y) * max(log(1 - p), -100)) (torch's clamp);
    grad = (1/n) * (p - y) / max(p * (1 - p), 1e-12). prob outside [0, 1] raises ValueError
    (as torch does), NaN propagates. weight (prob's shape and dtype; the caller broadcasts
    torch's) multiplies each term and its gradient."""
    float_array(prob, "prob")
    like(target, "target", prob, "prob")
    _optional_like(weight, "weight", prob, "prob")
    bad = np.flatnonzero((prob < 0) | (prob > 1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"prob[{i}] = {float(prob.flat[i])} is outside [0, 1]")
    scale = reduction_divisor(reduction, prob.size)
    p, y = prob.astype(np.float64), target.astype(np.float64)
    with np.errstate(divide="ignore"):
        lp = np.maximum(np.log(p), LOG_CLAMP)
        lq = np.maximum(np.log(1.0 - p), LOG_CLAMP)
    terms = -(y * lp + (1.0 - y) * lq)
    grad = scale * (p - y) / np.maximum((1.0 - p) * p, BCE_EPS)
    terms, grad = _weighted(terms, grad, weight)
    return _reduced(terms, scale, reduction, prob.dtype), grad.astype(prob.dtype)


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
