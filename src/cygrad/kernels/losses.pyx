# cython: language_level=3
"""Losses with their gradients, and L1/L2 penalties (same names, signatures and
errors as cygrad.reference.losses; formulas, arguments and defaults of
torch.nn.functional).

Each loss returns (loss, grad). reduction 'mean' / 'sum': loss a float, grad =
d loss / d input. reduction 'none': loss the per-element losses (per-row for
cross_entropy and nll_loss) in the input's dtype, grad = d (sum of them) / d input.
Terms are formed and summed in float64. A sum over elements is cut into fixed
SUM_BLOCK-element blocks, each summed serially (by one thread), and the block sums
are added in block order; cross_entropy and nll_loss sum their per-row losses in row
order. So every result is bitwise identical for any thread count.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport NAN, exp, fabs, log, log1p
from libc.stdlib cimport free, malloc
from libc.string cimport memset

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


# ---- one element's loss term and its gradient (times scale) ---------------------------

cdef inline double _logits_term(double x, double y, double scale, double *g) noexcept nogil:
    """x - x*y - log sigmoid(x) in the stable form max(x, 0) - x*y + log1p(exp(-|x|));
    *g = (sigmoid(x) - y) * scale."""
    cdef double e = exp(-fabs(x))
    cdef double sig = 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)
    g[0] = (sig - y) * scale
    return ((x if x > 0.0 else 0.0) - x * y) + log1p(e)


cdef inline double _logits_pos_term(double x, double y, double p, double scale,
                                    double *g) noexcept nogil:
    """torch's pos_weight form (1 - y) x + lw * softplus(-x), lw = 1 + (p - 1) y, with
    softplus(-x) = -log sigmoid(x) = max(-x, 0) + log1p(exp(-|x|));
    *g = (lw * sigmoid(x) - p*y) * scale."""
    cdef double e = exp(-fabs(x))
    cdef double sig = 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)
    cdef double lw = 1.0 + (p - 1.0) * y
    g[0] = (lw * sig - p * y) * scale
    return (1.0 - y) * x + lw * ((-x if x < 0.0 else 0.0) + log1p(e))


cdef inline double _bce_term(double x, double y, double scale, double *g) noexcept nogil:
    """-(y * max(log p, -100) + (1 - y) * max(log(1 - p), -100)) at p = x;
    *g = scale * (x - y) / max(x (1 - x), 1e-12) (torch's clamps)."""
    cdef double lp = log(x), lq = log(1.0 - x), d = (1.0 - x) * x
    lp = LOG_CLAMP if lp < LOG_CLAMP else lp  # NaN stays NaN
    lq = LOG_CLAMP if lq < LOG_CLAMP else lq
    d = BCE_EPS if d < BCE_EPS else d
    g[0] = scale * (x - y) / d  # torch: grad_output * (p - y) / d
    return -(y * lp + (1.0 - y) * lq)


cdef inline double _term(int op, floating x, floating y, const floating *pw, Py_ssize_t i,
                         double scale, double *g) noexcept nogil:
    """Loss term of element i for op (pw: pos_weight of BCE_LOGITS, or NULL); *g its
    derivative times scale. The difference of MSE/L1 is formed in the dtype, as torch."""
    cdef floating d
    if op == MSE:
        d = x - y
        g[0] = scale * d
        return <double>d * <double>d
    if op == L1:
        d = x - y
        g[0] = scale * (1.0 if d > 0 else (-1.0 if d < 0 else <double>d))  # sign; 0, NaN kept
        return fabs(<double>d)
    if op == BCE:
        return _bce_term(x, y, scale, g)
    if pw != NULL:
        return _logits_pos_term(x, y, pw[i], scale, g)
    return _logits_term(x, y, scale, g)


# ---- pairwise losses: fixed blocks, summed in block order -----------------------------

cdef double _block(int op, const floating *a, const floating *b, floating *g, Py_ssize_t n,
                   double scale) noexcept nogil:
    """Sum of the loss terms of one block; writes the block's gradient."""
    cdef Py_ssize_t i
    cdef double s = 0.0, gd
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
            s += _logits_term(a[i], b[i], scale, &gd)
            g[i] = <floating>gd
    elif op == BCE:
        for i in range(n):
            s += _bce_term(a[i], b[i], scale, &gd)
            g[i] = <floating>gd
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


cdef double _block_each(int op, const floating *a, const floating *b, const floating *w,
                        const floating *pw, floating *g, floating *out, Py_ssize_t n,
                        double scale) noexcept nogil:
    """_block one element at a time, for the options: each term (and its gradient) times
    w[i] when w is given, written to out[i] when out is given (reduction 'none')."""
    cdef Py_ssize_t i
    cdef double s = 0.0, l, gd
    for i in range(n):
        l = _term(op, a[i], b[i], pw, i, scale, &gd)
        if w != NULL:
            l = l * w[i]
            gd = gd * w[i]
        s += l
        if out != NULL:
            out[i] = <floating>l
        g[i] = <floating>gd
    return s


cdef struct Extra:
    const void *w    # weight of each element, or NULL
    const void *pw   # pos_weight of each element (BCE_LOGITS), or NULL
    void *out        # per-element losses (reduction 'none'), or NULL


cdef inline double _block_any(int op, const floating *a, const floating *b, floating *g,
                              Py_ssize_t lo, Py_ssize_t hi, double scale,
                              const Extra *x) noexcept nogil:
    """Block [lo, hi): the fast _block without options, else _block_each."""
    cdef const floating *bb = b + lo if b != NULL else NULL
    if x.w == NULL and x.pw == NULL and x.out == NULL:
        return _block(op, a + lo, bb, g + lo, hi - lo, scale)
    return _block_each(op, a + lo, bb, <const floating *>x.w + lo if x.w != NULL else NULL,
                       <const floating *>x.pw + lo if x.pw != NULL else NULL, g + lo,
                       <floating *>x.out + lo if x.out != NULL else NULL, hi - lo, scale)


cdef double _blocked_sum(int op, const floating *a, const floating *b, floating *g, Py_ssize_t n,
                         double scale, const Extra *x, double *part) noexcept nogil:
    """Sum over fixed blocks (in parallel when large), then the block sums in order."""
    cdef Py_ssize_t nb = (n + SUM_BLOCK - 1) // SUM_BLOCK, k, lo, hi
    cdef Py_ssize_t par_min = PAR_MIN_TRANSCENDENTAL if (op == BCE or op == BCE_LOGITS) else PAR_MIN_MEDIUM
    cdef int nt = num_threads()
    cdef double total = 0.0
    if nt < 2 or n < par_min:
        for k in range(nb):
            lo = k * SUM_BLOCK
            hi = lo + SUM_BLOCK if lo + SUM_BLOCK < n else n
            part[k] = _block_any(op, a, b, g, lo, hi, scale, x)
    else:
        for k in prange(nb, num_threads=nt, schedule="static"):
            lo = k * SUM_BLOCK
            hi = lo + SUM_BLOCK if lo + SUM_BLOCK < n else n
            part[k] = _block_any(op, a, b, g, lo, hi, scale, x)
    for k in range(nb):
        total += part[k]
    return total


cdef inline const void *_data_or_null(object x):
    return cnp.PyArray_DATA(<cnp.ndarray>x) if x is not None else NULL


cdef double _run(int op, object a, object b, cnp.ndarray g, int t, double scale,
                 object w=None, object pw=None, object out=None) except? -1.0:
    """Run op over all elements; returns the unscaled sum of the loss terms."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(g)
    cdef Py_ssize_t nb = (n + SUM_BLOCK - 1) // SUM_BLOCK
    cdef double stack_part[64]
    cdef double *part = &stack_part[0] if nb <= 64 else <double *>malloc(nb * sizeof(double))
    cdef double total
    cdef void *pa = cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef const void *pb = _data_or_null(b)
    cdef void *pg = cnp.PyArray_DATA(g)
    cdef Extra x
    x.w = _data_or_null(w)
    x.pw = _data_or_null(pw)
    x.out = <void *>_data_or_null(out)
    if part == NULL:
        raise MemoryError("could not allocate the block sums")
    with nogil:
        if t == cnp.NPY_FLOAT:
            total = _blocked_sum[float](op, <float *>pa, <const float *>pb, <float *>pg, n, scale,
                                        &x, part)
        else:
            total = _blocked_sum[double](op, <double *>pa, <const double *>pb, <double *>pg, n,
                                         scale, &x, part)
    if part != &stack_part[0]:
        free(part)
    return total


cdef inline int _optional_like(object x, int t, object ref, str name, str ref_name) except -1:
    """x is None, or a float array of ref's dtype and shape."""
    if x is not None:
        like(x, t, ref, name, ref_name)
    return 0


cdef tuple _pair_loss(int op, object a, str a_name, object b, str b_name, object reduction,
                      object weight=None, object pos_weight=None):
    cdef int t = float_array(a, a_name)
    like(b, t, a, b_name, a_name)
    _optional_like(weight, t, a, "weight", a_name)
    _optional_like(pos_weight, t, a, "pos_weight", a_name)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>a)
    cdef double scale = reduction_divisor(reduction, n)
    cdef cnp.ndarray g = new_like(a, t)
    cdef cnp.ndarray out = new_like(a, t) if reduction == "none" else None
    # MSE's gradient is 2 (pred - target), times the loss's scale
    cdef double total = _run(op, a, b, g, t, 2.0 * scale if op == MSE else scale, weight,
                             pos_weight, out)
    if out is not None:
        return out, g
    return total * scale, g


