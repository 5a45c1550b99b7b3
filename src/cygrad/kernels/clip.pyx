# cython: language_level=3
"""Vector norms and in-place scaling and clamping (same names, signatures and errors
as cygrad.reference.clip): what cygrad.nn.utils.clip_grad_norm_ and clip_grad_value_
run on a flat gradient buffer.

vector_norm follows torch.linalg.vector_norm on the flattened array. Its terms are
formed and summed in float64: the array is cut into fixed SUM_BLOCK-element blocks,
each summed serially in the fixed lanes of csrc/cg_norm.h (by one thread), and the
block sums are added in block order, so the norm is bitwise identical for any thread
count. When the terms overflow or underflow float64 (while max |x| is finite and not
0), the sum is formed again on |x| / max |x|. scale_ and clamp_ are elementwise (on
the same blocks). The loops are those of csrc/cg_norm.h.
"""
cimport numpy as cnp
from cython.parallel cimport prange
from libc.float cimport DBL_MAX
from libc.math cimport INFINITY, isnan, pow, sqrt
from libc.stdlib cimport free, malloc

from cygrad._runtime cimport num_threads
from cygrad.kernels._checks cimport array_data, check_writeable, float_array
from cygrad.kernels._elementwise cimport (PAR_MIN_CHEAP, PAR_MIN_MEDIUM, PAR_MIN_TRANSCENDENTAL,
                                          SUM_BLOCK)
from cygrad.kernels._scalars cimport real
from cygrad.reference.clip import RESCALE_BELOW, parse_ord

cnp.import_array()

# the type-generic entry points of csrc/cg_norm.h: dbl = 1 for float64, 0 for float32
cdef extern from "cg_norm.h" nogil:
    double cg_abs_sum(int dbl, const void *x, long n)
    double cg_sq_sum(int dbl, const void *x, long n)
    double cg_pow_sum(int dbl, const void *x, long n, double p, double scale)
    double cg_abs_max(int dbl, const void *x, long n)
    void cg_scale(int dbl, void *x, long n, double a)
    void cg_clamp(int dbl, void *x, long n, double lo, double hi)

cdef enum Op:
    ABS_SUM   # sum |x|
    SQ_SUM    # sum x^2
    POW_SUM   # sum (|x| * a)^p
    ABS_MAX   # max |x|, NaN if any x is NaN
    SCALE     # x *= a (in place)
    CLAMP     # x = min(max(x, a), b) (in place)

cdef double RESCALE = RESCALE_BELOW  # (shared with the reference)


cdef double on_block(Op op, int dbl, void *x, Py_ssize_t n, double p, double a,
                     double b) noexcept nogil:
    """op on one block of n elements: its value (0 for the in-place ops)."""
    if op == ABS_SUM:
        return cg_abs_sum(dbl, x, n)
    if op == SQ_SUM:
        return cg_sq_sum(dbl, x, n)
    if op == POW_SUM:
        return cg_pow_sum(dbl, x, n, p, a)
    if op == ABS_MAX:
        return cg_abs_max(dbl, x, n)
    if op == SCALE:
        cg_scale(dbl, x, n, a)  # a and b are rounded to float32 there for float32 data
    else:
        cg_clamp(dbl, x, n, a, b)
    return 0.0


cdef int threads_for(Op op, Py_ssize_t n) noexcept nogil:
    """Below its threshold an op runs on the calling thread."""
    cdef Py_ssize_t par_min = PAR_MIN_MEDIUM
    if op == POW_SUM:
        par_min = PAR_MIN_TRANSCENDENTAL
    elif op == SCALE or op == CLAMP:
        par_min = PAR_MIN_CHEAP
    return 1 if n < par_min else num_threads()


cdef double blocks(Op op, int dbl, char *x, Py_ssize_t n, double p, double a, double b,
                   double *part) noexcept nogil:
    """op over fixed SUM_BLOCK-element blocks (in parallel when large), then the block
    values combined in block order."""
    cdef Py_ssize_t nb = (n + SUM_BLOCK - 1) // SUM_BLOCK, k, lo
    cdef int itemsize = 8 if dbl else 4
    cdef double total = 0.0
    for k in prange(nb, num_threads=threads_for(op, n), schedule="static"):
        lo = k * SUM_BLOCK
        part[k] = on_block(op, dbl, <void *>(x + lo * itemsize),
                           (n - lo) if n - lo < SUM_BLOCK else SUM_BLOCK, p, a, b)
    for k in range(nb):
        if op != ABS_MAX:
            total += part[k]
        elif isnan(part[k]) or part[k] > total:  # a NaN, once met, stays
            total = part[k]
    return total


cdef double run(Op op, object x, double p, double a, double b) except? -1.0:
    """op over every element of the checked array x."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>x)
    cdef Py_ssize_t nb = (n + SUM_BLOCK - 1) // SUM_BLOCK
    cdef double stack_part[64]
    cdef double *part = &stack_part[0] if nb <= 64 else <double *>malloc(nb * sizeof(double))
    cdef double total
    cdef char *px = <char *>array_data(x)
    cdef int dbl = cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_DOUBLE
    if part == NULL:
        raise MemoryError("could not allocate the block sums")
    with nogil:
        total = blocks(op, dbl, px, n, p, a, b, part)
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
        return run(ABS_MAX, x, p, 0.0, 0.0)
    total = run(ABS_SUM if p == 1.0 else (SQ_SUM if p == 2.0 else POW_SUM), x, p, 1.0, 0.0)
    if total > DBL_MAX or total < RESCALE:  # terms overflowed or underflowed
        top = run(ABS_MAX, x, p, 0.0, 0.0)
        if 0.0 < top < INFINITY:
            return top * root(run(POW_SUM, x, p, 1.0 / top, 0.0), p)
    return root(total, p)


# ---------------------------------------------------------------- in place

cdef int in_place_target(object x) except -1:
    """Check x is a writeable float array."""
    float_array(x, "x")
    check_writeable(x, "x")
    return 0


def scale_(x, alpha):
    """x *= alpha in place (alpha rounded to x's dtype, as torch.Tensor.mul_); returns x."""
    in_place_target(x)
    run(SCALE, x, 0.0, real(alpha, "alpha"), 0.0)
    return x


def clamp_(x, min, max):
    """x = min(max(x, min), max) in place, as torch.Tensor.clamp_: NaN in x stays NaN, a
    NaN bound makes every element NaN, min > max sets every element to max; either bound
    may be None (not both). Bounds are rounded to x's dtype. Returns x."""
    in_place_target(x)
    if min is None and max is None:
        raise ValueError("clamp_ needs at least one of min and max (both are None)")
    cdef double lo = -INFINITY if min is None else real(min, "min")
    cdef double hi = INFINITY if max is None else real(max, "max")
    run(CLAMP, x, 0.0, lo, hi)
    return x
