# cython: language_level=3
"""Losses with their gradients, and L1/L2 penalties (same names, signatures and
errors as cygrad.reference.losses; formulas of torch.nn.functional).

Each returns (loss: float, grad). Terms are formed and summed in float64. A sum
over elements is cut into fixed SUM_BLOCK-element blocks, each summed serially
(by one thread), and the block sums are added in block order; cross_entropy and
nll_loss sum their per-row losses in row order. So the loss is bitwise identical for
any thread count.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, fabs, log, log1p
from libc.stdlib cimport free, malloc

from cygrad._runtime cimport num_threads
from cygrad.kernels._checks cimport check_ndim, float_array, same_dtype
from cygrad.kernels._elementwise cimport (PAR_MIN_MEDIUM, PAR_MIN_TRANSCENDENTAL, SUM_BLOCK, like,
                                          new_like)
from cygrad.kernels._rowmath cimport exp_sum, row_max
from cygrad.kernels._scalars cimport nonneg, real, reduction_divisor

cnp.import_array()

cdef enum Op:
    MSE, BCE_LOGITS, BCE, L1, L2

# torch's binary_cross_entropy clamps log() at -100 and divides its gradient by
# max(p * (1 - p), 1e-12), its 1e-12 being a float32 constant
cdef double LOG_CLAMP = -100.0
cdef double BCE_EPS = <float>1e-12


cdef double _block(int op, const floating *a, const floating *b, floating *g, Py_ssize_t n,
                   double scale) noexcept nogil:
    """Sum of the loss terms of one block; writes the block's gradient."""
    cdef Py_ssize_t i
    cdef double s = 0.0, x, y, e, sig, lp, lq, d
    cdef double acc[4]
    cdef floating d0, d1, d2, d3, one = 1, zero = 0, w, sg
    cdef floating gs = <floating>scale  # torch rounds the Python scale to the dtype
    acc[0] = acc[1] = acc[2] = acc[3] = 0.0
    if op == MSE:
        # 4 running sums (a fixed interleave, so the order never varies): one
        # dependent add per element would cost 4 cycles each
        for i in range(0, n - n % 4, 4):
            d0 = a[i] - b[i]
            d1 = a[i + 1] - b[i + 1]
            d2 = a[i + 2] - b[i + 2]
            d3 = a[i + 3] - b[i + 3]
            acc[0] += <double>d0 * <double>d0
            acc[1] += <double>d1 * <double>d1
            acc[2] += <double>d2 * <double>d2
            acc[3] += <double>d3 * <double>d3
            g[i] = gs * d0
            g[i + 1] = gs * d1
            g[i + 2] = gs * d2
            g[i + 3] = gs * d3
        for i in range(n - n % 4, n):
            d0 = a[i] - b[i]
            s += <double>d0 * <double>d0
            g[i] = gs * d0
    elif op == BCE_LOGITS:
        for i in range(n):
            x = a[i]
            y = b[i]
            e = exp(-fabs(x))
            s += ((x if x > 0.0 else 0.0) - x * y) + log1p(e)
            sig = 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)
            g[i] = <floating>((sig - y) * scale)
    elif op == BCE:
        for i in range(n):
            x = a[i]
            y = b[i]
            lp = log(x)
            lq = log(1.0 - x)
            lp = LOG_CLAMP if lp < LOG_CLAMP else lp  # NaN stays NaN
            lq = LOG_CLAMP if lq < LOG_CLAMP else lq
            s += -(y * lp + (1.0 - y) * lq)
            d = (1.0 - x) * x
            d = BCE_EPS if d < BCE_EPS else d
            g[i] = <floating>(scale * (x - y) / d)  # torch: grad_output * (p - y) / d
    elif op == L1:  # |a - b| (l1_loss), or |a| (l1_penalty: b is NULL)
        for i in range(0, n - n % 4, 4):
            d0 = a[i] - b[i] if b != NULL else a[i]
            d1 = a[i + 1] - b[i + 1] if b != NULL else a[i + 1]
            d2 = a[i + 2] - b[i + 2] if b != NULL else a[i + 2]
            d3 = a[i + 3] - b[i + 3] if b != NULL else a[i + 3]
            acc[0] += fabs(<double>d0)
            acc[1] += fabs(<double>d1)
            acc[2] += fabs(<double>d2)
            acc[3] += fabs(<double>d3)
        for i in range(n - n % 4, n):
            d0 = a[i] - b[i] if b != NULL else a[i]
            s += fabs(<double>d0)
        for i in range(n):
            w = a[i] - b[i] if b != NULL else a[i]
            sg = one if w > zero else (-one if w < zero else w)  # sign, 0 and NaN kept
            g[i] = gs * sg
    elif op == L2:
        for i in range(0, n - n % 4, 4):
            acc[0] += <double>a[i] * <double>a[i]
            acc[1] += <double>a[i + 1] * <double>a[i + 1]
            acc[2] += <double>a[i + 2] * <double>a[i + 2]
            acc[3] += <double>a[i + 3] * <double>a[i + 3]
        for i in range(n - n % 4, n):
            s += <double>a[i] * <double>a[i]
        for i in range(n):
            g[i] = gs * a[i]
    return s + ((acc[0] + acc[1]) + (acc[2] + acc[3]))


