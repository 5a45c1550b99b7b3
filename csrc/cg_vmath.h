/* Branch-free float32 exp and tanh that GCC can vectorize (no calls, selects
 * instead of branches). Cephes-style: exp(x) = 2^n * e^r with n = round(x/ln 2),
 * |r| <= ln2/2, e^r by a degree-6 polynomial (error ~1 ulp); 2^n is built in two
 * halves so results down to the subnormal range and up to overflow are right.
 * The polynomials use explicit fmaf: one rounding per step on every machine
 * (a hardware FMA in the AVX2/AVX-512 clones, a correctly rounded libm call
 * in the baseline one), so no build or ISA changes a result.
 * Header-only, included by the Cython elementwise kernels. */
#ifndef CG_VMATH_H
#define CG_VMATH_H
#include <stdint.h>
#include <string.h>
#include <math.h>

/* always inlined, so each target clone of a caller gets its own vector code */
#if defined(__GNUC__)
#define CG_VINLINE static inline __attribute__((always_inline))
#else
#define CG_VINLINE static inline
#endif

CG_VINLINE float cg_pow2i(int32_t n) {
    float f;
    int32_t bits = (n + 127) << 23;  /* exponent field of 2^n, n in [-126, 127] */
    memcpy(&f, &bits, sizeof f);
    return f;
}

CG_VINLINE float cg_expf(float x) {
    /* clamp keeps NaN (comparisons with NaN are false) */
    x = x < -104.0f ? -104.0f : x;
    x = x > 89.0f ? 89.0f : x;
    /* round(x * log2(e)) by the 1.5 * 2^23 trick (exact for |t| < 2^22) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    /* r = x - n ln2, ln2 split in two parts (Cody-Waite) */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = p * (r * r) + r + 1.0f;
    int32_t ni = (int32_t)(n == n ? n : 0.0f);  /* NaN: any n, p is NaN anyway */
    int32_t n1 = ni / 2;
    /* 2^n = 2^n1 * 2^(n - n1): each half stays a normal float */
    return p * cg_pow2i(n1) * cg_pow2i(ni - n1);
}

/* e^x - 1 for x in [0, 18.2] (tanh's range), by cg_expf's reduction:
 * x = n ln2 + r, e^x - 1 = 2^n (1 + q) - 1 with q = e^r - 1 = r + r^2 P(r). For
 * n = 0 the 1 is never added, so small x keep full relative precision. */
CG_VINLINE float cg_expm1f_tanh_range(float x) {
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float q = p * (r * r) + r;
    float big = cg_pow2i((int32_t)(n == n ? n : 0.0f)) * (1.0f + q) - 1.0f;
    return n == 0.0f ? q : big;
}

/* tanh(x) = sign(x) m / (m + 2), m = e^{2|x|} - 1 (no cancellation near 0);
 * |x| is clamped at 9.1, beyond which tanh rounds to 1. Max error ~2 ulp. */
CG_VINLINE float cg_tanhf(float x) {
    float ax = fabsf(x);
    ax = ax > 9.1f ? 9.1f : ax;  /* keeps NaN */
    float m = cg_expm1f_tanh_range(2.0f * ax);
    return copysignf(m / (m + 2.0f), x);
}
#endif
