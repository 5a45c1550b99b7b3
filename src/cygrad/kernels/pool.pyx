# cython: language_level=3
"""2-D max and average pooling, forward and backward: direct loops, parallel over
(n, c) planes. Same API, semantics and errors as cygrad.reference.pool (the spec),
which follows torch.nn.functional (padding at most half the kernel, ceil_mode,
avg_pool2d's count_include_pad and divisor_override, max_pool2d indices flat within
each H*W plane, first maximum in scan order, NaN propagating as in torch's scan).

Each plane belongs to one thread, so the backward scatters (+= into grad_x) are
race-free and summed in a fixed order: bitwise identical for any thread count.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange

from cygrad._runtime cimport num_threads
from cygrad.kernels._checks cimport array_data, check_ndim, float_array
from cygrad.reference._checks import (avg_divisor, check_shape, nchw_shape, nonempty_planes,
                                      pool_geometry)

cnp.import_array()

ctypedef fused real:
    float
    double

ctypedef cnp.int64_t index_t

# Below this many input elements a call runs on one thread.
cdef Py_ssize_t SERIAL_SIZE = 1 << 15


cdef struct Pool:
    Py_ssize_t h, w, kh, kw, sh, sw, ph, pw, ho, wo
    bint include_pad            # avg: padding positions count in the divisor
    Py_ssize_t override         # avg: divisor_override, 0 for none


cdef inline void window(const Pool *p, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t *h0,
                        Py_ssize_t *h1, Py_ssize_t *w0, Py_ssize_t *w1) noexcept nogil:
    """The window of output (oh, ow) clipped to the input: rows [h0, h1), cols [w0, w1)."""
    cdef Py_ssize_t a = oh * p.sh - p.ph, b = ow * p.sw - p.pw
    h0[0] = a if a > 0 else 0
    h1[0] = a + p.kh if a + p.kh < p.h else p.h
    w0[0] = b if b > 0 else 0
    w1[0] = b + p.kw if b + p.kw < p.w else p.w


cdef inline Py_ssize_t divisor(const Pool *p, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t h0,
                               Py_ssize_t h1, Py_ssize_t w0, Py_ssize_t w1) noexcept nogil:
    """Average-pool divisor of output (oh, ow), as torch: divisor_override; else the
    window clipped to the padded input (count_include_pad: a ceil-mode overhang past
    the padding does not count) or to the input [h0, h1) x [w0, w1)."""
    if p.override:
        return p.override
    if not p.include_pad:
        return (h1 - h0) * (w1 - w0)
    cdef Py_ssize_t a = oh * p.sh - p.ph, b = ow * p.sw - p.pw
    cdef Py_ssize_t ea = a + p.kh if a + p.kh < p.h + p.ph else p.h + p.ph
    cdef Py_ssize_t eb = b + p.kw if b + p.kw < p.w + p.pw else p.w + p.pw
    return (ea - a) * (eb - b)


# Max scans in C (csrc/conv_pool.h): branch-free selects, vectorised 2x2 rows.
cdef extern from "conv_pool.h":
    void cg_max2x2_row_f(const float *r0, const float *r1, float *y, index_t *idx,
                         Py_ssize_t wo, index_t base, index_t w) noexcept nogil
    void cg_max2x2_row_d(const double *r0, const double *r1, double *y, index_t *idx,
                         Py_ssize_t wo, index_t base, index_t w) noexcept nogil
    float cg_max_window_f(const float *x, Py_ssize_t w, Py_ssize_t h0, Py_ssize_t h1,
                          Py_ssize_t w0, Py_ssize_t w1, index_t *best) noexcept nogil
    double cg_max_window_d(const double *x, Py_ssize_t w, Py_ssize_t h0, Py_ssize_t h1,
                           Py_ssize_t w0, Py_ssize_t w1, index_t *best) noexcept nogil


cdef inline void max_windows(const real *x, real *y, index_t *idx, const Pool *p,
                             Py_ssize_t oh, Py_ssize_t ow0) noexcept nogil:
    """Outputs (oh, ow) for ow >= ow0, each the max of its window clipped to the input."""
    cdef Py_ssize_t ow, h0, h1, w0, w1, o
    for ow in range(ow0, p.wo):
        window(p, oh, ow, &h0, &h1, &w0, &w1)
        o = oh * p.wo + ow
        if real is float:
            y[o] = cg_max_window_f(x, p.w, h0, h1, w0, w1, idx + o)
        else:
            y[o] = cg_max_window_d(x, p.w, h0, h1, w0, w1, idx + o)


cdef void max_plane(const real *x, real *y, index_t *idx, const Pool *p) noexcept nogil:
    cdef Py_ssize_t oh
    for oh in range(p.ho):
        max_windows(x, y, idx, p, oh, 0)


cdef void max_plane_2x2(const real *x, real *y, index_t *idx, const Pool *p) noexcept nogil:
    """kernel 2, stride 2, no padding (the common case): the H//2 x W//2 whole windows
    row by row; a ceil-mode last row and column (odd H or W) window by window."""
    cdef Py_ssize_t oh, w = p.w, whole = p.w // 2
    cdef const real *r0
    for oh in range(p.ho):
        if 2 * oh + 1 >= p.h:         # the ceil-mode last row
            max_windows(x, y, idx, p, oh, 0)
            continue
        r0 = x + 2 * oh * w
        if real is float:
            cg_max2x2_row_f(r0, r0 + w, y + oh * p.wo, idx + oh * p.wo, whole, 2 * oh * w, w)
        else:
            cg_max2x2_row_d(r0, r0 + w, y + oh * p.wo, idx + oh * p.wo, whole, 2 * oh * w, w)
        max_windows(x, y, idx, p, oh, whole)


cdef void max_plane_backward(const real *g, const index_t *idx, real *gx, Py_ssize_t hw,
                             Py_ssize_t nout) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(hw):
        gx[i] = 0
    for i in range(nout):
        gx[idx[i]] += g[i]


cdef void avg_plane(const real *x, real *y, const Pool *p) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1
    cdef real s
    for oh in range(p.ho):
        for ow in range(p.wo):
            window(p, oh, ow, &h0, &h1, &w0, &w1)
            s = 0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    s += x[ih * p.w + iw]
            y[oh * p.wo + ow] = s / <real>divisor(p, oh, ow, h0, h1, w0, w1)


cdef void avg_plane_backward(const real *g, real *gx, const Pool *p) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1
    cdef real share
    for ih in range(p.h * p.w):
        gx[ih] = 0
    for oh in range(p.ho):
        for ow in range(p.wo):
            window(p, oh, ow, &h0, &h1, &w0, &w1)
            share = g[oh * p.wo + ow] / <real>divisor(p, oh, ow, h0, h1, w0, w1)
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    gx[ih * p.w + iw] += share


# ---------------------------------------------------------------- plane driver

cdef enum PlaneOp:
    MAX_FWD, MAX_2X2_FWD, MAX_BWD, AVG_FWD, AVG_BWD


cdef void each_plane(PlaneOp op, const real *src, real *dst, index_t *idx, const Pool *q,
                     Py_ssize_t planes, int nt) noexcept nogil:
    """Run op on every (n, c) plane, one thread per plane. Forward ops read planes of
    H*W from src and write H_out*W_out to dst (and idx); backward ops the reverse."""
    cdef Py_ssize_t i, hw = q.h * q.w, nout = q.ho * q.wo
    for i in prange(planes, num_threads=nt, schedule='dynamic', chunksize=16):
        if op == MAX_2X2_FWD:
            max_plane_2x2(src + i * hw, dst + i * nout, idx + i * nout, q)
        elif op == MAX_FWD:
            max_plane(src + i * hw, dst + i * nout, idx + i * nout, q)
        elif op == MAX_BWD:
            max_plane_backward(src + i * nout, idx + i * nout, dst + i * hw, hw, nout)
        elif op == AVG_FWD:
            avg_plane(src + i * hw, dst + i * nout, q)
        else:
            avg_plane_backward(src + i * nout, dst + i * hw, q)


cdef object run(PlaneOp op, int t, src, dst, idx, const Pool *q, Py_ssize_t planes):
    """each_plane on arrays of dtype number t (idx: int64 array or None); returns dst."""
    cdef void *ps = array_data(src)
    cdef void *pd = array_data(dst)
    cdef index_t *pi = NULL
    if idx is not None:
        pi = <index_t *>array_data(idx)
    cdef int nt = threads_for(planes * q.h * q.w)
    with nogil:
        if t == cnp.NPY_FLOAT:
            each_plane(op, <const float *>ps, <float *>pd, pi, q, planes, nt)
        else:
            each_plane(op, <const double *>ps, <double *>pd, pi, q, planes, nt)
    return dst


# ---------------------------------------------------------------- Python API

cdef Pool make_pool(Py_ssize_t h, Py_ssize_t w, k, s, p, out, bint include_pad=True,
                    Py_ssize_t override=0):
    cdef Pool q
    q.h, q.w = h, w
    q.kh, q.kw = k
    q.sh, q.sw = s
    q.ph, q.pw = p
    q.ho, q.wo = out
    q.include_pad, q.override = include_pad, override
    return q


cdef int threads_for(Py_ssize_t size):
    return 1 if size < SERIAL_SIZE else num_threads()


cdef tuple parse_x(x, kernel_size, stride, padding, ceil_mode, count_include_pad=True,
                   divisor_override=None):
    cdef int t = float_array(x, "x")
    check_ndim(x, 4, "x")
    nonempty_planes(x, "x")
    k, s, p, out = pool_geometry(x.shape[2:], kernel_size, stride, padding, ceil_mode)
    include_pad, override = avg_divisor(count_include_pad, divisor_override)
    return t, make_pool(x.shape[2], x.shape[3], k, s, p, out, include_pad, override)


def max_pool2d_forward(x, kernel_size, *, stride=None, padding=0, ceil_mode=False):
    """(y, indices) as torch.nn.functional.max_pool2d(x, kernel_size, stride, padding,
    ceil_mode=ceil_mode, return_indices=True); indices int64, flat within each H*W plane."""
    cdef int t
    cdef Pool q
    t, q = parse_x(x, kernel_size, stride, padding, ceil_mode)
    y = np.empty((x.shape[0], x.shape[1], q.ho, q.wo), x.dtype)
    idx = np.empty(y.shape, np.int64)
    two = q.kh == 2 and q.kw == 2 and q.sh == 2 and q.sw == 2 and q.ph == 0 and q.pw == 0
    return run(MAX_2X2_FWD if two else MAX_FWD, t, x, y, idx, &q, x.shape[0] * x.shape[1]), idx


cdef int check_indices(indices, grad_out, Py_ssize_t hw) except -1:
    """indices: an int64 C-contiguous array of grad_out's shape, each in [0, hw)."""
    if not cnp.PyArray_Check(indices):
        raise TypeError(f"indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.dtype != np.int64:
        raise TypeError(f"indices must be int64, got {indices.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>indices):
        raise ValueError("indices must be C-contiguous (use numpy.ascontiguousarray)")
    check_shape(indices, grad_out.shape, "indices")
    if indices.size == 0:
        return 0
    # NumPy's SIMD min/max: a serial scalar pass here cost more than the whole scatter
    cdef index_t lo = indices.min(), hi = indices.max()
    if lo < 0 or hi >= hw:
        raise ValueError(f"indices must lie in [0, {hw}) (flat index in an H*W plane), "
                         f"got values in [{lo}, {hi}]")
    return 0


def max_pool2d_backward(grad_out, indices, x_shape):
    """grad_x (N, C, H, W): grad_out scattered (summed) to the positions in indices,
    as the backward of torch's max_pool2d."""
    n, c, h, w = nchw_shape(x_shape, "x_shape")
    cdef int t = float_array(grad_out, "grad_out")
    check_ndim(grad_out, 4, "grad_out")
    check_shape(grad_out, (n, c) + grad_out.shape[2:], "grad_out")
    check_indices(indices, grad_out, h * w)
    cdef Pool q = make_pool(h, w, (1, 1), (1, 1), (0, 0), grad_out.shape[2:])
    return run(MAX_BWD, t, grad_out, np.empty((n, c, h, w), grad_out.dtype), indices, &q, n * c)


def avg_pool2d_forward(x, kernel_size, *, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """y as torch.nn.functional.avg_pool2d: each window's sum / divisor_override, else /
    its positions inside the padded input (count_include_pad) or inside the input."""
    cdef int t
    cdef Pool q
    t, q = parse_x(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                   divisor_override)
    y = np.empty((x.shape[0], x.shape[1], q.ho, q.wo), x.dtype)
    return run(AVG_FWD, t, x, y, None, &q, x.shape[0] * x.shape[1])


def avg_pool2d_backward(grad_out, x_shape, kernel_size, *, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """grad_x (N, C, H, W): each output's gradient / its window's divisor (as
    avg_pool2d_forward) spread over the window's positions inside the input."""
    n, c, h, w = nchw_shape(x_shape, "x_shape")
    k, s, p, out = pool_geometry((h, w), kernel_size, stride, padding, ceil_mode)
    include_pad, override = avg_divisor(count_include_pad, divisor_override)
    cdef Pool q = make_pool(h, w, k, s, p, out, include_pad, override)
    cdef int t = float_array(grad_out, "grad_out")
    check_ndim(grad_out, 4, "grad_out")
    check_shape(grad_out, (n, c, q.ho, q.wo), "grad_out")
    return run(AVG_BWD, t, grad_out, np.empty((n, c, h, w), grad_out.dtype), None, &q, n * c)
