/* Shared between the GEMM driver and the per-instruction-set micro-kernels. */
#ifndef CYGRAD_GEMM_INTERNAL_H
#define CYGRAD_GEMM_INTERNAL_H
#include "cygrad_kernels.h"

/* Micro-kernel: C[r,j] = alpha * sum_p A(r,p) * B(p,j) + beta * C[r,j]
 * for r < MR, j < NR, p in [0, kc) in order, with
 *   A(r,p) = a[r*a_rs + p*a_cs]   (packed: a_rs = 1, a_cs = MR; or straight from
 *                                  the caller's matrix: row- or column-major)
 *   B(p,j) = b[p*b_rs + j]        (NR contiguous values per p; packed: b_rs = NR)
 *   C[r,j] = c[r*ldc + j]; beta == 0: C is not read.
 * Where the operands are read from does not change the arithmetic, so packing
 * or not never changes a result bit. */
typedef void (*cg_ukr_s)(cg_int kc, const float *a, cg_int a_rs, cg_int a_cs,
                         const float *b, cg_int b_rs, float *c, cg_int ldc,
                         float alpha, float beta);
typedef void (*cg_ukr_d)(cg_int kc, const double *a, cg_int a_rs, cg_int a_cs,
                         const double *b, cg_int b_rs, double *c, cg_int ldc,
                         double alpha, double beta);

/* Edge micro-kernel (optional): the same sums, for only rows x cols of C; it
 * reads only the first `rows` rows of A, so those may come straight from the
 * caller's matrix. */
typedef void (*cg_ukr_edge_s)(cg_int kc, const float *a, cg_int a_rs, cg_int a_cs,
                              const float *b, cg_int b_rs, float *c, cg_int ldc,
                              float alpha, float beta, int rows, int cols);
typedef void (*cg_ukr_edge_d)(cg_int kc, const double *a, cg_int a_rs, cg_int a_cs,
                              const double *b, cg_int b_rs, double *c, cg_int ldc,
                              double alpha, double beta, int rows, int cols);
/* Transposed-B packer (optional): dst[p*NR + j] = src[j*ld + p], j < NR, p < kb. */
typedef void (*cg_pack_bt_s)(const float *src, cg_int ld, cg_int kb, float *dst);
typedef void (*cg_pack_bt_d)(const double *src, cg_int ld, cg_int kb, double *dst);

typedef struct {
    int mr, nr, kc, mc, nc;
    cg_ukr_s ukr;
    cg_ukr_edge_s ukr_edge;
    cg_pack_bt_s pack_bt;
} cg_kernel_s;
typedef struct {
    int mr, nr, kc, mc, nc;
    cg_ukr_d ukr;
    cg_ukr_edge_d ukr_edge;
    cg_pack_bt_d pack_bt;
} cg_kernel_d;

extern const cg_kernel_s cg_kernel_s_generic, cg_kernel_s_avx2, cg_kernel_s_avx512;
extern const cg_kernel_d cg_kernel_d_generic, cg_kernel_d_avx2, cg_kernel_d_avx512;

#endif
