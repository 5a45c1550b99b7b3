# Row reductions shared by softmax, log_softmax and cross_entropy (inline). Each
# uses LANES independent accumulators combined in a fixed order, so results never
# depend on threads, and float32 sums accumulate in float64.
from cython cimport floating
from libc.math cimport exp

cdef extern from "cg_vmath.h" nogil:
    float cg_expf(float x)


cdef inline floating fexp(floating x) noexcept nogil:
    """exp in the input precision: the vectorizable polynomial for float32, libm for float64."""
    if floating is float:
        return cg_expf(x)
    else:
        return exp(x)


cdef enum:
    LANES = 8      # independent partial max/sum accumulators (fixed: the order never varies)
    EXP_TILE = 256  # exp values are formed in a stack tile of this length, then summed


cdef inline floating row_max(const floating *x, Py_ssize_t c) noexcept nogil:
    """max over the row (a NaN in lane order may be skipped; it still poisons the sum)."""
    cdef floating acc[LANES]
    cdef Py_ssize_t j, k, full = c - c % LANES
    cdef floating m = x[0]
    for k in range(LANES):
        acc[k] = x[0]
    for j in range(0, full // LANES):
        for k in range(LANES):
            acc[k] = x[j * LANES + k] if x[j * LANES + k] > acc[k] else acc[k]
    for j in range(full, c):
        m = x[j] if x[j] > m else m
    for k in range(LANES):
        m = acc[k] if acc[k] > m else m
    return m


cdef inline double sum_lanes(const floating *e, Py_ssize_t n) noexcept nogil:
    """sum of e in float64, LANES partial sums combined in a fixed order."""
    cdef double acc[LANES]
    cdef Py_ssize_t j, k, full = n - n % LANES
    cdef double s = 0.0
    for k in range(LANES):
        acc[k] = 0.0
    for j in range(0, full // LANES):
        for k in range(LANES):
            acc[k] += e[j * LANES + k]
    for k in range(LANES):
        s += acc[k]
    for j in range(full, n):
        s += e[j]
    return s


cdef inline double exp_sum(const floating *x, floating m, floating *e, Py_ssize_t c) noexcept nogil:
    """sum_j exp(x_j - m) in float64; the exp values are left in e (which may be x)."""
    cdef Py_ssize_t j
    for j in range(c):
        e[j] = fexp(x[j] - m)
    return sum_lanes(e, c)
