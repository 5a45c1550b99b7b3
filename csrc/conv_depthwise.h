/* Depthwise convolution (groups == C_in, channel multiplier m = C_out / C_in): inner
 * loops of cygrad.kernels.conv (included by conv.pyx after conv_kernels.h; header-only).
 *
 * Every output plane is a small 2-D correlation of one input plane,
 *   y[co](oh, ow) = b[co] + sum_{i,j} w[co](i, j) * xp(oh*sh + i*dh, ow*sw + j*dw),
 * xp = the input plane x[co / m] zero-padded by (ph, pw) (cg_dw_pad). The backward
 * pass is made of the same pieces:
 *   grad_w[co](i, j) = sum_{oh,ow} g[co](oh, ow) * xp(oh*sh + i*dh, ow*sw + j*dw),
 *   grad_x[c] = sum over its m output channels of the stride-1 correlation of gs with
 *               the flipped kernel, gs = g spread out by the stride and padded by the
 *               dilated kernel's extent (cg_dw_spread): the transposed convolution.
 * The transposed form multiplies the weights by gs's zeros, which adds nothing only
 * for finite weights (0 * inf is NaN); for a kernel with inf or NaN the caller uses
 * cg_dw_scatter, the plain loops that skip the padding as im2col/col2im does.
 *
 * Scratch plane layout: each padded row is stored as sw phases, phase f holding the
 * padded columns f, f + sw, f + 2sw, ... (plen of them; sw = 1: the row as it is).
 * Tap (i, j) of output column ow is then element ow + (j*dw)/sw of phase (j*dw) % sw:
 * consecutive outputs read consecutive elements at any stride. The caller passes each
 * tap's offset in a table (cg_corr.off).
 *
 * The loops run over blocks of B outputs of a row held in one vector (GCC/Clang
 * vector extensions, 64 bytes: 16 floats or 8 doubles; the compiler splits it where
 * the instruction set is narrower), CG_DW_NR rows at a time (independent dependency
 * chains sharing each weight). Every sum runs in one fixed order: y and grad_x taps in
 * (i, j) order; grad_w and grad_b per plane pair lane by lane (lane l: columns l mod B,
 * rows in order), written as lane vectors, summed over the batch in image order and
 * then by a fixed tree over the lanes (cg_dw_lanes_total). So a result depends only on
 * the geometry, never on which thread computes it.
 *
 * Scratch planes (xp, gs, gpad) belong to the calling thread and start zeroed; every
 * plane of a call writes the same positions of them, so their padding stays zero. A
 * block reads a whole vector from them, up to B - 1 elements past the last one it
 * uses, so each scratch plane is followed by CG_DW_SLACK readable elements. Lanes read
 * past a row's end are never stored, and masked to 0 in grad_w.
 */
#ifndef CYGRAD_CONV_DEPTHWISE_H
#define CYGRAD_CONV_DEPTHWISE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "conv_kernels.h"

/* one correlation out(r, c) = sum_t k[t] * p[r*sh*pcols + off[t] + c] over r < ho,
 * c < wo, for the kk taps t of the kernel (k and off in the same order) */
typedef struct {
    ptrdiff_t ho, wo, sh, kk, pcols;
    const ptrdiff_t *off;
} cg_corr;

/* output rows computed together (independent accumulators) */
#define CG_DW_NR 4
/* weight-gradient taps summed together (one pass over the gradient plane each) */
#define CG_DW_TAPS 16
/* elements of slack after each scratch plane (one vector of floats) */
#define CG_DW_SLACK 16
/* row width of gpad, the gradient plane zero-filled to whole vectors */
#define CG_DW_ROW(wo) (((wo) + CG_DW_SLACK - 1) / CG_DW_SLACK * CG_DW_SLACK)
/* lanes of the partial-sum vectors of grad_w (one per tap, and one for grad_b) */
#define CG_DW_LANES(T) ((ptrdiff_t)(64 / sizeof(T)))

#if defined(__GNUC__) && !defined(CG_DW_NO_VECTORS)
/* 64-byte vectors pass only between always-inlined helpers: no ABI is involved (GCC
 * warns at the end of the translation unit, so the warning stays off from here on) */
#pragma GCC diagnostic ignored "-Wpsabi"
#define CG_DW_INLINE static inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__linux__)
#define CG_DW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CG_DW_CLONES
#endif

/* dst[0, nb) = src[0, nb), nb a multiple of 4 and at most 64: two overlapping copies of
 * the largest power-of-two size that fits (one instruction each). A loop of copies, or
 * of element moves, would become a memmove call: slow on rows this short. */
