/* Loops of the batch-norm kernels (kernels/norm.pyx) and of vector_norm, scale_ and
 * clamp_ (kernels/clip.pyx), float32 and float64.
 *
 * Batch norm's strip path sees one channel of an (N, C, L) array at a time: its
 * n = N * L elements, in (N, L) order, lie in N strips of L contiguous values, strip
 * s at x + s * stride (stride = C * L) from the channel's first value x. A reduction
 * block is a range [lo, hi) of that order. Sums are formed in float64 in
 * CG_NORM_LANES running lanes (a fixed interleave: one dependent add per element
 * would cost an add latency each), combined in a fixed order, so a block's sum
 * depends only on its range and its values. Its column path reduces the columns of an
 * (N, C * L) matrix, each over its rows in row order. Elementwise results are
 * computed in float64 and rounded once to T.
 *
 * The drivers call the type-generic names at the end (cg_bn_sum(dbl, ...) and so on):
 * dbl = 1 for float64 data, 0 for float32, the arrays passed as void pointers.
 *
 * Header-only; each function is compiled for AVX-512, AVX2 and baseline SSE2 and
 * picked at load time (target_clones), with floating-point contraction off so
 * that every clone computes the same IEEE operations in the same order. */
#ifndef CG_NORM_H
#define CG_NORM_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__)   \
    && defined(__linux__)
#define CG_NORM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CG_NORM_CLONES
#endif

/* 4 AVX-512 accumulators of 8 doubles: enough adds in flight to hide their latency */
#define CG_NORM_LANES 32

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

/* sum of the lanes, pairwise (a fixed tree) */
static inline double cg_norm_lanes_total(const double *acc) {
    double h[CG_NORM_LANES / 2];
    int k, w;
    for (k = 0; k < CG_NORM_LANES / 2; k++) h[k] = acc[k] + acc[k + CG_NORM_LANES / 2];
    for (w = CG_NORM_LANES / 4; w >= 1; w /= 2)
        for (k = 0; k < w; k++) h[k] = h[k] + h[k + w];
    return h[0];
}

/* Visit the elements [lo, hi) of a channel as contiguous pieces: the piece starts
 * OFF elements after the channel's first value and holds LEN values (the body
 * is the variadic argument: commas allowed). */
#define CG_NORM_PIECES(lo, hi, L, stride, OFF, LEN, ...)                                \
    for (long i_ = (lo); i_ < (hi);) {                                                  \
        long s_ = i_ / (L), o_ = i_ - s_ * (L);                                         \
        long LEN = (L) - o_ < (hi) - i_ ? (L) - o_ : (hi) - i_;                         \
        long OFF = s_ * (stride) + o_;                                                  \
        __VA_ARGS__                                                                     \
        i_ += LEN;                                                                      \
    }

/* acc[k] += TERM and acc2[k] += TERM2 for each j of [0, len), TERMs written in j;
 * lane k = j % CG_NORM_LANES in the whole groups, j - (their end) in the rest.
 * One k-loop per accumulator: the form GCC vectorizes. */
#define CG_NORM_SUM2(len, j, acc, TERM, acc2, TERM2)                                    \
    {                                                                                   \
        long full_ = (len) - (len) % CG_NORM_LANES, j0_, k_;                            \
        for (j0_ = 0; j0_ < full_; j0_ += CG_NORM_LANES) {                              \
            for (k_ = 0; k_ < CG_NORM_LANES; k_++) { long j = j0_ + k_; acc[k_] += (TERM); } \
            for (k_ = 0; k_ < CG_NORM_LANES; k_++) { long j = j0_ + k_; acc2[k_] += (TERM2); } \
        }                                                                               \
        for (k_ = 0; k_ < (len) - full_; k_++) {                                        \
            long j = full_ + k_;                                                        \
            acc[k_] += (TERM);                                                          \
            acc2[k_] += (TERM2);                                                        \
        }                                                                               \
    }
/* the same for one accumulator (the second, never read, is dropped by the compiler) */
#define CG_NORM_SUM(len, j, acc, TERM)                                                  \
    {                                                                                   \
        double unused_[CG_NORM_LANES] = {0};                                            \
        CG_NORM_SUM2(len, j, acc, TERM, unused_, ((void)(j), 0.0))                      \
    }

