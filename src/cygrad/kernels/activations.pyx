# cython: language_level=3
"""Activations and their derivatives (same names, signatures and errors as
cygrad.reference.activations; formulas of torch's CPU kernels).

Elementwise maps run serially below a size threshold and in parallel (static
schedule, one contiguous slice per thread) above it; each element is computed
by the same code whatever the split, so results are bitwise identical for any
thread count. float32 exp/tanh use the vectorizable polynomials of cg_vmath.h,
float64 uses libm. The loops themselves live in csrc/cg_elementwise.h (compiled
for AVX-512 / AVX2 / SSE2 and picked at load time). softmax, log_softmax and
their derivatives split whole rows between threads, so each row, and its
float64 row sum, is computed by one thread in a fixed order.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp

from cygrad._runtime cimport num_threads
from cygrad.kernels._checks cimport float_array, check_ndim
from cygrad.kernels._elementwise cimport (PAR_MIN_CHEAP, PAR_MIN_TRANSCENDENTAL, like, out_array,
                                          chunk_len)
from cygrad.kernels._scalars cimport real
from cygrad.kernels._rowmath cimport softmax_rows

cnp.import_array()

cdef extern from "cg_elementwise.h" nogil:
    enum cg_map_op:
        CG_RELU, CG_LEAKY, CG_SIGMOID, CG_TANH, CG_RELU_BW, CG_LEAKY_BW, CG_SIGMOID_BW, CG_TANH_BW
    void cg_map_f32(int op, const float *a, const float *b, float *y, long n, float s)
    void cg_map_f64(int op, const double *a, const double *b, double *y, long n, double s)


cdef inline void _map_chunk(int op, const floating *a, const floating *b, floating *y,
                            Py_ssize_t n, floating s) noexcept nogil:
    """y = op(a) (forward, b unused) or y = op(a=grad_out, b=x or y) (backward):
    the loops of csrc/cg_elementwise.h."""
    if floating is float:
        cg_map_f32(op, a, b, y, n, s)
    else:
        cg_map_f64(op, a, b, y, n, s)


cdef void _map(int op, const floating *a, const floating *b, floating *y, Py_ssize_t n,
               floating s) noexcept nogil:
    cdef int nt = num_threads()
    cdef Py_ssize_t par_min = PAR_MIN_TRANSCENDENTAL if (op == CG_SIGMOID or op == CG_TANH) else PAR_MIN_CHEAP
    cdef Py_ssize_t step, c, lo, hi
    if nt < 2 or n < par_min:
        _map_chunk(op, a, b, y, n, s)
        return
    step = chunk_len(n, nt)
    for c in prange(nt, num_threads=nt, schedule="static"):
        lo = c * step
        hi = lo + step if lo + step < n else n
        if lo < hi:
            _map_chunk(op, a + lo, b + lo if b != NULL else NULL, y + lo, hi - lo, s)


cdef cnp.ndarray _checked(object a, object b, str b_name, object out, int ndim):
    """The array to write, after checking a (x, or grad_out when b is given; ndim-D unless
    ndim is 0), b (like a) and out."""
    cdef str a_name = "x" if b is None else "grad_out"
    cdef int t = float_array(a, a_name)
    if ndim:
        check_ndim(a, ndim, a_name)
    if b is not None:
        like(b, t, a, b_name, a_name)
    return out_array(out, a, t, a_name, b, b_name)


cdef object _apply(int op, object a, object b, str b_name, object out, double s):
    """Check the arguments, then run op; a is x (forward) or grad_out (backward)."""
    cdef cnp.ndarray y = _checked(a, b, b_name, out, 0)
    cdef void *pa = cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef void *pb = cnp.PyArray_DATA(<cnp.ndarray>b) if b is not None else NULL
    cdef void *py = cnp.PyArray_DATA(y)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(y)
    cdef int t = cnp.PyArray_TYPE(y)
    with nogil:
        if t == cnp.NPY_FLOAT:
            _map[float](op, <float *>pa, <float *>pb, <float *>py, n, <float>s)
        else:
            _map[double](op, <double *>pa, <double *>pb, <double *>py, n, s)
    return y


def relu(x, out=None):
    """max(x, 0); NaN propagates (torch.relu). out may be x (in place)."""
    return _apply(CG_RELU, x, None, None, out, 0.0)


def leaky_relu(x, negative_slope=0.01, out=None):
    """x if x > 0 else negative_slope * x (torch.nn.functional.leaky_relu)."""
    return _apply(CG_LEAKY, x, None, None, out, real(negative_slope, "negative_slope"))


def sigmoid(x, out=None):
    """1 / (1 + exp(-x)) (torch.sigmoid)."""
    return _apply(CG_SIGMOID, x, None, None, out, 0.0)


def tanh(x, out=None):
    """tanh(x) (torch.tanh); float32 through a vectorised polynomial, float64 through libm."""
    return _apply(CG_TANH, x, None, None, out, 0.0)


def relu_backward(grad_out, x, out=None):
    """grad_out where x > 0, else 0 (torch threshold_backward)."""
    return _apply(CG_RELU_BW, grad_out, x, "x", out, 0.0)


def leaky_relu_backward(grad_out, x, negative_slope=0.01, out=None):
    """grad_out where x > 0, else negative_slope * grad_out."""
    return _apply(CG_LEAKY_BW, grad_out, x, "x", out, real(negative_slope, "negative_slope"))


def sigmoid_backward(grad_out, y, out=None):
    """grad_out * (1 - y) * y from the output y = sigmoid(x) (torch's order of operations)."""
    return _apply(CG_SIGMOID_BW, grad_out, y, "y", out, 0.0)


def tanh_backward(grad_out, y, out=None):
    """grad_out * (1 - y*y) from the output y = tanh(x)."""
    return _apply(CG_TANH_BW, grad_out, y, "y", out, 0.0)


# ---- softmax / log_softmax over the last axis of a 2-D array, and their derivatives ----
cdef enum RowOp:
    SOFTMAX, LOG_SOFTMAX, SOFTMAX_BW, LOG_SOFTMAX_BW


cdef void _softmax_bw_rows(const floating *g, const floating *y, floating *o, Py_ssize_t r0,
                           Py_ssize_t r1, Py_ssize_t c, bint from_log) noexcept nogil:
    """Rows [r0, r1) of grad_x from the output y (o may be g or y):
    softmax:     o = y * (g - s),      s = sum_j g_j * y_j
    log_softmax: o = g - exp(y) * s,   s = sum_j g_j
    s accumulates in float64 in ascending j; each element is formed in double."""
    cdef Py_ssize_t r, j
    cdef const floating *gr
    cdef const floating *yr
    cdef floating *orow
    cdef double s
    for r in range(r0, r1):
        gr = g + r * c
        yr = y + r * c
        orow = o + r * c
        s = 0.0
        if from_log:
            for j in range(c):
                s += gr[j]
            for j in range(c):
                orow[j] = <floating>(gr[j] - exp(<double>yr[j]) * s)
        else:
            for j in range(c):
                s += <double>gr[j] * <double>yr[j]
            for j in range(c):
                orow[j] = <floating>(yr[j] * (gr[j] - s))


cdef inline void _row_chunk(int op, const floating *a, const floating *b, floating *y,
                            Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c) noexcept nogil:
    if op == SOFTMAX or op == LOG_SOFTMAX:
        softmax_rows(a, y, r0, r1, c, op == LOG_SOFTMAX)
    else:
        _softmax_bw_rows(a, b, y, r0, r1, c, op == LOG_SOFTMAX_BW)


cdef void _rows(int op, const floating *a, const floating *b, floating *y, Py_ssize_t rows,
                Py_ssize_t c) noexcept nogil:
    """op on each row of (rows, c) arrays, one thread per contiguous block of rows.
    The backward row sum is one dependent add per element, as slow as an exp."""
    cdef int nt = num_threads()
    cdef Py_ssize_t step, t, lo, hi
    if nt < 2 or rows * c < PAR_MIN_TRANSCENDENTAL or rows < 2:
        _row_chunk(op, a, b, y, 0, rows, c)
        return
    step = (rows + nt - 1) // nt
    for t in prange(nt, num_threads=nt, schedule="static"):
        lo = t * step
        hi = lo + step if lo + step < rows else rows
        if lo < hi:
            _row_chunk(op, a, b, y, lo, hi, c)


cdef object _rows_api(int op, object a, object b, str b_name, object out):
    """Check the arguments (a 2-D), then run op; a is x (forward) or grad_out (backward)."""
    cdef cnp.ndarray y = _checked(a, b, b_name, out, 2)
    cdef Py_ssize_t rows = cnp.PyArray_DIMS(y)[0], c = cnp.PyArray_DIMS(y)[1]
    cdef void *pa = cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef void *pb = cnp.PyArray_DATA(<cnp.ndarray>b) if b is not None else NULL
    cdef void *py = cnp.PyArray_DATA(y)
    cdef int t = cnp.PyArray_TYPE(y)
    if c == 0:
        return y
    with nogil:
        if t == cnp.NPY_FLOAT:
            _rows[float](op, <float *>pa, <float *>pb, <float *>py, rows, c)
        else:
            _rows[double](op, <double *>pa, <double *>pb, <double *>py, rows, c)
    return y


def softmax(x, out=None):
    """exp(x - max) / sum exp(x - max) over the last axis of a 2-D x (torch.softmax(x, -1)).
    Row sums accumulate in float64."""
    return _rows_api(SOFTMAX, x, None, None, out)


def log_softmax(x, out=None):
    """x - max - log(sum exp(x - max)) over the last axis of a 2-D x."""
    return _rows_api(LOG_SOFTMAX, x, None, None, out)


def softmax_backward(grad_out, y, out=None):
    """y * (grad_out - s), s = sum_j grad_out_j * y_j per row, from the output y = softmax(x)
    of a 2-D x (torch's softmax backward). s accumulates in float64."""
    return _rows_api(SOFTMAX_BW, grad_out, y, "y", out)


def log_softmax_backward(grad_out, y, out=None):
    """grad_out - exp(y) * s, s = sum_j grad_out_j per row, from the output y = log_softmax(x)
    of a 2-D x (torch's log_softmax backward). s accumulates in float64, exp is libm's."""
    return _rows_api(LOG_SOFTMAX_BW, grad_out, y, "y", out)
