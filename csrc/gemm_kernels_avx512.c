/* AVX-512 micro-kernels. Compiled for AVX-512 by the pragma below (not by
 * -march flags), so the wheel still runs anywhere: gemm.c only calls these
 * after the CPU reported avx512f.
 * float:  MR x NR = 8 x 32 (16 zmm accumulators, 2 zmm of B, broadcasts of A)
 * double: MR x NR = 8 x 16 */
#include "gemm_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512vl,avx512dq,fma")
#include <immintrin.h>

#define S_MR 8
#define S_NR 32

static void ukr_s_avx512(cg_int kc, const float *restrict a, const float *restrict b,
                         float *restrict c, cg_int ldc, float alpha, float beta)
{
    __m512 acc[S_MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < S_MR; ++r) { acc[r][0] = _mm512_setzero_ps(); acc[r][1] = _mm512_setzero_ps(); }
    for (cg_int p = 0; p < kc; ++p) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 8
        for (int r = 0; r < S_MR; ++r) {
            __m512 ar = _mm512_set1_ps(a[r]);
            acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
        }
        a += S_MR;
        b += S_NR;
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int r = 0; r < S_MR; ++r) {
        float *cr = c + r * ldc;
        __m512 y0 = _mm512_mul_ps(va, acc[r][0]), y1 = _mm512_mul_ps(va, acc[r][1]);
        if (beta != 0.0f) {
            y0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr), y0);
            y1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16), y1);
        }
        _mm512_storeu_ps(cr, y0);
        _mm512_storeu_ps(cr + 16, y1);
    }
}

#define D_MR 8
#define D_NR 16

static void ukr_d_avx512(cg_int kc, const double *restrict a, const double *restrict b,
                         double *restrict c, cg_int ldc, double alpha, double beta)
{
    __m512d acc[D_MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < D_MR; ++r) { acc[r][0] = _mm512_setzero_pd(); acc[r][1] = _mm512_setzero_pd(); }
    for (cg_int p = 0; p < kc; ++p) {
        __m512d b0 = _mm512_load_pd(b), b1 = _mm512_load_pd(b + 8);
#pragma GCC unroll 8
        for (int r = 0; r < D_MR; ++r) {
            __m512d ar = _mm512_set1_pd(a[r]);
            acc[r][0] = _mm512_fmadd_pd(ar, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_pd(ar, b1, acc[r][1]);
        }
        a += D_MR;
        b += D_NR;
    }
    __m512d va = _mm512_set1_pd(alpha), vb = _mm512_set1_pd(beta);
#pragma GCC unroll 8
    for (int r = 0; r < D_MR; ++r) {
        double *cr = c + r * ldc;
        __m512d y0 = _mm512_mul_pd(va, acc[r][0]), y1 = _mm512_mul_pd(va, acc[r][1]);
        if (beta != 0.0) {
            y0 = _mm512_fmadd_pd(vb, _mm512_loadu_pd(cr), y0);
            y1 = _mm512_fmadd_pd(vb, _mm512_loadu_pd(cr + 8), y1);
        }
        _mm512_storeu_pd(cr, y0);
        _mm512_storeu_pd(cr + 8, y1);
    }
}

/* kc: the B sliver (kc x NR) stays in L1 (48 KiB here); mc: the A block
 * (mc x kc) in L2 (1 MiB per core); nc: the B panel (kc x nc) in L3 (32 MiB). */
const cg_kernel_s cg_kernel_s_avx512 = {S_MR, S_NR, 256, 192, 4096, ukr_s_avx512};
const cg_kernel_d cg_kernel_d_avx512 = {D_MR, D_NR, 256, 96, 2048, ukr_d_avx512};

#else
const cg_kernel_s cg_kernel_s_avx512 = {0, 0, 0, 0, 0, 0};
const cg_kernel_d cg_kernel_d_avx512 = {0, 0, 0, 0, 0, 0};
#endif
