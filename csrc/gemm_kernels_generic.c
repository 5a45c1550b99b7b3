/* Portable micro-kernels (any CPU, including aarch64): plain C that the compiler
 * vectorises with the baseline instruction set. MR x NR = 4 x 8. */
#include "gemm_internal.h"

#define G_MR 4
#define G_NR 8

#define DEFINE_GENERIC_UKR(NAME, T)                                              \
static void NAME(cg_int kc, const T *a, cg_int a_rs, cg_int a_cs,              \
                 const T *b, cg_int b_rs, T *c, cg_int ldc, T alpha, T beta)     \
{                                                                                \
    T acc[G_MR][G_NR] = {{0}};                                                   \
    for (cg_int p = 0; p < kc; ++p) {                                            \
        for (int r = 0; r < G_MR; ++r)                                           \
            for (int j = 0; j < G_NR; ++j)                                       \
                acc[r][j] += a[r * a_rs] * b[j];                                 \
        a += a_cs;                                                               \
        b += b_rs;                                                               \
    }                                                                            \
    for (int r = 0; r < G_MR; ++r) {                                             \
        T *cr = c + r * ldc;                                                     \
        if (beta == 0)                                                           \
            for (int j = 0; j < G_NR; ++j) cr[j] = alpha * acc[r][j];            \
        else                                                                     \
            for (int j = 0; j < G_NR; ++j) cr[j] = alpha * acc[r][j] + beta * cr[j]; \
    }                                                                            \
}

DEFINE_GENERIC_UKR(ukr_s_generic, float)
DEFINE_GENERIC_UKR(ukr_d_generic, double)

/* kc: B sliver (kc x NR) in L1; mc: A block (mc x kc) in L2; nc: B panel in L3. */
const cg_kernel_s cg_kernel_s_generic = {G_MR, G_NR, 256, 128, 2048, ukr_s_generic, 0, 0};
const cg_kernel_d cg_kernel_d_generic = {G_MR, G_NR, 256, 64, 2048, ukr_d_generic, 0, 0};