#define CG_NORM_FUNCS(T, SFX)                                                           \
/* sum of x over [lo, hi) */                                                            \
CG_NORM_CLONES static double cg_bn_sum_##SFX(const T *restrict x, long L, long stride,  \
                                             long lo, long hi) {                        \
    double acc[CG_NORM_LANES] = {0};                                                    \
    CG_NORM_PIECES(lo, hi, L, stride, off, len, {                                       \
        const T *p = x + off;                                                           \
        CG_NORM_SUM(len, j, acc, (double)p[j])                                          \
    })                                                                                  \
    return cg_norm_lanes_total(acc);                                                    \
}                                                                                       \
/* sum of (x - mean)^2 over [lo, hi); *dev = sum of (x - mean) */                       \
CG_NORM_CLONES static double cg_bn_sqdev_##SFX(const T *restrict x, long L, long stride, \
                                               long lo, long hi, double mean,           \
                                               double *dev) {                           \
    double acc[CG_NORM_LANES] = {0}, dacc[CG_NORM_LANES] = {0};                         \
    CG_NORM_PIECES(lo, hi, L, stride, off, len, {                                       \
        const T *p = x + off;                                                           \
        CG_NORM_SUM2(len, j, acc, ((double)p[j] - mean) * ((double)p[j] - mean),        \
                     dacc, (double)p[j] - mean)                                         \
    })                                                                                  \
    *dev = cg_norm_lanes_total(dacc);                                                   \
    return cg_norm_lanes_total(acc);                                                    \
}                                                                                       \
/* y = (x - mean) * scale + shift over [lo, hi) (y laid out as x) */                    \
CG_NORM_CLONES static void cg_bn_affine_##SFX(const T *restrict x, T *restrict y, long L, \
                                              long stride, long lo, long hi, double mean, \
                                              double scale, double shift) {             \
    CG_NORM_PIECES(lo, hi, L, stride, off, len, {                                       \
        const T *p = x + off;                                                           \
        T *q = y + off;                                                                 \
        for (long j = 0; j < len; j++) q[j] = (T)(((double)p[j] - mean) * scale + shift); \
    })                                                                                  \
}                                                                                       \
/* sum of g over [lo, hi); *dot = sum of g * (x - mean) */                              \
CG_NORM_CLONES static double cg_bn_grad_sums_##SFX(const T *restrict g, const T *restrict x, \
                                                   long L, long stride, long lo, long hi, \
                                                   double mean, double *dot) {          \
    double acc[CG_NORM_LANES] = {0}, pacc[CG_NORM_LANES] = {0};                         \
    CG_NORM_PIECES(lo, hi, L, stride, off, len, {                                       \
        const T *pg = g + off, *px = x + off;                                           \
        CG_NORM_SUM2(len, j, acc, (double)pg[j],                                        \
                     pacc, (double)pg[j] * ((double)px[j] - mean))                      \
    })                                                                                  \
    *dot = cg_norm_lanes_total(pacc);                                                   \
    return cg_norm_lanes_total(acc);                                                    \
}                                                                                       \
/* gx = ((g - mg) - (x - mean) * q) * k over [lo, hi) (training), or, x NULL,           \
 * gx = g * k (evaluation: the statistics are constants) */                             \
CG_NORM_CLONES static void cg_bn_grad_input_##SFX(const T *restrict g, const T *restrict x, \
                                                  T *restrict gx, long L, long stride,  \
                                                  long lo, long hi, double mean, double mg, \
                                                  double q, double k) {                 \
    CG_NORM_PIECES(lo, hi, L, stride, off, len, {                                       \
        const T *pg = g + off, *px = x != NULL ? x + off : NULL;                        \
        T *o = gx + off;                                                                \
        if (px == NULL)                                                                 \
            for (long j = 0; j < len; j++) o[j] = (T)((double)pg[j] * k);               \
        else                                                                            \
            for (long j = 0; j < len; j++)                                              \
                o[j] = (T)((((double)pg[j] - mg) - ((double)px[j] - mean) * q) * k);    \
    })                                                                                  \
}                                                                                       \
/* vector_norm's block sums over x[0, n): sum |x|, sum x^2, sum (|x| * scale)^p */      \
CG_NORM_CLONES static double cg_abs_sum_##SFX(const T *restrict x, long n) {            \
    double acc[CG_NORM_LANES] = {0};                                                    \
    CG_NORM_SUM(n, j, acc, fabs((double)x[j]))                                          \
    return cg_norm_lanes_total(acc);                                                    \
}                                                                                       \
CG_NORM_CLONES static double cg_sq_sum_##SFX(const T *restrict x, long n) {             \
    double acc[CG_NORM_LANES] = {0};                                                    \
    CG_NORM_SUM(n, j, acc, (double)x[j] * (double)x[j])                                 \
    return cg_norm_lanes_total(acc);                                                    \
}                                                                                       \
static double cg_pow_sum_##SFX(const T *restrict x, long n, double p, double scale) {   \
    double acc[CG_NORM_LANES] = {0};                                                    \
    CG_NORM_SUM(n, j, acc, pow(fabs((double)x[j]) * scale, p))                          \
    return cg_norm_lanes_total(acc);                                                    \
}                                                                                       \
/* x *= a over x[0, n) */                                                               \
CG_NORM_CLONES static void cg_scale_##SFX(T *restrict x, long n, T a) {                 \
    for (long i = 0; i < n; i++) x[i] = x[i] * a;                                       \
}                                                                                       \
/* x = min(max(x, lo), hi) over x[0, n): NaN in x stays (comparisons with NaN are       \
 * false), a NaN bound makes every element NaN (as torch.clamp) */                      \
