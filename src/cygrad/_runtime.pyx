# cython: language_level=3
"""OpenMP runtime settings shared by all compiled kernels.

cygrad keeps one process-wide thread count (OpenMP's own setting is per calling
thread, so a count set from the main thread would not reach kernels called from
other Python threads). Kernels use min(that count, omp_get_max_threads()), so a
threadpoolctl limit on the OpenMP runtime is honoured too.
"""
cdef extern from *:
    """
    #if CYGRAD_OPENMP
    #include <omp.h>
    #define CG_HAVE_OPENMP 1
    #else
    #define CG_HAVE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static void omp_set_num_threads(int n) { (void)n; }
    #endif
    """
    int CG_HAVE_OPENMP
    int omp_get_max_threads() nogil
    void omp_set_num_threads(int) nogil

cdef int _nthreads = omp_get_max_threads()


cdef int num_threads() noexcept nogil:
    cdef int m = omp_get_max_threads()
    return _nthreads if _nthreads < m else m


def openmp_enabled():
    """True when the extensions were built with OpenMP."""
    return bool(CG_HAVE_OPENMP)


def get_num_threads():
    """Number of threads the kernels use (like torch.get_num_threads)."""
    return int(_nthreads) if CG_HAVE_OPENMP else 1


def set_num_threads(n):
    """Set the number of threads for all kernels, process-wide (like torch.set_num_threads)."""
    global _nthreads
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _nthreads = n
    omp_set_num_threads(n)
