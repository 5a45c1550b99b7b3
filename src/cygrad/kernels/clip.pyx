# cython: language_level=3
"""Vector norms and in-place scaling and clamping (same names, signatures and errors
as cygrad.reference.clip): what cygrad.nn.utils.clip_grad_norm_ and clip_grad_value_
run on a flat gradient buffer.

vector_norm follows torch.linalg.vector_norm on the flattened array. Its terms are
formed and summed in float64: the array is cut into fixed SUM_BLOCK-element blocks,
each summed serially in the fixed lanes of csrc/cg_norm.h (by one thread), and the
block sums are added in block order, so the norm is bitwise identical for any thread
count. When the terms overflow or underflow float64 (while max |x| is finite and not
0), the sum is formed again on |x| / max |x|. scale_ and clamp_ are elementwise.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.float cimport DBL_MAX
from libc.math cimport INFINITY, isnan, pow, sqrt
from libc.stdlib cimport free, malloc

from cygrad._runtime cimport num_threads
from cygrad.kernels._checks cimport array_data, check_writeable, float_array
from cygrad.kernels._elementwise cimport (PAR_MIN_CHEAP, PAR_MIN_MEDIUM, PAR_MIN_TRANSCENDENTAL,
                                          SUM_BLOCK, chunk_len)
from cygrad.kernels._scalars cimport real
from cygrad.reference.clip import RESCALE_BELOW, parse_ord

cnp.import_array()

cdef extern from "cg_norm.h" nogil:
    double cg_abs_sum_f32(const float *x, long n)
    double cg_abs_sum_f64(const double *x, long n)
    double cg_sq_sum_f32(const float *x, long n)
    double cg_sq_sum_f64(const double *x, long n)
    double cg_pow_sum_f32(const float *x, long n, double p, double scale)
    double cg_pow_sum_f64(const double *x, long n, double p, double scale)
    float cg_abs_max_f32(const float *x, long n)
    double cg_abs_max_f64(const double *x, long n)

cdef enum Reduce:
    ABS_SUM   # sum |x|
    SQ_SUM    # sum x^2
    POW_SUM   # sum (|x| * scale)^p
    ABS_MAX   # max |x|, NaN if any x is NaN

cdef double RESCALE = RESCALE_BELOW  # (shared with the reference)


cdef double block_value(Reduce r, const floating *x, Py_ssize_t n, double p,
                        double scale) noexcept nogil:
    """The reduction r of one block of n elements."""
    if floating is float:
        if r == ABS_SUM:
            return cg_abs_sum_f32(x, n)
        if r == SQ_SUM:
            return cg_sq_sum_f32(x, n)
        if r == POW_SUM:
            return cg_pow_sum_f32(x, n, p, scale)
        return cg_abs_max_f32(x, n)
    else:
        if r == ABS_SUM:
            return cg_abs_sum_f64(x, n)
        if r == SQ_SUM:
            return cg_sq_sum_f64(x, n)
        if r == POW_SUM:
            return cg_pow_sum_f64(x, n, p, scale)
        return cg_abs_max_f64(x, n)


cdef double blocked(Reduce r, const floating *x, Py_ssize_t n, double p, double scale,
                    double *part) noexcept nogil:
    """r over fixed SUM_BLOCK-element blocks (in parallel when large), then the block
    values combined in block order."""
    cdef Py_ssize_t nb = (n + SUM_BLOCK - 1) // SUM_BLOCK, k, lo
    cdef Py_ssize_t par_min = PAR_MIN_TRANSCENDENTAL if r == POW_SUM else PAR_MIN_MEDIUM
    cdef int nt = num_threads()
    cdef double total = 0.0
    if nt < 2 or n < par_min:
        nt = 1
    for k in prange(nb, num_threads=nt, schedule="static"):
        lo = k * SUM_BLOCK
        part[k] = block_value(r, x + lo, (n - lo) if n - lo < SUM_BLOCK else SUM_BLOCK, p, scale)
    for k in range(nb):
        if r != ABS_MAX:
            total += part[k]
        elif isnan(part[k]) or part[k] > total:  # a NaN, once met, stays
            total = part[k]
    return total


cdef double reduce_all(Reduce r, object x, double p, double scale) except? -1.0:
    """r over every element of the checked array x."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>x)
    cdef Py_ssize_t nb = (n + SUM_BLOCK - 1) // SUM_BLOCK
    cdef double stack_part[64]
    cdef double *part = &stack_part[0] if nb <= 64 else <double *>malloc(nb * sizeof(double))
    cdef double total
    cdef void *px = array_data(x)
    cdef bint single = cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_FLOAT
    if part == NULL:
        raise MemoryError("could not allocate the block sums")
    with nogil:
        if single:
            total = blocked(r, <const float *>px, n, p, scale, part)
        else:
            total = blocked(r, <const double *>px, n, p, scale, part)
    if part != &stack_part[0]:
        free(part)
    return total