CG_NORM_CLONES static void cg_clamp_##SFX(T *restrict x, long n, T lo, T hi) {          \
    for (long i = 0; i < n; i++) {                                                      \
        T v = x[i];                                                                     \
        v = (v < lo || lo != lo) ? lo : v;                                              \
        x[i] = (v > hi || hi != hi) ? hi : v;                                           \
    }                                                                                   \
}

/* Column path (channels with few values per strip, e.g. BatchNorm1d on (N, C)):
 * x is an (rows, ld) matrix and each column j of [j0, j1) is reduced over the rows
 * in row order, vectorized across columns. m, mg, q, k: per-column coefficients. */
#define CG_NORM_COLUMN_FUNCS(T, SFX)                                                    \
/* s[j] = sum_i x[i, j] */                                                              \
CG_NORM_CLONES static void cg_col_sum_##SFX(const T *restrict x, long rows, long ld, long j0, \
                                            long j1, double *restrict s) {              \
    for (long j = j0; j < j1; j++) s[j] = 0.0;                                          \
    for (long i = 0; i < rows; i++)                                                     \
        for (long j = j0; j < j1; j++) s[j] += (double)x[i * ld + j];                   \
}                                                                                       \
/* s2[j] = sum_i (x[i, j] - m[j])^2, s1[j] = sum_i (x[i, j] - m[j]) */                  \
CG_NORM_CLONES static void cg_col_sqdev_##SFX(const T *restrict x, long rows, long ld, long j0, \
                                              long j1, const double *restrict m,        \
                                              double *restrict s2, double *restrict s1) { \
    for (long j = j0; j < j1; j++) s2[j] = s1[j] = 0.0;                                 \
    for (long i = 0; i < rows; i++)                                                     \
        for (long j = j0; j < j1; j++) {                                                \
            double d = (double)x[i * ld + j] - m[j];                                    \
            s2[j] += d * d;                                                             \
            s1[j] += d;                                                                 \
        }                                                                               \
}                                                                                       \
/* y[i, j] = (x[i, j] - m[j]) * a[j] + b[j] */                                          \
CG_NORM_CLONES static void cg_col_affine_##SFX(const T *restrict x, T *restrict y, long rows, \
                                               long ld, long j0, long j1,               \
                                               const double *restrict m,                \
                                               const double *restrict a,                \
                                               const double *restrict b) {              \
    for (long i = 0; i < rows; i++)                                                     \
        for (long j = j0; j < j1; j++)                                                  \
            y[i * ld + j] = (T)(((double)x[i * ld + j] - m[j]) * a[j] + b[j]);          \
}                                                                                       \
/* s1[j] = sum_i g[i, j], s2[j] = sum_i g[i, j] * (x[i, j] - m[j]) */                   \
CG_NORM_CLONES static void cg_col_grad_sums_##SFX(const T *restrict g, const T *restrict x, \
                                                  long rows, long ld, long j0, long j1, \
                                                  const double *restrict m,             \
                                                  double *restrict s1, double *restrict s2) { \
    for (long j = j0; j < j1; j++) s1[j] = s2[j] = 0.0;                                 \
    for (long i = 0; i < rows; i++)                                                     \
        for (long j = j0; j < j1; j++) {                                                \
            double gv = (double)g[i * ld + j];                                          \
            s1[j] += gv;                                                                \
            s2[j] += gv * ((double)x[i * ld + j] - m[j]);                               \
        }                                                                               \
}                                                                                       \
/* gx = ((g - mg) - (x - m) * q) * k, or, x NULL, gx = g * k */                         \
CG_NORM_CLONES static void cg_col_grad_input_##SFX(const T *restrict g, const T *restrict x, \
                                                   T *restrict gx, long rows, long ld,  \
                                                   long j0, long j1, const double *restrict m, \
                                                   const double *restrict mg,           \
                                                   const double *restrict q,            \
                                                   const double *restrict k) {          \
    for (long i = 0; i < rows; i++) {                                                   \
        const T *gr = g + i * ld, *xr = x != NULL ? x + i * ld : NULL;                  \
        T *o = gx + i * ld;                                                             \
        if (xr == NULL)                                                                 \
            for (long j = j0; j < j1; j++) o[j] = (T)((double)gr[j] * k[j]);            \
        else                                                                            \
            for (long j = j0; j < j1; j++)                                              \
                o[j] = (T)((((double)gr[j] - mg[j]) - ((double)xr[j] - m[j]) * q[j]) * k[j]); \
    }                                                                                   \
}

