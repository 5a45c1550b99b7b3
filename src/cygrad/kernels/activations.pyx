# cython: language_level=3
"""Activations and their derivatives (same names, signatures and errors as
cygrad.reference.activations; formulas of torch's CPU kernels).

Elementwise maps run serially below a size threshold and in parallel (static
schedule, one contiguous slice per thread) above it; each element is computed
by the same code whatever the split, so results are bitwise identical for any
thread count. float32 exp/tanh use the vectorizable polynomials of cg_vmath.h,
float64 uses libm. The loops themselves live in csrc/cg_elementwise.h (compiled
for AVX-512 / AVX2 / SSE2 and picked at load time).
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

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


cdef object _apply(int op, object a, object b, str b_name, object out, double s):
    """Check the arguments, then run op; a is x (forward) or grad_out (backward)."""
    cdef str a_name = "x" if b is None else "grad_out"
    cdef int t = float_array(a, a_name)
    if b is not None:
        like(b, t, a, b_name, a_name)
    cdef cnp.ndarray y = out_array(out, a, t, a_name, b, b_name)
    cdef void *pa = cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef void *pb = cnp.PyArray_DATA(<cnp.ndarray>b) if b is not None else NULL
    cdef void *py = cnp.PyArray_DATA(y)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(y)
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


# ---- softmax / log_softmax over the last axis of a 2-D array -------------------------
cdef void _softmax(const floating *x, floating *y, Py_ssize_t rows, Py_ssize_t c,
                   bint take_log) noexcept nogil:
    cdef int nt = num_threads()
    cdef Py_ssize_t step, t, lo, hi
    if nt < 2 or rows * c < PAR_MIN_TRANSCENDENTAL or rows < 2:
        softmax_rows(x, y, 0, rows, c, take_log)
        return
    step = (rows + nt - 1) // nt
    for t in prange(nt, num_threads=nt, schedule="static"):
        lo = t * step
        hi = lo + step if lo + step < rows else rows
        if lo < hi:
            softmax_rows(x, y, lo, hi, c, take_log)


cdef object _softmax_api(object x, object out, bint take_log):
    cdef int t = float_array(x, "x")
    check_ndim(x, 2, "x")
    cdef cnp.ndarray y = out_array(out, x, t, "x")
    cdef cnp.npy_intp *d = cnp.PyArray_DIMS(y)
    cdef Py_ssize_t rows = d[0], c = d[1]
    cdef void *px = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef void *py = cnp.PyArray_DATA(y)
    if c == 0:
        return y
    with nogil:
        if t == cnp.NPY_FLOAT:
            _softmax[float](<float *>px, <float *>py, rows, c, take_log)
        else:
            _softmax[double](<double *>px, <double *>py, rows, c, take_log)
    return y


def softmax(x, out=None):
    """exp(x - max) / sum exp(x - max) over the last axis of a 2-D x (torch.softmax(x, -1)).
    Row sums accumulate in float64."""
    return _softmax_api(x, out, False)


def log_softmax(x, out=None):
    """x - max - log(sum exp(x - max)) over the last axis of a 2-D x."""
    return _softmax_api(x, out, True)