#define CG_DW_TWO_COPIES(S)                                                               \
    if (nb >= S) { memcpy(dst, src, S); memcpy(dst + nb - S, src + nb - S, S); return; }
CG_DW_INLINE void cg_dw_copy_short(char *dst, const char *src, size_t nb) {
    if (nb == 64) { memcpy(dst, src, 64); return; }
    CG_DW_TWO_COPIES(32) CG_DW_TWO_COPIES(16) CG_DW_TWO_COPIES(8) CG_DW_TWO_COPIES(4)
}
/* the same for any nb: up to 128 bytes as two copies, longer rows by memcpy */
CG_DW_INLINE void cg_dw_copy_bytes(char *dst, const char *src, size_t nb) {
    if (nb > 128) { memcpy(dst, src, nb); return; }
    CG_DW_TWO_COPIES(64)
    cg_dw_copy_short(dst, src, nb);
}
#undef CG_DW_TWO_COPIES

/* T: element type, I: an integer as wide (lane masks) */
#define CG_DEFINE_DEPTHWISE(T, I)                                                         \
enum { CG_DW_B_##T = 64 / sizeof(T) };                                                    \
typedef T cg_dw_v_##T __attribute__((vector_size(64)));                                   \
typedef I cg_dw_m_##T __attribute__((vector_size(64)));                                   \
                                                                                          \
CG_DW_INLINE void cg_dw_copy_row_##T(T *dst, const T *src, ptrdiff_t n) {                 \
    cg_dw_copy_bytes((char *)dst, (const char *)src, n * sizeof(T));                      \
}                                                                                         \
                                                                                          \
/* a whole vector from a scratch plane (slack past its end) */                            \
CG_DW_INLINE cg_dw_v_##T cg_dw_load_##T(const T *p) {                                     \
    cg_dw_v_##T v;                                                                        \
    memcpy(&v, p, sizeof v);                                                              \
    return v;                                                                             \
}                                                                                         \
                                                                                          \
/* rows [0, nr) of out (rows wo apart), lanes [0, nl) of a block: init (or out's        \
 * values) + the kk taps; p at row 0's first output */                                    \
CG_DW_INLINE void cg_dw_block_##T(const T *p, const T *k, ptrdiff_t kk, T init,          \
        int accumulate, T *out, ptrdiff_t nl, int nr, const cg_corr *c) {                 \
    cg_dw_v_##T acc[CG_DW_NR];                                                            \
    for (int q = 0; q < nr; q++) {                                                        \
        acc[q] = (cg_dw_v_##T){0} + init;                                                 \
        if (accumulate)                                                                   \
            cg_dw_copy_short((char *)&acc[q], (const char *)(out + q * c->wo), nl * sizeof(T)); \
    }                                                                                     \
    for (ptrdiff_t t = 0; t < kk; t++)                                                    \
        for (int q = 0; q < nr; q++)                                                      \
            acc[q] += k[t] * cg_dw_load_##T(p + c->off[t] + q * c->sh * c->pcols);        \
    for (int q = 0; q < nr; q++)              /* nl <= B: at most one vector's bytes */   \
        cg_dw_copy_short((char *)(out + q * c->wo), (const char *)&acc[q], nl * sizeof(T)); \
}                                                                                         \
                                                                                          \
/* rows [r, r + nr) of out, block by block. The last block of a row at least B wide    \
 * is the whole vector ending at the row's end: the columns it shares with the block   \
 * before are computed again, the same sum in the same order (not when accumulating). */ \
CG_DW_INLINE void cg_dw_row_group_##T(const T *p, const T *k, ptrdiff_t kk, T init,      \
        int accumulate, T *out, ptrdiff_t r, int nr, const cg_corr *c) {                  \
    const T *pr = p + r * c->sh * c->pcols;                                               \
    T *o = out + r * c->wo;                                                               \
    ptrdiff_t b = 0;                                                                      \
    for (; b + CG_DW_B_##T <= c->wo; b += CG_DW_B_##T)                                    \
        cg_dw_block_##T(pr + b, k, kk, init, accumulate, o + b, CG_DW_B_##T, nr, c);      \
    if (b == c->wo)                                                                       \
        return;                                                                           \
    if (b && !accumulate)                                                                 \
        b = c->wo - CG_DW_B_##T;                                                          \
    cg_dw_block_##T(pr + b, k, kk, init, accumulate, o + b, c->wo - b, nr, c);            \
}                                                                                         \
                                                                                          \
CG_DW_INLINE void cg_dw_rows_##T(const T *p, const T *k, ptrdiff_t kk, T init,           \
                                 int accumulate, T *out, const cg_corr *c) {              \
    ptrdiff_t r = 0;                                                                      \
    for (; r + CG_DW_NR <= c->ho; r += CG_DW_NR)                                          \
        cg_dw_row_group_##T(p, k, kk, init, accumulate, out, r, CG_DW_NR, c);             \
    for (; r < c->ho; r++)                                                                \
        cg_dw_row_group_##T(p, k, kk, init, accumulate, out, r, 1, c);                    \
}                                                                                         \
                                                                                          \
