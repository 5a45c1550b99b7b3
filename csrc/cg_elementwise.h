/* Elementwise loops of the activation and Adam kernels, float32 and float64.
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

CG_MULTIVERSION static void cg_map_f32(int op, const float *restrict a, const float *restrict b,
                                       float *y, long n, float s) {
    CG_MAP_BODY(float, cg_expf, cg_tanhf)
}

CG_MULTIVERSION static void cg_map_f64(int op, const double *restrict a, const double *restrict b,
                                       double *y, long n, double s) {
    CG_MAP_BODY(double, exp, tanh)
}

/* One Adam/AdamW step on a slice (torch.optim.Adam, single-tensor algorithm):
 *   decoupled: p *= 1 - lr*wd        else: g += wd * p
 *   m = lerp(m, g, 1 - beta1)        v = v * beta2 + (1 - beta2) * g * g
 *   vmax = max(vmax, v) (amsgrad)    denom = sqrt(v or vmax) / sqrt(bc2) + eps
 *   p += (-lr / bc1) * m / denom
 * The scalars arrive already rounded to T, as torch rounds Python scalars. */
#define CG_ADAM_PARAMS(T) struct cg_adam_##T { T decay, wd, w1, w1c, beta2, c2, bc2_sqrt, eps, neg_step; \
                                               int lerp_small, decoupled, l2; }
CG_ADAM_PARAMS(float);
CG_ADAM_PARAMS(double);

#define CG_ADAM_BODY(T, SQRT)                                                       \
    const T decay = c->decay, wd = c->wd, w1 = c->w1, w1c = c->w1c, beta2 = c->beta2;  \
    const T c2 = c->c2, bc2_sqrt = c->bc2_sqrt, eps = c->eps, neg_step = c->neg_step;   \
    const int lerp_small = c->lerp_small, decoupled = c->decoupled, l2 = c->l2;         \
    long i;                                                                          \
    for (i = 0; i < n; i++) {                                                        \
        T pi = p[i], gi = g[i], mi = m[i], vi = v[i];                               \
        if (decoupled) pi = pi * decay;                                              \
        if (l2) gi = gi + wd * pi;                                                   \
        mi = lerp_small ? mi + w1 * (gi - mi) : gi - (gi - mi) * w1c;                \
        vi = vi * beta2;                                                             \
        vi = vi + c2 * gi * gi;                                                      \
        T vd = vi;                                                                   \
        if (vmax) { T vm = vmax[i]; vm = vm > vi ? vm : vi; vmax[i] = vm; vd = vm; } \
        T denom = SQRT(vd) / bc2_sqrt + eps;                                         \
        p[i] = pi + neg_step * mi / denom;                                           \
        m[i] = mi;                                                                   \
        v[i] = vi;                                                                   \
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
