# cython: language_level=3
"""2-D convolution on cygrad's GEMM: im2col / col2im and conv2d forward and backward.

Same API, layouts and errors as cygrad.reference.conv (the spec); PyTorch layouts
and semantics: x (N, C_in, H, W), weight (C_out, C_in/groups, KH, KW), output size as
torch.nn.Conv2d (zero padding).

cols layout: (N, C_in*KH*KW, H_out*W_out), as torch.nn.functional.unfold; row
(c*KH + i)*KW + j, column oh*W_out + ow holds x[n, c, oh*sh - ph + i*dh,
ow*sw - pw + j*dw] (0 in the padding). Per image the forward pass is then one
row-major GEMM with no transposes, y[n] (C_out, L) = W (C_out, K) @ cols[n] (K, L),
and the backward passes are grad_W += g[n] @ cols[n]^T and dcols = W^T @ g[n].

Bias rides in the GEMM: the column buffer carries an extra row of ones (row K), so
W_ext = [W | b] gives y = W @ cols + b in the forward pass, and the last column of
g @ cols_ext^T is the bias gradient in the backward pass.

Work is split over images, each thread owning one column buffer (memory is
threads x one image's columns, not the batch). The weight/bias gradients sum over
the batch in a fixed order: the batch is cut into chunks of CHUNK images
(independent of the thread count), each chunk's partial sum is one thread's
sequence of GEMMs, and the partials are added to the total in chunk order, so
results are bitwise identical for any thread count. Partials in flight are
bounded (a few per thread, PARTIAL_BYTES), not one per chunk of the batch.

Groups: a group's input channels are a contiguous block of each image (C_in/G
planes), and so are its output channels and its weight rows, so group g of image n
is a convolution of its own with C_in/G channels: the loops above run over (image,
group) pairs, item e = n*G + g reading x + e*(C_in/G)*H*W and writing y + e*(C_out/G)*L,
with weight rows g*C_out/G on. G = 1 is the plain convolution, item for item.
Depthwise convolutions (G = C_in) take a direct path instead (conv_depthwise.h): a
one-channel im2col and a GEMM with C_out/C_in rows would be all overhead.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, threadid

from cygrad._runtime cimport num_threads
from cygrad.kernels.gemm cimport sgemm, dgemm
from cygrad.kernels._checks cimport array_data, check_ndim, float_array, same_dtype
from cygrad.reference._checks import check_conv_weight, check_shape, conv_geometry, nchw_shape

cnp.import_array()

ctypedef fused real:
    float
    double

# Images per weight-gradient partial sum: fixed, so the summation order (and the
# result) does not depend on the thread count.
cdef enum:
    CHUNK = 4
# Below this many multiply-adds a call runs on one thread (start-up costs more).
cdef double SERIAL_MACS = 1 << 18
# Memory for weight-gradient partial sums in flight (at least one per thread).
cdef Py_ssize_t PARTIAL_BYTES = 4 << 20


# Inner loops in C (csrc/conv_kernels.h): im2col / col2im of one image (AVX-512
# masked row segments where the CPU has them) and the direct weight gradient of
# shallow patches.
cdef extern from "conv_kernels.h":
    ctypedef struct Geom "cg_geom":
        Py_ssize_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo
    void cg_conv_init()
    int cg_conv_set512(int on)
    void cg_im2col_float(const float *x, float *cols, const Geom *g) noexcept nogil
    void cg_im2col_double(const double *x, double *cols, const Geom *g) noexcept nogil
    void cg_col2im_float(const float *cols, float *x, const Geom *g) noexcept nogil
    void cg_col2im_double(const double *cols, double *x, const Geom *g) noexcept nogil
    void cg_dots_float(const float *g, const float *cols, float *part, Py_ssize_t cout,
                       Py_ssize_t kr, Py_ssize_t L, int accumulate) noexcept nogil
    void cg_dots_double(const double *g, const double *cols, double *part, Py_ssize_t cout,
                        Py_ssize_t kr, Py_ssize_t L, int accumulate) noexcept nogil

cg_conv_init()


def _use_avx512(bint on):
    """Test hook: run im2col/col2im on the AVX-512 path (on, where the CPU has it) or
    on the plain loops; returns whether AVX-512 was in use before. Not thread-safe."""
    return bool(cg_conv_set512(on))


# Weight gradients of patches with at most SMALL_K rows (K + 1 for the bias) are
# direct dot products: at that depth the GEMM would mostly pack.
cdef enum:
    SMALL_K = 32


cdef inline int gemm(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const real *a, Py_ssize_t lda, const real *b, Py_ssize_t ldb,
                     real beta, real *c, Py_ssize_t ldc, int nt) noexcept nogil:
    if real is float:
        return sgemm(ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc, nt)
    else:
        return dgemm(ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc, nt)


cdef inline void im2col_image(const real *x, real *cols, const Geom *g) noexcept nogil:
    if real is float:
        cg_im2col_float(x, cols, g)
    else:
        cg_im2col_double(x, cols, g)


cdef inline void col2im_image(const real *cols, real *x, const Geom *g) noexcept nogil:
    if real is float:
        cg_col2im_float(cols, x, g)
    else:
        cg_col2im_double(cols, x, g)


# ---------------------------------------------------------------- drivers (nogil)

cdef int conv_forward_impl(const real *x, const real *wext, Py_ssize_t kb, real *y,
                           real *buf, const Geom *g, Py_ssize_t items, Py_ssize_t groups,
                           Py_ssize_t co, int nt) noexcept nogil:
    """y_e (co, L) = wext_e (co, kb) @ cols_e (kb, L) for each item e = (image, group)
    (module docstring; co = C_out/G, g.c = C_in/G); kb is K, or K + 1 when the
    buffer's row K holds ones and wext's last column the bias. buf: nt column
    buffers of kb*L. Returns 0, or -1 when the GEMM ran out of memory."""
    cdef Py_ssize_t e, L = g.ho * g.wo, chw = g.c * g.h * g.w
    cdef real *cb
    cdef int rc, bad = 0
    cdef int *badp = &bad      # shared flag (a plain assignment in prange is private)
    if nt > 1 and items >= nt:
        # one item per thread at a time; the GEMM runs on that one thread. Items are
        # handed out dynamically (a busy core on a shared machine then costs only its
        # share); each y_e is computed the same way whichever thread takes it.
        for e in prange(items, num_threads=nt, schedule='dynamic'):
            cb = buf + threadid() * kb * L
            im2col_image(x + e * chw, cb, g)
            rc = gemm(False, False, co, L, kb, wext + e % groups * co * kb, kb, cb, L, 0,
                      y + e * co * L, L, 1)
            if rc != 0:
                badp[0] = 1
        return -1 if bad else 0
    for e in range(items):
        im2col_image(x + e * chw, buf, g)
        if gemm(False, False, co, L, kb, wext + e % groups * co * kb, kb, buf, L, 0,
                y + e * co * L, L, nt):
            return -1
    return 0


cdef int item_backward(const real *gi, const real *xe, const real *wg, real *gxe, real *pg,
                       real *cb, real *db, const Geom *g, Py_ssize_t co, bint accumulate,
                       int gnt) noexcept nogil:
    """One (image, group) item e: pg (co, K+1) (+)= g_e @ cols_ext_e^T (last column: bias
    gradient), and gxe = col2im(W_g^T @ g_e) when not NULL. cb: column buffer (K+1, L)
    whose row K holds ones; db: (K, L). Returns -1 when the GEMM ran out of memory."""
    cdef Py_ssize_t L = g.ho * g.wo, K = g.c * g.kh * g.kw
    im2col_image(xe, cb, g)
    if K + 1 <= SMALL_K:
        if real is float:
            cg_dots_float(gi, cb, pg, co, K + 1, L, accumulate)
        else:
            cg_dots_double(gi, cb, pg, co, K + 1, L, accumulate)
    elif gemm(False, True, co, K + 1, L, gi, L, cb, L, 1 if accumulate else 0, pg, K + 1, gnt):
        return -1
    if gxe != NULL:
        if gemm(True, False, K, L, co, wg, K, gi, L, 0, db, L, gnt):
            return -1
        col2im_image(db, gxe, g)
    return 0


cdef int chunk_backward(Py_ssize_t chunk, const real *gout, const real *x, const real *w,
                        real *gx, real *part, real *cb, real *db, const Geom *g,
                        Py_ssize_t n, Py_ssize_t groups, Py_ssize_t co, int gnt) noexcept nogil:
    """item_backward for the images of one chunk, each group in turn (item e = i*G + gr,
    module docstring): the group's co rows of part (C_out, K+1) = the sum over the
    chunk's images, in image order."""
    cdef Py_ssize_t L = g.ho * g.wo, chw = g.c * g.h * g.w, K = g.c * g.kh * g.kw
    cdef Py_ssize_t i, gr, e, first = chunk * CHUNK
    cdef Py_ssize_t last = first + CHUNK if first + CHUNK < n else n
    for i in range(first, last):
        for gr in range(groups):
            e = i * groups + gr
            if item_backward(gout + e * co * L, x + e * chw, w + gr * co * K,
                             gx + e * chw if gx != NULL else NULL, part + gr * co * (K + 1),
                             cb, db, g, co, i != first, gnt):
                return -1
    return 0