/* out (ho, wo) = init + the correlation of the scratch plane p with the taps k; with   \
 * accumulate, out's values instead of init. 3x3 gets its own copy (a constant tap     \
 * count: the loop over taps unrolls). */                                                 \
CG_DW_CLONES static void cg_dw_correlate_##T(const T *p, const T *k, T init, int accumulate, \
                                             T *out, const cg_corr *c) {                  \
    if (c->kk == 9)                                                                       \
        cg_dw_rows_##T(p, k, 9, init, accumulate, out, c);                                \
    else                                                                                  \
        cg_dw_rows_##T(p, k, c->kk, init, accumulate, out, c);                            \
}                                                                                         \
                                                                                          \
/* acc[t] (lane sums) += one block of g times the taps t < nt at offsets off[t] from p; \
 * lanes past the row's end masked (p may hold anything there, inf included) */           \
CG_DW_INLINE void cg_dw_tap_block_##T(cg_dw_v_##T *acc, const T *g, const T *p,          \
        const ptrdiff_t *off, int nt, ptrdiff_t nl, const cg_dw_m_##T *tail) {            \
    cg_dw_v_##T gv = cg_dw_load_##T(g);                                                   \
    for (int t = 0; t < nt; t++) {                                                        \
        cg_dw_v_##T prod = gv * cg_dw_load_##T(p + off[t]);                               \
        acc[t] += nl == CG_DW_B_##T ? prod : (cg_dw_v_##T)((cg_dw_m_##T)prod & *tail);    \
    }                                                                                     \
}                                                                                         \
                                                                                          \
/* part (nt, lanes) = lane sums over (r, c) of g(r, c) * p[r*sh*pcols + off[t] + c]     \
 * for nt <= CG_DW_TAPS taps; rows outer, so each block of g is loaded once for all of  \
 * them. Lane l of tap t adds the columns l mod B, rows in order. */                       \
CG_DW_INLINE void cg_dw_tap_group_##T(const T *gpad, const T *p, const ptrdiff_t *off,    \
        int nt, T *part, const cg_dw_m_##T *tail, const cg_corr *c) {                     \
    cg_dw_v_##T acc[CG_DW_TAPS] = {{0}};                                                  \
    for (ptrdiff_t r = 0; r < c->ho; r++) {                                               \
        const T *gr = gpad + r * CG_DW_ROW(c->wo), *pr = p + r * c->sh * c->pcols;        \
        ptrdiff_t b = 0;                                                                  \
        for (; b + CG_DW_B_##T <= c->wo; b += CG_DW_B_##T)                                \
            cg_dw_tap_block_##T(acc, gr + b, pr + b, off, nt, CG_DW_B_##T, tail);         \
        if (b < c->wo)                                                                    \
            cg_dw_tap_block_##T(acc, gr + b, pr + b, off, nt, c->wo - b, tail);           \
    }                                                                                     \
    memcpy(part, acc, nt * sizeof acc[0]);                                                \
}                                                                                         \
                                                                                          \
/* part (kk + 1, lanes): one plane pair's grad_w lane sums per tap, then grad_b's;      \
 * gpad: the gradient plane with rows zero-filled to CG_DW_ROW(wo) */                      \
