/* Inner loops of cygrad.kernels.conv (included by conv.pyx; header-only, static).
 *
 * im2col / col2im of one image, and the direct weight gradient of shallow patches.
 * Layout (as torch.nn.functional.unfold): cols (C*KH*KW, H_out*W_out), row
 * (c*KH + i)*KW + j, column oh*W_out + ow = x[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw],
 * 0 in the padding.
 *
 * Each function has a plain C body and, on x86-64 with GCC/Clang, an AVX-512 build
 * of the same body whose stride-1 row segments are masked loads/stores (one pair
 * per 16 floats, padding lanes masked): rows of a small CNN are 5-26 wide, where a
 * plain loop spends its time in its remainder. Both builds do the same arithmetic
 * in the same order, element by element; cg_conv_init() picks one at import.
 */
#ifndef CYGRAD_CONV_KERNELS_H
#define CYGRAD_CONV_KERNELS_H
#include <stddef.h>
#include <string.h>

typedef struct {
    ptrdiff_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo;
} cg_geom;

/* outputs o in [*lo, *hi) read input o*s + off inside [0, size) */
static inline void cg_valid_range(ptrdiff_t off, ptrdiff_t s, ptrdiff_t size, ptrdiff_t n,
                                  ptrdiff_t *lo, ptrdiff_t *hi) {
    ptrdiff_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    ptrdiff_t b = size - 1 - off < 0 ? 0 : (size - 1 - off) / s + 1;
    if (b > n) b = n;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* ---- row segments: dst[0, wo) = src[o*s + off] on [lo, hi), 0 elsewhere; and the adjoint */
#define CG_SEG_PLAIN(T)                                                                   \
    static inline void cg_seg_copy_plain_##T(T *dst, const T *src, ptrdiff_t s,           \
            ptrdiff_t off, ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t wo) {                    \
        for (ptrdiff_t o = 0; o < lo; o++) dst[o] = 0;                                    \
        for (ptrdiff_t o = lo; o < hi; o++) dst[o] = src[o * s + off];                    \
        for (ptrdiff_t o = hi; o < wo; o++) dst[o] = 0;                                   \
    }                                                                                     \
    static inline void cg_seg_add_plain_##T(T *dst, const T *src, ptrdiff_t s,            \
            ptrdiff_t off, ptrdiff_t lo, ptrdiff_t hi) {                                  \
        for (ptrdiff_t o = lo; o < hi; o++) dst[o * s + off] += src[o];                   \
    }
CG_SEG_PLAIN(float)
CG_SEG_PLAIN(double)

/* ---- one image, body shared by both builds (SEGCOPY / SEGADD pick the segment code) */
#define CG_IM2COL_BODY(T, SEGCOPY)                                                        \
    for (ptrdiff_t c = 0; c < g->c; c++)                                                  \
        for (ptrdiff_t i = 0; i < g->kh; i++)                                             \
            for (ptrdiff_t j = 0; j < g->kw; j++) {                                       \
                ptrdiff_t off = j * g->dw - g->pw, lo, hi;                                \
                cg_valid_range(off, g->sw, g->w, g->wo, &lo, &hi);                        \
                T *row = cols + ((c * g->kh + i) * g->kw + j) * g->ho * g->wo;            \
                for (ptrdiff_t oh = 0; oh < g->ho; oh++) {                                \
                    T *dst = row + oh * g->wo;                                            \
                    ptrdiff_t ih = oh * g->sh - g->ph + i * g->dh;                        \
                    if (ih < 0 || ih >= g->h)                                             \
                        memset(dst, 0, g->wo * sizeof(T));                                \
                    else                                                                  \
                        SEGCOPY(dst, x + (c * g->h + ih) * g->w, g->sw, off, lo, hi, g->wo); \
                }                                                                         \
            }

