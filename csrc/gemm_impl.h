/* The GEMM driver, written once and included by gemm.c for float and double.
 * Expects: T (element type), FN (public name), KERNEL_T (cg_kernel_s/_d),
 * CURRENT_KERNEL() (the kernel table for the selected instruction set).
 *
 * BLIS structure, loops from outside in:
 *   jc over N in steps of nc     B panel  (kc x nc)   packed once, shared, in L3
 *   pc over K in steps of kc     (fixed order: this is the sum over k)
 *   ic over M in steps of mc     A block  (mc x kc)   packed per thread, in L2
 *   jr over the block in NR      B sliver (kc x NR)   stays in L1 across ir
 *   ir over the block in MR      micro-kernel: MR x NR outputs in registers
 * Threads share B-packing and split the (ic, jr-range) work items. Block and
 * tile boundaries are multiples of MR and NR from the origin, so every output
 * element is computed by the same instructions whatever the thread count.
 *
 *
 * Small problems (deep-learning layer shapes): packing and barriers cost more
 * than they save. Each thread owns a rectangle of C, reads A in place (strided
 * micro-kernel operands) and packs only its own B slivers when B is transposed
 * (or an edge sliver/tile, zero-padded). No barriers, no shared scratch.
 *
 * Packed layouts (zero-padded at the edges):
 *   A sliver rows i0..i0+MR:  ap[p*MR + r] = op(A)[i0+r, p0+p]
 *   B sliver cols j0..j0+NR:  bp[p*NR + j] = op(B)[p0+p, j0+j]
 */

static void PASTE(pack_a_, T)(int ta, const T *a, cg_int lda, cg_int i0, cg_int mb,
                              cg_int p0, cg_int kb, int mr, T *ap)
{
    for (cg_int is = 0; is < mb; is += mr) {
        cg_int rows = mb - is < mr ? mb - is : mr;
        T *dst = ap + is * kb;
        if (!ta) {
            for (cg_int r = 0; r < rows; ++r) {
                const T *src = a + (i0 + is + r) * lda + p0;
                for (cg_int p = 0; p < kb; ++p) dst[p * mr + r] = src[p];
            }
        } else {
            for (cg_int p = 0; p < kb; ++p) {
                const T *src = a + (p0 + p) * lda + i0 + is;
                for (cg_int r = 0; r < rows; ++r) dst[p * mr + r] = src[r];
            }
        }
        for (cg_int r = rows; r < mr; ++r)
            for (cg_int p = 0; p < kb; ++p) dst[p * mr + r] = 0;
    }
}

/* one B sliver: columns j0..j0+cols (cols <= nr) */
static void PASTE(pack_b_, T)(const KERNEL_T *kern, int tb, const T *b, cg_int ldb, cg_int j0,
                              cg_int cols, cg_int p0, cg_int kb, int nr, T *dst)
{
    if (tb && cols == nr && kern->pack_bt) {
        kern->pack_bt(b + j0 * ldb + p0, ldb, kb, dst);
    } else if (!tb) {
        for (cg_int p = 0; p < kb; ++p) {
            const T *src = b + (p0 + p) * ldb + j0;
            T *d = dst + p * nr;
            cg_int j = 0;
            for (; j < cols; ++j) d[j] = src[j];
            for (; j < nr; ++j) d[j] = 0;
        }
    } else {
        const T *src = b + j0 * ldb + p0;
        for (cg_int p = 0; p < kb; ++p) {
            T *d = dst + p * nr;
            cg_int j = 0;
            for (; j < cols; ++j) d[j] = src[j * ldb + p];
            for (; j < nr; ++j) d[j] = 0;
        }
    }
}

/* C := beta * C (beta == 0: set to zero, never reading C) */
static void PASTE(scale_c_, T)(cg_int m, cg_int n, T beta, T *c, cg_int ldc)
{
    for (cg_int i = 0; i < m; ++i) {
        T *ci = c + i * ldc;
        if (beta == 0) for (cg_int j = 0; j < n; ++j) ci[j] = 0;
        else for (cg_int j = 0; j < n; ++j) ci[j] *= beta;
    }
}

static cg_int PASTE(ceil_div_, T)(cg_int a, cg_int b) { return (a + b - 1) / b; }