CG_DW_CLONES static void cg_dw_weight_grad_##T(const T *gpad, const T *p, T *part,       \
                                               const cg_corr *c) {                        \
    cg_dw_m_##T tail = {0};                                                               \
    cg_dw_v_##T bias = {0};                                                               \
    for (int l = 0; l < c->wo % CG_DW_B_##T; l++) tail[l] = -1;                           \
    for (ptrdiff_t t0 = 0; t0 < c->kk; t0 += CG_DW_TAPS) {                                \
        int nt = c->kk - t0 < CG_DW_TAPS ? (int)(c->kk - t0) : CG_DW_TAPS;                \
        T *pt = part + t0 * CG_DW_B_##T;                                                  \
        if (nt == 9)    /* 3x3: a constant count, the accumulators stay in registers */  \
            cg_dw_tap_group_##T(gpad, p, c->off + t0, 9, pt, &tail, c);                   \
        else                                                                              \
            cg_dw_tap_group_##T(gpad, p, c->off + t0, nt, pt, &tail, c);                  \
    }                                                                                     \
    for (ptrdiff_t e = 0; e < c->ho * CG_DW_ROW(c->wo); e += CG_DW_B_##T) /* 0 past wo */ \
        bias += cg_dw_load_##T(gpad + e);                                                 \
    memcpy(part + c->kk * CG_DW_B_##T, &bias, sizeof bias);                               \
}                                                                                         \
                                                                                          \
/* total[j] = the lanes, by a fixed tree (halving), of sum over i < n in order of the   \
 * lane vectors part (n, count, lanes) */                                                  \
CG_DW_CLONES static void cg_dw_lanes_total_##T(const T *part, T *total, ptrdiff_t n,     \
                                               ptrdiff_t count) {                         \
    for (ptrdiff_t j = 0; j < count; j++) {                                               \
        cg_dw_v_##T acc = {0};                                                            \
        T t[CG_DW_B_##T];                                                                 \
        for (ptrdiff_t i = 0; i < n; i++)                                                 \
            acc += cg_dw_load_##T(part + (i * count + j) * CG_DW_B_##T);                  \
        memcpy(t, &acc, sizeof t);                                                        \
        for (int w = CG_DW_B_##T / 2; w > 0; w /= 2)                                      \
            for (int l = 0; l < w; l++) t[l] += t[l + w];                                 \
        total[j] = t[0];                                                                  \
    }                                                                                     \
}
CG_DEFINE_DEPTHWISE(float, int32_t)
CG_DEFINE_DEPTHWISE(double, int64_t)

#else  /* no vector extensions: the same sums, one output at a time */
#define CG_DW_INLINE static inline
#define CG_DW_CLONES

#define CG_DEFINE_DEPTHWISE(T)                                                            \
CG_DW_INLINE void cg_dw_copy_row_##T(T *dst, const T *src, ptrdiff_t n) {                 \
    memcpy(dst, src, n * sizeof(T));                                                      \
}                                                                                         \
static void cg_dw_correlate_##T(const T *p, const T *k, T init, int accumulate, T *out,   \
                                const cg_corr *c) {                                       \
    for (ptrdiff_t r = 0; r < c->ho; r++)                                                 \
        for (ptrdiff_t q = 0; q < c->wo; q++) {                                           \
            T acc = accumulate ? out[r * c->wo + q] : init;                               \
            for (ptrdiff_t t = 0; t < c->kk; t++)                                         \
                acc += k[t] * p[r * c->sh * c->pcols + c->off[t] + q];                    \
            out[r * c->wo + q] = acc;                                                     \
        }                                                                                 \
}                                                                                         \
/* the sums in lane 0 of each partial vector, zeros in the others */                      \
static void cg_dw_weight_grad_##T(const T *gpad, const T *p, T *part, const cg_corr *c) { \
    memset(part, 0, (c->kk + 1) * CG_DW_LANES(T) * sizeof(T));                            \
    for (ptrdiff_t t = 0; t <= c->kk; t++)                                                \
        for (ptrdiff_t r = 0; r < c->ho; r++)                                             \
            for (ptrdiff_t q = 0; q < c->wo; q++)                                         \
                part[t * CG_DW_LANES(T)] += gpad[r * CG_DW_ROW(c->wo) + q] *              \
                    (t == c->kk ? 1 : p[r * c->sh * c->pcols + c->off[t] + q]);           \
}                                                                                         \
static void cg_dw_lanes_total_##T(const T *part, T *total, ptrdiff_t n, ptrdiff_t count) { \
    for (ptrdiff_t j = 0; j < count; j++) {                                               \
        T acc = 0;                                                                        \
        for (ptrdiff_t i = 0; i < n; i++)                                                 \
            for (ptrdiff_t l = 0; l < CG_DW_LANES(T); l++)                                \
                acc += part[(i * count + j) * CG_DW_LANES(T) + l];                        \
        total[j] = acc;                                                                   \
    }                                                                                     \
}
CG_DEFINE_DEPTHWISE(float)
CG_DEFINE_DEPTHWISE(double)
#endif

#define CG_DEFINE_DW_COPIES(T)                                                            \
/* the interior of xp = the plane x (h, w), padded by (ph, pw), in sw column phases of  \
 * plen (module comment): xp's rows are sw*plen wide */                                    \
