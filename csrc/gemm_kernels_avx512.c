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

static void ukr_s_avx512(cg_int kc, const float *restrict a, cg_int a_rs, cg_int a_cs,
        const float *restrict b, cg_int b_rs, float *restrict c, cg_int ldc, float alpha, float beta)
{
    __m512 acc[S_MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < S_MR; ++r) { acc[r][0] = _mm512_setzero_ps(); acc[r][1] = _mm512_setzero_ps(); }
    for (cg_int p = 0; p < kc; ++p) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 8
        for (int r = 0; r < S_MR; ++r) {
            __m512 ar = _mm512_set1_ps(a[r * a_rs]);
            acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
        }
        a += a_cs;
        b += b_rs;
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

/* Edge tiles: only the `rows` rows that exist are computed (A is read only
 * there, so edge rows need no packing), masked stores replace a bounce buffer,
 * and one column of accumulators suffices when cols <= 16. Each output gets the
 * same FMAs in the same order as in ukr_s_avx512. */
#define DEFINE_EDGE_S(ROWS)                                                          \
static void edge_s_##ROWS(cg_int kc, const float *restrict a, cg_int a_rs, cg_int a_cs, \
        const float *restrict b, cg_int b_rs, float *restrict c, cg_int ldc,          \
        float alpha, float beta, int cols)                                          \
{                                                                                   \
    __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);             \
    __mmask16 m1 = cols >= 32 ? 0xFFFF : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0; \
    __m512 acc0[ROWS], acc1[ROWS];                                                  \
    _Pragma("GCC unroll 8")                                                         \
    for (int r = 0; r < ROWS; ++r) { acc0[r] = _mm512_setzero_ps(); acc1[r] = _mm512_setzero_ps(); } \
    if (cols <= 16) {                                                               \
        for (cg_int p = 0; p < kc; ++p) {                                           \
            __m512 b0 = _mm512_loadu_ps(b);                                         \
            _Pragma("GCC unroll 8")                                                 \
            for (int r = 0; r < ROWS; ++r)                                          \
                acc0[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r * a_rs]), b0, acc0[r]); \
            a += a_cs;                                                              \
            b += b_rs;                                                              \
        }                                                                           \
    } else {                                                                        \
        for (cg_int p = 0; p < kc; ++p) {                                           \
            __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);           \
            _Pragma("GCC unroll 8")                                                 \
            for (int r = 0; r < ROWS; ++r) {                                        \
                __m512 ar = _mm512_set1_ps(a[r * a_rs]);                            \
                acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);                         \
                acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);                         \
            }                                                                       \
            a += a_cs;                                                              \
            b += b_rs;                                                              \
        }                                                                           \
    }                                                                               \
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);                   \
    _Pragma("GCC unroll 8")                                                         \
    for (int r = 0; r < ROWS; ++r) {                                                \
        float *cr = c + r * ldc;                                                    \
        __m512 y0 = _mm512_mul_ps(va, acc0[r]), y1 = _mm512_mul_ps(va, acc1[r]);    \
        if (beta != 0.0f) {                                                         \
            y0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), y0);            \
            y1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), y1);       \
        }                                                                           \
        _mm512_mask_storeu_ps(cr, m0, y0);                                          \
        _mm512_mask_storeu_ps(cr + 16, m1, y1);                                     \
    }                                                                               \
}
DEFINE_EDGE_S(1) DEFINE_EDGE_S(2) DEFINE_EDGE_S(3) DEFINE_EDGE_S(4)
DEFINE_EDGE_S(5) DEFINE_EDGE_S(6) DEFINE_EDGE_S(7) DEFINE_EDGE_S(8)

static void ukr_s_avx512_edge(cg_int kc, const float *restrict a, cg_int a_rs, cg_int a_cs,
        const float *restrict b, cg_int b_rs, float *restrict c, cg_int ldc, float alpha,
        float beta, int rows, int cols)
{
    typedef void (*edge_fn)(cg_int, const float *, cg_int, cg_int, const float *, cg_int,
                            float *, cg_int, float, float, int);
    static const edge_fn by_rows[S_MR] = {edge_s_1, edge_s_2, edge_s_3, edge_s_4,
                                          edge_s_5, edge_s_6, edge_s_7, edge_s_8};
    by_rows[rows - 1](kc, a, a_rs, a_cs, b, b_rs, c, ldc, alpha, beta, cols);
}

/* 16 x 16 transpose: rows r[i] (16 floats each) -> out[j][i] = r[i][j] */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int q = 0; q < 4; ++q) {   /* rows 4q..4q+3: u[4q+c] = column 4L+c of each lane L */
        u[4 * q + 0] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
        u[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0xEE);
        u[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
        u[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xEE);
    }
    for (int c = 0; c < 4; ++c) {
        __m512 v = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        __m512 w = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        __m512 v2 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        __m512 w2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(v, w, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(v, w, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(v2, w2, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v2, w2, 0xDD);
    }
}

/* dst[p*32 + j] = src[j*ld + p] for j < 32, p < kb (B = W^T in x @ W^T) */
static void pack_bt_s_avx512(const float *restrict src, cg_int ld, cg_int kb, float *restrict dst)
{
    cg_int p = 0;
    for (; p + 16 <= kb; p += 16) {
        for (int h = 0; h < 2; ++h) {
            __m512 r[16];
            for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + (16 * h + i) * ld + p);
            transpose16(r);
            for (int q = 0; q < 16; ++q) _mm512_storeu_ps(dst + (p + q) * S_NR + 16 * h, r[q]);
        }
    }
    for (; p < kb; ++p)
        for (int j = 0; j < S_NR; ++j) dst[p * S_NR + j] = src[j * ld + p];
}

#define D_MR 8
#define D_NR 16

static void ukr_d_avx512(cg_int kc, const double *restrict a, cg_int a_rs, cg_int a_cs,
        const double *restrict b, cg_int b_rs, double *restrict c, cg_int ldc, double alpha, double beta)
{
    __m512d acc[D_MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < D_MR; ++r) { acc[r][0] = _mm512_setzero_pd(); acc[r][1] = _mm512_setzero_pd(); }
    for (cg_int p = 0; p < kc; ++p) {
        __m512d b0 = _mm512_loadu_pd(b), b1 = _mm512_loadu_pd(b + 8);
#pragma GCC unroll 8
        for (int r = 0; r < D_MR; ++r) {
            __m512d ar = _mm512_set1_pd(a[r * a_rs]);
            acc[r][0] = _mm512_fmadd_pd(ar, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_pd(ar, b1, acc[r][1]);
        }
        a += a_cs;
        b += b_rs;
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
const cg_kernel_s cg_kernel_s_avx512 = {S_MR, S_NR, 256, 192, 4096, ukr_s_avx512,
                                        ukr_s_avx512_edge, pack_bt_s_avx512};
const cg_kernel_d cg_kernel_d_avx512 = {D_MR, D_NR, 256, 96, 2048, ukr_d_avx512, 0, 0};

#else
const cg_kernel_s cg_kernel_s_avx512 = {0, 0, 0, 0, 0, 0, 0, 0};
const cg_kernel_d cg_kernel_d_avx512 = {0, 0, 0, 0, 0, 0, 0, 0};
#endif
