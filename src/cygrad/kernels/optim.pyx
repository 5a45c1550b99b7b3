# cython: language_level=3
"""Optimizer updates on flat 1-D buffers (same names, signatures and errors as
cygrad.reference.optim): the single-tensor algorithms of torch.optim, operation
by operation, with the Python scalars rounded to the buffers' dtype as torch does.

param and the state buffers are updated in place, grad is only read; each call
returns None. maximize=True ascends: the gradient is negated first, as torch does.
Every element is updated independently, so the split between threads never
changes a result. Adam/AdamW run the multiversioned loop of
csrc/cg_elementwise.h.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from cygrad._runtime cimport num_threads
from cygrad.kernels._checks cimport check_ndim, check_writeable, float_array, overlaps, same_dtype
from cygrad.kernels._elementwise cimport PAR_MIN_MEDIUM, chunk_len
from cygrad.kernels._scalars cimport nonneg, real

cnp.import_array()

cdef extern from "cg_elementwise.h" nogil:
    struct cg_adam_float:
        float decay, wd, w1, w1c, beta2, c2, bc2_sqrt, eps, neg_step
        int lerp_small, decoupled, l2
    struct cg_adam_double:
        double decay, wd, w1, w1c, beta2, c2, bc2_sqrt, eps, neg_step
        int lerp_small, decoupled, l2
    void cg_adam_f32(float *p, const float *g, float *m, float *v, float *vmax, long n,
                     const cg_adam_float *c)
    void cg_adam_f64(double *p, const double *g, double *m, double *v, double *vmax, long n,
                     const cg_adam_double *c)

cdef enum Algo:
    SGD, ADAGRAD, RMSPROP, ADAM

# Hyper-parameters, as doubles, in the order each algorithm reads them.
cdef enum:
    H_LR, H_WD, H_MOM, H_DAMP, H_NESTEROV, H_FIRST, H_EPS, H_ALPHA, H_BETA1, H_BETA2, H_STEP, \
        H_DECOUPLED, H_MAXIMIZE, H_LEN

# maximize=True in Adam: the C loop reads the gradient, so it gets -grad in blocks of
# this many elements copied to the stack (reentrant, stays in L1)
cdef enum:
    NEG_BLOCK = 512


cdef inline floating _lerp(floating start, floating end, floating w, floating w1c,
                           bint small) noexcept nogil:
    """torch.lerp with a scalar weight w (w1c = 1 - w in the dtype)."""
    return start + w * (end - start) if small else end - (end - start) * w1c


cdef inline floating *_at(floating *a, Py_ssize_t lo) noexcept nogil:
    return a + lo if a != NULL else NULL


cdef void _sgd(floating *p, const floating *g, floating *buf, Py_ssize_t n,
               const double *h) noexcept nogil:
    cdef floating nlr = <floating>-h[H_LR], wd = <floating>h[H_WD], mom = <floating>h[H_MOM]
    cdef floating damp1 = <floating>(1.0 - h[H_DAMP])
    cdef bint nesterov = h[H_NESTEROV] != 0, first = h[H_FIRST] != 0, decay = h[H_WD] != 0
    cdef bint maximize = h[H_MAXIMIZE] != 0
    cdef floating gi, b
    cdef Py_ssize_t i
    for i in range(n):
        gi = -g[i] if maximize else g[i]
        if decay:
            gi = gi + wd * p[i]
        if buf != NULL:
            if first:
                b = gi  # torch creates the buffer as a copy of the first gradient
            else:
                b = buf[i] * mom
                b = b + damp1 * gi
            buf[i] = b
            gi = gi + mom * b if nesterov else b
        p[i] = p[i] + nlr * gi


cdef void _adagrad(floating *p, const floating *g, floating *ssum, Py_ssize_t n,
                   const double *h) noexcept nogil:
    cdef double clr = h[H_LR] / (1.0 + (h[H_STEP] - 1.0) * h[H_MOM])  # H_MOM holds lr_decay
    cdef floating nclr = <floating>-clr, wd = <floating>h[H_WD], eps = <floating>h[H_EPS]
    cdef bint decay = h[H_WD] != 0, maximize = h[H_MAXIMIZE] != 0
    cdef floating gi, s
    cdef Py_ssize_t i
    for i in range(n):
        gi = -g[i] if maximize else g[i]
        if decay:
            gi = gi + wd * p[i]
        s = ssum[i] + gi * gi
        ssum[i] = s
        p[i] = p[i] + nclr * gi / (<floating>sqrt(s) + eps)


cdef void _rmsprop(floating *p, const floating *g, floating *sq, floating *buf, floating *gavg,
                   Py_ssize_t n, const double *h) noexcept nogil:
    cdef floating nlr = <floating>-h[H_LR], wd = <floating>h[H_WD], eps = <floating>h[H_EPS]
    cdef floating alpha = <floating>h[H_ALPHA], c1 = <floating>(1.0 - h[H_ALPHA])
    cdef floating mom = <floating>h[H_MOM], one = 1, w1c = one - c1, minus_one = -1
    cdef bint decay = h[H_WD] != 0, small = (1.0 - h[H_ALPHA] < 0.5 and 1.0 - h[H_ALPHA] > -0.5)
    cdef bint maximize = h[H_MAXIMIZE] != 0
    cdef floating gi, s, ga, avg, b
    cdef Py_ssize_t i
    for i in range(n):
        gi = -g[i] if maximize else g[i]
        if decay:
            gi = gi + wd * p[i]
        s = sq[i] * alpha
        s = s + c1 * gi * gi
        sq[i] = s
        if gavg != NULL:
            ga = _lerp(gavg[i], gi, c1, w1c, small)
            gavg[i] = ga
            avg = <floating>sqrt(s + minus_one * ga * ga)
        else:
            avg = <floating>sqrt(s)
        avg = avg + eps
        if buf != NULL:
            b = buf[i] * mom
            b = b + gi / avg
            buf[i] = b
            p[i] = p[i] + nlr * b
        else:
            p[i] = p[i] + nlr * gi / avg


cdef void _adam_c(floating *p, const floating *g, floating *m, floating *v, floating *vmax,
                  Py_ssize_t n, const void *c) noexcept nogil:
    """The multiversioned C loop for the dtype; c points to its cg_adam_* constants."""
    if floating is float:
        cg_adam_f32(p, g, m, v, vmax, n, <const cg_adam_float *>c)
    else:
        cg_adam_f64(p, g, m, v, vmax, n, <const cg_adam_double *>c)


cdef void _adam_ascend(floating *p, const floating *g, floating *m, floating *v, floating *vmax,
                       Py_ssize_t n, const void *c) noexcept nogil:
    """The C loop on -grad (maximize), a stack block at a time."""
    cdef floating neg[NEG_BLOCK]
    cdef Py_ssize_t lo = 0, j, k
    while lo < n:
        k = n - lo if n - lo < NEG_BLOCK else NEG_BLOCK
        for j in range(k):
            neg[j] = -g[lo + j]
        _adam_c(p + lo, neg, m + lo, v + lo, _at(vmax, lo), k, c)
        lo += k


cdef void _adam(floating *p, const floating *g, floating *m, floating *v, floating *vmax,
                Py_ssize_t n, const double *h) noexcept nogil:
    cdef double lr = h[H_LR], wd = h[H_WD], beta1 = h[H_BETA1], beta2 = h[H_BETA2]
    cdef double bc1 = 1.0 - beta1 ** h[H_STEP], bc2 = 1.0 - beta2 ** h[H_STEP]
    cdef bint decoupled = h[H_DECOUPLED] != 0
    cdef cg_adam_float cf
    cdef cg_adam_double cd
    cdef const void *c
    if floating is float:
        cf.decay = <float>(1.0 - lr * wd)
        cf.wd = <float>wd
        cf.w1 = <float>(1.0 - beta1)
        cf.w1c = <float>1.0 - cf.w1
        cf.beta2 = <float>beta2
        cf.c2 = <float>(1.0 - beta2)
        cf.bc2_sqrt = <float>(bc2 ** 0.5)
        cf.eps = <float>h[H_EPS]
        cf.neg_step = <float>(-(lr / bc1))
        cf.lerp_small = 1.0 - beta1 < 0.5
        cf.decoupled = decoupled and wd != 0
        cf.l2 = not decoupled and wd != 0
        c = &cf
    else:
        cd.decay = 1.0 - lr * wd
        cd.wd = wd
        cd.w1 = 1.0 - beta1
        cd.w1c = 1.0 - cd.w1
        cd.beta2 = beta2
        cd.c2 = 1.0 - beta2
        cd.bc2_sqrt = bc2 ** 0.5
        cd.eps = h[H_EPS]
        cd.neg_step = -(lr / bc1)
        cd.lerp_small = 1.0 - beta1 < 0.5
        cd.decoupled = decoupled and wd != 0
        cd.l2 = not decoupled and wd != 0
        c = &cd
    if h[H_MAXIMIZE] != 0:
        _adam_ascend(p, g, m, v, vmax, n, c)
    else:
        _adam_c(p, g, m, v, vmax, n, c)


cdef void _chunk(int algo, floating *p, const floating *g, floating *s1, floating *s2,
                 floating *s3, Py_ssize_t n, const double *h) noexcept nogil:
    if algo == SGD:
        _sgd(p, g, s1, n, h)
    elif algo == ADAGRAD:
        _adagrad(p, g, s1, n, h)
    elif algo == RMSPROP:
        _rmsprop(p, g, s1, s2, s3, n, h)
    else:
        _adam(p, g, s1, s2, s3, n, h)


cdef void _update(int algo, floating *p, const floating *g, floating *s1, floating *s2,
                  floating *s3, Py_ssize_t n, const double *h) noexcept nogil:
    cdef int nt = num_threads()
    cdef Py_ssize_t step, k, lo, hi
    if nt < 2 or n < PAR_MIN_MEDIUM:
        _chunk(algo, p, g, s1, s2, s3, n, h)
        return
    step = chunk_len(n, nt)
    for k in prange(nt, num_threads=nt, schedule="static"):
        lo = k * step
        hi = lo + step if lo + step < n else n
        if lo < hi:
            _chunk(algo, p + lo, g + lo, _at(s1, lo), _at(s2, lo), _at(s3, lo), hi - lo, h)


cdef void *_data(object a):
    return cnp.PyArray_DATA(<cnp.ndarray>a) if a is not None else NULL


cdef int _check_buffers(object param, object grad, tuple states) except -1:
    """param, grad and the (name, buffer) states that are not None: 1-D, one dtype
    and length, C-contiguous, param and states writeable, no two overlapping."""
    cdef int t = float_array(param, "param")
    check_ndim(param, 1, "param")
    check_writeable(param, "param")
    cdef Py_ssize_t n = cnp.PyArray_DIMS(<cnp.ndarray>param)[0]
    cdef list arrays = [("param", param), ("grad", grad)]
    for name, a in states:
        if a is not None:
            arrays.append((name, a))
    for name, a in arrays[1:]:
        same_dtype(float_array(a, name), t, a, name, "param")
        check_ndim(a, 1, name)
        if cnp.PyArray_DIMS(<cnp.ndarray>a)[0] != n:
            raise ValueError(f"{name} has length {a.shape[0]} but param has length {n}")
        if name != "grad":
            check_writeable(a, name)
    cdef Py_ssize_t i, j
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            if overlaps(arrays[i][1], arrays[j][1]):
                raise ValueError(f"{arrays[i][0]} and {arrays[j][0]} overlap in memory")
    return t


cdef int _run(int algo, object param, object grad, tuple states, double *h) except -1:
    cdef int t = _check_buffers(param, grad, states)
    cdef void *pp = _data(param)
    cdef void *pg = _data(grad)
    cdef void *s1 = _data(states[0][1])
    cdef void *s2 = _data(states[1][1]) if len(states) > 1 else NULL
    cdef void *s3 = _data(states[2][1]) if len(states) > 2 else NULL
    cdef Py_ssize_t n = cnp.PyArray_DIMS(<cnp.ndarray>param)[0]
    with nogil:
        if t == cnp.NPY_FLOAT:
            _update[float](algo, <float *>pp, <float *>pg, <float *>s1, <float *>s2, <float *>s3, n, h)
        else:
            _update[double](algo, <double *>pp, <double *>pg, <double *>s1, <double *>s2,
                            <double *>s3, n, h)
    return 0


cdef double _check_step(object step) except -1.0:
    if type(step) is not int:
        import numpy
        if isinstance(step, (bool, numpy.bool_)) or not isinstance(step, (int, numpy.integer)):
            raise TypeError(f"step must be an int, got {type(step).__name__}")
    if step < 1:
        raise ValueError(f"step must be >= 1 (the 1-based count of this update), got {step}")
    return <double>step


cdef inline int _require(object buf, str name, str why) except -1:
    if buf is None:
        raise ValueError(f"{name} is required when {why}")
    return 0


cdef double _flag(object v, str name) except -1.0:
    """A bool argument as 0.0 / 1.0 (TypeError for anything else, e.g. the string 'False')."""
    import numpy
    if not isinstance(v, (bool, numpy.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    return 1.0 if v else 0.0


cdef double _beta(object v, str name) except? -1.0:
    cdef double d = real(v, name)
    if not 0.0 <= d < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {d}")
    return d


def sgd_step(param, grad, momentum_buf, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False, step):
    """torch.optim.SGD. On step 1 the momentum buffer is set to the gradient (torch
    creates it then); later steps: buf = momentum * buf + (1 - dampening) * g.
    momentum_buf may be None when momentum == 0. Returns None."""
    cdef double h[H_LEN]
    h[H_LR] = nonneg(lr, "lr")
    h[H_MOM] = nonneg(momentum, "momentum")
    h[H_DAMP] = real(dampening, "dampening")
    h[H_WD] = nonneg(weight_decay, "weight_decay")
    h[H_FIRST] = _check_step(step) == 1
    h[H_NESTEROV] = bool(nesterov)
    h[H_MAXIMIZE] = _flag(maximize, "maximize")
    if nesterov and (h[H_MOM] <= 0 or h[H_DAMP] != 0):
        raise ValueError("nesterov requires momentum > 0 and dampening == 0")
    if h[H_MOM] != 0:
        _require(momentum_buf, "momentum_buf", "momentum != 0")
    else:
        momentum_buf = None  # neither read nor written
    _run(SGD, param, grad, (("momentum_buf", momentum_buf),), h)


def adagrad_step(param, grad, state_sum, *, lr=0.01, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 maximize=False, step):
    """torch.optim.Adagrad: clr = lr / (1 + (step - 1) * lr_decay), state_sum += g*g,
    param -= clr * g / (sqrt(state_sum) + eps). Returns None."""
    cdef double h[H_LEN]
    h[H_LR] = nonneg(lr, "lr")
    h[H_MOM] = nonneg(lr_decay, "lr_decay")
    h[H_WD] = nonneg(weight_decay, "weight_decay")
    h[H_EPS] = nonneg(eps, "eps")
    h[H_STEP] = _check_step(step)
    h[H_MAXIMIZE] = _flag(maximize, "maximize")
    _run(ADAGRAD, param, grad, (("state_sum", state_sum),), h)


def rmsprop_step(param, grad, square_avg, *, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0,
                 momentum=0.0, momentum_buf=None, centered=False, grad_avg=None, maximize=False):
    """torch.optim.RMSprop. momentum_buf is required when momentum > 0, grad_avg when
    centered (both start as zeros, as torch's state). Returns None."""
    cdef double h[H_LEN]
    h[H_LR] = nonneg(lr, "lr")
    h[H_ALPHA] = nonneg(alpha, "alpha")
    h[H_EPS] = nonneg(eps, "eps")
    h[H_WD] = nonneg(weight_decay, "weight_decay")
    h[H_MOM] = nonneg(momentum, "momentum")
    h[H_MAXIMIZE] = _flag(maximize, "maximize")
    if h[H_MOM] > 0:
        _require(momentum_buf, "momentum_buf", "momentum > 0")
    else:
        momentum_buf = None
    if centered:
        _require(grad_avg, "grad_avg", "centered=True")
    else:
        grad_avg = None
    _run(RMSPROP, param, grad, (("square_avg", square_avg), ("momentum_buf", momentum_buf),
                                ("grad_avg", grad_avg)), h)


cdef int _adam_api(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
                   amsgrad, max_exp_avg_sq, maximize, bint decoupled) except -1:
    cdef double h[H_LEN]
    h[H_LR] = nonneg(lr, "lr")
    h[H_EPS] = nonneg(eps, "eps")
    h[H_WD] = nonneg(weight_decay, "weight_decay")
    h[H_BETA1] = _beta(beta1, "beta1")
    h[H_BETA2] = _beta(beta2, "beta2")
    h[H_STEP] = _check_step(step)
    h[H_DECOUPLED] = decoupled
    h[H_MAXIMIZE] = _flag(maximize, "maximize")
    if amsgrad:
        _require(max_exp_avg_sq, "max_exp_avg_sq", "amsgrad=True")
    else:
        max_exp_avg_sq = None
    return _run(ADAM, param, grad, (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq),
                                    ("max_exp_avg_sq", max_exp_avg_sq)), h)


def adam_step(param, grad, exp_avg, exp_avg_sq, *, step, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, amsgrad=False, max_exp_avg_sq=None, maximize=False):
    """torch.optim.Adam (L2 decay added to the gradient), with bias correction;
    max_exp_avg_sq is required when amsgrad. Returns None."""
    _adam_api(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
              amsgrad, max_exp_avg_sq, maximize, False)


def adamw_step(param, grad, exp_avg, exp_avg_sq, *, step, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=0.01, amsgrad=False, max_exp_avg_sq=None, maximize=False):
    """torch.optim.AdamW: param *= 1 - lr * weight_decay, then the Adam update. Returns None."""
    _adam_api(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
              amsgrad, max_exp_avg_sq, maximize, True)