def mse_loss(pred, target, reduction="mean"):
    """mean/sum of (pred - target)^2; grad = norm * (pred - target), norm = 2/n or 2 (as torch).
    reduction='none': the squares and 2 (pred - target)."""
    return _pair_loss(MSE, pred, "pred", target, "target", reduction)


def l1_loss(pred, target, reduction="mean"):
    """mean/sum of |pred - target|; grad = sign(pred - target) / n or sign(pred - target),
    sign(0) = 0, NaN propagates (torch.nn.functional.l1_loss). reduction='none': each
    |pred - target| and its sign."""
    return _pair_loss(L1, pred, "pred", target, "target", reduction)


def binary_cross_entropy_with_logits(logits, target, reduction="mean", weight=None,
                                     pos_weight=None):
    """(1 - y) * x - log(sigmoid(x)) in the stable form max(x, 0) - x*y + log1p(exp(-|x|));
    grad = (sigmoid(x) - y) / n (torch.nn.functional.binary_cross_entropy_with_logits).

    pos_weight p (logits' shape and dtype; the caller broadcasts torch's): the term is
    (1 - y) x + (1 + (p - 1) y) * softplus(-x), torch's -[p y log sigmoid(x) +
    (1 - y) log(1 - sigmoid(x))], grad (1 + (p - 1) y) sigmoid(x) - p y. weight (same
    shape and dtype) multiplies each term and its gradient. 'mean' divides by n.
    """
    return _pair_loss(BCE_LOGITS, logits, "logits", target, "target", reduction, weight,
                      pos_weight)


