/* Elementwise loops of the activation, softmax and Adam kernels, float32 and float64.
 *
 * Header-only (included by kernels/activations.pyx and kernels/optim.pyx, which
 * split the work between threads and call these on contiguous slices). On
 * x86-64 Linux with GCC >= 11 each loop is compiled three times (AVX-512,
 * AVX2, baseline SSE2) and the best one for this CPU is picked at load time
 * (target_clones, an ifunc). Floating-point contraction is off: every clone,
 * and the vector body and scalar tail of each loop, compute the same IEEE
 * operations in the same order, so results never depend on the split. */
#ifndef CG_ELEMENTWISE_H
#define CG_ELEMENTWISE_H
#include <math.h>
#include "cg_vmath.h"

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) \
    && defined(__linux__)
#define CG_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CG_MULTIVERSION
#endif

enum cg_map_op {
    CG_RELU, CG_LEAKY, CG_SIGMOID, CG_TANH,             /* y = f(a) */
    CG_RELU_BW, CG_LEAKY_BW, CG_SIGMOID_BW, CG_TANH_BW  /* y = grad a, from b = x or output */
};

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

/* Formulas of torch's CPU kernels: relu keeps NaN; threshold_backward zeroes
 * where x <= 0; sigmoid = 1/(1+exp(-x)); sigmoid' = g(1-y)y; tanh' = g(1-y^2). */
#define CG_MAP_BODY(T, EXP, TANH)                                                  \
    const T zero = 0, one = 1;                                                    \
    long i;                                                                        \
    switch (op) {                                                                  \
    case CG_RELU:       for (i = 0; i < n; i++) { T v = a[i]; y[i] = v < zero ? zero : v; } break; \
    case CG_LEAKY:      for (i = 0; i < n; i++) { T v = a[i]; y[i] = v > zero ? v : v * s; } break; \
    case CG_SIGMOID:    for (i = 0; i < n; i++) y[i] = one / (one + EXP(-a[i])); break;          \
    case CG_TANH:       for (i = 0; i < n; i++) y[i] = TANH(a[i]); break;                        \
    case CG_RELU_BW:    for (i = 0; i < n; i++) { T g = a[i]; y[i] = b[i] <= zero ? zero : g; } break; \
    case CG_LEAKY_BW:   for (i = 0; i < n; i++) { T g = a[i]; y[i] = b[i] > zero ? g : g * s; } break; \
    case CG_SIGMOID_BW: for (i = 0; i < n; i++) y[i] = a[i] * (one - b[i]) * b[i]; break;     \
    case CG_TANH_BW:    for (i = 0; i < n; i++) y[i] = a[i] * (one - b[i] * b[i]); break;      \
    }

CG_MULTIVERSION static void cg_map_f32(int op, const float *a, const float *b,
                                       float *y, long n, float s) {
    CG_MAP_BODY(float, cg_expf, cg_tanhf)
}

CG_MULTIVERSION static void cg_map_f64(int op, const double *a, const double *b,
                                       double *y, long n, double s) {
    CG_MAP_BODY(double, exp, tanh)
}

/* Row reductions of softmax, log_softmax and cross_entropy. CG_LANES independent
 * accumulators, combined in a fixed order (never a thread-dependent one); sums of
 * float32 values accumulate in float64. The max skips NaN only lane-wise: a NaN
 * still poisons the exp sum, so a row with a NaN gives NaN, as in torch. */
#if defined(__GNUC__)
#define CG_INLINE static inline __attribute__((always_inline))  /* into each clone */
#else
#define CG_INLINE static inline
#endif
#define CG_LANES 8
#define CG_EXP_TILE 256
#define CG_ROW_HELPERS(T, SFX, EXP)                                                  \
CG_INLINE T cg_row_max_##SFX(const T *x, long c) {                              \
    T acc[CG_LANES], m = x[0];                                                      \
    long j, k, full = c - c % CG_LANES;                                             \
    for (k = 0; k < CG_LANES; k++) acc[k] = x[0];                                   \
    for (j = 0; j < full; j += CG_LANES)                                            \
        for (k = 0; k < CG_LANES; k++) acc[k] = x[j + k] > acc[k] ? x[j + k] : acc[k]; \
    for (j = full; j < c; j++) m = x[j] > m ? x[j] : m;                             \
    for (k = 0; k < CG_LANES; k++) m = acc[k] > m ? acc[k] : m;                     \
    return m;                                                                       \
}                                                                                   \
CG_INLINE double cg_sum_##SFX(const T *e, long n) {                             \
    double acc[CG_LANES], s = 0.0;                                                  \
    long j, k, full = n - n % CG_LANES;                                             \
    for (k = 0; k < CG_LANES; k++) acc[k] = 0.0;                                    \
    for (j = 0; j < full; j += CG_LANES)                                            \
        for (k = 0; k < CG_LANES; k++) acc[k] += e[j + k];                          \
    for (k = 0; k < CG_LANES; k++) s += acc[k];                                     \
    for (j = full; j < n; j++) s += e[j];                                           \
    return s;                                                                       \
}                                                                                   \
/* sum_j exp(x_j - m) in float64; the exp values are left in e (which may be x) */  \
CG_INLINE double cg_exp_sum_body_##SFX(const T *x, T m, T *e, long c) {              \
    long j;                                                                         \
    for (j = 0; j < c; j++) e[j] = EXP(x[j] - m);                                   \
    return cg_sum_##SFX(e, c);                                                      \
}                                                                                   \
/* softmax (or log_softmax) of rows [r0, r1) of a (rows, c) array; y may be x */    \
CG_INLINE void cg_softmax_rows_body_##SFX(const T *x, T *y, long r0, long r1,   \
                                               long c, int take_log) {              \
    T tile[CG_EXP_TILE];                                                            \
    long r, j, j0;                                                                  \
    for (r = r0; r < r1; r++) {                                                     \
        const T *xr = x + r * c;                                                    \
        T *yr = y + r * c;                                                          \
        T m = cg_row_max_##SFX(xr, c);                                              \
        if (!take_log) {                                                            \
            double inv = 1.0 / cg_exp_sum_body_##SFX(xr, m, yr, c);                      \
            for (j = 0; j < c; j++) yr[j] = (T)(yr[j] * inv);                       \
        } else {                                                                    \
            /* exps summed tile by tile, so y = x keeps x for the last pass */      \
            double s = 0.0, lse;                                                    \
            for (j0 = 0; j0 < c; j0 += CG_EXP_TILE)                                 \
                s += cg_exp_sum_body_##SFX(xr + j0, m, tile,                             \
                                      c - j0 < CG_EXP_TILE ? c - j0 : CG_EXP_TILE); \
            lse = m + log(s);                                                       \
            for (j = 0; j < c; j++) yr[j] = (T)(xr[j] - lse);                       \
        }                                                                           \
    }                                                                               \
}