cdef int conv_backward_impl(const real *gout, const real *x, const real *w, real *gx,
                            real *total, real *part, Py_ssize_t win, real *cbuf, real *dbuf,
                            const Geom *g, Py_ssize_t n, Py_ssize_t groups, Py_ssize_t cout,
                            int nt) noexcept nogil:
    """total (C_out, K+1) = sum over chunks, in chunk order, of chunk_backward's
    partials. Chunks run win at a time (one parallel region each, handed out
    dynamically), each into its own partial slot; thread t uses column buffers
    cbuf[t], dbuf[t]. win and nt change only the schedule, never the sums."""
    cdef Py_ssize_t L = g.ho * g.wo, K = g.c * g.kh * g.kw, kb = K + 1
    cdef Py_ssize_t nchunks = (n + CHUNK - 1) // CHUNK, wave = 0, m, t, e
    cdef Py_ssize_t psize = cout * kb
    cdef int rc, bad = 0, tid
    cdef int *badp = &bad      # shared flag (a plain assignment in prange is private)
    cdef real *p
    for e in range(psize):
        total[e] = 0
    for t in range(nt):
        for e in range(L):
            cbuf[t * kb * L + K * L + e] = 1
    while wave < nchunks:
        m = nchunks - wave if nchunks - wave < win else win
        if nt > 1 and m > 1:
            for t in prange(m, num_threads=nt, schedule='dynamic'):
                tid = threadid()
                rc = chunk_backward(wave + t, gout, x, w, gx, part + t * psize,
                                    cbuf + tid * kb * L, dbuf + tid * K * L, g, n, groups,
                                    cout // groups, 1)
                if rc != 0:
                    badp[0] = 1
        else:      # one chunk (or one thread): its GEMMs get the threads
            for t in range(m):
                if chunk_backward(wave + t, gout, x, w, gx, part + t * psize, cbuf, dbuf,
                                  g, n, groups, cout // groups, nt) != 0:
                    bad = 1
        if bad:
            return -1
        for t in range(m):
            p = part + t * psize
            for e in range(psize):
                total[e] += p[e]
        wave += m
    return 0


# ---------------------------------------------------------------- depthwise (nogil)

# Direct depthwise loops in C (csrc/conv_depthwise.h): one plane's correlation, weight
# gradient lane sums, zero-padded copies, the spread of a gradient plane for the
# transpose, and the plain transpose for kernels with inf or NaN.
cdef extern from "conv_depthwise.h":
    ctypedef struct Corr "cg_corr":
        Py_ssize_t ho, wo, sh, kk, pcols
        const Py_ssize_t *off
    Py_ssize_t CG_DW_SLACK
    Py_ssize_t CG_DW_ROW(Py_ssize_t wo) noexcept nogil
    void cg_dw_correlate_float(const float *p, const float *k, float init, int accumulate,
                               float *out, const Corr *c) noexcept nogil
    void cg_dw_correlate_double(const double *p, const double *k, double init, int accumulate,
                                double *out, const Corr *c) noexcept nogil
    void cg_dw_weight_grad_float(const float *gpad, const float *p, float *part,
                                 const Corr *c) noexcept nogil
    void cg_dw_weight_grad_double(const double *gpad, const double *p, double *part,
                                  const Corr *c) noexcept nogil
    void cg_dw_lanes_total_float(const float *part, float *total, Py_ssize_t n,
                                 Py_ssize_t count) noexcept nogil
    void cg_dw_lanes_total_double(const double *part, double *total, Py_ssize_t n,
                                  Py_ssize_t count) noexcept nogil
    void cg_dw_pad_float(const float *x, float *xp, Py_ssize_t h, Py_ssize_t w, Py_ssize_t ph,
                         Py_ssize_t pw, Py_ssize_t sw, Py_ssize_t plen) noexcept nogil
    void cg_dw_pad_double(const double *x, double *xp, Py_ssize_t h, Py_ssize_t w,
                          Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sw,
                          Py_ssize_t plen) noexcept nogil
    void cg_dw_pad_rows_float(const float *g, float *gpad, Py_ssize_t ho,
                              Py_ssize_t wo) noexcept nogil
    void cg_dw_pad_rows_double(const double *g, double *gpad, Py_ssize_t ho,
                               Py_ssize_t wo) noexcept nogil
    void cg_dw_spread_float(const float *g, float *gs, Py_ssize_t rows, Py_ssize_t cols,
                            Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t top, Py_ssize_t left) noexcept nogil
    void cg_dw_spread_double(const double *g, double *gs, Py_ssize_t rows, Py_ssize_t cols,
                             Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t sh, Py_ssize_t sw,
                             Py_ssize_t top, Py_ssize_t left) noexcept nogil
    void cg_dw_scatter_float(const float *g, const float *k, int accumulate, float *gx,
                             const Geom *d) noexcept nogil
    void cg_dw_scatter_double(const double *g, const double *k, int accumulate, double *gx,
                              const Geom *d) noexcept nogil


cdef struct DW:
    # one depthwise call: the forward correlation over the padded input plane xp (its
    # rows in sw column phases of plen), the transposed one over the spread gradient
    # plane gs (rows, cols), and each thread's scratch: xp at 0, then gpad and gs at
    # offsets gpad, gs, size in all
    Corr fwd, tr
    Py_ssize_t plen, rows, cols, top, left, gpad, gs, size


cdef inline void correlate(const real *p, const real *k, real init, bint accumulate, real *out,
                           const Corr *c) noexcept nogil:
    if real is float:
        cg_dw_correlate_float(p, k, init, accumulate, out, c)
    else:
        cg_dw_correlate_double(p, k, init, accumulate, out, c)


cdef inline void pad_plane(const real *x, real *xp, const Geom *g, const DW *dw) noexcept nogil:
    if real is float:
        cg_dw_pad_float(x, xp, g.h, g.w, g.ph, g.pw, g.sw, dw.plen)
    else:
        cg_dw_pad_double(x, xp, g.h, g.w, g.ph, g.pw, g.sw, dw.plen)


cdef void depthwise_forward_impl(const real *x, const real *w, const real *b, real *y,
                                 real *scratch, const Geom *g, const DW *dw,
                                 Py_ssize_t planes, Py_ssize_t cin, Py_ssize_t m,
                                 int nt) noexcept nogil:
    """Item e = input plane (n, c): pad it once into the thread's scratch (border
    zero), then its m output planes y[n, c*m + q] = b + correlation with w[c*m + q].
    Planes are handed out dynamically, a few at a time (a core busy with another
    process then costs only its share); a plane's result never depends on its thread."""
    cdef Py_ssize_t e, q, co, hw = g.h * g.w, L = g.ho * g.wo, kk = g.kh * g.kw
    cdef real *xp
    for e in prange(planes, num_threads=nt, schedule='dynamic', chunksize=8):
        xp = scratch + threadid() * dw.size
        pad_plane(x + e * hw, xp, g, dw)
        for q in range(m):
            co = e % cin * m + q
            correlate(xp, w + co * kk, b[co], False, y + (e * m + q) * L, &dw.fwd)


cdef void depthwise_backward_impl(const real *gout, const real *x, const real *w,
                                  const real *wflip, bint finite, real *gx, real *part,
                                  real *scratch, const Geom *g, const DW *dw,
                                  Py_ssize_t planes, Py_ssize_t cin, Py_ssize_t m,
                                  int nt) noexcept nogil:
    """Item e = input plane (n, c) and its m output planes o = e*m + q: part[o]
    (KH*KW + 1, lanes) = that plane pair's weight and bias gradient lane sums; gx[e]
    (when not NULL) = sum over q, in order, of the spread g[o] correlated with the
    flipped w[co] (finite weights; else the plain scatter of g[o] through w[co])."""
    cdef Py_ssize_t e, q, o, co, hw = g.h * g.w, L = g.ho * g.wo, kk = g.kh * g.kw
    cdef Py_ssize_t psize = (kk + 1) * (64 // sizeof(real))
    cdef real *xp
    cdef real *gpad
    cdef real *gs
    for e in prange(planes, num_threads=nt, schedule='dynamic', chunksize=8):
        xp = scratch + threadid() * dw.size
        gpad = xp + dw.gpad
        gs = xp + dw.gs
        pad_plane(x + e * hw, xp, g, dw)
        for q in range(m):
            o = e * m + q
            co = e % cin * m + q
            if real is float:
                cg_dw_pad_rows_float(gout + o * L, gpad, g.ho, g.wo)
                cg_dw_weight_grad_float(gpad, xp, part + o * psize, &dw.fwd)
            else:
                cg_dw_pad_rows_double(gout + o * L, gpad, g.ho, g.wo)
                cg_dw_weight_grad_double(gpad, xp, part + o * psize, &dw.fwd)
            if gx == NULL:
                continue
            if not finite:
                if real is float:
                    cg_dw_scatter_float(gout + o * L, w + co * kk, q > 0, gx + e * hw, g)
                else:
                    cg_dw_scatter_double(gout + o * L, w + co * kk, q > 0, gx + e * hw, g)
                continue
            if real is float:
                cg_dw_spread_float(gout + o * L, gs, dw.rows, dw.cols, g.ho, g.wo, g.sh, g.sw,
                                   dw.top, dw.left)
            else:
                cg_dw_spread_double(gout + o * L, gs, dw.rows, dw.cols, g.ho, g.wo, g.sh, g.sw,
                                    dw.top, dw.left)
            correlate(gs, wflip + co * kk, 0, q > 0, gx + e * hw, &dw.tr)


# ---------------------------------------------------------------- Python API

cdef Geom make_geom(tuple x_shape, k, s, p, d, out, Py_ssize_t groups=1):
    """The geometry of one group's convolution (g.c = C_in / groups channels), from
    conv_geometry(..., channels=C_in/groups): its limits (each value at most 2**40, the
    padded plane 2**31, one image's column matrix 2**60 elements) keep every size below
    in C from wrapping around (a wrapped buffer size allocates too little)."""
    cdef Geom g
    g.c, g.h, g.w = x_shape[1] // groups, x_shape[2], x_shape[3]
    g.kh, g.kw = k
    g.sh, g.sw = s
    g.ph, g.pw = p
    g.dh, g.dw = d
    g.ho, g.wo = out
    return g


cdef int threads_for(double macs):
    return 1 if macs < SERIAL_MACS else num_threads()


cdef void each_image(bint fold, const real *src, real *dst, const Geom *g, Py_ssize_t n,
                     int nt) noexcept nogil:
    """im2col of every image (fold False: src x, dst cols) or col2im (fold True)."""
    cdef Py_ssize_t i, chw = g.c * g.h * g.w, csize = g.c * g.kh * g.kw * g.ho * g.wo
    for i in prange(n, num_threads=nt, schedule='dynamic'):
        if fold:
            col2im_image(src + i * csize, dst + i * chw, g)
        else:
            im2col_image(src + i * chw, dst + i * csize, g)


cdef object unfold_or_fold(bint fold, int t, src, dst, const Geom *g):
    cdef void *ps = array_data(src)
    cdef void *pd = array_data(dst)
    cdef Py_ssize_t n = src.shape[0]
    cdef int nt = threads_for(<double>n * g.c * g.kh * g.kw * g.ho * g.wo)
    with nogil:
        if t == cnp.NPY_FLOAT:
            each_image(fold, <const float *>ps, <float *>pd, g, n, nt)
        else:
            each_image(fold, <const double *>ps, <double *>pd, g, n, nt)
    return dst


def im2col(x, kernel_size, *, stride=1, padding=0, dilation=1):
    """Unfold x (N, C, H, W) into cols (N, C*KH*KW, H_out*W_out), as torch's F.unfold
    (layout in the module docstring). col2im is its adjoint."""
    cdef int t = float_array(x, "x")
    check_ndim(x, 4, "x")
    k, s, p, d, out = conv_geometry(x.shape[2:], kernel_size, stride, padding, dilation,
                                    channels=x.shape[1])
    cdef Geom g = make_geom(x.shape, k, s, p, d, out)
    cols = np.empty((x.shape[0], g.c * g.kh * g.kw, g.ho * g.wo), x.dtype)
    return unfold_or_fold(False, t, x, cols, &g)


def col2im(cols, x_shape, kernel_size, *, stride=1, padding=0, dilation=1):
    """Fold cols (N, C*KH*KW, H_out*W_out) back to (N, C, H, W), summing overlapping
    patches: the adjoint of im2col (<im2col(x), c> == <x, col2im(c)>), as torch's F.fold."""
    cdef int t = float_array(cols, "cols")
    check_ndim(cols, 3, "cols")
    shape = nchw_shape(x_shape, "x_shape")
    k, s, p, d, out = conv_geometry(shape[2:], kernel_size, stride, padding, dilation,
                                    channels=shape[1])
    cdef Geom g = make_geom(shape, k, s, p, d, out)
    check_shape(cols, (shape[0], g.c * g.kh * g.kw, g.ho * g.wo), "cols")
    return unfold_or_fold(True, t, cols, np.empty(shape, cols.dtype), &g)


cdef void *data_or_null(x):
    """Data pointer of an ndarray already checked, or NULL for None (a gradient not asked for)."""
    return NULL if x is None else array_data(x)


# The depthwise path pads each plane into per-thread scratch (its rows in sw column
# phases, and in the backward pass two more planes). Where padding or stride make that
# scratch far larger than the planes a call reads and writes (absurd geometry such as a
# stride of 2**31: sw phases of one element), the grouped im2col path runs instead, its
# memory in proportion to the output, as the reference's.
cdef Py_ssize_t DW_SCRATCH_RATIO = 8
cdef Py_ssize_t DW_SCRATCH_SLACK = 1 << 16


cdef tuple scratch_layout(const Geom *g, bint backward, bint spread):
    """(plen, gpad, gs, size) of one thread's depthwise scratch (DW's comment) as Python
    ints: with a stride near 2**40, (H + 2ph) rows of sw*plen columns overflow a Py_ssize_t."""
    plen = (g.w + 2 * g.pw + g.sw - 1) // g.sw       # padded columns per phase
    gpad = (g.h + 2 * g.ph) * (g.sw * plen) + CG_DW_SLACK   # plen is a Python int
    gs = gpad + (g.ho * CG_DW_ROW(g.wo) + CG_DW_SLACK if backward else 0)
    rows, cols = g.h + (g.kh - 1) * g.dh, g.w + (g.kw - 1) * g.dw
    return plen, gpad, gs, gs + (rows * cols + CG_DW_SLACK if spread else 0)


cdef bint is_depthwise(x, Py_ssize_t groups, const Geom *g, bint backward,
                       bint spread) except -1:
    """groups == C_in > 1, and the depthwise scratch in proportion to the planes."""
    if groups == 1 or groups != x.shape[1]:
        return False
    size = scratch_layout(g, backward, spread)[3]
    return size <= DW_SCRATCH_RATIO * (g.h * g.w + g.ho * g.wo) + DW_SCRATCH_SLACK


cdef DW depthwise_plan(const Geom *g, bint backward, bint spread, offsets) except *:
    """The geometry of a depthwise call (DW's comment), is_depthwise having bounded its
    scratch; offsets: a list that receives the two tap-offset tables (int arrays the
    caller keeps alive while DW is in use)."""
    cdef DW dw
    dw.plen, dw.gpad, dw.gs, dw.size = scratch_layout(g, backward, spread)
    i, j = np.divmod(np.arange(g.kh * g.kw), g.kw)
    # tap (i, j) of the forward pass: row i*dh, phase (j*dw) % sw, element (j*dw) // sw
    fwd = np.ascontiguousarray(i * g.dh * g.sw * dw.plen + j * g.dw % g.sw * dw.plen
                               + j * g.dw // g.sw, np.intp)
    dw.rows, dw.cols = g.h + (g.kh - 1) * g.dh, g.w + (g.kw - 1) * g.dw
    dw.top, dw.left = (g.kh - 1) * g.dh - g.ph, (g.kw - 1) * g.dw - g.pw
    tr = np.ascontiguousarray(i * g.dh * dw.cols + j * g.dw, np.intp)
    offsets += [fwd, tr]
    dw.fwd.ho, dw.fwd.wo, dw.fwd.sh, dw.fwd.kk = g.ho, g.wo, g.sh, g.kh * g.kw
    dw.fwd.pcols, dw.fwd.off = g.sw * dw.plen, <const Py_ssize_t *>array_data(fwd)
    dw.tr.ho, dw.tr.wo, dw.tr.sh, dw.tr.kk = g.h, g.w, 1, g.kh * g.kw
    dw.tr.pcols, dw.tr.off = dw.cols, <const Py_ssize_t *>array_data(tr)
    return dw


cdef object depthwise_forward(int t, x, weight, bias, const Geom *g):
    """conv2d_forward for groups == C_in: planes of x in parallel, each padded once."""
    cdef Py_ssize_t n = x.shape[0], cin = x.shape[1], cout = weight.shape[0]
    cdef int nt = threads_for(<double>n * cout * g.ho * g.wo * g.kh * g.kw)
    offsets = []
    cdef DW dw = depthwise_plan(g, False, False, offsets)
    scratch = np.zeros((nt, dw.size), x.dtype)
    b = np.zeros(cout, x.dtype) if bias is None else bias
    y = np.empty((n, cout, g.ho, g.wo), x.dtype)
    cdef void *px = array_data(x)
    cdef void *pw = array_data(weight)
    cdef void *pb = array_data(b)
    cdef void *py = array_data(y)
    cdef void *ps = array_data(scratch)
    with nogil:
        if t == cnp.NPY_FLOAT:
            depthwise_forward_impl(<float *>px, <float *>pw, <float *>pb, <float *>py,
                                   <float *>ps, g, &dw, n * cin, cin, cout // cin, nt)
        else:
            depthwise_forward_impl(<double *>px, <double *>pw, <double *>pb, <double *>py,
                                   <double *>ps, g, &dw, n * cin, cin, cout // cin, nt)
    return y


cdef tuple depthwise_backward(int t, grad_out, x, weight, bint want_x, const Geom *g):
    """conv2d_backward for groups == C_in: per input plane its gradient and its output
    planes' weight/bias lane sums (part (N, C_out, KH*KW + 1, lanes)), then those
    summed over the batch in image order and over the lanes by a fixed tree."""
    cdef Py_ssize_t n = x.shape[0], cin = x.shape[1], cout = weight.shape[0]
    cdef Py_ssize_t kk = g.kh * g.kw
    cdef int nt = threads_for(<double>n * cout * g.ho * g.wo * kk * (3 if want_x else 2))
    offsets = []
    cdef DW dw = depthwise_plan(g, True, want_x, offsets)
    scratch = np.zeros((nt, dw.size), x.dtype)
    part = np.empty((n, cout, kk + 1, 64 // x.itemsize), x.dtype)
    total = np.empty((cout, kk + 1), x.dtype)
    # the transposed correlation multiplies weights by zeros: exact for finite ones only
    cdef bint finite = bool(np.isfinite(weight).all())
    wflip = np.ascontiguousarray(weight[:, :, ::-1, ::-1])
    grad_x = np.empty(x.shape, x.dtype) if want_x else None
    cdef void *pgo = array_data(grad_out)
    cdef void *px = array_data(x)
    cdef void *pw = array_data(weight)
    cdef void *pwf = array_data(wflip)
    cdef void *pgx = data_or_null(grad_x)
    cdef void *pp = array_data(part)
    cdef void *pt = array_data(total)
    cdef void *ps = array_data(scratch)
    with nogil:
        if t == cnp.NPY_FLOAT:
            depthwise_backward_impl(<float *>pgo, <float *>px, <float *>pw, <float *>pwf,
                                    finite, <float *>pgx, <float *>pp, <float *>ps, g, &dw,
                                    n * cin, cin, cout // cin, nt)
            cg_dw_lanes_total_float(<float *>pp, <float *>pt, n, cout * (kk + 1))
        else:
            depthwise_backward_impl(<double *>pgo, <double *>px, <double *>pw, <double *>pwf,
                                    finite, <double *>pgx, <double *>pp, <double *>ps, g, &dw,
                                    n * cin, cin, cout // cin, nt)
            cg_dw_lanes_total_double(<double *>pp, <double *>pt, n, cout * (kk + 1))
    grad_w = np.ascontiguousarray(total[:, :kk]).reshape(weight.shape)
    return grad_x, grad_w, np.ascontiguousarray(total[:, kk])


cdef tuple check_conv(x, weight, stride, padding, dilation, groups):
    """Validate x, weight, groups and the geometry (in the reference's order); return
    (dtype number, groups, (k, s, p, d, out))."""
    cdef int t = float_array(x, "x")
    same_dtype(float_array(weight, "weight"), t, weight, "weight", "x")
    check_ndim(x, 4, "x")
    check_ndim(weight, 4, "weight")
    groups = check_conv_weight(x, weight, groups)
    return t, groups, conv_geometry(x.shape[2:], weight.shape[2:], stride, padding, dilation,
                                    channels=x.shape[1] // groups)


def conv2d_forward(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1):
    """y = conv2d(x, weight) + bias, as torch.nn.functional.conv2d.

    x (N, C_in, H, W), weight (C_out, C_in/groups, KH, KW), bias (C_out,) or None, all
    of one dtype; returns y (N, C_out, H_out, W_out). Per image and group: im2col into
    a thread-private buffer, then one GEMM with the bias fused (module docstring);
    depthwise (groups == C_in > 1): direct 2-D correlations of the planes.
    """
    cdef int t
    t, groups, (k, s, p, d, out) = check_conv(x, weight, stride, padding, dilation, groups)
    cdef Py_ssize_t n = x.shape[0], cout = weight.shape[0], G = groups
    if bias is not None:
        same_dtype(float_array(bias, "bias"), t, bias, "bias", "x")
        check_shape(bias, (cout,), "bias")
    cdef Geom g = make_geom(x.shape, k, s, p, d, out, G)
    if is_depthwise(x, G, &g, False, False):
        return depthwise_forward(t, x, weight, bias, &g)
    cdef Py_ssize_t K = g.c * g.kh * g.kw, L = g.ho * g.wo, kb = K
    wext = weight
    if bias is not None:
        wext = np.concatenate([weight.reshape(cout, K), bias.reshape(cout, 1)], axis=1)
        kb = K + 1
    # fewer items than threads: items in turn, each GEMM on all threads
    cdef int nt = threads_for(<double>n * cout * kb * L)
    cdef int nbuf = nt if n * G >= nt else 1
    buf = np.empty((nbuf, kb, L), x.dtype)
    if kb > K:
        buf[:, K, :] = 1
    y = np.empty((n, cout, g.ho, g.wo), x.dtype)
    cdef void *px = array_data(x)
    cdef void *pw = array_data(wext)
    cdef void *py = array_data(y)
    cdef void *pb = array_data(buf)
    cdef int rc
    with nogil:
        if t == cnp.NPY_FLOAT:
            rc = conv_forward_impl(<float *>px, <float *>pw, kb, <float *>py, <float *>pb,
                                   &g, n * G, G, cout // G, nt)
        else:
            rc = conv_forward_impl(<double *>px, <double *>pw, kb, <double *>py, <double *>pb,
                                   &g, n * G, G, cout // G, nt)
    if rc != 0:
        raise MemoryError("conv2d_forward: could not allocate GEMM packing buffers")
    return y


def conv2d_backward(grad_out, x, weight, *, stride=1, padding=0, dilation=1, groups=1,
                    input_grad=True):
    """Gradients of conv2d_forward: (grad_x or None, grad_weight, grad_bias).

    g = grad_out (N, C_out, H_out, W_out). grad_weight = sum_n g[n] @ cols[n]^T and
    grad_bias = sum over n and positions of g (per group: the group's rows), both
    summed in a fixed order (chunks of images, partials added in chunk order):
    bitwise identical for any thread count. grad_x = col2im(W^T @ g[n]) per image and
    group, skipped (None) when input_grad is False (a first layer never needs it).
    Depthwise (groups == C_in > 1): direct loops over planes, conv_depthwise.h.
    """
    cdef int t
    t, groups, (k, s, p, d, out) = check_conv(x, weight, stride, padding, dilation, groups)
    same_dtype(float_array(grad_out, "grad_out"), t, grad_out, "grad_out", "x")
    check_ndim(grad_out, 4, "grad_out")
    cdef Py_ssize_t G = groups
    cdef Geom g = make_geom(x.shape, k, s, p, d, out, G)
    cdef Py_ssize_t n = x.shape[0], cout = weight.shape[0]
    cdef Py_ssize_t K = g.c * g.kh * g.kw, L = g.ho * g.wo
    check_shape(grad_out, (n, cout, g.ho, g.wo), "grad_out")
    cdef bint want_x = bool(input_grad)
    if is_depthwise(x, G, &g, True, want_x):
        return depthwise_backward(t, grad_out, x, weight, want_x, &g)
    cdef int nt = threads_for(<double>n * cout * K * L * (3 if want_x else 2))
    # partial slots: a few per thread, within a memory budget (schedule only)
    cdef Py_ssize_t win = 1 if nt == 1 else max(nt, min(4 * nt, PARTIAL_BYTES // (
        cout * (K + 1) * x.itemsize)))
    total = np.empty((cout, K + 1), x.dtype)
    part = np.empty((win, cout, K + 1), x.dtype)
    cbuf = np.empty((nt, K + 1, L), x.dtype)
    dbuf = np.empty(nt * K * L if want_x else 1, x.dtype)
    grad_x = np.empty(x.shape, x.dtype) if want_x else None
    cdef void *pgo = array_data(grad_out)
    cdef void *px = array_data(x)
    cdef void *pw = array_data(weight)
    cdef void *pgx = data_or_null(grad_x)
    cdef void *pt = array_data(total)
    cdef void *pp = array_data(part)
    cdef void *pc = array_data(cbuf)
    cdef void *pd = array_data(dbuf)
    cdef int rc
    with nogil:
        if t == cnp.NPY_FLOAT:
            rc = conv_backward_impl(<float *>pgo, <float *>px, <float *>pw, <float *>pgx,
                                    <float *>pt, <float *>pp, win, <float *>pc, <float *>pd,
                                    &g, n, G, cout, nt)
        else:
            rc = conv_backward_impl(<double *>pgo, <double *>px, <double *>pw, <double *>pgx,
                                    <double *>pt, <double *>pp, win, <double *>pc,
                                    <double *>pd, &g, n, G, cout, nt)
    if rc != 0:
        raise MemoryError("conv2d_backward: could not allocate GEMM packing buffers")
    grad_w = np.ascontiguousarray(total[:, :K]).reshape(weight.shape)
    return grad_x, grad_w, np.ascontiguousarray(total[:, K])