cdef Py_ssize_t _first_outside_unit(const floating *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] < 0 or p[i] > 1:
            return i
    return -1


def binary_cross_entropy(prob, target, reduction="mean", weight=None):
    """-(y * max(log p, -100) + (1 - y) * max(log(1 - p), -100)) (torch's clamp);
    grad = (1/n) * (p - y) / max(p * (1 - p), 1e-12). prob outside [0, 1] raises ValueError
    (as torch does), NaN propagates. weight (prob's shape and dtype; the caller broadcasts
    torch's) multiplies each term and its gradient."""
    cdef int t = float_array(prob, "prob")
    like(target, t, prob, "target", "prob")
    _optional_like(weight, t, prob, "weight", "prob")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>prob), bad
    cdef void *pp = cnp.PyArray_DATA(<cnp.ndarray>prob)
    with nogil:
        if t == cnp.NPY_FLOAT:
            bad = _first_outside_unit[float](<float *>pp, n)
        else:
            bad = _first_outside_unit[double](<double *>pp, n)
    if bad >= 0:
        raise ValueError(f"prob[{bad}] = {float(prob.reshape(-1)[bad])} is outside [0, 1]")
    return _pair_loss(BCE, prob, "prob", target, "target", reduction, weight)


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


# ---- class-index targets (cross_entropy, nll_loss) ------------------------------------

cdef struct ClassTargets:
    const void *idx       # int32 or int64 class indices (N,); NULL: probability targets
    int kind              # 32 or 64
    bint has_ignore       # False when no int64 equals ignore_index
    long long ignore      # rows whose target equals it are left out
    Py_ssize_t kept       # rows not ignored (set by _class_targets)


cdef inline long long _class_at(const ClassTargets *ct, Py_ssize_t i) noexcept nogil:
    """target[i] of an int32 (kind 32) or int64 (kind 64) class-index target."""
    return (<const int *>ct.idx)[i] if ct.kind == 32 else (<const long long *>ct.idx)[i]


cdef inline bint _ignored(const ClassTargets *ct, long long cls) noexcept nogil:
    return ct.has_ignore and cls == ct.ignore


