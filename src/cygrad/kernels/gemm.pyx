# cython: language_level=3
"""Matrix multiply on cygrad's own GEMM (csrc/gemm*.c): BLIS-style packed
panels around AVX-512 / AVX2 / generic micro-kernels chosen at run time."""
import os
import warnings

import numpy as np
cimport numpy as cnp

from cygrad._runtime cimport num_threads
from cygrad.kernels._cgemm cimport *
from cygrad.kernels._checks cimport float_array, same_dtype, check_ndim, check_writeable, overlaps

cnp.import_array()

_ISA_NAMES = {"generic": CG_ISA_GENERIC, "avx2": CG_ISA_AVX2, "avx512": CG_ISA_AVX512}


cdef int sgemm(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
               const float *a, Py_ssize_t lda, const float *b, Py_ssize_t ldb,
               float beta, float *c, Py_ssize_t ldc, int nthreads) noexcept nogil:
    return cg_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nthreads)


cdef int dgemm(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
               const double *a, Py_ssize_t lda, const double *b, Py_ssize_t ldb,
               double beta, double *c, Py_ssize_t ldc, int nthreads) noexcept nogil:
    return cg_dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nthreads)


def isa_supported(str name):
    """True if this CPU can run the named GEMM path ('avx512', 'avx2', 'generic')."""
    if name not in _ISA_NAMES:
        raise ValueError(f"unknown ISA {name!r}; expected one of {sorted(_ISA_NAMES)}")
    return bool(cg_isa_supported(_ISA_NAMES[name]))


def get_isa():
    """Name of the instruction-set path the GEMM runs on."""
    return cg_isa_name(cg_get_isa()).decode()


def set_isa(str name=None):
    """Force a GEMM path (None: the best this CPU supports). For tests and benchmarks."""
    if name is None:
        cg_set_isa(cg_isa_best())
        return
    if not isa_supported(name):
        raise ValueError(f"ISA {name!r} is not supported by this CPU")
    cg_set_isa(_ISA_NAMES[name])


def _force_path(str path):
    """Force the GEMM's 'small' or 'large' path, or 'auto' (by size). For tests."""
    global cg_gemm_force_path
    cg_gemm_force_path = {"auto": 0, "small": 1, "large": 2}[path]


def _isa_from_env():
    name = os.environ.get("CYGRAD_ISA", "").strip().lower()
    if not name:
        return
    try:
        set_isa(name)
    except ValueError as e:
        warnings.warn(f"CYGRAD_ISA={name!r} ignored: {e}; using {get_isa()}", RuntimeWarning)


_isa_from_env()


def matmul(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """alpha * op(a) @ op(b) + beta * out, op(x) = x.T when its trans flag is set.

    a, b: 2-D C-contiguous arrays, both float32 or both float64. out: optional
    C-contiguous array of the result's shape and dtype, not overlapping a or b;
    required when beta != 0. Returns out, or a new array. Each output element is
    summed by one thread in a fixed order: bitwise identical for any thread count.
    """
    cdef int ta = bool(trans_a), tb = bool(trans_b)
    cdef int t = float_array(a, "a")
    same_dtype(float_array(b, "b"), t, b, "b", "a")
    check_ndim(a, 2, "a")
    check_ndim(b, 2, "b")
    cdef cnp.npy_intp *da = cnp.PyArray_DIMS(<cnp.ndarray>a)
    cdef cnp.npy_intp *db = cnp.PyArray_DIMS(<cnp.ndarray>b)
    cdef Py_ssize_t m = da[1] if ta else da[0]
    cdef Py_ssize_t k = da[0] if ta else da[1]
    cdef Py_ssize_t kb = db[1] if tb else db[0]
    cdef Py_ssize_t n = db[0] if tb else db[1]
    if k != kb:
        raise ValueError(
            f"shapes don't chain: op(a) is {m}x{k} (a {a.shape}, trans_a={bool(ta)}) but "
            f"op(b) is {kb}x{n} (b {b.shape}, trans_b={bool(tb)})")
    cdef double dalpha = alpha, dbeta = beta
    cdef cnp.npy_intp dims[2]
    if out is None:
        if dbeta != 0.0:
            raise ValueError("out is required when beta != 0")
        dims[0] = m
        dims[1] = n
        out = cnp.PyArray_EMPTY(2, dims, t, 0)
    else:
        same_dtype(float_array(out, "out"), t, out, "out", "a")
        check_ndim(out, 2, "out")
        if out.shape != (m, n):
            raise ValueError(f"out has shape {out.shape}, expected {(m, n)}")
        check_writeable(out, "out")
        if overlaps(out, a) or overlaps(out, b):
            raise ValueError("out must not overlap a or b")
    cdef void *pa = cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef void *pb = cnp.PyArray_DATA(<cnp.ndarray>b)
    cdef void *pc = cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef Py_ssize_t lda = da[1], ldb = db[1]
    cdef int nt = num_threads(), rc
    with nogil:
        if t == cnp.NPY_FLOAT:
            rc = cg_sgemm(ta, tb, m, n, k, <float>dalpha, <float *>pa, lda, <float *>pb, ldb,
                          <float>dbeta, <float *>pc, n, nt)
        else:
            rc = cg_dgemm(ta, tb, m, n, k, dalpha, <double *>pa, lda, <double *>pb, ldb,
                          dbeta, <double *>pc, n, nt)
    if rc != 0:
        raise MemoryError("matmul: could not allocate packing buffers")
    return out
