# GEMM for other compiled kernels (conv, ...): row-major,
# C = alpha * op(A) @ op(B) + beta * C; returns 0, or -1 when out of memory.
# nthreads: threads to use inside (pass 1 when already inside a parallel region).
cdef int sgemm(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
               const float *a, Py_ssize_t lda, const float *b, Py_ssize_t ldb,
               float beta, float *c, Py_ssize_t ldc, int nthreads) noexcept nogil
cdef int dgemm(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
               const double *a, Py_ssize_t lda, const double *b, Py_ssize_t ldb,
               double beta, double *c, Py_ssize_t ldc, int nthreads) noexcept nogil