cdef Py_ssize_t _first_bad_class(ClassTargets *ct, Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    """Index of the first target outside [0, c) and not ignored (-1: none); counts ct.kept."""
    cdef Py_ssize_t i
    cdef long long v
    ct.kept = n
    for i in range(n):
        v = _class_at(ct, i)
        if _ignored(ct, v):
            ct.kept -= 1
        elif v < 0 or v >= c:
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


cdef int _read_ignore_index(object v, ClassTargets *ct) except -1:
    """ignore_index: any int (TypeError otherwise); one outside int64 matches no target."""
    if type(v) is not int:
        import numpy
        if isinstance(v, (bool, numpy.bool_)) or not isinstance(v, (int, numpy.integer)):
            raise TypeError(f"ignore_index must be an int, got {type(v).__name__}")
        v = int(v)
    ct.has_ignore = -2**63 <= v < 2**63
    ct.ignore = v if ct.has_ignore else 0
    return 0


cdef int _class_targets(object target, ClassTargets *ct, Py_ssize_t n, Py_ssize_t c) except -1:
    """Fill ct from a class-index target (ct.kind set), checked: shape (n,), C-contiguous,
    every index in [0, c) or equal to ignore_index; counts the rows kept."""
    cdef Py_ssize_t bad
    if cnp.PyArray_NDIM(<cnp.ndarray>target) != 1 or cnp.PyArray_DIMS(<cnp.ndarray>target)[0] != n:
        raise ValueError(f"class-index target must have shape ({n},), got {target.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>target):
        raise ValueError("target must be C-contiguous (use numpy.ascontiguousarray)")
    ct.idx = cnp.PyArray_DATA(<cnp.ndarray>target)
    with nogil:
        bad = _first_bad_class(ct, n, c)
    if bad >= 0:
        raise ValueError(f"target[{bad}] = {int(target[bad])} is out of range [0, {c})")
    return 0


cdef const void *_class_weight(object weight, int t, object ref, str ref_name,
                               Py_ssize_t c) except? NULL:
    """Data of the class weights (C,) of ref's dtype, or NULL for None."""
    if weight is None:
        return NULL
    same_dtype(float_array(weight, "weight"), t, weight, "weight", ref_name)
    if cnp.PyArray_NDIM(<cnp.ndarray>weight) != 1 or cnp.PyArray_DIMS(<cnp.ndarray>weight)[0] != c:
        raise ValueError(f"weight must have shape ({c},) (one per class), got {weight.shape}")
    return cnp.PyArray_DATA(<cnp.ndarray>weight)


cdef double _kept_weight(const ClassTargets *ct, const floating *w, Py_ssize_t n) noexcept nogil:
    """sum of w[target_i] over the rows not ignored, in row order."""
    cdef Py_ssize_t i
    cdef long long cls
    cdef double total = 0.0
    for i in range(n):
        cls = _class_at(ct, i)
        if not _ignored(ct, cls):
            total += w[cls]
    return total


cdef double _class_mean_scale(const ClassTargets *ct, const void *w, int t, Py_ssize_t n):
    """1 / (sum of the kept rows' class weights; their count without weights): torch's
    'mean' for class targets. NaN when that sum is 0 (as torch: its loss is then 0/0)."""
    cdef double total = <double>ct.kept
    if w != NULL:
        with nogil:
            if t == cnp.NPY_FLOAT:
                total = _kept_weight[float](ct, <const float *>w, n)
            else:
                total = _kept_weight[double](ct, <const double *>w, n)
    return 1.0 / total if total != 0.0 else NAN


cdef object _row_losses(object rows, int t):
    """The per-row float64 losses as the input dtype (reduction 'none')."""
    return rows if t == cnp.NPY_DOUBLE else rows.astype("float32")


# ---- cross_entropy: fused log-softmax + loss + gradient, one row at a time -----------

cdef struct CeArgs:
    const ClassTargets *ct  # class-index targets; ct.idx NULL: probabilities in tp
    const void *tp          # probability targets (N, C), or NULL
    const void *w           # class weights (C,), or NULL
    double eps              # label smoothing
    double scale            # of the gradient


cdef inline double _smoothed(Py_ssize_t j, long long cls, const floating *tp, const floating *w,
                             double eps, double keep, double off) noexcept nogil:
    """t'_j = w_j ((1 - eps) t_j + eps / C): t the probability row tp, or one-hot at cls."""
    cdef double tj
    if tp != NULL:
        tj = keep * tp[j] + off if eps != 0.0 else tp[j]
    else:
        tj = keep * (j == cls) + off if eps != 0.0 else <double>(j == cls)
    return tj * w[j] if w != NULL else tj


cdef double _ce_row(const floating *z, floating *g, Py_ssize_t c, long long cls,
                    const floating *tp, const floating *w, const CeArgs *a) noexcept nogil:
    """Loss of one row, -sum_j t'_j log_softmax_j, and its gradient
    (softmax * sum t' - t') * scale written to g (t' of _smoothed). Class target: cls >= 0,
    tp NULL; probability target: tp."""
    cdef floating m = row_max(z, c)
    cdef double s = exp_sum(z, m, g, c)  # g holds exp(z - m)
    cdef double eps = a.eps, scale = a.scale
    cdef double lse = m + log(s), inv = 1.0 / s, off = eps / c, keep = 1.0 - eps
    cdef double loss = 0.0, tsum = 1.0, tj  # a one-hot row sums to 1, smoothed or not
    cdef Py_ssize_t j
    if tp != NULL or w != NULL:  # summed term by term, as the reference does
        tsum = 0.0
        for j in range(c):
            tsum += _smoothed(j, cls, tp, w, eps, keep, off)
    for j in range(c):
        tj = _smoothed(j, cls, tp, w, eps, keep, off)
        loss += tj * (z[j] - lse)
        g[j] = <floating>((g[j] * inv * tsum - tj) * scale)
    return -loss


cdef void _ce_rows(const floating *z, floating *g, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c,
                   const CeArgs *a, double *row_loss) noexcept nogil:
    """Rows [r0, r1); an ignored row has loss 0 and gradient 0."""
    cdef Py_ssize_t r
    cdef long long cls = -1
    cdef const floating *tp = <const floating *>a.tp
    for r in range(r0, r1):
        if a.ct.idx != NULL:
            cls = _class_at(a.ct, r)
            if _ignored(a.ct, cls):
                row_loss[r] = 0.0
                memset(g + r * c, 0, c * sizeof(floating))
                continue
        row_loss[r] = _ce_row(z + r * c, g + r * c, c, cls, tp + r * c if tp != NULL else NULL,
                              <const floating *>a.w, a)


cdef double _ce(const floating *z, floating *g, Py_ssize_t n, Py_ssize_t c, const CeArgs *a,
                double *row_loss) noexcept nogil:
    cdef int nt = num_threads()
    cdef Py_ssize_t step, k, lo, hi
    cdef double total = 0.0
    if nt < 2 or n * c < PAR_MIN_TRANSCENDENTAL or n < 2:
        _ce_rows(z, g, 0, n, c, a, row_loss)
    else:
        step = (n + nt - 1) // nt
        for k in prange(nt, num_threads=nt, schedule="static"):
            lo = k * step
            hi = lo + step if lo + step < n else n
            if lo < hi:
                _ce_rows(z, g, lo, hi, c, a, row_loss)
    for k in range(n):  # row order, whatever the threads
        total += row_loss[k]
    return total


cdef const void *_probability_target(object target, int t, object logits,
                                     object ignore_index) except? NULL:
    """Data of a float probability target: logits' dtype and shape; ignore_index < 0 (no
    class index can equal it; torch refuses one >= 0)."""
    same_dtype(float_array(target, "target"), t, target, "target", "logits")
    if target.shape != logits.shape:
        raise ValueError(f"probability target must have shape {logits.shape}, got {target.shape}")
    if ignore_index >= 0:
        raise ValueError(f"ignore_index = {ignore_index} applies to class-index targets only: "
                         "with probability targets it must be negative (as torch)")
    return cnp.PyArray_DATA(<cnp.ndarray>target)


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
    and the undivided gradient. Stable for any finite logits (the row max is subtracted
    before exp).
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
    cdef const void *pw = _class_weight(weight, t, logits, "logits", c)
    cdef ClassTargets ct
    ct.idx = NULL
    _read_ignore_index(ignore_index, &ct)
    ct.kind = _index_kind(target)
    cdef CeArgs a
    a.ct, a.tp, a.w, a.eps = &ct, NULL, pw, eps
    if ct.kind:
        _class_targets(target, &ct, n, c)
        if reduction == "mean":
            scale = _class_mean_scale(&ct, pw, t, n)
    elif cnp.PyArray_ISFLOAT(<cnp.ndarray>target):
        a.tp = _probability_target(target, t, logits, ignore_index)
    else:
        raise TypeError(f"target must be int32/int64 class indices or float probabilities, "
                        f"got {target.dtype}")
    cdef cnp.ndarray g = new_like(logits, t)
    cdef cnp.ndarray rows = None
    cdef double stack_rows[256]
    cdef double *row_loss = &stack_rows[0]
    if reduction == "none":
        rows = <cnp.ndarray>cnp.PyArray_EMPTY(1, d, cnp.NPY_DOUBLE, 0)
        row_loss = <double *>cnp.PyArray_DATA(rows)
    elif n > 256:
        row_loss = <double *>malloc(n * sizeof(double))
        if row_loss == NULL:
            raise MemoryError("could not allocate the row losses")
    cdef void *pz = cnp.PyArray_DATA(<cnp.ndarray>logits)
    cdef void *pg = cnp.PyArray_DATA(g)
    cdef double total
    a.scale = scale
    with nogil:
        if t == cnp.NPY_FLOAT:
            total = _ce[float](<float *>pz, <float *>pg, n, c, &a, row_loss)
        else:
            total = _ce[double](<double *>pz, <double *>pg, n, c, &a, row_loss)
    if rows is not None:
        return _row_losses(rows, t), g
    if row_loss != &stack_rows[0]:
        free(row_loss)
    return total * scale, g


# ---- nll_loss: cross_entropy's second half, on log-probabilities ----------------------

cdef double _nll(const floating *logp, floating *g, Py_ssize_t n, Py_ssize_t c,
                 const ClassTargets *ct, const floating *w, double scale,
                 double *row_loss) noexcept nogil:
    """sum_i w_{t_i} logp[i, t_i] over the rows not ignored, in row order; writes
    -w_{t_i} * scale at (i, t_i) of g (zeros), and -w_{t_i} logp[i, t_i] (0 when ignored)
    to row_loss when it is not NULL."""
    cdef Py_ssize_t i, k
    cdef long long cls
    cdef double total = 0.0, wi, term
    for i in range(n):
        cls = _class_at(ct, i)
        if _ignored(ct, cls):
            if row_loss != NULL:
                row_loss[i] = 0.0
            continue
        k = i * c + cls
        wi = w[cls] if w != NULL else 1.0
        term = wi * logp[k]
        total += term
        g[k] = <floating>(-wi * scale)
        if row_loss != NULL:
            row_loss[i] = -term
    return total


def nll_loss(logp, target, reduction="mean", weight=None, ignore_index=-100):
    """-w[t_i] * logp[i, t_i] over the N rows of (N, C) logp, summed, or divided by the sum
    of w[t_i] over the rows not ignored for 'mean' (torch.nn.functional.nll_loss; without
    weight w = 1). grad = -w[t_i] / that sum (or -w[t_i]) at (i, t_i), 0 elsewhere. target:
    int32/int64 class indices (N,), each in [0, C) or equal to ignore_index (a row with
    loss 0 and gradient 0). 'none': the (N,) row losses and the undivided gradient."""
    cdef int t = float_array(logp, "logp")
    check_ndim(logp, 2, "logp")
    cdef cnp.npy_intp *d = cnp.PyArray_DIMS(<cnp.ndarray>logp)
    cdef Py_ssize_t n = d[0], c = d[1]
    cdef double scale = reduction_divisor(reduction, n)
    cdef const void *pw = _class_weight(weight, t, logp, "logp", c)
    cdef ClassTargets ct
    _read_ignore_index(ignore_index, &ct)
    ct.kind = _index_kind(target)
    if not ct.kind:
        raise TypeError(f"target must be int32/int64 class indices, got {target.dtype}")
    _class_targets(target, &ct, n, c)
    if reduction == "mean":
        scale = _class_mean_scale(&ct, pw, t, n)
    cdef cnp.ndarray g = <cnp.ndarray>cnp.PyArray_ZEROS(2, d, t, 0)
    cdef cnp.ndarray rows = None
    cdef double *row_loss = NULL
    if reduction == "none":
        rows = <cnp.ndarray>cnp.PyArray_EMPTY(1, d, cnp.NPY_DOUBLE, 0)
        row_loss = <double *>cnp.PyArray_DATA(rows)
    cdef void *pz = cnp.PyArray_DATA(<cnp.ndarray>logp)
    cdef void *pg = cnp.PyArray_DATA(g)
    cdef double total
    with nogil:
        if t == cnp.NPY_FLOAT:
            total = _nll[float](<float *>pz, <float *>pg, n, c, &ct, <const float *>pw, scale,
                                row_loss)
        else:
            total = _nll[double](<double *>pz, <double *>pg, n, c, &ct, <const double *>pw,
                                 scale, row_loss)
    if rows is not None:
        return _row_losses(rows, t), g
    return -total * scale, g
