/* Max-pool scans of cygrad.kernels.pool (included by pool.pyx; header-only, static).
 *
 * In C because Cython turns `a if c else b` into a branch, and on real data that
 * branch is unpredictable (half the windows change their maximum); C's ?: becomes
 * a blend, and the 2x2 loop over outputs vectorises. A float blend needs AVX or
 * SSE4.1, so the functions are cloned per instruction set (picked at load time).
 */
#ifndef CYGRAD_CONV_POOL_H
#define CYGRAD_CONV_POOL_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#define CG_BLK 16
/* torch's test: the first maximum wins, a NaN always takes over */
#define CG_TAKE(v, m) (((v) > (m)) | ((v) != (v)))
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define CG_POOL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CG_POOL_CLONES
#endif
#define CG_DEFINE_MAXPOOL(T, I, S)                                                      \
/* one output row of 2x2/stride-2 windows; rows r0, r1 start at flat index base.  */ \
/* Blocks of CG_BLK outputs go through zero-padded copies so the compare loop has */ \
/* a fixed trip count: it vectorises whole, with no branchy scalar remainder.     */ \
CG_POOL_CLONES static void cg_max2x2_row_##S(const T *restrict r0, const T *restrict r1,  \
        T *restrict y, int64_t *restrict idx, ptrdiff_t wo, int64_t base, int64_t w) {\
    T a0[2 * CG_BLK] = {0}, a1[2 * CG_BLK] = {0}, ym[CG_BLK];                         \
    I km[CG_BLK];                                                                   \
    for (ptrdiff_t o0 = 0; o0 < wo; o0 += CG_BLK) {                                 \
        ptrdiff_t n = wo - o0 < CG_BLK ? wo - o0 : CG_BLK;                          \
        memcpy(a0, r0 + 2 * o0, 2 * n * sizeof(T));                                 \
        memcpy(a1, r1 + 2 * o0, 2 * n * sizeof(T));                                 \
        for (int o = 0; o < CG_BLK; o++) {                                          \
            T a = a0[2 * o], b = a0[2 * o + 1], c = a1[2 * o], d = a1[2 * o + 1];   \
            T m = a; I k = 0; I t; /* I: an int as wide as T, so lanes line up */   \
            t = CG_TAKE(b, m); m = t ? b : m; k = t ? 1 : k;                        \
            t = CG_TAKE(c, m); m = t ? c : m; k = t ? 2 : k;                        \
            t = CG_TAKE(d, m); m = t ? d : m; k = t ? 3 : k;                        \
            ym[o] = m; km[o] = k;                                                   \
        }                                                                           \
        for (ptrdiff_t o = 0; o < n; o++) {                                         \
            y[o0 + o] = ym[o];                                                      \
            idx[o0 + o] = base + 2 * (o0 + o) + (km[o] & 1) + (km[o] >> 1) * w;     \
        }                                                                           \
    }                                                                               \
}                                                                                   \
/* max over rows [h0, h1) x cols [w0, w1) of a plane of width w; -inf start,   */  \
/* index of the first valid position when nothing beats it (as torch)          */  \
CG_POOL_CLONES static T cg_max_window_##S(const T *x, ptrdiff_t w, ptrdiff_t h0, ptrdiff_t h1,    \
                           ptrdiff_t w0, ptrdiff_t w1, int64_t *best) {            \
    T m = -(T)INFINITY; int64_t k = h0 * w + w0;                                     \
    for (ptrdiff_t i = h0; i < h1; i++)                                             \
        for (ptrdiff_t j = w0; j < w1; j++) {                                       \
            T v = x[i * w + j]; int t = CG_TAKE(v, m);                              \
            m = t ? v : m; k = t ? i * w + j : k;                                   \
        }                                                                           \
    *best = k;                                                                      \
    return m;                                                                       \
}
CG_DEFINE_MAXPOOL(float, int32_t, f)
CG_DEFINE_MAXPOOL(double, int64_t, d)

#endif
