# cython: language_level=3
"""Batch normalisation, forward and backward (same names, signatures and errors as
cygrad.reference.norm; the semantics of torch.nn.functional.batch_norm).

x (N, C, *) is viewed as (N, C, L), L the product of the trailing axes: channel c
holds n = N * L values. Statistics are accumulated in float64; the variance takes
two passes (the mean, then the squared deviations, corrected by the sum of the
deviations, which also corrects the mean), never E[x^2] - E[x]^2. The summation
order depends only on the shape:

- strip path (L >= STRIP_MIN): a channel's values, in (N, L) order, are cut into
  BN_BLOCK-value blocks, each summed in the fixed lanes of csrc/cg_norm.h, and the
  block sums are added in block order;
- column path (L < STRIP_MIN = 64, e.g. BatchNorm1d on (N, C)): each column of the
  (N, C * L) matrix is summed over N in row order, and a channel's L column sums
  are added in order.

Threads take whole channels (every pass over a channel runs back to back on one
thread, while the channel is in its caches; on the column path one range of
channels per thread) or, on the strip path with fewer channels than threads can
share evenly, blocks (one parallel loop per pass). Either way each sum is formed in
the same order, so results are bitwise identical for any thread count.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.stdlib cimport calloc, free

from cygrad._runtime cimport num_threads
from cygrad.kernels._checks cimport (array_data, check_ndim, check_writeable, float_array,
                                     same_dtype)
from cygrad.kernels._scalars cimport real

cnp.import_array()

# the type-generic entry points of csrc/cg_norm.h: dbl = 1 for float64, 0 for float32
cdef extern from "cg_norm.h" nogil:
    double cg_bn_sum(int dbl, const void *x, long L, long stride, long lo, long hi)
    double cg_bn_sqdev(int dbl, const void *x, long L, long stride, long lo, long hi,
                       double mean, double *dev)
    void cg_bn_affine(int dbl, const void *x, void *y, long L, long stride, long lo, long hi,
                      double mean, double scale, double shift)
    double cg_bn_grad_sums(int dbl, const void *g, const void *x, long L, long stride, long lo,
                           long hi, double mean, double *dot)
    void cg_bn_grad_input(int dbl, const void *g, const void *x, void *gx, long L, long stride,
                          long lo, long hi, double mean, double mg, double q, double k)
    void cg_col_sum(int dbl, const void *x, long rows, long ld, long j0, long j1, double *s)
    void cg_col_sqdev(int dbl, const void *x, long rows, long ld, long j0, long j1,
                      const double *m, double *s2, double *s1)
    void cg_col_affine(int dbl, const void *x, void *y, long rows, long ld, long j0, long j1,
                       const double *m, const double *a, const double *b)
    void cg_col_grad_sums(int dbl, const void *g, const void *x, long rows, long ld, long j0,
                          long j1, const double *m, double *s1, double *s2)
    void cg_col_grad_input(int dbl, const void *g, const void *x, void *gx, long rows, long ld,
                           long j0, long j1, const double *m, const double *mg,
                           const double *q, const double *k)

cdef enum:
    BN_BLOCK = 16384     # values per reduction block of a channel (strip path)
    STRIP_MIN = 64       # shorter strips take the column path (measured: 2x faster at
                         # L = 16, as fast at L = 49 and 169)
    SERIAL_SIZE = 32768  # below this many values a call runs on the calling thread

# The passes over the data. A reduction pass fills the partial sums; the channel's
# statistics and coefficients follow from them (finish_channel).
cdef enum Pass:
    SUM         # forward: sum x
    SQDEV       # forward: sum (x - mean)^2 and sum (x - mean)
    AFFINE      # forward: y = (x - mean) * a + b
    GRAD_SUMS   # backward: sum g and sum g * (x - mean)
    GRAD_INPUT  # backward: gx = ((g - b) - (x - mean) * q) * a, or g * a (evaluation)


cdef struct Shape:
    Py_ssize_t N, C, L, n  # x as (N, C, L); n = N * L values per channel
    Py_ssize_t P           # partial sums per channel: blocks (strip path) or L columns
    bint by_column


cdef struct Work:
    const char *u         # x (forward) or grad_out (backward)
    const char *v         # x (backward), else NULL
    char *out             # y (forward) or grad_x (backward, NULL when not wanted)
    int dbl               # 1: float64 data, 0: float32
    int itemsize
    double *part          # (C, P) partial sums
    double *part2         # (C, P) second partial sums
    double *mean          # (C) channel means (save_mean)
    double *invstd        # (C) 1 / sqrt(var + eps) (save_invstd)
    double *wt            # (C) weight, 1 when absent
    double *bs            # (C) bias, 0 when absent
    double *m2            # (C) sum of squared deviations (forward, training)
    double *gw            # (C) grad_weight (backward)
    double *gb            # (C) grad_bias (backward)
    double *a             # (C) coefficients of AFFINE and GRAD_INPUT
    double *b
    double *q
    double *cmean         # (C * L) mean, a, b, q of each column (column path)
    double *ca
    double *cb
    double *cq
    double eps
    bint training


# ---------------------------------------------------------------- one task of a pass

cdef void strip_task(Pass ph, const Shape *s, Work *w, Py_ssize_t t) noexcept nogil:
    """Pass ph on block t = c * P + k of the strip path: values [k, k + 1) * BN_BLOCK of
    channel c."""
    cdef Py_ssize_t c = t // s.P, lo = (t % s.P) * BN_BLOCK
    cdef Py_ssize_t hi = lo + BN_BLOCK if lo + BN_BLOCK < s.n else s.n
    cdef Py_ssize_t off = c * s.L * w.itemsize, stride = s.C * s.L
    cdef const void *u = w.u + off
    cdef const void *x = w.v + off if w.v != NULL and (ph == GRAD_SUMS or w.training) else NULL
    cdef void *out = w.out + off if w.out != NULL else NULL
    if ph == SUM:
        w.part[t] = cg_bn_sum(w.dbl, u, s.L, stride, lo, hi)
    elif ph == SQDEV:
        w.part[t] = cg_bn_sqdev(w.dbl, u, s.L, stride, lo, hi, w.mean[c], &w.part2[t])
    elif ph == AFFINE:
        cg_bn_affine(w.dbl, u, out, s.L, stride, lo, hi, w.mean[c], w.a[c], w.b[c])
    elif ph == GRAD_SUMS:
        w.part[t] = cg_bn_grad_sums(w.dbl, u, x, s.L, stride, lo, hi, w.mean[c], &w.part2[t])
    else:
        cg_bn_grad_input(w.dbl, u, x, out, s.L, stride, lo, hi, w.mean[c], w.b[c], w.q[c],
                         w.a[c])


cdef void column_task(Pass ph, const Shape *s, Work *w, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """Pass ph on columns [j0, j1) of the (N, C * L) matrix (column path)."""
    cdef Py_ssize_t ld = s.C * s.L
    cdef const void *u = w.u
    cdef const void *x = w.v if ph == GRAD_SUMS or w.training else NULL
    cdef void *out = w.out
    if ph == SUM:
        cg_col_sum(w.dbl, u, s.N, ld, j0, j1, w.part)
    elif ph == SQDEV:
        cg_col_sqdev(w.dbl, u, s.N, ld, j0, j1, w.cmean, w.part, w.part2)
    elif ph == AFFINE:
        cg_col_affine(w.dbl, u, out, s.N, ld, j0, j1, w.cmean, w.ca, w.cb)
    elif ph == GRAD_SUMS:
        cg_col_grad_sums(w.dbl, u, x, s.N, ld, j0, j1, w.cmean, w.part, w.part2)
    else:
        cg_col_grad_input(w.dbl, u, x, out, s.N, ld, j0, j1, w.cmean, w.cb, w.cq, w.ca)


# ---------------------------------------------------------------- per-channel statistics

cdef inline double partial_total(const double *part, const Shape *s, Py_ssize_t c) noexcept nogil:
    """The P partial sums of channel c, added in order."""
    cdef double total = 0.0
    cdef Py_ssize_t k
    for k in range(c * s.P, (c + 1) * s.P):
        total += part[k]
    return total


cdef inline double inv_std(double var, double eps) noexcept nogil:
    """1 / sqrt(var + eps); 0 when var and eps are both 0 (torch's InvStd)."""
    if var == 0.0 and eps == 0.0:
        return 0.0
    return 1.0 / sqrt(var + eps)


cdef void spread(const Shape *s, Work *w, Py_ssize_t c) noexcept nogil:
    """Copy channel c's mean and coefficients to each of its columns (column path)."""
    cdef Py_ssize_t j
    if not s.by_column:
        return
    for j in range(c * s.L, (c + 1) * s.L):
        w.cmean[j] = w.mean[c]
        w.ca[j] = w.a[c]
        w.cb[j] = w.b[c]
        w.cq[j] = w.q[c]


cdef void finish_channel(Pass ph, const Shape *s, Work *w, Py_ssize_t c) noexcept nogil:
    """Channel c's statistics once reduction pass ph has filled its partial sums."""
    cdef double dev, m2, gb
    if ph == SUM:
        w.mean[c] = partial_total(w.part, s, c) / s.n
    elif ph == SQDEV:
        # corrected two-pass: sum (x - mean)^2 - (sum (x - mean))^2 / n is the sum of
        # squares about mean + sum (x - mean) / n, the mean with its rounding error removed
        dev = partial_total(w.part2, s, c)
        m2 = partial_total(w.part, s, c) - dev * dev / s.n
        w.mean[c] += dev / s.n
        w.m2[c] = 0.0 if m2 < 0.0 else m2  # NaN stays NaN
        w.invstd[c] = inv_std(w.m2[c] / s.n, w.eps)
        w.a[c] = w.invstd[c] * w.wt[c]
        w.b[c] = w.bs[c]
    elif ph == GRAD_SUMS:
        gb = partial_total(w.part, s, c)
        w.gb[c] = gb
        w.gw[c] = partial_total(w.part2, s, c) * w.invstd[c]  # sum g * xhat
        w.a[c] = w.wt[c] * w.invstd[c]
        w.b[c] = gb / s.n
        w.q[c] = w.invstd[c] * w.gw[c] / s.n
    else:
        return
    spread(s, w, c)


# ---------------------------------------------------------------- running the passes

cdef inline bint by_channels(const Shape *s, int nt) noexcept nogil:
    """Whether threads take whole channels: always on the column path; on the strip path
    when there are channels enough for every thread."""
    return s.by_column or nt == 1 or s.C % nt == 0 or s.C >= 4 * nt


cdef void channels_passes(const Pass *passes, int count, const Shape *s, Work *w, Py_ssize_t c0,
                          Py_ssize_t c1) noexcept nogil:
    """Every pass in order over channels [c0, c1), on one thread: no other thread waits
    for these channels' statistics, and their values stay in this core's caches."""
    cdef Py_ssize_t c, t
    cdef int k
    for k in range(count):
        if s.by_column:
            column_task(passes[k], s, w, c0 * s.L, c1 * s.L)
        else:
            for t in range(c0 * s.P, c1 * s.P):
                strip_task(passes[k], s, w, t)
        for c in range(c0, c1):
            finish_channel(passes[k], s, w, c)


cdef void strip_pass(Pass ph, const Shape *s, Work *w, int nt) noexcept nogil:
    """Pass ph over the blocks of every channel, split between nt threads (strip path,
    few channels), then each channel's statistics."""
    cdef Py_ssize_t t, c
    for t in prange(s.C * s.P, num_threads=nt, schedule="static"):
        strip_task(ph, s, w, t)
    for c in range(s.C):
        finish_channel(ph, s, w, c)


cdef void run_passes(const Pass *passes, int count, const Shape *s, Work *w, int nt) noexcept nogil:
    """The passes in order, over every channel."""
    cdef Py_ssize_t k, width, ntasks
    cdef int i
    if by_channels(s, nt):
        # the strip path gives each thread channel after channel; the column path one
        # range of channels per thread (its rows vectorize across their columns)
        width = (s.C + nt - 1) // nt if s.by_column else 1
        ntasks = (s.C + width - 1) // width
        for k in prange(ntasks, num_threads=nt, schedule="static"):
            channels_passes(passes, count, s, w, k * width,
                            (k + 1) * width if (k + 1) * width < s.C else s.C)
    else:
        for i in range(count):
            strip_pass(passes[i], s, w, nt)


cdef void dispatch(const Pass *passes, int count, object u, object v, object out, const Shape *s,
                   Work *w):
    """run_passes without the GIL on the arrays u, v and out (v, out may be None)."""
    if s.N * s.C * s.L == 0:
        return  # no values: the statistics keep what the caller set
    w.u = <const char *>array_data(u)
    w.v = <const char *>array_data(v) if v is not None else NULL
    w.out = <char *>array_data(out) if out is not None else NULL
    cdef int nt = 1 if s.N * s.C * s.L < SERIAL_SIZE else num_threads()
    with nogil:
        run_passes(passes, count, s, w, nt)


# ---------------------------------------------------------------- scratch memory

cdef class Scratch:
    """The Work of one call: its float64 buffers, freed with the object."""
    cdef Work w
    cdef double *buf

    def __dealloc__(self):
        free(self.buf)


cdef Scratch new_scratch(int t, const Shape *s, double eps, bint training):
    """Zeroed buffers for data of dtype number t and shape s; mean, invstd, gw, gb and
    the data still to be pointed at arrays."""
    cdef Scratch sc = Scratch()
    sc.w.dbl = t == cnp.NPY_DOUBLE
    sc.w.itemsize = 8 if sc.w.dbl else 4
    cdef Py_ssize_t C = s.C, cp = s.C * s.P, cl = s.C * s.L if s.by_column else 0
    sc.buf = <double *>calloc(2 * cp + 6 * C + 4 * cl + 1, sizeof(double))  # + 1: never 0 bytes
    if sc.buf == NULL:
        raise MemoryError("could not allocate the batch-norm statistics")
    cdef double *p = sc.buf
    sc.w.part, p = p, p + cp
    sc.w.part2, p = p, p + cp
    sc.w.wt, sc.w.bs, sc.w.m2 = p, p + C, p + 2 * C
    sc.w.a, sc.w.b, sc.w.q = p + 3 * C, p + 4 * C, p + 5 * C
    p += 6 * C
    sc.w.cmean, sc.w.ca, sc.w.cb, sc.w.cq = p, p + cl, p + 2 * cl, p + 3 * cl
    sc.w.eps = eps
    sc.w.training = training
    return sc


cdef inline double load(const void *p, int dbl, Py_ssize_t i) noexcept nogil:
    """Element i of a float64 (dbl) or float32 vector."""
    return (<const double *>p)[i] if dbl else (<const float *>p)[i]


cdef inline void store(void *p, int dbl, Py_ssize_t i, double v) noexcept nogil:
    """Element i of a float64 (dbl) or float32 vector = v, rounded once to the dtype."""
    if dbl:
        (<double *>p)[i] = v
    else:
        (<float *>p)[i] = <float>v


cdef void set_affine(object weight, object bias, Work *w, Py_ssize_t C):
    """w.wt and w.bs from the weight and bias arrays (None: 1 and 0)."""
    cdef const void *pw = array_data(weight) if weight is not None else NULL
    cdef const void *pb = array_data(bias) if bias is not None else NULL
    cdef Py_ssize_t c
    for c in range(C):
        w.wt[c] = load(pw, w.dbl, c) if pw != NULL else 1.0
        w.bs[c] = load(pb, w.dbl, c) if pb != NULL else 0.0


# ---------------------------------------------------------------- argument checks

cdef Shape shape_of(object x):
    """x (N, C, *) as (N, C, L), after the checks of an input of ndim >= 2."""
    cdef int nd = cnp.PyArray_NDIM(<cnp.ndarray>x), i
    if nd < 2:
        raise ValueError(f"x must have at least 2 dimensions (N, C, *), got shape {x.shape}")
    cdef cnp.npy_intp *d = cnp.PyArray_DIMS(<cnp.ndarray>x)
    cdef Shape s
    s.N, s.C, s.L = d[0], d[1], 1
    for i in range(2, nd):
        s.L *= d[i]
    s.n = s.N * s.L
    s.by_column = s.L < STRIP_MIN
    s.P = s.L if s.by_column else (s.n + BN_BLOCK - 1) // BN_BLOCK
    return s


cdef int channel_vector(object v, str name, int t, object x, Py_ssize_t C) except -1:
    """v: a (C,) array of x's dtype (type number t)."""
    same_dtype(float_array(v, name), t, v, name, "x")
    if cnp.PyArray_NDIM(<cnp.ndarray>v) != 1 or cnp.PyArray_DIMS(<cnp.ndarray>v)[0] != C:
        raise ValueError(f"{name} must have shape ({C},) (the channels of x, shape {x.shape}), "
                         f"got {v.shape}")
    return 0


cdef bint optional_pair(object a, str a_name, object b, str b_name, int t, object x,
                        Py_ssize_t C, bint writeable) except -1:
    """a and b both None (False) or both (C,) arrays of x's dtype (True)."""
    if (a is None) != (b is None):
        raise ValueError(f"{a_name} and {b_name} must both be None or both be given")
    if a is None:
        return False
    for v, name in ((a, a_name), (b, b_name)):
        channel_vector(v, name, t, x, C)
        if writeable:
            check_writeable(v, name)
    return True


cdef bint flag(object v, str name) except -1:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    return bool(v)


cdef int stat_vector(object v, str name, Py_ssize_t C) except -1:
    """v: a C-contiguous (C,) float64 array (save_mean, save_invstd)."""
    if float_array(v, name) != cnp.NPY_DOUBLE:
        raise TypeError(f"{name} must be float64 (as batch_norm_forward returns it), got {v.dtype}")
    check_ndim(v, 1, name)
    if cnp.PyArray_DIMS(<cnp.ndarray>v)[0] != C:
        raise ValueError(f"{name} must have shape ({C},), got {v.shape}")
    return 0


# ---------------------------------------------------------------- forward

cdef Pass TRAIN_FORWARD[3]
TRAIN_FORWARD[:] = [SUM, SQDEV, AFFINE]
cdef Pass EVAL_FORWARD[1]
EVAL_FORWARD[:] = [AFFINE]


cdef void running_stats(bint training, object rm, object rv, Work *w, const Shape *s,
                        double momentum):
    """Training: torch's update rm = momentum * mean + (1 - momentum) * rm, rv likewise
    with the unbiased variance m2 / (n - 1), in float64 and rounded once to the dtype.
    Evaluation: the running statistics become the channel statistics."""
    cdef void *pm = array_data(rm)
    cdef void *pv = array_data(rv)
    cdef Py_ssize_t c
    for c in range(s.C):
        if training:
            store(pm, w.dbl, c, momentum * w.mean[c] + (1.0 - momentum) * load(pm, w.dbl, c))
            store(pv, w.dbl, c, momentum * (w.m2[c] / (s.n - 1))
                  + (1.0 - momentum) * load(pv, w.dbl, c))
        else:
            w.mean[c] = load(pm, w.dbl, c)
            w.invstd[c] = 1.0 / sqrt(load(pv, w.dbl, c) + w.eps)
            w.a[c] = w.invstd[c] * w.wt[c]
            w.b[c] = w.bs[c]
            spread(s, w, c)


cdef struct Params:
    int t                # dtype number of x
    bint training, running
    double momentum, eps


cdef int forward_checks(x, weight, bias, running_mean, running_var, training, momentum, eps,
                        Shape *s, Params *p) except -1:
    """Every check of batch_norm_forward's arguments; fills s and p."""
    p.t = float_array(x, "x")
    s[0] = shape_of(x)
    p.training = flag(training, "training")
    p.momentum, p.eps = real(momentum, "momentum"), real(eps, "eps")
    if not 0.0 <= p.momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {p.momentum}")
    if not 0.0 <= p.eps < float("inf"):
        raise ValueError(f"eps must be finite and >= 0, got {p.eps}")
    optional_pair(weight, "weight", bias, "bias", p.t, x, s.C, False)
    p.running = optional_pair(running_mean, "running_mean", running_var, "running_var", p.t, x,
                              s.C, p.training)
    if p.training and s.n == 1:
        raise ValueError("Expected more than 1 value per channel when training, "
                         f"got input size {x.shape}")
    if not p.training and not p.running:
        raise ValueError("running_mean and running_var are required when training=False")
    return 0


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
    cdef Shape s
    cdef Params p
    forward_checks(x, weight, bias, running_mean, running_var, training, momentum, eps, &s, &p)
    cdef int t = p.t
    y = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(<cnp.ndarray>x), cnp.PyArray_DIMS(<cnp.ndarray>x), t, 0)
    save_mean, save_invstd = np.empty(s.C), np.empty(s.C)
    cdef Scratch sc = new_scratch(t, &s, p.eps, p.training)
    sc.w.mean, sc.w.invstd = <double *>array_data(save_mean), <double *>array_data(save_invstd)
    set_affine(weight, bias, &sc.w, s.C)
    if p.training and s.n == 0:
        save_mean.fill(np.nan)
        save_invstd.fill(np.nan)
    elif p.training:
        dispatch(TRAIN_FORWARD, 3, x, None, y, &s, &sc.w)
        if p.running:
            running_stats(True, running_mean, running_var, &sc.w, &s, p.momentum)
    else:
        running_stats(False, running_mean, running_var, &sc.w, &s, p.momentum)
        dispatch(EVAL_FORWARD, 1, x, None, y, &s, &sc.w)
    return y, save_mean, save_invstd