/* x (C, H, W) = col2im(cols): taps summed in the fixed order rows (c, i, j), oh, ow */
#define CG_COL2IM_BODY(T, SEGADD)                                                         \
    memset(x, 0, g->c * g->h * g->w * sizeof(T));                                         \
    for (ptrdiff_t c = 0; c < g->c; c++)                                                  \
        for (ptrdiff_t i = 0; i < g->kh; i++)                                             \
            for (ptrdiff_t j = 0; j < g->kw; j++) {                                       \
                ptrdiff_t off = j * g->dw - g->pw, lo, hi;                                \
                cg_valid_range(off, g->sw, g->w, g->wo, &lo, &hi);                        \
                const T *row = cols + ((c * g->kh + i) * g->kw + j) * g->ho * g->wo;      \
                for (ptrdiff_t oh = 0; oh < g->ho; oh++) {                                \
                    ptrdiff_t ih = oh * g->sh - g->ph + i * g->dh;                        \
                    if (ih >= 0 && ih < g->h)                                             \
                        SEGADD(x + (c * g->h + ih) * g->w, row + oh * g->wo, g->sw, off, lo, hi); \
                }                                                                         \
            }

#define CG_DEFINE_PLAIN(T)                                                                \
    static void cg_im2col_plain_##T(const T *x, T *cols, const cg_geom *g) {              \
        CG_IM2COL_BODY(T, cg_seg_copy_plain_##T)                                          \
    }                                                                                     \
    static void cg_col2im_plain_##T(const T *cols, T *x, const cg_geom *g) {              \
        CG_COL2IM_BODY(T, cg_seg_add_plain_##T)                                           \
    }
CG_DEFINE_PLAIN(float)
CG_DEFINE_PLAIN(double)

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define CG_HAVE_512_BUILD 1
#define CG_512 __attribute__((target("avx512f")))

/* lanes [a, b) of a chunk of n as a bit mask */
static inline unsigned cg_lanes(ptrdiff_t a, ptrdiff_t b, ptrdiff_t n) {
    a = a < 0 ? 0 : a;
    b = b > n ? n : b;
    return b <= a ? 0u : (unsigned)(((1ull << b) - 1) & ~((1ull << a) - 1));
}