cdef double root(double total, double p) noexcept nogil:
    """total^(1/p), with p = 1 and p = 2 exact operations."""
    if p == 1.0:
        return total
    return sqrt(total) if p == 2.0 else pow(total, 1.0 / p)


def vector_norm(x, ord=2.0):
    """(sum |x|^ord)^(1/ord) over all elements of x, as a Python float; ord = inf: max |x|
    (an error for an empty x, as in torch). NaN and inf propagate as in
    torch.linalg.vector_norm."""
    float_array(x, "x")
    cdef double p = parse_ord(ord), total, top
    if p == INFINITY:
        if cnp.PyArray_SIZE(<cnp.ndarray>x) == 0:
            raise ValueError("vector_norm with ord=inf of an empty array is undefined "
                             "(max has no identity), as in torch")
        return reduce_all(ABS_MAX, x, p, 1.0)
    total = reduce_all(ABS_SUM if p == 1.0 else (SQ_SUM if p == 2.0 else POW_SUM), x, p, 1.0)
    if total > DBL_MAX or total < RESCALE:  # terms overflowed or underflowed
        top = reduce_all(ABS_MAX, x, p, 1.0)
        if 0.0 < top < INFINITY:
            return top * root(reduce_all(POW_SUM, x, p, 1.0 / top), p)
    return root(total, p)


# ---------------------------------------------------------------- in place

cdef enum Update:
    SCALE   # x *= a
    CLAMP   # x = min(max(x, a), b), NaN bounds propagating


cdef void update_chunk(Update u, floating *x, Py_ssize_t n, floating a, floating b) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v
    if u == SCALE:
        for i in range(n):
            x[i] = x[i] * a
        return
    for i in range(n):  # comparisons with NaN are false: NaN in x stays NaN
        v = x[i]
        v = a if (v < a or a != a) else v
        v = b if (v > b or b != b) else v
        x[i] = v


cdef void update(Update u, floating *x, Py_ssize_t n, floating a, floating b) noexcept nogil:
    """update_chunk over n elements, one contiguous slice per thread when large."""
    cdef int nt = num_threads()
    cdef Py_ssize_t step, k, lo, hi
    if nt < 2 or n < PAR_MIN_CHEAP:
        update_chunk(u, x, n, a, b)
        return
    step = chunk_len(n, nt)
    for k in prange(nt, num_threads=nt, schedule="static"):
        lo = k * step
        hi = lo + step if lo + step < n else n
        if lo < hi:
            update_chunk(u, x + lo, hi - lo, a, b)


cdef int in_place_target(object x) except -1:
    """The dtype number of x, a writeable float array."""
    cdef int t = float_array(x, "x")
    check_writeable(x, "x")
    return t


cdef object update_in_place(Update u, object x, int t, double a, double b):
    """u on the checked array x (dtype number t), a and b rounded to its dtype."""
    cdef void *px = array_data(x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>x)
    with nogil:
        if t == cnp.NPY_FLOAT:
            update(u, <float *>px, n, <float>a, <float>b)
        else:
            update(u, <double *>px, n, a, b)
    return x


def scale_(x, alpha):
    """x *= alpha in place (alpha rounded to x's dtype, as torch.Tensor.mul_); returns x."""
    cdef int t = in_place_target(x)
    return update_in_place(SCALE, x, t, real(alpha, "alpha"), 0.0)


def clamp_(x, min, max):
    """x = min(max(x, min), max) in place, as torch.Tensor.clamp_: NaN in x stays NaN, a
    NaN bound makes every element NaN, min > max sets every element to max; either bound
    may be None (not both). Bounds are rounded to x's dtype. Returns x."""
    cdef int t = in_place_target(x)
    if min is None and max is None:
        raise ValueError("clamp_ needs at least one of min and max (both are None)")
    cdef double lo = -INFINITY if min is None else real(min, "min")
    cdef double hi = INFINITY if max is None else real(max, "max")
    return update_in_place(CLAMP, x, t, lo, hi)
