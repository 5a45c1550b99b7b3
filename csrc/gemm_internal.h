/* Shared between the GEMM driver and the per-instruction-set micro-kernels. */
#ifndef CYGRAD_GEMM_INTERNAL_H
#define CYGRAD_GEMM_INTERNAL_H
#include "cygrad_kernels.h"

/* Micro-kernel: C[MR,NR] = alpha * sum_p a[p*MR + r] * b[p*NR + c] + beta * C
 * over p in [0, kc), a and b packed (see gemm_impl.h), C with row stride ldc.
 * beta == 0: C is not read. */
typedef void (*cg_ukr_s)(cg_int kc, const float *a, const float *b,
                         float *c, cg_int ldc, float alpha, float beta);
typedef void (*cg_ukr_d)(cg_int kc, const double *a, const double *b,
                         double *c, cg_int ldc, double alpha, double beta);

typedef struct { int mr, nr, kc, mc, nc; cg_ukr_s ukr; } cg_kernel_s;
typedef struct { int mr, nr, kc, mc, nc; cg_ukr_d ukr; } cg_kernel_d;

extern const cg_kernel_s cg_kernel_s_generic, cg_kernel_s_avx2, cg_kernel_s_avx512;
extern const cg_kernel_d cg_kernel_d_generic, cg_kernel_d_avx2, cg_kernel_d_avx512;

#endif