#define CG_SEG_512(T, W, V, MASK, LOAD, STORE, ADD, ZERO)                                     \
    CG_512 static inline void cg_seg_copy_512_##T(T *dst, const T *src, ptrdiff_t s,      \
            ptrdiff_t off, ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t wo) {                    \
        if (s != 1) { cg_seg_copy_plain_##T(dst, src, s, off, lo, hi, wo); return; }      \
        for (ptrdiff_t o = 0; o < wo; o += W) {                                           \
            ptrdiff_t n = wo - o < W ? wo - o : W;                                        \
            /* lanes outside [lo, hi) are neither read (no fault) nor kept: zeros */      \
            V v = LOAD((MASK)cg_lanes(lo - o, hi - o, n), src + off + o);                 \
            STORE(dst + o, (MASK)cg_lanes(0, n, n), v);                                   \
        }                                                                                 \
    }                                                                                     \
    CG_512 static inline void cg_seg_add_512_##T(T *dst, const T *src, ptrdiff_t s,       \
            ptrdiff_t off, ptrdiff_t lo, ptrdiff_t hi) {                                  \
        if (s != 1) { cg_seg_add_plain_##T(dst, src, s, off, lo, hi); return; }           \
        for (ptrdiff_t o = lo; o < hi; o += W) {                                          \
            MASK m = (MASK)cg_lanes(0, hi - o, W);                                        \
            V d = LOAD(m, dst + off + o), v = LOAD(m, src + o);                           \
            STORE(dst + off + o, m, ADD(d, v));                                           \
        }                                                                                 \
    }                                                                                     \
    /* rows no wider than one vector (W_out <= W, stride 1): the masks are the same  */ \
    /* for every output row of a tap, so each segment is one masked load and store   */ \
    CG_512 static void cg_im2col_512_##T(const T *x, T *cols, const cg_geom *g) {         \
        if (g->sw != 1 || g->wo > W) { CG_IM2COL_BODY(T, cg_seg_copy_512_##T) return; }   \
        MASK keep = (MASK)cg_lanes(0, g->wo, W);                                          \
        for (ptrdiff_t c = 0; c < g->c; c++)                                              \
            for (ptrdiff_t i = 0; i < g->kh; i++)                                         \
                for (ptrdiff_t j = 0; j < g->kw; j++) {                                   \
                    ptrdiff_t off = j * g->dw - g->pw, lo, hi;                            \
                    cg_valid_range(off, 1, g->w, g->wo, &lo, &hi);                        \
                    MASK ld = (MASK)cg_lanes(lo, hi, W);                                  \
                    T *dst = cols + ((c * g->kh + i) * g->kw + j) * g->ho * g->wo;        \
                    const T *src = x + c * g->h * g->w + off;                             \
                    for (ptrdiff_t oh = 0; oh < g->ho; oh++, dst += g->wo) {              \
                        ptrdiff_t ih = oh * g->sh - g->ph + i * g->dh;                    \
                        V v = ih < 0 || ih >= g->h ? ZERO() : LOAD(ld, src + ih * g->w);  \
                        STORE(dst, keep, v);                                              \
                    }                                                                     \
                }                                                                         \
    }                                                                                     \
    /* input rows no wider than one vector (W <= lanes, stride 1 along W): build each  */ \
    /* input row in a register from every tap (i, j) that reads it, in the same (i, j) */ \
    /* order per element as the generic loop, and store it once (no read-modify-write) */ \
    CG_512 static void cg_col2im_512_##T(const T *cols, T *x, const cg_geom *g) {         \
        if (g->sw != 1 || g->w > W) { CG_COL2IM_BODY(T, cg_seg_add_512_##T) return; }     \
        MASK full = (MASK)cg_lanes(0, g->w, W);                                           \
        ptrdiff_t plane = g->ho * g->wo;                                                  \
        for (ptrdiff_t c = 0; c < g->c; c++)                                              \
            for (ptrdiff_t ih = 0; ih < g->h; ih++) {                                     \
                V r = ZERO();                                                             \
                for (ptrdiff_t i = 0; i < g->kh; i++) {                                   \
                    ptrdiff_t t = ih + g->ph - i * g->dh;     /* = oh * sh */             \
                    if (t < 0 || t % g->sh || t / g->sh >= g->ho) continue;               \
                    const T *src = cols + (c * g->kh + i) * g->kw * plane + t / g->sh * g->wo; \
                    for (ptrdiff_t j = 0; j < g->kw; j++, src += plane) {                 \
                        ptrdiff_t off = j * g->dw - g->pw, lo, hi;                        \
                        cg_valid_range(off, 1, g->w, g->wo, &lo, &hi);                    \
                        /* lane p = ow + off takes src[ow], ow in [lo, hi) */             \
                        r = ADD(r, LOAD((MASK)cg_lanes(lo + off, hi + off, W), src - off)); \
                    }                                                                     \
                }                                                                         \
                STORE(x + (c * g->h + ih) * g->w, full, r);                               \
            }                                                                             \
    }
CG_SEG_512(float, 16, __m512, __mmask16, _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps,
           _mm512_add_ps, _mm512_setzero_ps)
CG_SEG_512(double, 8, __m512d, __mmask8, _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd,
           _mm512_add_pd, _mm512_setzero_pd)
#else
#define CG_HAVE_512_BUILD 0
#endif

/* set once at import (cg_conv_init), read-only afterwards */
static int cg_conv_use512 = 0;

static void cg_conv_init(void) {
#if CG_HAVE_512_BUILD
    cg_conv_use512 = __builtin_cpu_supports("avx512f");
#endif
}

/* for tests: force the plain loops (0) or the AVX-512 ones where supported (1) */
static int cg_conv_set512(int on) {
    int old = cg_conv_use512;
    cg_conv_init();
    cg_conv_use512 = cg_conv_use512 && on;
    return old;
}

#if CG_HAVE_512_BUILD
#define CG_DISPATCH(T)                                                                    \
    static void cg_im2col_##T(const T *x, T *cols, const cg_geom *g) {                    \
        if (cg_conv_use512) cg_im2col_512_##T(x, cols, g); else cg_im2col_plain_##T(x, cols, g); \
    }                                                                                     \
    static void cg_col2im_##T(const T *cols, T *x, const cg_geom *g) {                    \
        if (cg_conv_use512) cg_col2im_512_##T(cols, x, g); else cg_col2im_plain_##T(cols, x, g); \
    }
#else
#define CG_DISPATCH(T)                                                                    \
    static void cg_im2col_##T(const T *x, T *cols, const cg_geom *g) {                    \
        cg_im2col_plain_##T(x, cols, g);                                                  \
    }                                                                                     \
    static void cg_col2im_##T(const T *cols, T *x, const cg_geom *g) {                    \
        cg_col2im_plain_##T(cols, x, g);                                                  \
    }