CG_DW_CLONES static void cg_dw_pad_##T(const T *x, T *xp, ptrdiff_t h, ptrdiff_t w,      \
        ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t sw, ptrdiff_t plen) {                       \
    if (sw == 1) {                                                                        \
        for (ptrdiff_t r = 0; r < h; r++)                                                 \
            cg_dw_copy_row_##T(xp + (r + ph) * plen + pw, x + r * w, w);                  \
        return;                                                                           \
    }                                                                                     \
    for (ptrdiff_t f = 0; f < sw; f++) {                                                  \
        ptrdiff_t c0 = ((f - pw) % sw + sw) % sw;   /* x columns c0, c0 + sw, ... */      \
        ptrdiff_t n = c0 < w ? (w - c0 + sw - 1) / sw : 0;                                \
        T *dst = xp + ph * sw * plen + f * plen + (c0 + pw) / sw;                         \
        for (ptrdiff_t r = 0; r < h; r++, dst += sw * plen)                               \
            if (sw == 2)        /* the common stride: a constant, vector code */         \
                for (ptrdiff_t e = 0; e < n; e++) dst[e] = x[r * w + c0 + 2 * e];         \
            else                                                                          \
                for (ptrdiff_t e = 0; e < n; e++) dst[e] = x[r * w + c0 + e * sw];        \
    }                                                                                     \
}                                                                                         \
/* gs (rows, cols) at (oh*sh + top, ow*sw + left) = g (ho, wo); g values that land      \
 * outside gs reach only the padding, which has no gradient */                             \
CG_DW_CLONES static void cg_dw_spread_##T(const T *g, T *gs, ptrdiff_t rows,             \
        ptrdiff_t cols, ptrdiff_t ho, ptrdiff_t wo, ptrdiff_t sh, ptrdiff_t sw,           \
        ptrdiff_t top, ptrdiff_t left) {                                                  \
    ptrdiff_t lo, hi;                                                                     \
    cg_valid_range(left, sw, cols, wo, &lo, &hi);                                         \
    for (ptrdiff_t r = 0; r < ho; r++) {                                                  \
        ptrdiff_t q = r * sh + top;                                                       \
        if (q < 0 || q >= rows) continue;                                                 \
        if (sw == 1)                                                                      \
            cg_dw_copy_row_##T(gs + q * cols + left + lo, g + r * wo + lo, hi - lo);      \
        else                                                                              \
            for (ptrdiff_t c = lo; c < hi; c++) gs[q * cols + left + c * sw] = g[r * wo + c]; \
    }                                                                                     \
}                                                                                         \
/* the first wo of each row of gpad (ho rows, CG_DW_ROW(wo) wide) = g (ho, wo) */         \
CG_DW_CLONES static void cg_dw_pad_rows_##T(const T *g, T *gpad, ptrdiff_t ho,           \
                                            ptrdiff_t wo) {                               \
    for (ptrdiff_t r = 0; r < ho; r++)                                                    \
        cg_dw_copy_row_##T(gpad + r * CG_DW_ROW(wo), g + r * wo, wo);                     \
}                                                                                         \
/* gx (h, w) (+)= k(i, j) * g(oh, ow) at input (oh*sh - ph + i*dh, ow*sw - pw + j*dw)   \
 * for every output and tap, taps that land in the padding skipped: the transposed      \
 * convolution for a kernel with inf or NaN (module comment) */                            \
static void cg_dw_scatter_##T(const T *g, const T *k, int accumulate, T *gx,             \
                              const cg_geom *d) {                                         \
    if (!accumulate) memset(gx, 0, d->h * d->w * sizeof(T));                              \
    for (ptrdiff_t oh = 0; oh < d->ho; oh++)                                              \
        for (ptrdiff_t i = 0; i < d->kh; i++) {                                           \
            ptrdiff_t ih = oh * d->sh - d->ph + i * d->dh;                                \
            if (ih < 0 || ih >= d->h) continue;                                           \
            for (ptrdiff_t ow = 0; ow < d->wo; ow++)                                      \
                for (ptrdiff_t j = 0; j < d->kw; j++) {                                   \
                    ptrdiff_t iw = ow * d->sw - d->pw + j * d->dw;                        \
                    if (iw >= 0 && iw < d->w)                                             \
                        gx[ih * d->w + iw] += k[i * d->kw + j] * g[oh * d->wo + ow];      \
                }                                                                         \
        }                                                                                 \
}
CG_DEFINE_DW_COPIES(float)
CG_DEFINE_DW_COPIES(double)

#endif