CG_NORM_FUNCS(float, f32)
CG_NORM_FUNCS(double, f64)
CG_NORM_COLUMN_FUNCS(float, f32)
CG_NORM_COLUMN_FUNCS(double, f64)

/* max |x| over x[0, n), NaN if any x is NaN (as torch's inf-norm). The magnitude
 * bits of IEEE values (U, the unsigned integer of T's width, sign cleared by MASK)
 * order as the values, and every NaN's lie above inf's, so an integer max of the
 * bits is exact and propagates NaN. */
#define CG_NORM_ABS_MAX(T, U, MASK, SFX)                                                \
CG_NORM_CLONES static T cg_abs_max_##SFX(const T *restrict x, long n) {                 \
    U m = 0, b;                                                                         \
    T r;                                                                                \
    for (long i = 0; i < n; i++) {                                                      \
        memcpy(&b, x + i, sizeof b);                                                    \
        b &= MASK;                                                                      \
        m = b > m ? b : m;                                                              \
    }                                                                                   \
    memcpy(&r, &m, sizeof r);                                                           \
    return r;                                                                           \
}

CG_NORM_ABS_MAX(float, uint32_t, 0x7fffffffu, f32)
CG_NORM_ABS_MAX(double, uint64_t, 0x7fffffffffffffffull, f64)

#pragma GCC pop_options

/* The type-generic names: f##_f64 for float64 data (dbl = 1), f##_f32 for float32. */
#define CG_NORM_EITHER(dbl, f, ...) ((dbl) ? f##_f64(__VA_ARGS__) : f##_f32(__VA_ARGS__))
#define cg_bn_sum(dbl, ...) CG_NORM_EITHER(dbl, cg_bn_sum, __VA_ARGS__)
#define cg_bn_sqdev(dbl, ...) CG_NORM_EITHER(dbl, cg_bn_sqdev, __VA_ARGS__)
#define cg_bn_affine(dbl, ...) CG_NORM_EITHER(dbl, cg_bn_affine, __VA_ARGS__)
#define cg_bn_grad_sums(dbl, ...) CG_NORM_EITHER(dbl, cg_bn_grad_sums, __VA_ARGS__)
#define cg_bn_grad_input(dbl, ...) CG_NORM_EITHER(dbl, cg_bn_grad_input, __VA_ARGS__)
#define cg_col_sum(dbl, ...) CG_NORM_EITHER(dbl, cg_col_sum, __VA_ARGS__)
#define cg_col_sqdev(dbl, ...) CG_NORM_EITHER(dbl, cg_col_sqdev, __VA_ARGS__)
#define cg_col_affine(dbl, ...) CG_NORM_EITHER(dbl, cg_col_affine, __VA_ARGS__)
#define cg_col_grad_sums(dbl, ...) CG_NORM_EITHER(dbl, cg_col_grad_sums, __VA_ARGS__)
#define cg_col_grad_input(dbl, ...) CG_NORM_EITHER(dbl, cg_col_grad_input, __VA_ARGS__)
#define cg_abs_sum(dbl, ...) CG_NORM_EITHER(dbl, cg_abs_sum, __VA_ARGS__)
#define cg_sq_sum(dbl, ...) CG_NORM_EITHER(dbl, cg_sq_sum, __VA_ARGS__)
#define cg_pow_sum(dbl, ...) CG_NORM_EITHER(dbl, cg_pow_sum, __VA_ARGS__)
#define cg_abs_max(dbl, ...) CG_NORM_EITHER(dbl, cg_abs_max, __VA_ARGS__)
#define cg_scale(dbl, ...) CG_NORM_EITHER(dbl, cg_scale, __VA_ARGS__)
#define cg_clamp(dbl, ...) CG_NORM_EITHER(dbl, cg_clamp, __VA_ARGS__)
#endif
