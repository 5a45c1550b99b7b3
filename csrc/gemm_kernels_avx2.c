/* AVX2 + FMA micro-kernels, compiled for that target by the pragma below.
 * float:  MR x NR = 6 x 16 (12 ymm accumulators)
 * double: MR x NR = 6 x 8 */
#include "gemm_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#define S_MR 6
#define S_NR 16

static void ukr_s_avx2(cg_int kc, const float *restrict a, cg_int a_rs, cg_int a_cs,
        const float *restrict b, cg_int b_rs, float *restrict c, cg_int ldc, float alpha, float beta)
{
    __m256 acc[S_MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < S_MR; ++r) { acc[r][0] = _mm256_setzero_ps(); acc[r][1] = _mm256_setzero_ps(); }
    for (cg_int p = 0; p < kc; ++p) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int r = 0; r < S_MR; ++r) {
            __m256 ar = _mm256_broadcast_ss(a + r * a_rs);
            acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
        }
        a += a_cs;
        b += b_rs;
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < S_MR; ++r) {
        float *cr = c + r * ldc;
        __m256 y0 = _mm256_mul_ps(va, acc[r][0]), y1 = _mm256_mul_ps(va, acc[r][1]);
        if (beta != 0.0f) {
            y0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), y0);
            y1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), y1);
        }
        _mm256_storeu_ps(cr, y0);
        _mm256_storeu_ps(cr + 8, y1);
    }
}

#define D_MR 6
#define D_NR 8

static void ukr_d_avx2(cg_int kc, const double *restrict a, cg_int a_rs, cg_int a_cs,
        const double *restrict b, cg_int b_rs, double *restrict c, cg_int ldc, double alpha, double beta)
{
    __m256d acc[D_MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < D_MR; ++r) { acc[r][0] = _mm256_setzero_pd(); acc[r][1] = _mm256_setzero_pd(); }
    for (cg_int p = 0; p < kc; ++p) {
        __m256d b0 = _mm256_loadu_pd(b), b1 = _mm256_loadu_pd(b + 4);
#pragma GCC unroll 6
        for (int r = 0; r < D_MR; ++r) {
            __m256d ar = _mm256_broadcast_sd(a + r * a_rs);
            acc[r][0] = _mm256_fmadd_pd(ar, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_pd(ar, b1, acc[r][1]);
        }
        a += a_cs;
        b += b_rs;
    }
    __m256d va = _mm256_set1_pd(alpha), vb = _mm256_set1_pd(beta);
#pragma GCC unroll 6
    for (int r = 0; r < D_MR; ++r) {
        double *cr = c + r * ldc;
        __m256d y0 = _mm256_mul_pd(va, acc[r][0]), y1 = _mm256_mul_pd(va, acc[r][1]);
        if (beta != 0.0) {
            y0 = _mm256_fmadd_pd(vb, _mm256_loadu_pd(cr), y0);
            y1 = _mm256_fmadd_pd(vb, _mm256_loadu_pd(cr + 4), y1);
        }
        _mm256_storeu_pd(cr, y0);
        _mm256_storeu_pd(cr + 4, y1);
    }
}

/* kc: B sliver in L1; mc: A block in L2; nc: B panel in L3. */
const cg_kernel_s cg_kernel_s_avx2 = {S_MR, S_NR, 256, 144, 4096, ukr_s_avx2, 0, 0};
const cg_kernel_d cg_kernel_d_avx2 = {D_MR, D_NR, 256, 72, 2048, ukr_d_avx2, 0, 0};

#else
const cg_kernel_s cg_kernel_s_avx2 = {0, 0, 0, 0, 0, 0, 0, 0};
const cg_kernel_d cg_kernel_d_avx2 = {0, 0, 0, 0, 0, 0, 0, 0};
#endif
