/* cygrad C kernels: plain C99 + intrinsics, no Python headers.
 *
 * GEMM (row-major):  C[m,n] = alpha * op(A)[m,k] @ op(B)[k,n] + beta * C
 *   op(A) = A (stored m x k, row stride lda) or A^T (trans_a: stored k x m)
 *   op(B) = B (stored k x n, row stride ldb) or B^T (trans_b: stored n x k)
 *   beta == 0 means C is write-only (never read, NaN in C does not propagate).
 * Every C element is summed by one thread, over k in a fixed order, so results
 * are bitwise identical for any nthreads (on a given instruction-set path).
 * Returns 0, or -1 when scratch memory could not be allocated.
 */
#ifndef CYGRAD_KERNELS_H
#define CYGRAD_KERNELS_H
#include <stdint.h>

typedef int64_t cg_int;

enum { CG_ISA_GENERIC = 0, CG_ISA_AVX2 = 1, CG_ISA_AVX512 = 2 };

int cg_isa_supported(int isa);       /* 1 if this CPU (and OS) can run it */
int cg_isa_best(void);
int cg_get_isa(void);
int cg_set_isa(int isa);             /* 0 ok, -1 unsupported on this CPU */
const char *cg_isa_name(int isa);

/* 0: the GEMM picks its small or large path by size; 1/2: force one (tests). */
extern int cg_gemm_force_path;

int cg_sgemm(int trans_a, int trans_b, cg_int m, cg_int n, cg_int k,
             float alpha, const float *a, cg_int lda, const float *b, cg_int ldb,
             float beta, float *c, cg_int ldc, int nthreads);
int cg_dgemm(int trans_a, int trans_b, cg_int m, cg_int n, cg_int k,
             double alpha, const double *a, cg_int lda, const double *b, cg_int ldb,
             double beta, double *c, cg_int ldc, int nthreads);

#endif