#endif
CG_DISPATCH(float)
CG_DISPATCH(double)

/* ---- weight gradient of a shallow patch (few rows kr, e.g. a one-channel first layer):
 * part[o, r] (+)= sum_l g[o, l] * cols[r, l]; g (cout, L), cols (kr, L), part (cout, kr).
 * The GEMM would mostly pack here. Each dot keeps CG_LANES partial sums (lane j adds
 * elements j, j + LANES, ...) added by a fixed tree at the end: vectorisable without
 * reassociation, and one order whatever the thread count. Four rows at a time give
 * four independent FMA chains. */
#define CG_LANES 16
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define CG_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CG_CLONES
#endif

#define CG_DEFINE_DOTS(T)                                                                 \
    CG_CLONES static void cg_dots_##T(const T *g, const T *cols, T *part, ptrdiff_t cout, \
                                      ptrdiff_t kr, ptrdiff_t L, int accumulate) {        \
        ptrdiff_t full = L - L % CG_LANES;                                                \
        for (ptrdiff_t o = 0; o < cout; o++) {                                            \
            const T *go = g + o * L;                                                      \
            for (ptrdiff_t r = 0; r < kr; r += 4) {                                       \
                const T *c[4];                                                            \
                for (int q = 0; q < 4; q++)       /* past the end: row r again, unused */ \
                    c[q] = cols + (r + q < kr ? r + q : r) * L;                           \
                T acc[4][CG_LANES] = {{0}};                                               \
                T a0[CG_LANES] = {0}, a1[CG_LANES] = {0}, a2[CG_LANES] = {0},             \
                  a3[CG_LANES] = {0};                                                     \
                for (ptrdiff_t l = 0; l < full; l += CG_LANES)                            \
                    for (int j = 0; j < CG_LANES; j++) {                                  \
                        T gv = go[l + j];                                                 \
                        a0[j] += gv * c[0][l + j]; a1[j] += gv * c[1][l + j];             \
                        a2[j] += gv * c[2][l + j]; a3[j] += gv * c[3][l + j];             \
                    }                                                                     \
                for (int j = 0; j < CG_LANES; j++) {                                      \
                    acc[0][j] = a0[j]; acc[1][j] = a1[j];                                 \
                    acc[2][j] = a2[j]; acc[3][j] = a3[j];                                 \
                }                                                                         \
                for (int q = 0; q < 4 && r + q < kr; q++) {                               \
                    for (ptrdiff_t l = full; l < L; l++)                                  \
                        acc[q][l - full] += go[l] * c[q][l];                              \
                    for (int w = CG_LANES / 2; w > 0; w /= 2)     /* fixed tree */        \
                        for (int j = 0; j < w; j++)                                       \
                            acc[q][j] += acc[q][j + w];                                   \
                    T *dst = part + o * kr + r + q;                                       \
                    *dst = accumulate ? *dst + acc[q][0] : acc[q][0];                     \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }
CG_DEFINE_DOTS(float)
CG_DEFINE_DOTS(double)

#endif
