/* GEMM driver and instruction-set dispatch. The micro-kernels live in
 * gemm_kernels_{generic,avx2,avx512}.c; the loops around them in gemm_impl.h. */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "gemm_internal.h"

#define PASTE_(a, b) a##b
#define PASTE(a, b) PASTE_(a, b)
#define CG_MAX_TILE 512 /* largest MR * NR over all kernels */
/* Below this many flops a problem takes the small path (no shared packing). */
#define CG_SMALL_FLOPS 5e8
/* Scratch up to this size lives on the caller's stack (single-threaded small calls). */
#define CG_STACK_SCRATCH 32768
/* Each thread should get at least this much work. */
#define CG_FLOPS_PER_THREAD 1e6

/* 0: choose by size; 1: small path; 2: large path (benchmarks and tests). */
int cg_gemm_force_path = 0;

static void *cg_aligned_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    return p;
}
static void cg_aligned_free(void *p) { free(p); }

/* ---- instruction-set selection ------------------------------------------ */

static int cg_isa = -1; /* chosen once (cg_isa_best) unless set explicitly */

int cg_isa_supported(int isa)
{
    switch (isa) {
    case CG_ISA_GENERIC: return 1;
#if defined(__x86_64__) && defined(__GNUC__)
    case CG_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CG_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
#endif
    default: return 0;
    }
}

int cg_isa_best(void)
{
    if (cg_isa_supported(CG_ISA_AVX512)) return CG_ISA_AVX512;
    if (cg_isa_supported(CG_ISA_AVX2)) return CG_ISA_AVX2;
    return CG_ISA_GENERIC;
}

int cg_get_isa(void)
{
    int isa = __atomic_load_n(&cg_isa, __ATOMIC_RELAXED);
    if (isa < 0) {
        isa = cg_isa_best();
        __atomic_store_n(&cg_isa, isa, __ATOMIC_RELAXED);
    }
    return isa;
}

int cg_set_isa(int isa)
{
    if (!cg_isa_supported(isa)) return -1;
    __atomic_store_n(&cg_isa, isa, __ATOMIC_RELAXED);
    return 0;
}

const char *cg_isa_name(int isa)
{
    switch (isa) {
    case CG_ISA_GENERIC: return "generic";
    case CG_ISA_AVX2: return "avx2";
    case CG_ISA_AVX512: return "avx512";
    default: return "unknown";
    }
}

static const cg_kernel_s *current_kernel_s(void)
{
    switch (cg_get_isa()) {
    case CG_ISA_AVX512: return &cg_kernel_s_avx512;
    case CG_ISA_AVX2: return &cg_kernel_s_avx2;
    default: return &cg_kernel_s_generic;
    }
}

static const cg_kernel_d *current_kernel_d(void)
{
    switch (cg_get_isa()) {
    case CG_ISA_AVX512: return &cg_kernel_d_avx512;
    case CG_ISA_AVX2: return &cg_kernel_d_avx2;
    default: return &cg_kernel_d_generic;
    }
}

/* ---- the driver, once per element type ------------------------------------ */

#define T float
#define FN cg_sgemm
#define KERNEL_T cg_kernel_s
#define CURRENT_KERNEL current_kernel_s
#include "gemm_impl.h"
#undef T
#undef FN
#undef KERNEL_T
#undef CURRENT_KERNEL

#define T double
#define FN cg_dgemm
#define KERNEL_T cg_kernel_d
#define CURRENT_KERNEL current_kernel_d
#include "gemm_impl.h"
#undef T
#undef FN
#undef KERNEL_T
#undef CURRENT_KERNEL