/* One MR x NR tile: full tiles straight into C; edge tiles through the ISA's edge
 * kernel when it has one, else through a bounce buffer. */
static inline void PASTE(tile_, T)(const KERNEL_T *kern, cg_int kb, const T *a, cg_int a_rs,
                                   cg_int a_cs, const T *b, cg_int b_rs, T *c, cg_int ldc,
                                   cg_int rows, cg_int cols, T alpha, T beta, T *tile)
{
    const int mr = kern->mr, nr = kern->nr;
    if (rows == mr && cols == nr) {
        kern->ukr(kb, a, a_rs, a_cs, b, b_rs, c, ldc, alpha, beta);
        return;
    }
    if (kern->ukr_edge) {
        kern->ukr_edge(kb, a, a_rs, a_cs, b, b_rs, c, ldc, alpha, beta, (int)rows, (int)cols);
        return;
    }
    kern->ukr(kb, a, a_rs, a_cs, b, b_rs, tile, nr, alpha, (T)0);
    for (cg_int r = 0; r < rows; ++r)
        for (cg_int j = 0; j < cols; ++j) {
            T y = tile[r * nr + j];
            if (beta != 0) y += beta * c[r * ldc + j];
            c[r * ldc + j] = y;
        }
}

static int PASTE(gemm_large_, T)(const KERNEL_T *kern, int ta, int tb, cg_int m, cg_int n,
                                 cg_int k, cg_int kc, T alpha, const T *a, cg_int lda,
                                 const T *b, cg_int ldb, T beta, T *c, cg_int ldc, int nt)
{
    const int mr = kern->mr, nr = kern->nr;
    const cg_int nc = n < kern->nc ? n : kern->nc;
    const cg_int nslivers_max = PASTE(ceil_div_, T)(nc, nr);

    /* M blocks: at most kern->mc rows, a multiple of the thread count when M allows. */
    cg_int nmtiles = PASTE(ceil_div_, T)(m, mr);
    cg_int nib = PASTE(ceil_div_, T)(m, kern->mc);
    if (nib < nt) nib = nt < nmtiles ? nt : nmtiles;
    else nib = PASTE(ceil_div_, T)(nib, nt) * nt;
    cg_int mc = PASTE(ceil_div_, T)(nmtiles, nib) * mr;
    nib = PASTE(ceil_div_, T)(m, mc);
    /* When M has too few tiles for the threads, split each block's slivers too. */
    cg_int jsplit = nib >= nt ? 1 : PASTE(ceil_div_, T)(nt, nib);
    if (jsplit > nslivers_max) jsplit = nslivers_max;

    size_t bp_elems = (size_t)kc * (size_t)(nslivers_max * nr);
    size_t ap_elems = (size_t)kc * (size_t)mc;
    T *bp = (T *)cg_aligned_alloc(bp_elems * sizeof(T));
    T *ap_all = (T *)cg_aligned_alloc(ap_elems * sizeof(T) * (size_t)nt);
    if (!bp || !ap_all) { cg_aligned_free(bp); cg_aligned_free(ap_all); return -1; }

#pragma omp parallel num_threads(nt) if(nt > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        T *ap = ap_all + ap_elems * (size_t)tid;
        T tile[CG_MAX_TILE] __attribute__((aligned(64)));

        for (cg_int jc = 0; jc < n; jc += nc) {
            cg_int nb = n - jc < nc ? n - jc : nc;
            cg_int nsl = PASTE(ceil_div_, T)(nb, nr);
            for (cg_int pc = 0; pc < k; pc += kc) {
                cg_int kb = k - pc < kc ? k - pc : kc;
                T beta_eff = pc == 0 ? beta : (T)1;

#pragma omp for schedule(static)
                for (cg_int s = 0; s < nsl; ++s) {
                    cg_int cols = nb - s * nr < nr ? nb - s * nr : nr;
                    PASTE(pack_b_, T)(kern, tb, b, ldb, jc + s * nr, cols, pc, kb, nr, bp + s * nr * kb);
                }

                cg_int packed_ib = -1;
                cg_int nitems = nib * jsplit;
#pragma omp for schedule(static)
                for (cg_int item = 0; item < nitems; ++item) {
                    cg_int ib = item / jsplit, js = item % jsplit;
                    cg_int i0 = ib * mc;
                    cg_int mb = m - i0 < mc ? m - i0 : mc;
                    if (packed_ib != ib) {
                        PASTE(pack_a_, T)(ta, a, lda, i0, mb, pc, kb, mr, ap);
                        packed_ib = ib;
                    }
                    cg_int s_lo = nsl * js / jsplit, s_hi = nsl * (js + 1) / jsplit;
                    for (cg_int s = s_lo; s < s_hi; ++s) {
                        cg_int j0 = s * nr;
                        cg_int cols = nb - j0 < nr ? nb - j0 : nr;
                        for (cg_int is = 0; is < mb; is += mr) {
                            cg_int rows = mb - is < mr ? mb - is : mr;
                            PASTE(tile_, T)(kern, kb, ap + is * kb, 1, mr, bp + s * nr * kb, nr,
                                            c + (i0 + is) * ldc + jc + j0, ldc, rows, cols,
                                            alpha, beta_eff, tile);
                        }
                    }
                }
            }
        }
    }
    cg_aligned_free(bp);
    cg_aligned_free(ap_all);
    return 0;
}

