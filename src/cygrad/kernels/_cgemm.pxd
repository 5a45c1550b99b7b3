# The C GEMM (csrc/cygrad_kernels.h). Only gemm.pyx links it; other kernels call
# the cdef wrappers declared in gemm.pxd.
cdef extern from "cygrad_kernels.h" nogil:
    ctypedef long long cg_int "cg_int"
    int CG_ISA_GENERIC, CG_ISA_AVX2, CG_ISA_AVX512
    int cg_gemm_force_path
    int cg_isa_supported(int isa)
    int cg_isa_best()
    int cg_get_isa()
    int cg_set_isa(int isa)
    const char *cg_isa_name(int isa)
    int cg_sgemm(int ta, int tb, cg_int m, cg_int n, cg_int k, float alpha,
                 const float *a, cg_int lda, const float *b, cg_int ldb,
                 float beta, float *c, cg_int ldc, int nthreads)
    int cg_dgemm(int ta, int tb, cg_int m, cg_int n, cg_int k, double alpha,
                 const double *a, cg_int lda, const double *b, cg_int ldb,
                 double beta, double *c, cg_int ldc, int nthreads)
