# cython: language_level=3
"""Inverted dropout with a counter-based mask (same names, signatures, errors and
masks as cygrad.reference.dropout).

Element i (flat, C order) is dropped when the i-th output of the splitmix64
generator seeded with `seed` falls below p: u_i = mix(seed + (i + 1) * GAMMA),
dropped iff (u_i >> 11) < floor(p * 2**53). The mask is a pure function of
(seed, i), so it is the same for any thread count and for the reference.
mask: uint8, 1 = kept, 0 = dropped; kept elements are scaled by 1 / (1 - p).
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint64_t

from cygrad._runtime cimport num_threads
from cygrad.kernels._checks cimport float_array
from cygrad.kernels._elementwise cimport PAR_MIN_MEDIUM, chunk_len, out_array, new_like
from cygrad.kernels._scalars cimport real

cnp.import_array()

cdef uint64_t GAMMA = 0x9E3779B97F4A7C15ULL


cdef inline uint64_t _mix(uint64_t z) noexcept nogil:
    """splitmix64's output function."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef void _forward(const floating *x, floating *y, uint8_t *mask, Py_ssize_t lo, Py_ssize_t hi,
                   uint64_t seed, uint64_t thr, floating scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint8_t keep
    for i in range(lo, hi):
        keep = (_mix(seed + <uint64_t>(i + 1) * GAMMA) >> 11) >= thr
        mask[i] = keep
        # keep * scale is scale or 0 without a branch (a coin flip would mispredict);
        # a multiply even when dropped, so NaN stays NaN as in torch's x * mask
        y[i] = x[i] * (<floating>keep * scale)


cdef void _backward(const floating *go, const uint8_t *mask, floating *g, Py_ssize_t lo,
                    Py_ssize_t hi, floating scale) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        g[i] = go[i] * (<floating>(mask[i] != 0) * scale)  # nonzero = kept


cdef void _run(const floating *x, floating *y, uint8_t *mask, Py_ssize_t n, uint64_t seed,
               uint64_t thr, floating scale, bint forward) noexcept nogil:
    cdef int nt = num_threads()
    cdef Py_ssize_t step, k, lo, hi
    if nt < 2 or n < PAR_MIN_MEDIUM:
        if forward:
            _forward(x, y, mask, 0, n, seed, thr, scale)
        else:
            _backward(x, mask, y, 0, n, scale)
        return
    step = chunk_len(n, nt)
    for k in prange(nt, num_threads=nt, schedule="static"):
        lo = k * step
        hi = lo + step if lo + step < n else n
        if lo < hi:
            if forward:
                _forward(x, y, mask, lo, hi, seed, thr, scale)
            else:
                _backward(x, mask, y, lo, hi, scale)


cdef double _check_p(object p) except? -1.0:
    cdef double d = real(p, "p")
    if not 0.0 <= d < 1.0:
        raise ValueError(f"p must be in [0, 1), got {d}")
    return d


cdef uint64_t _check_seed(object seed) except? 0:
    import numpy
    if isinstance(seed, (bool, numpy.bool_)) or not isinstance(seed, (int, numpy.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return <uint64_t>int(seed)


def dropout(x, p, seed, out=None):
    """(y, mask): y = x * (mask / (1 - p)) with the counter-based mask above.

    seed: int in [0, 2**64). out: optional array like x (may be x itself)."""
    cdef int t = float_array(x, "x")
    cdef double dp = _check_p(p)
    cdef uint64_t s = _check_seed(seed)
    cdef cnp.ndarray y = out_array(out, x, t, "x")
    cdef cnp.ndarray mask = new_like(x, cnp.NPY_UINT8)
    cdef uint64_t thr = <uint64_t>(dp * 9007199254740992.0)  # floor(p * 2**53)
    cdef double scale = 1.0 / (1.0 - dp)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(y)
    cdef void *px = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef uint8_t *pm = <uint8_t *>cnp.PyArray_DATA(mask)
    with nogil:
        if t == cnp.NPY_FLOAT:
            _run[float](<float *>px, <float *>py, pm, n, s, thr, <float>scale, True)
        else:
            _run[double](<double *>px, <double *>py, pm, n, s, thr, scale, True)
    return y, mask


def dropout_backward(grad_out, mask, p):
    """grad_out * mask * (1 / (1 - p)): the gradient of dropout wrt x."""
    cdef int t = float_array(grad_out, "grad_out")
    if not cnp.PyArray_Check(mask):
        raise TypeError(f"mask must be a numpy.ndarray, got {type(mask).__name__}")
    if cnp.PyArray_TYPE(<cnp.ndarray>mask) != cnp.NPY_UINT8:
        raise TypeError(f"mask must be uint8 (as returned by dropout), got {mask.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>mask):
        raise ValueError("mask must be C-contiguous (use numpy.ascontiguousarray)")
    if not cnp.PyArray_SAMESHAPE(<cnp.ndarray>mask, <cnp.ndarray>grad_out):
        raise ValueError(f"mask has shape {mask.shape} but grad_out has shape {grad_out.shape}: "
                         "they must match")
    cdef double dp = _check_p(p)
    cdef double scale = 1.0 / (1.0 - dp)
    cdef cnp.ndarray g = new_like(grad_out, t)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(g)
    cdef void *pgo = cnp.PyArray_DATA(<cnp.ndarray>grad_out)
    cdef void *pg = cnp.PyArray_DATA(g)
    cdef uint8_t *pm = <uint8_t *>cnp.PyArray_DATA(<cnp.ndarray>mask)
    with nogil:
        if t == cnp.NPY_FLOAT:
            _run[float](<float *>pgo, <float *>pg, pm, n, 0, 0, <float>scale, False)
        else:
            _run[double](<double *>pgo, <double *>pg, pm, n, 0, 0, scale, False)
    return g