# ---------------------------------------------------------------- backward

cdef Pass GRAD_BOTH[2]
GRAD_BOTH[:] = [GRAD_SUMS, GRAD_INPUT]


cdef void load_saved(Work *w, const Shape *s) noexcept nogil:
    """GRAD_INPUT's evaluation coefficient weight * invstd, and the columns' copies."""
    cdef Py_ssize_t c
    for c in range(s.C):
        w.a[c] = w.wt[c] * w.invstd[c]
        spread(s, w, c)


def batch_norm_backward(grad_out, x, weight, save_mean, save_invstd, *, training,
                        input_grad=True):
    """Gradients of batch_norm_forward: (grad_x or None, grad_weight or None, grad_bias or None).

    xhat = (x - mean) * invstd; grad_bias = sum g; grad_weight = sum g * xhat (both None
    when weight is None); training=True: grad_x = weight * invstd * (g - grad_bias / n -
    xhat * grad_weight / n); training=False (the statistics are constants): grad_x =
    g * weight * invstd. grad_x is None when input_grad=False (and not computed).
    save_mean, save_invstd: the (C,) float64 arrays batch_norm_forward returned.
    """
    cdef int t = float_array(x, "x")
    cdef Shape s = shape_of(x)
    same_dtype(float_array(grad_out, "grad_out"), t, grad_out, "grad_out", "x")
    if not cnp.PyArray_SAMESHAPE(<cnp.ndarray>grad_out, <cnp.ndarray>x):
        raise ValueError(f"grad_out has shape {grad_out.shape} but x has shape {x.shape}: "
                         "they must match")
    if weight is not None:
        channel_vector(weight, "weight", t, x, s.C)
    stat_vector(save_mean, "save_mean", s.C)
    stat_vector(save_invstd, "save_invstd", s.C)
    cdef bint train = flag(training, "training"), want_x = flag(input_grad, "input_grad")
    cdef bint sums = train or weight is not None
    if not sums and not want_x:
        return None, None, None
    cdef Scratch sc = new_scratch(t, &s, 0.0, train)
    gw, gb = np.zeros(s.C), np.zeros(s.C)
    sc.w.gw, sc.w.gb = <double *>array_data(gw), <double *>array_data(gb)
    # the backward passes only read mean and invstd
    sc.w.mean, sc.w.invstd = <double *>array_data(save_mean), <double *>array_data(save_invstd)
    set_affine(weight, None, &sc.w, s.C)
    load_saved(&sc.w, &s)
    gx = (<object>cnp.PyArray_EMPTY(cnp.PyArray_NDIM(<cnp.ndarray>x),
                                    cnp.PyArray_DIMS(<cnp.ndarray>x), t, 0)) if want_x else None
    cdef const Pass *passes = &GRAD_BOTH[0] if sums else &GRAD_BOTH[1]
    cdef int count = (1 if sums else 0) + (1 if want_x else 0)
    dispatch(passes, count, grad_out, x, gx, &s, &sc.w)
    if weight is None:
        return gx, None, None
    dt = x.dtype
    return gx, gw.astype(dt), gb.astype(dt)