/* The small path's work of thread tid (of a gm x gn grid): a rectangle of C. */
typedef struct {
    const KERNEL_T *kern;
    int ta, tb, gm, gn;
    cg_int m, n, k, kc, lda, ldb, ldc, b_elems, per;
    T alpha, beta;
    const T *a, *b;
    T *c, *scratch;
} PASTE(small_args_, T);

static void PASTE(small_part_, T)(const PASTE(small_args_, T) *g, int tid)
{
    const KERNEL_T *kern = g->kern;
    const int mr = kern->mr, nr = kern->nr, ta = g->ta, tb = g->tb;
    const cg_int m = g->m, n = g->n, k = g->k, kc = g->kc, lda = g->lda, ldb = g->ldb, ldc = g->ldc;
    const T *a = g->a, *b = g->b;
    T *c = g->c;
    const cg_int nmt = PASTE(ceil_div_, T)(m, mr), nsl = PASTE(ceil_div_, T)(n, nr);
    const cg_int a_rs = ta ? 1 : lda, a_cs = ta ? lda : 1;
    T *bbuf = g->scratch + g->per * (size_t)tid, *abuf = bbuf + g->b_elems;
    T tile[CG_MAX_TILE] __attribute__((aligned(64)));
    int ti = tid / g->gn, tj = tid % g->gn;
    cg_int t_lo = nmt * ti / g->gm, t_hi = nmt * (ti + 1) / g->gm;
    cg_int s_lo = nsl * tj / g->gn, s_hi = nsl * (tj + 1) / g->gn;
    cg_int last_rows = m - (nmt - 1) * mr;

    for (cg_int pc = 0; pc < k; pc += kc) {
        cg_int kb = k - pc < kc ? k - pc : kc;
        T beta_eff = pc == 0 ? g->beta : (T)1;
        if (t_hi == nmt && last_rows < mr && !kern->ukr_edge)  /* edge rows: pack, zero-padded */
            PASTE(pack_a_, T)(ta, a, lda, (nmt - 1) * mr, last_rows, pc, kb, mr, abuf);
        for (cg_int s = s_lo; s < s_hi; ++s) {
            cg_int j0 = s * nr;
            cg_int cols = n - j0 < nr ? n - j0 : nr;
            const T *bs;
            cg_int b_rs;
            if (tb || cols < nr) {
                T *dst = tb ? bbuf + (s - s_lo) * nr * kb : bbuf;
                PASTE(pack_b_, T)(kern, tb, b, ldb, j0, cols, pc, kb, nr, dst);
                bs = dst;
                b_rs = nr;
            } else {
                bs = b + pc * ldb + j0;
                b_rs = ldb;
            }
            for (cg_int t = t_lo; t < t_hi; ++t) {
                cg_int i0 = t * mr;
                cg_int rows = m - i0 < mr ? m - i0 : mr;
                if (rows == mr || kern->ukr_edge) {
                    const T *at = ta ? a + pc * lda + i0 : a + i0 * lda + pc;
                    PASTE(tile_, T)(kern, kb, at, a_rs, a_cs, bs, b_rs, c + i0 * ldc + j0,
                                    ldc, rows, cols, g->alpha, beta_eff, tile);
                } else {
                    PASTE(tile_, T)(kern, kb, abuf, 1, mr, bs, b_rs, c + i0 * ldc + j0,
                                    ldc, rows, cols, g->alpha, beta_eff, tile);
                }
            }
        }
    }
}