cdef double _blocked_sum(int op, const floating *a, const floating *b, floating *g, Py_ssize_t n,
                         double scale, double *part) noexcept nogil:
    """Sum over fixed blocks (in parallel when large), then the block sums in order."""
    cdef Py_ssize_t nb = (n + SUM_BLOCK - 1) // SUM_BLOCK, k, lo, hi
    cdef Py_ssize_t par_min = PAR_MIN_TRANSCENDENTAL if (op == BCE or op == BCE_LOGITS) else PAR_MIN_MEDIUM
    cdef int nt = num_threads()
    cdef double total = 0.0
    if nt < 2 or n < par_min:
        for k in range(nb):
            lo = k * SUM_BLOCK
            hi = lo + SUM_BLOCK if lo + SUM_BLOCK < n else n
            part[k] = _block(op, a + lo, b + lo if b != NULL else NULL, g + lo, hi - lo, scale)
    else:
        for k in prange(nb, num_threads=nt, schedule="static"):
            lo = k * SUM_BLOCK
            hi = lo + SUM_BLOCK if lo + SUM_BLOCK < n else n
            part[k] = _block(op, a + lo, b + lo if b != NULL else NULL, g + lo, hi - lo, scale)
    for k in range(nb):
        total += part[k]
    return total


cdef double _run(int op, object a, object b, cnp.ndarray g, int t, double scale) except? -1.0:
    """Run op over all elements; returns the unscaled sum of the loss terms."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(g)
    cdef Py_ssize_t nb = (n + SUM_BLOCK - 1) // SUM_BLOCK
    cdef double stack_part[64]
    cdef double *part = &stack_part[0] if nb <= 64 else <double *>malloc(nb * sizeof(double))
    cdef double total
    cdef void *pa = cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef void *pb = cnp.PyArray_DATA(<cnp.ndarray>b) if b is not None else NULL
    cdef void *pg = cnp.PyArray_DATA(g)
    if part == NULL:
        raise MemoryError("could not allocate the block sums")
    with nogil:
        if t == cnp.NPY_FLOAT:
            total = _blocked_sum[float](op, <float *>pa, <float *>pb, <float *>pg, n, scale, part)
        else:
            total = _blocked_sum[double](op, <double *>pa, <double *>pb, <double *>pg, n, scale, part)
    if part != &stack_part[0]:
        free(part)
    return total


cdef tuple _pair_loss(int op, object a, str a_name, object b, str b_name, object reduction):
    cdef int t = float_array(a, a_name)
    like(b, t, a, b_name, a_name)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>a)
    cdef double scale = reduction_divisor(reduction, n)
    cdef cnp.ndarray g = new_like(a, t)
    if op == MSE:
        return _run(op, a, b, g, t, 2.0 * scale) * scale, g
    return _run(op, a, b, g, t, scale) * scale, g


def mse_loss(pred, target, reduction="mean"):
    """mean/sum of (pred - target)^2; grad = norm * (pred - target), norm = 2/n or 2 (as torch)."""
    return _pair_loss(MSE, pred, "pred", target, "target", reduction)


def l1_loss(pred, target, reduction="mean"):
    """mean/sum of |pred - target|; grad = sign(pred - target) / n or sign(pred - target),
    sign(0) = 0, NaN propagates (torch.nn.functional.l1_loss)."""
    return _pair_loss(L1, pred, "pred", target, "target", reduction)


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """(1 - y) * x - log(sigmoid(x)) in the stable form max(x, 0) - x*y + log1p(exp(-|x|));
    grad = (sigmoid(x) - y) / n (torch.nn.functional.binary_cross_entropy_with_logits)."""
    return _pair_loss(BCE_LOGITS, logits, "logits", target, "target", reduction)


cdef Py_ssize_t _first_outside_unit(const floating *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] < 0 or p[i] > 1:
            return i
    return -1


def binary_cross_entropy(prob, target, reduction="mean"):
    """-(y * max(log p, -100) + (1 - y) * max(log(1 - p), -100)) (torch's clamp);
    grad = (1/n) * (p - y) / max(p * (1 - p), 1e-12). prob outside [0, 1] raises ValueError
    (as torch does), NaN propagates."""
    cdef int t = float_array(prob, "prob")
    like(target, t, prob, "target", "prob")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>prob), bad
    cdef void *pp = cnp.PyArray_DATA(<cnp.ndarray>prob)
    with nogil:
        if t == cnp.NPY_FLOAT:
            bad = _first_outside_unit[float](<float *>pp, n)
        else:
            bad = _first_outside_unit[double](<double *>pp, n)
    if bad >= 0:
        raise ValueError(f"prob[{bad}] = {float(prob.reshape(-1)[bad])} is outside [0, 1]")
    return _pair_loss(BCE, prob, "prob", target, "target", reduction)


def l1_penalty(w, lam):
    """(lam * sum|w|, lam * sign(w)); sign(0) = 0. lam >= 0."""
    cdef int t = float_array(w, "w")
    cdef double l = nonneg(lam, "lam")
    cdef cnp.ndarray g = new_like(w, t)
    return l * _run(L1, w, None, g, t, l), g


def l2_penalty(w, lam):
    """(0.5 * lam * sum w^2, lam * w). lam >= 0."""
    cdef int t = float_array(w, "w")
    cdef double l = nonneg(lam, "lam")
    cdef cnp.ndarray g = new_like(w, t)
    return 0.5 * l * _run(L2, w, None, g, t, l), g


# ---- cross_entropy: fused log-softmax + loss + gradient, one row at a time -----------

cdef inline long long _class_at(const void *tgt, int tkind, Py_ssize_t i) noexcept nogil:
    """target[i] of an int32 (tkind 32) or int64 (tkind 64) class-index target."""
    return (<const int *>tgt)[i] if tkind == 32 else (<const long long *>tgt)[i]


cdef double _ce_row(const floating *z, floating *g, Py_ssize_t c, Py_ssize_t cls,
                    const floating *tp, double eps, double scale) noexcept nogil:
    """Loss of one row, -sum_j t'_j log_softmax_j, and its gradient
    (softmax * sum t' - t') * scale written to g. Class target: cls >= 0, tp NULL;
    probability target: tp. t' = (1 - eps) t + eps / C when eps != 0."""
    cdef floating m = row_max(z, c)
    cdef double s = exp_sum(z, m, g, c)  # g holds exp(z - m)
    cdef double lse = m + log(s), inv = 1.0 / s, off = eps / c, keep = 1.0 - eps
    cdef double loss = 0.0, tsum = 1.0, tj
    cdef Py_ssize_t j
    if tp != NULL:
        tsum = 0.0
        for j in range(c):
            tsum += keep * tp[j] + off if eps != 0.0 else tp[j]
    for j in range(c):
        if tp != NULL:
            tj = keep * tp[j] + off if eps != 0.0 else tp[j]
        else:
            tj = keep * (j == cls) + off if eps != 0.0 else <double>(j == cls)
        loss += tj * (z[j] - lse)
        g[j] = <floating>((g[j] * inv * tsum - tj) * scale)
    return -loss


cdef void _ce_rows(const floating *z, floating *g, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                   const void *tgt, int tkind, const floating *tp, double eps, double scale,
                   double *row_loss) noexcept nogil:
    cdef Py_ssize_t r, cls = -1
    for r in range(r0, r1):
        if tkind:
            cls = _class_at(tgt, tkind, r)
        row_loss[r] = _ce_row(z + r * c, g + r * c, c, cls, tp + r * c if tp != NULL else NULL,
                              eps, scale)


cdef double _ce(const floating *z, floating *g, Py_ssize_t n, Py_ssize_t c, const void *tgt,
                int tkind, const floating *tp, double eps, double scale,
                double *row_loss) noexcept nogil:
    cdef int nt = num_threads()
    cdef Py_ssize_t step, k, lo, hi
    cdef double total = 0.0
    if nt < 2 or n * c < PAR_MIN_TRANSCENDENTAL or n < 2:
        _ce_rows(z, g, 0, n, c, tgt, tkind, tp, eps, scale, row_loss)
    else:
        step = (n + nt - 1) // nt
        for k in prange(nt, num_threads=nt, schedule="static"):
            lo = k * step
            hi = lo + step if lo + step < n else n
            if lo < hi:
                _ce_rows(z, g, lo, hi, c, tgt, tkind, tp, eps, scale, row_loss)
    for k in range(n):  # row order, whatever the threads
        total += row_loss[k]
    return total


cdef Py_ssize_t _first_bad_class(const void *tgt, int tkind, Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t i
    cdef long long v
    for i in range(n):
        v = _class_at(tgt, tkind, i)
        if v < 0 or v >= c:
            return i
    return -1


cdef int _index_kind(object target) except -1:
    """32 or 64 for native int32/int64 class indices, 0 for any other ndarray."""
    if not cnp.PyArray_Check(target):
        raise TypeError(f"target must be a numpy.ndarray, got {type(target).__name__}")
    cdef int tt = cnp.PyArray_TYPE(<cnp.ndarray>target)
    if (tt == cnp.NPY_INT32 or tt == cnp.NPY_INT64) and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>target):
        return 32 if tt == cnp.NPY_INT32 else 64
    return 0


cdef const void *_class_targets(object target, int tkind, Py_ssize_t n, Py_ssize_t c) except? NULL:
    """The data of a class-index target (of _index_kind tkind), checked: shape (n,),
    C-contiguous, every index in [0, c)."""
    cdef Py_ssize_t bad
    if cnp.PyArray_NDIM(<cnp.ndarray>target) != 1 or cnp.PyArray_DIMS(<cnp.ndarray>target)[0] != n:
        raise ValueError(f"class-index target must have shape ({n},), got {target.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>target):
        raise ValueError("target must be C-contiguous (use numpy.ascontiguousarray)")
    cdef const void *ptgt = cnp.PyArray_DATA(<cnp.ndarray>target)
    with nogil:
        bad = _first_bad_class(ptgt, tkind, n, c)
    if bad >= 0:
        raise ValueError(f"target[{bad}] = {int(target[bad])} is out of range [0, {c})")
    return ptgt


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """torch.nn.functional.cross_entropy on (N, C) logits, fused with its gradient.

    target: int32/int64 class indices (N,) in [0, C) (no ignore_index), or float
    class probabilities (N, C) of the logits' dtype. With smoothing eps the target
    distribution is t' = (1 - eps) * t + eps / C. loss_i = -sum_c t'_c log_softmax_c,
    grad_i = softmax * sum_c t'_c - t' (divided by N for 'mean'). Stable for any
    finite logits (the row max is subtracted before exp).
    """
    cdef int t = float_array(logits, "logits")
    check_ndim(logits, 2, "logits")
    cdef cnp.npy_intp *d = cnp.PyArray_DIMS(<cnp.ndarray>logits)
    cdef Py_ssize_t n = d[0], c = d[1]
    if c < 1:
        raise ValueError("logits must have at least one class (shape (N, C) with C >= 1)")
    cdef double eps = real(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {eps}")
    cdef double scale = reduction_divisor(reduction, n)
    cdef int tkind = _index_kind(target)
    cdef const void *ptgt = NULL
    cdef void *ptp = NULL
    if tkind:
        ptgt = _class_targets(target, tkind, n, c)
    elif cnp.PyArray_ISFLOAT(<cnp.ndarray>target):
        same_dtype(float_array(target, "target"), t, target, "target", "logits")
        if target.shape != logits.shape:
            raise ValueError(f"probability target must have shape {logits.shape}, got {target.shape}")
        ptp = cnp.PyArray_DATA(<cnp.ndarray>target)
    else:
        raise TypeError(f"target must be int32/int64 class indices or float probabilities, "
                        f"got {target.dtype}")
    cdef cnp.ndarray g = new_like(logits, t)
    cdef double stack_rows[256]
    cdef double *row_loss = &stack_rows[0] if n <= 256 else <double *>malloc(n * sizeof(double))
    if row_loss == NULL:
        raise MemoryError("could not allocate the row losses")
    cdef void *pz = cnp.PyArray_DATA(<cnp.ndarray>logits)
    cdef void *pg = cnp.PyArray_DATA(g)
    cdef double total
    with nogil:
        if t == cnp.NPY_FLOAT:
            total = _ce[float](<float *>pz, <float *>pg, n, c, ptgt, tkind, <float *>ptp, eps,
                               scale, row_loss)
        else:
            total = _ce[double](<double *>pz, <double *>pg, n, c, ptgt, tkind, <double *>ptp, eps,
                                scale, row_loss)
    if row_loss != &stack_rows[0]:
        free(row_loss)
    return total * scale, g


# ---- nll_loss: cross_entropy's second half, on log-probabilities ----------------------

cdef double _nll(const floating *logp, floating *g, Py_ssize_t n, Py_ssize_t c,
                 const void *tgt, int tkind, floating neg_scale) noexcept nogil:
    """sum_i logp[i, target_i] in row order; writes -scale at (i, target_i) of g (zeros)."""
    cdef Py_ssize_t i, k
    cdef double total = 0.0
    for i in range(n):
        k = i * c + _class_at(tgt, tkind, i)
        total += logp[k]
        g[k] = neg_scale
    return total


def nll_loss(logp, target, reduction="mean"):
    """-logp[i, target_i] averaged (or summed) over the N rows of (N, C) logp; grad = -1/N
    (or -1) at (i, target_i), 0 elsewhere (torch.nn.functional.nll_loss, no weight or
    ignore_index). target: int32/int64 class indices (N,) in [0, C)."""
    cdef int t = float_array(logp, "logp")
    check_ndim(logp, 2, "logp")
    cdef cnp.npy_intp *d = cnp.PyArray_DIMS(<cnp.ndarray>logp)
    cdef Py_ssize_t n = d[0], c = d[1]
    cdef double scale = reduction_divisor(reduction, n)
    cdef int tkind = _index_kind(target)
    if not tkind:
        raise TypeError(f"target must be int32/int64 class indices, got {target.dtype}")
    cdef const void *ptgt = _class_targets(target, tkind, n, c)
    cdef cnp.ndarray g = <cnp.ndarray>cnp.PyArray_ZEROS(2, d, t, 0)
    cdef void *pz = cnp.PyArray_DATA(<cnp.ndarray>logp)
    cdef void *pg = cnp.PyArray_DATA(g)
    cdef double total
    with nogil:
        if t == cnp.NPY_FLOAT:
            total = _nll[float](<float *>pz, <float *>pg, n, c, ptgt, tkind, <float>-scale)
        else:
            total = _nll[double](<double *>pz, <double *>pg, n, c, ptgt, tkind, -scale)
    return -total * scale, g
