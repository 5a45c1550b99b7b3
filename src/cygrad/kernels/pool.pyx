# cython: language_level=3
"""2-D max and average pooling, forward and backward: direct loops, parallel over
(n, c) planes. Same API, semantics and errors as cygrad.reference.pool (the spec),
which follows torch.nn.functional (ceil_mode False, padding at most half the kernel,
avg_pool2d with count_include_pad=True, max_pool2d indices flat within each H*W
plane, first maximum in scan order, NaN propagating as in torch's scan).

Each plane belongs to one thread, so the backward scatters (+= into grad_x) are
race-free and summed in a fixed order: bitwise identical for any thread count.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport INFINITY

from cygrad._runtime cimport num_threads
from cygrad.kernels._checks cimport float_array, check_ndim
from cygrad.reference._checks import check_shape, nchw_shape, pool_geometry

cnp.import_array()

ctypedef fused real:
    float
    double

ctypedef cnp.int64_t index_t

# Below this many input elements a call runs on one thread.
cdef Py_ssize_t SERIAL_SIZE = 1 << 15


cdef struct Pool:
    Py_ssize_t h, w, kh, kw, sh, sw, ph, pw, ho, wo


cdef inline void window(const Pool *p, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t *h0,
                        Py_ssize_t *h1, Py_ssize_t *w0, Py_ssize_t *w1) noexcept nogil:
    """The window of output (oh, ow) clipped to the input: rows [h0, h1), cols [w0, w1)."""
    cdef Py_ssize_t a = oh * p.sh - p.ph, b = ow * p.sw - p.pw
    h0[0] = a if a > 0 else 0
    h1[0] = a + p.kh if a + p.kh < p.h else p.h
    w0[0] = b if b > 0 else 0
    w1[0] = b + p.kw if b + p.kw < p.w else p.w


cdef void max_plane(const real *x, real *y, index_t *idx, const Pool *p) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1, best
    cdef real v, m
    for oh in range(p.ho):
        for ow in range(p.wo):
            window(p, oh, ow, &h0, &h1, &w0, &w1)
            m = -INFINITY
            best = h0 * p.w + w0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    v = x[ih * p.w + iw]
                    if v > m or v != v:      # first max wins; NaN propagates (as torch)
                        m = v
                        best = ih * p.w + iw
            y[oh * p.wo + ow] = m
            idx[oh * p.wo + ow] = best


cdef void max_plane_2x2(const real *x, real *y, index_t *idx, const Pool *p) noexcept nogil:
    """kernel 2, stride 2, no padding (the common case): windows always full."""
    cdef Py_ssize_t oh, ow, r, best
    cdef real m, v
    cdef const real *row
    for oh in range(p.ho):
        row = x + 2 * oh * p.w
        for ow in range(p.wo):
            r = 2 * oh * p.w + 2 * ow
            m = row[2 * ow]
            best = r
            v = row[2 * ow + 1]
            if v > m or v != v:
                m = v
                best = r + 1
            v = row[p.w + 2 * ow]
            if v > m or v != v:
                m = v
                best = r + p.w
            v = row[p.w + 2 * ow + 1]
            if v > m or v != v:
                m = v
                best = r + p.w + 1
            y[oh * p.wo + ow] = m
            idx[oh * p.wo + ow] = best


cdef void max_plane_backward(const real *g, const index_t *idx, real *gx, Py_ssize_t hw,
                             Py_ssize_t nout) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(hw):
        gx[i] = 0
    for i in range(nout):
        gx[idx[i]] += g[i]


cdef void avg_plane(const real *x, real *y, const Pool *p) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1
    cdef real s, div = p.kh * p.kw      # count_include_pad: padding counts
    for oh in range(p.ho):
        for ow in range(p.wo):
            window(p, oh, ow, &h0, &h1, &w0, &w1)
            s = 0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    s += x[ih * p.w + iw]
            y[oh * p.wo + ow] = s / div


cdef void avg_plane_backward(const real *g, real *gx, const Pool *p) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1
    cdef real share, div = p.kh * p.kw
    for ih in range(p.h * p.w):
        gx[ih] = 0
    for oh in range(p.ho):
        for ow in range(p.wo):
            window(p, oh, ow, &h0, &h1, &w0, &w1)
            share = g[oh * p.wo + ow] / div
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    gx[ih * p.w + iw] += share


# ---------------------------------------------------------------- Python API

cdef Pool make_pool(Py_ssize_t h, Py_ssize_t w, k, s, p, out):
    cdef Pool q
    q.h, q.w = h, w
    q.kh, q.kw = k
    q.sh, q.sw = s
    q.ph, q.pw = p
    q.ho, q.wo = out
    return q


cdef int threads_for(Py_ssize_t size):
    return 1 if size < SERIAL_SIZE else num_threads()


cdef inline void *data(object a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef tuple parse_x(x, kernel_size, stride, padding):
    cdef int t = float_array(x, "x")
    check_ndim(x, 4, "x")
    k, s, p, out = pool_geometry(x.shape[2:], kernel_size, stride, padding)
    return t, make_pool(x.shape[2], x.shape[3], k, s, p, out)


def max_pool2d_forward(x, kernel_size, *, stride=None, padding=0):
    """(y, indices) as torch.nn.functional.max_pool2d(x, kernel_size, stride, padding,
    return_indices=True); indices int64, flat within each H*W plane."""
    cdef int t
    cdef Pool q
    t, q = parse_x(x, kernel_size, stride, padding)
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1], i
    cdef Py_ssize_t hw = q.h * q.w, nout = q.ho * q.wo
    y = np.empty((x.shape[0], x.shape[1], q.ho, q.wo), x.dtype)
    idx = np.empty(y.shape, np.int64)
    cdef void *px = data(x)
    cdef void *py = data(y)
    cdef index_t *pi = <index_t *>data(idx)
    cdef bint two = q.kh == 2 and q.kw == 2 and q.sh == 2 and q.sw == 2 and q.ph == 0 and q.pw == 0
    cdef int nt = threads_for(planes * hw)
    with nogil:
        for i in prange(planes, num_threads=nt, schedule='static'):
            if t == cnp.NPY_FLOAT:
                if two:
                    max_plane_2x2(<float *>px + i * hw, <float *>py + i * nout, pi + i * nout, &q)
                else:
                    max_plane(<float *>px + i * hw, <float *>py + i * nout, pi + i * nout, &q)
            elif two:
                max_plane_2x2(<double *>px + i * hw, <double *>py + i * nout, pi + i * nout, &q)
            else:
                max_plane(<double *>px + i * hw, <double *>py + i * nout, pi + i * nout, &q)
    return y, idx


cdef int check_indices(indices, grad_out, Py_ssize_t hw) except -1:
    """indices: an int64 C-contiguous array of grad_out's shape, each in [0, hw)."""
    if not cnp.PyArray_Check(indices):
        raise TypeError(f"indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.dtype != np.int64:
        raise TypeError(f"indices must be int64, got {indices.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>indices):
        raise ValueError("indices must be C-contiguous (use numpy.ascontiguousarray)")
    check_shape(indices, grad_out.shape, "indices")
    cdef const index_t *p = <const index_t *>data(indices)
    cdef Py_ssize_t i, n = indices.size
    cdef index_t lo = 0, hi = 0
    for i in range(n):              # min/max pass (vectorised); the GIL is held
        lo = p[i] if p[i] < lo else lo
        hi = p[i] if p[i] > hi else hi
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
    cdef Py_ssize_t hw = h * w, planes = n * c, i
    cdef Py_ssize_t nout = grad_out.shape[2] * grad_out.shape[3]
    check_indices(indices, grad_out, hw)
    grad_x = np.empty((n, c, h, w), grad_out.dtype)
    cdef void *pg = data(grad_out)
    cdef void *px = data(grad_x)
    cdef const index_t *pi = <const index_t *>data(indices)
    cdef int nt = threads_for(planes * hw)
    with nogil:
        for i in prange(planes, num_threads=nt, schedule='static'):
            if t == cnp.NPY_FLOAT:
                max_plane_backward(<float *>pg + i * nout, pi + i * nout, <float *>px + i * hw,
                                   hw, nout)
            else:
                max_plane_backward(<double *>pg + i * nout, pi + i * nout, <double *>px + i * hw,
                                   hw, nout)
    return grad_x


def avg_pool2d_forward(x, kernel_size, *, stride=None, padding=0):
    """y as torch.nn.functional.avg_pool2d (count_include_pad=True, ceil_mode=False)."""
    cdef int t
    cdef Pool q
    t, q = parse_x(x, kernel_size, stride, padding)
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1], i
    cdef Py_ssize_t hw = q.h * q.w, nout = q.ho * q.wo
    y = np.empty((x.shape[0], x.shape[1], q.ho, q.wo), x.dtype)
    cdef void *px = data(x)
    cdef void *py = data(y)
    cdef int nt = threads_for(planes * hw)
    with nogil:
        for i in prange(planes, num_threads=nt, schedule='static'):
            if t == cnp.NPY_FLOAT:
                avg_plane(<float *>px + i * hw, <float *>py + i * nout, &q)
            else:
                avg_plane(<double *>px + i * hw, <double *>py + i * nout, &q)
    return y


def avg_pool2d_backward(grad_out, x_shape, kernel_size, *, stride=None, padding=0):
    """grad_x (N, C, H, W): each output's gradient / (KH*KW) spread over its window."""
    n, c, h, w = nchw_shape(x_shape, "x_shape")
    k, s, p, out = pool_geometry((h, w), kernel_size, stride, padding)
    cdef Pool q = make_pool(h, w, k, s, p, out)
    cdef int t = float_array(grad_out, "grad_out")
    check_ndim(grad_out, 4, "grad_out")
    check_shape(grad_out, (n, c, q.ho, q.wo), "grad_out")
    cdef Py_ssize_t planes = n * c, hw = h * w, nout = q.ho * q.wo, i
    grad_x = np.empty((n, c, h, w), grad_out.dtype)
    cdef void *pg = data(grad_out)
    cdef void *px = data(grad_x)
    cdef int nt = threads_for(planes * hw)
    with nogil:
        for i in prange(planes, num_threads=nt, schedule='static'):
            if t == cnp.NPY_FLOAT:
                avg_plane_backward(<float *>pg + i * nout, <float *>px + i * hw, &q)
            else:
                avg_plane_backward(<double *>pg + i * nout, <double *>px + i * hw, &q)
    return grad_x