static int PASTE(gemm_small_, T)(const KERNEL_T *kern, int ta, int tb, cg_int m, cg_int n,
                                 cg_int k, cg_int kc, T alpha, const T *a, cg_int lda,
                                 const T *b, cg_int ldb, T beta, T *c, cg_int ldc, int nt)
{
    const int mr = kern->mr, nr = kern->nr;
    const cg_int nmt = PASTE(ceil_div_, T)(m, mr), nsl = PASTE(ceil_div_, T)(n, nr);
    if (nt > nmt * nsl) nt = (int)(nmt * nsl);
    /* Threads as a gm x gn grid over (row tiles, slivers): least work per thread,
     * then (B transposed) least B packed twice. */
    int gm = 1, gn = nt;
    double best = -1;
    for (int g = 1; g <= nt; ++g) {
        if (nt % g) continue;
        int h = nt / g;
        if (g > nmt || h > nsl) continue;
        double work = (double)PASTE(ceil_div_, T)(nmt, g) * (double)PASTE(ceil_div_, T)(nsl, h);
        double cost = work * mr * nr * (double)k + (tb ? (double)g * n * k : 0.0);
        if (best < 0 || cost < best) { best = cost; gm = g; gn = h; }
    }
    if (best < 0) { gm = 1; gn = 1; nt = 1; }
    nt = gm * gn;
    const cg_int sl_per = PASTE(ceil_div_, T)(nsl, gn);
    /* per thread: its B slivers (B transposed) or one edge sliver; one edge A tile */
    PASTE(small_args_, T) args = {kern, ta, tb, gm, gn, m, n, k, kc, lda, ldb, ldc, 0, 0,
                                   alpha, beta, a, b, c, NULL};
    args.b_elems = kc * nr * (tb ? sl_per : 1);
    args.per = args.b_elems + kc * mr;
    size_t bytes = (size_t)args.per * sizeof(T) * (size_t)nt;

    if (nt == 1 && bytes <= CG_STACK_SCRATCH) {
        /* one thread, little scratch: no allocation, no parallel region */
        unsigned char stack[CG_STACK_SCRATCH] __attribute__((aligned(64)));
        args.scratch = (T *)stack;
        PASTE(small_part_, T)(&args, 0);
        return 0;
    }
    args.scratch = (T *)cg_aligned_alloc(bytes);
    if (!args.scratch) return -1;
#pragma omp parallel num_threads(nt) if(nt > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        PASTE(small_part_, T)(&args, tid);
    }
    cg_aligned_free(args.scratch);
    return 0;
}

int FN(int ta, int tb, cg_int m, cg_int n, cg_int k, T alpha, const T *a, cg_int lda,
       const T *b, cg_int ldb, T beta, T *c, cg_int ldc, int nthreads)
{
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0 || alpha == 0) { PASTE(scale_c_, T)(m, n, beta, c, ldc); return 0; }

    const KERNEL_T *kern = CURRENT_KERNEL();
    /* k blocks from the shape only: this fixes each output's order of summation */
    const cg_int kc = k <= kern->kc ? k : PASTE(ceil_div_, T)(k, PASTE(ceil_div_, T)(k, kern->kc));

    /* Threads: one per CG_FLOPS_PER_THREAD of work at least (start-up costs microseconds). */
    double flops = 2.0 * (double)m * (double)n * (double)k;
    int nt = nthreads < 1 ? 1 : nthreads;
    if (flops < CG_FLOPS_PER_THREAD * nt) {
        nt = (int)(flops / CG_FLOPS_PER_THREAD);
        if (nt < 1) nt = 1;
    }
    int large = flops > CG_SMALL_FLOPS;
    if (cg_gemm_force_path) large = cg_gemm_force_path == 2;
    if (large)
        return PASTE(gemm_large_, T)(kern, ta, tb, m, n, k, kc, alpha, a, lda, b, ldb, beta, c, ldc, nt);
    return PASTE(gemm_small_, T)(kern, ta, tb, m, n, k, kc, alpha, a, lda, b, ldb, beta, c, ldc, nt);
}
