/* Branch-free float32 exp and tanh that GCC can vectorize (no calls, selects
 * instead of branches). Cephes-style: exp(x) = 2^n * e^r with n = round(x/ln 2),
 * |r| <= ln2/2, e^r by a degree-6 polynomial (error ~1 ulp); 2^n is built in two
 * halves so results down to the subnormal range and up to overflow are right.
 * Header-only, included by the Cython elementwise kernels. */
#ifndef CG_VMATH_H
#define CG_VMATH_H
#include <stdint.h>
#include <string.h>
#include <math.h>

static inline float cg_pow2i(int32_t n) {
    float f;
    int32_t bits = (n + 127) << 23;  /* exponent field of 2^n, n in [-126, 127] */
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float cg_expf(float x) {
    /* clamp keeps NaN (comparisons with NaN are false) */
    x = x < -104.0f ? -104.0f : x;
    x = x > 89.0f ? 89.0f : x;
    /* round(x * log2(e)) by the 1.5 * 2^23 trick (exact for |t| < 2^22) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    /* r = x - n ln2, ln2 split in two parts (Cody-Waite) */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t ni = (int32_t)(n == n ? n : 0.0f);  /* NaN: any n, p is NaN anyway */
    int32_t n1 = ni / 2;
    /* 2^n = 2^n1 * 2^(n - n1): each half stays a normal float */
    return p * cg_pow2i(n1) * cg_pow2i(ni - n1);
}

/* tanh: Cephes odd polynomial for |x| < 0.625, else sign(x) (1 - 2 / (e^{2|x|} + 1)) */
static inline float cg_tanhf(float x) {
    float ax = fabsf(x);
    float z = x * x;
    float ps = -5.70498872745e-3f;
    ps = ps * z + 2.06390887954e-2f;
    ps = ps * z - 5.37397155531e-2f;
    ps = ps * z + 1.33314422036e-1f;
    ps = ps * z - 3.33332819422e-1f;
    ps = ps * z * x + x;
    float e = cg_expf(2.0f * ax);
    float pl = copysignf(1.0f - 2.0f / (e + 1.0f), x);
    return ax < 0.625f ? ps : pl;
}
#endif