CG_ROW_HELPERS(float, f32, cg_expf)
CG_ROW_HELPERS(double, f64, exp)

/* for callers compiled for the baseline ISA (cross_entropy's rows) */
CG_MULTIVERSION static double cg_exp_sum_f32(const float *x, float m, float *e, long c) {
    return cg_exp_sum_body_f32(x, m, e, c);
}

CG_MULTIVERSION static double cg_exp_sum_f64(const double *x, double m, double *e, long c) {
    return cg_exp_sum_body_f64(x, m, e, c);
}

CG_MULTIVERSION static void cg_softmax_rows_f32(const float *x, float *y, long r0, long r1,
                                                long c, int take_log) {
    cg_softmax_rows_body_f32(x, y, r0, r1, c, take_log);
}

CG_MULTIVERSION static void cg_softmax_rows_f64(const double *x, double *y, long r0, long r1,
                                                long c, int take_log) {
    cg_softmax_rows_body_f64(x, y, r0, r1, c, take_log);
}

/* One Adam/AdamW step on a slice (torch.optim.Adam, single-tensor algorithm):
 *   decoupled: p *= 1 - lr*wd        else: g += wd * p
 *   m = lerp(m, g, 1 - beta1)        v = v * beta2 + (1 - beta2) * g * g
 *   vmax = max(vmax, v) (amsgrad; NaN if either is, as torch.maximum)
 *   denom = sqrt(v or vmax) / sqrt(bc2) + eps
 *   p += (-lr / bc1) * m / denom
 * The scalars arrive already rounded to T, as torch rounds Python scalars. */
#define CG_ADAM_PARAMS(T) struct cg_adam_##T { T decay, wd, w1, w1c, beta2, c2, bc2_sqrt, eps, neg_step; \
                                               int lerp_small, decoupled, l2; }
CG_ADAM_PARAMS(float);
CG_ADAM_PARAMS(double);

/* One loop per amsgrad setting (AMS a constant 0 or 1): with the vmax test inside one
 * loop, GCC's unswitching of the four run-time flags gave up and the plain Adam loop
 * lost its vectorisation (30x slower). */
#define CG_ADAM_LOOP(T, SQRT, AMS)                                                  \
    for (i = 0; i < n; i++) {                                                        \
        T pi = p[i], gi = g[i], mi = m[i], vi = v[i];                               \
        if (decoupled) pi = pi * decay;                                              \
        if (l2) gi = gi + wd * pi;                                                   \
        mi = lerp_small ? mi + w1 * (gi - mi) : gi - (gi - mi) * w1c;                \
        vi = vi * beta2;                                                             \
        vi = vi + c2 * gi * gi;                                                      \
        T vd = vi;                                                                   \
        if (AMS) { T vm = vmax[i]; /* NaN wins, as torch.maximum */                  \
                   vm = ((vm > vi) | (vm != vm)) ? vm : vi; vmax[i] = vm; vd = vm; } \
        T denom = SQRT(vd) / bc2_sqrt + eps;                                         \
        p[i] = pi + neg_step * mi / denom;                                           \
        m[i] = mi;                                                                   \
        v[i] = vi;                                                                   \
    }

#define CG_ADAM_BODY(T, SQRT)                                                       \
    const T decay = c->decay, wd = c->wd, w1 = c->w1, w1c = c->w1c, beta2 = c->beta2;  \
    const T c2 = c->c2, bc2_sqrt = c->bc2_sqrt, eps = c->eps, neg_step = c->neg_step;   \
    const int lerp_small = c->lerp_small, decoupled = c->decoupled, l2 = c->l2;         \
    long i;                                                                          \
    if (vmax) {                                                                      \
        CG_ADAM_LOOP(T, SQRT, 1)                                                     \
    } else {                                                                         \
        CG_ADAM_LOOP(T, SQRT, 0)                                                     \
    }

CG_MULTIVERSION static void cg_adam_f32(float *restrict p, const float *restrict g,
                                        float *restrict m, float *restrict v,
                                        float *restrict vmax, long n, const struct cg_adam_float *c) {
    CG_ADAM_BODY(float, sqrtf)
}

CG_MULTIVERSION static void cg_adam_f64(double *restrict p, const double *restrict g,
                                        double *restrict m, double *restrict v,
                                        double *restrict vmax, long n, const struct cg_adam_double *c) {
    CG_ADAM_BODY(double, sqrt)
}

#pragma GCC pop_options
#endif
