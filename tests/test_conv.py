"""Convolution: compiled kernels against the NumPy reference, finite differences and torch."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cygrad as cg
from cygrad import kernels as K
from cygrad import reference as R
from cygrad.reference._checks import conv_geometry
from cygrad.testing import gradcheck

TOL = {np.float64: 1e-12, np.float32: 1e-5}
BACKENDS = [pytest.param(K, id="kernels"), pytest.param(R, id="reference")]


def close(a, b, dtype, terms=1):
    """max |a - b| within the dtype's tolerance, relative to max(1, max |b|, sqrt(terms)):
    an output summing `terms` unit-scale products is of order sqrt(terms) even where
    it cancels to near 0, and its rounding error scales with that, not with the result."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.dtype(dtype)
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 0.0, terms ** 0.5)
    err = float(np.max(np.abs(a.astype(np.float64) - b))) / scale if b.size else 0.0
    assert err <= TOL[dtype], f"relative error {err:.3g}"


@st.composite
def conv_case(draw):
    # groups: 1, general (2-4 groups of 1-3 channels) or depthwise (C_in groups, any multiplier)
    kind = draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    if kind == "plain":
        groups, c, co = 1, draw(st.integers(1, 7)), draw(st.integers(1, 7))
    else:
        groups = draw(st.integers(2, 4))
        c = groups * (1 if kind == "depthwise" else draw(st.integers(1, 3)))
        co = groups * draw(st.integers(1, 3))
    n = draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    assume(all(hw + 2 * pp >= dd * (kk - 1) + 1 for hw, pp, dd, kk in zip((h, w), p, d, k)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    bias = draw(st.booleans())
    geometry = dict(stride=s, padding=p, dilation=d)
    return (n, c, h, w), (co, c // groups) + k, geometry, groups, dtype, bias


@settings(max_examples=300, deadline=None)
@given(conv_case(), st.integers(0, 2**32 - 1))
def test_backends_agree(case, seed):
    xs, ws, geometry, groups, dtype, with_bias = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if with_bias else None
    close(K.im2col(x, ws[2:], **geometry), R.im2col(x, ws[2:], **geometry), dtype)
    kw = dict(geometry, groups=groups)
    y = R.conv2d_forward(x, w, b, **kw)
    k = ws[1] * ws[2] * ws[3]
    close(K.conv2d_forward(x, w, b, **kw), y, dtype, k)
    g = rng.standard_normal(y.shape).astype(dtype)
    cols = rng.standard_normal(R.im2col(x, ws[2:], **geometry).shape).astype(dtype)
    close(K.col2im(cols, xs, ws[2:], **geometry), R.col2im(cols, xs, ws[2:], **geometry), dtype, k)
    terms = (ws[0] // groups * ws[2] * ws[3], y.size // ws[0], y.size // ws[0])  # x, w, b grads
    want = R.conv2d_backward(g, x, w, **kw)
    for got, ref, t in zip(K.conv2d_backward(g, x, w, **kw), want, terms):
        close(got, ref, dtype, t)
    gx, gw, gb = K.conv2d_backward(g, x, w, input_grad=False, **kw)
    assert gx is None
    close(gw, want[1], dtype, terms[1])


@pytest.fixture(params=[True, False], ids=["simd", "plain"])
def simd(request):
    """Run a test on the AVX-512 row-segment path (where the CPU has it) and on the plain loops."""
    old = K.conv._use_avx512(request.param)
    yield request.param
    K.conv._use_avx512(old)


@pytest.mark.parametrize("kw", [dict(), dict(padding=2), dict(stride=2, padding=(1, 3)),
                                dict(padding=1, dilation=(1, 2))])
@pytest.mark.parametrize("shape", [(2, 3, 9, 7), (1, 2, 5, 40), (2, 2, 30, 11)])   # rows <16, >16
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_paths_exact(simd, kw, shape, dtype):
    # both row-segment paths do the same arithmetic per element: equal to the reference
    # bit for bit in im2col, and within rounding in col2im
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape).astype(dtype)
    cols = K.im2col(x, (3, 3), **kw)
    assert np.array_equal(cols, R.im2col(x, (3, 3), **kw))
    c = rng.standard_normal(cols.shape).astype(dtype)
    close(K.col2im(c, shape, (3, 3), **kw), R.col2im(c, shape, (3, 3), **kw), dtype, 9)
    w = rng.standard_normal((4, shape[1], 3, 3)).astype(dtype)
    y = R.conv2d_forward(x, w, **kw)
    for got, ref in zip(K.conv2d_backward(y, x, w, **kw), R.conv2d_backward(y, x, w, **kw)):
        close(got, ref, dtype, y.size)


@pytest.mark.parametrize("kw", [dict(), dict(padding=2), dict(stride=2, padding=(1, 3))])
@pytest.mark.parametrize("shape", [(2, 3, 9, 7), (1, 2, 5, 40), (2, 2, 30, 11)])
def test_simd_and_plain_paths_bitwise(kw, shape):
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(shape), rng.standard_normal((4, shape[1], 3, 3))
    c = rng.standard_normal(K.im2col(x, 3, **kw).shape)
    runs = []
    old = K.conv._use_avx512(True)
    try:
        for on in (True, False):
            K.conv._use_avx512(on)
            y = K.conv2d_forward(x, w, **kw)
            runs.append((K.im2col(x, 3, **kw), K.col2im(c, shape, 3, **kw), y)
                        + K.conv2d_backward(y, x, w, **kw))
    finally:
        K.conv._use_avx512(old)
    for a, b in zip(*runs):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("B", BACKENDS)
@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(stride=(1, 2), padding=(2, 0), dilation=(2, 1))])
def test_im2col_col2im_adjoint(B, kw):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = B.im2col(x, (3, 2), **kw)
    c = rng.standard_normal(cols.shape)
    lhs, rhs = np.vdot(cols, c), np.vdot(x, B.col2im(c, x.shape, (3, 2), **kw))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("B", BACKENDS)
@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(padding=(1, 2), dilation=2)])
def test_conv_gradcheck(B, kw):
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 2)), rng.standard_normal(3)
    gradcheck(lambda x, w, b: B.conv2d_forward(x, w, b, **kw), [x, w, b],
              lambda g: B.conv2d_backward(g, x, w, **kw))


def test_first_layer_path_gradcheck():
    # C_in = 1, K + 1 <= 32: the direct (non-GEMM) weight-gradient path
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((3, 1, 9, 8)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)
    gradcheck(lambda w, b: K.conv2d_forward(x, w, b), [w, b],
              lambda g: K.conv2d_backward(g, x, w, input_grad=False)[1:])


@pytest.mark.parametrize("B", BACKENDS)
@pytest.mark.parametrize("groups, c, ws", [(1, 2, (3, 2, 3, 3)), (2, 4, (4, 2, 3, 3)),   # GEMM
                                          (2, 2, (4, 1, 3, 3))])                     # depthwise
def test_empty_batch(B, groups, c, ws):
    x, w = np.zeros((0, c, 5, 5), np.float32), np.ones(ws, np.float32)
    y = B.conv2d_forward(x, w, np.ones(ws[0], np.float32), groups=groups)
    assert y.shape == (0, ws[0], 3, 3)
    gx, gw, gb = B.conv2d_backward(y, x, w, groups=groups)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (ws[0],)
    assert not gw.any() and not gb.any()


@pytest.mark.parametrize("xs, ws", [((37, 6, 14, 14), (8, 6, 3, 3)),     # GEMM path, 10 chunks: 2 waves
                                     ((10, 1, 28, 28), (8, 1, 3, 3)),     # first-layer path
                                     ((1, 16, 20, 20), (16, 16, 5, 5))])  # one image: parallel GEMM
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_bitwise(xs, ws, dtype):
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    kw = dict(stride=1, padding=1)
    runs = []
    for nt in (1, 2):
        with cg.threads(nt):
            y = K.conv2d_forward(x, w, b, **kw)
            g = np.cos(y)
            runs.append((y, K.im2col(x, ws[2:], **kw)) + K.conv2d_backward(g, x, w, **kw))
    for a, b_ in zip(*runs):
        assert a.tobytes() == b_.tobytes()


def test_torch_oracle():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    for kw in [dict(), dict(stride=2, padding=1), dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2))]:
        for dtype in (np.float64, np.float32):
            x, w = rng.standard_normal((4, 3, 11, 9)).astype(dtype), rng.standard_normal((5, 3, 3, 3)).astype(dtype)
            b = rng.standard_normal(5).astype(dtype)
            xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
            yt = F.conv2d(xt, wt, bt, **kw)
            g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
            yt.backward(torch.tensor(g))
            for B in (K, R):
                close(B.conv2d_forward(x, w, b, **kw), yt.detach().numpy(), dtype, 27)
                for got, want in zip(B.conv2d_backward(g, x, w, **kw), (xt.grad, wt.grad, bt.grad)):
                    close(got, want.numpy(), dtype, g.size // 5)
                cols = B.im2col(x, (3, 3), **kw)
                close(cols, F.unfold(torch.tensor(x), (3, 3), **kw).numpy(), dtype)
                close(B.col2im(cols, x.shape, (3, 3), **kw),
                      F.fold(torch.tensor(cols), x.shape[2:], (3, 3), **kw).numpy(), dtype)


# ---- groups: general (per-group GEMMs) and depthwise (direct loops, any multiplier)

# (groups, input channels per group, output channels per group)
GROUPS = [(2, 3, 2), (4, 2, 1), (3, 1, 1), (4, 1, 2), (3, 1, 3)]
GROUP_IDS = ["g2", "g4", "depthwise", "depthwise-x2", "depthwise-x3"]
# (kernel, geometry): stride and dilation on either axis, padding wider than the
# dilated kernel reaches (1x1 with padding 1), a window that does not tile the input,
# and more taps than the depthwise weight gradient sums in one pass (5x5: 16 + 9)
GROUP_CASES = [((3, 3), dict()), ((3, 3), dict(stride=2, padding=1)),
               ((3, 5), dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2))),
               ((3, 3), dict(padding=2, dilation=2)), ((1, 1), dict(padding=1)),
               ((5, 2), dict(stride=3, padding=(2, 1))), ((5, 5), dict(stride=(1, 2), padding=2))]


def group_data(groups, cin, cout, kernel, dtype, seed, shape=(3, 11, 9)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((shape[0], groups * cin) + shape[1:]).astype(dtype)
    w = rng.standard_normal((groups * cout, cin) + kernel).astype(dtype)
    return x, w, rng.standard_normal(groups * cout).astype(dtype), rng


def torch_conv(torch, x, w, b, g, dtype, **kw):
    """(y, grad_x, grad_w, grad_b) of torch's conv2d in dtype, as float64 arrays."""
    xt, wt, bt = (torch.tensor(a.astype(dtype), requires_grad=True) for a in (x, w, b))
    y = torch.nn.functional.conv2d(xt, wt, bt, **kw)
    y.backward(torch.tensor(g.astype(dtype)))
    return [a.detach().numpy().astype(np.float64) for a in (y, xt.grad, wt.grad, bt.grad)]


def within_ulps(got, exact, scale, ulps):
    """|got - exact| <= ulps float32 ulps of scale, elementwise; scale = the same sums over
    absolute values, the unit of a sum's rounding error (near-cancelling sums included)."""
    err = np.abs(got.astype(np.float64) - exact) / (np.finfo(np.float32).eps * np.maximum(scale, 1e-30))
    assert got.dtype == np.float32 and err.max(initial=0) <= ulps, f"{err.max():.2f} ulps"


@pytest.mark.parametrize("kernel, geometry", GROUP_CASES, ids=str)
@pytest.mark.parametrize("groups, cin, cout", GROUPS, ids=GROUP_IDS)
def test_groups_torch_oracle(groups, cin, cout, kernel, geometry):
    torch = pytest.importorskip("torch")
    kw = dict(geometry, groups=groups)
    x, w, b, rng = group_data(groups, cin, cout, kernel, np.float64, 9)
    g = rng.standard_normal(R.conv2d_forward(x, w, **kw).shape)
    exact = torch_conv(torch, x, w, b, g, np.float64, **kw)
    terms = [cin * kernel[0] * kernel[1], cout * kernel[0] * kernel[1], g.size // w.shape[0],
             g.size // w.shape[0]]
    for B in (K, R):
        ours = [B.conv2d_forward(x, w, b, **kw)] + list(B.conv2d_backward(g, x, w, **kw))
        for got, want, t in zip(ours, exact, terms):
            close(got, want, np.float64, t)
    # float32: within 4 ulps of the exact result, in units of the absolute sums
    x32, w32, b32, g32 = (a.astype(np.float32) for a in (x, w, b, g))
    exact = torch_conv(torch, x32, w32, b32, g32, np.float64, **kw)
    scale = torch_conv(torch, np.abs(x32), np.abs(w32), np.abs(b32), np.abs(g32), np.float64, **kw)
    for B in (K, R):
        ours = [B.conv2d_forward(x32, w32, b32, **kw)] + list(B.conv2d_backward(g32, x32, w32, **kw))
        for got, want, sc in zip(ours, exact, scale):
            within_ulps(got, want, sc, 4)


@pytest.mark.parametrize("B", BACKENDS)
@pytest.mark.parametrize("kernel, geometry", GROUP_CASES[:4] + GROUP_CASES[5:], ids=str)
@pytest.mark.parametrize("groups, cin, cout", GROUPS, ids=GROUP_IDS)
def test_groups_gradcheck(B, groups, cin, cout, kernel, geometry):
    x, w, b, _ = group_data(groups, cin, cout, kernel, np.float64, 10, shape=(2, 7, 6))
    kw = dict(geometry, groups=groups)
    gradcheck(lambda x, w, b: B.conv2d_forward(x, w, b, **kw), [x, w, b],
              lambda g: B.conv2d_backward(g, x, w, **kw))


@pytest.mark.parametrize("groups, cin, cout", GROUPS, ids=GROUP_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_groups_compiled_vs_reference(groups, cin, cout, dtype):
    # sizes around the vector blocks of the depthwise loops: rows of 1, 7, 16, 17 and 40
    for shape in [(2, 5, 1), (2, 9, 7), (1, 6, 16), (2, 4, 17), (1, 3, 40)]:
        for kernel, geometry in GROUP_CASES:
            if any(shape[1 + i] + 2 * np.broadcast_to(geometry.get("padding", 0), 2)[i]
                   < np.broadcast_to(geometry.get("dilation", 1), 2)[i] * (kernel[i] - 1) + 1
                   for i in range(2)):
                continue
            x, w, b, rng = group_data(groups, cin, cout, kernel, dtype, 11, shape=shape)
            kw = dict(geometry, groups=groups)
            y = R.conv2d_forward(x, w, b, **kw)
            close(K.conv2d_forward(x, w, b, **kw), y, dtype, cin * kernel[0] * kernel[1])
            g = rng.standard_normal(y.shape).astype(dtype)
            terms = (cout * kernel[0] * kernel[1], y.size // w.shape[0], y.size // w.shape[0])
            for got, want, t in zip(K.conv2d_backward(g, x, w, **kw), R.conv2d_backward(g, x, w, **kw),
                                    terms):
                close(got, want, dtype, t)
            gx, gw, gb = K.conv2d_backward(g, x, w, input_grad=False, **kw)
            assert gx is None


@pytest.mark.parametrize("xs, ws, kw", [
    ((8, 16, 20, 20), (16, 1, 3, 3), dict(padding=1, groups=16)),           # depthwise
    ((5, 6, 23, 19), (12, 1, 3, 3), dict(stride=2, padding=1, groups=6)),   # multiplier 2
    ((37, 8, 14, 14), (8, 2, 3, 3), dict(padding=1, groups=4)),             # shallow groups
    ((9, 16, 13, 13), (32, 8, 3, 3), dict(groups=2))])                      # GEMM groups
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_groups_thread_count_bitwise(xs, ws, kw, dtype):
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    runs = []
    for nt in (1, 2):
        with cg.threads(nt):
            y = K.conv2d_forward(x, w, b, **kw)
            runs.append((y,) + K.conv2d_backward(np.cos(y), x, w, **kw))
    for a, b_ in zip(*runs):
        assert a.tobytes() == b_.tobytes()


def test_groups_one_is_the_plain_convolution():
    rng = np.random.default_rng(13)
    x, w, b = rng.standard_normal((3, 4, 9, 8)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    for B in (K, R):
        y = B.conv2d_forward(x, w, b, padding=1)
        assert B.conv2d_forward(x, w, b, padding=1, groups=1).tobytes() == y.tobytes()
        for a, c in zip(B.conv2d_backward(y, x, w, padding=1),
                        B.conv2d_backward(y, x, w, padding=1, groups=1)):
            assert a.tobytes() == c.tobytes()


def test_groups_are_independent_convolutions():
    # group g's outputs are the plain convolution of its own input channels
    rng = np.random.default_rng(14)
    x, w, b = rng.standard_normal((2, 6, 8, 7)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    y = K.conv2d_forward(x, w, b, stride=2, padding=1, groups=2)
    for g in range(2):
        part = K.conv2d_forward(np.ascontiguousarray(x[:, 3 * g:3 * g + 3]), w[2 * g:2 * g + 2].copy(),
                                b[2 * g:2 * g + 2].copy(), stride=2, padding=1)
        close(y[:, 2 * g:2 * g + 2], part, np.float64, 27)


@pytest.mark.parametrize("geometry", [dict(stride=2), dict(padding=1)], ids=["stride2", "stride1"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_nan_and_inf_as_the_spec(dtype, geometry):
    # inf/NaN in x, g and w: the same NaN/inf pattern as the reference (im2col/col2im). A
    # non-finite weight takes the plain transposed loops (0 * inf would be NaN otherwise).
    # Stride 1: the vector lanes past a row's end read the next rows' inf (masked out of
    # grad_w); stride 2 leaves x's last column and row unread: their inf must not reach grad_w.
    rng = np.random.default_rng(15)
    x, w = rng.standard_normal((2, 3, 10, 10)).astype(dtype), rng.standard_normal((6, 1, 3, 3)).astype(dtype)
    x[0, 0, 9, 3] = x[1, 2, 4, 9] = np.inf
    kw = dict(geometry, groups=3)
    g = rng.standard_normal(R.conv2d_forward(x, w, **kw).shape).astype(dtype)
    for xi, wi, gi in [(x, w, g), (np.where(x == np.inf, np.nan, x), w, g)]:
        gi = gi.copy()
        gi[1, 4, 2, 2] = np.inf
        wi = wi.copy()
        wi[4, 0, 0, 2] = -np.inf
        for args in [(xi, w, g), (xi, wi, gi)]:
            with np.errstate(all="ignore"):
                ours = [K.conv2d_forward(*args[:2], **kw)] + list(K.conv2d_backward(args[2], *args[:2], **kw))
                spec = [R.conv2d_forward(*args[:2], **kw)] + list(R.conv2d_backward(args[2], *args[:2], **kw))
            for a, r in zip(ours, spec):
                assert np.array_equal(np.isnan(a), np.isnan(r))
                assert np.array_equal(np.where(np.isinf(a), a, 0), np.where(np.isinf(r), r, 0))
                fin = np.isfinite(r)
                np.testing.assert_allclose(a[fin], r[fin], rtol=1e-4, atol=1e-5)
    if "stride" in geometry:
        assert np.isfinite(K.conv2d_backward(g, x, w, **kw)[1]).all()


def test_depthwise_with_a_huge_stride_runs_the_grouped_path():
    # The depthwise scratch holds (H + 2ph) padded rows of sw column phases: 2**24 rows at a
    # stride of 2**40 are 2**64 elements, which wrapped to 0 in C (a 16-element buffer, then
    # writes far past it: a segfault). Scratch out of proportion to the planes now goes to
    # the grouped im2col path, whose memory follows the output (here 16 x 1).
    x = np.arange(1, 5, dtype=np.float32).reshape(1, 2, 2, 1)
    w = np.full((2, 1, 1, 1), 2, np.float32)
    kw = dict(padding=(2**23 - 1, 0), stride=(2**20, 2**40), groups=2)
    y = K.conv2d_forward(x, w, **kw)
    # output row oh reads input row oh * 2**20 - (2**23 - 1): row 1 at oh = 8, none elsewhere
    want = np.zeros((1, 2, 16, 1), np.float32)
    want[0, :, 8, 0] = 2 * x[0, :, 1, 0]
    assert np.array_equal(y, want)
    gx, gw, gb = K.conv2d_backward(np.ones_like(y), x, w, **kw)
    assert np.array_equal(gx[0, :, :, 0], [[0, 2], [0, 2]])
    assert np.array_equal(gw.ravel(), x[0, :, 1, 0]) and np.array_equal(gb, [16, 16])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_with_a_stride_beyond_the_input_matches_the_spec(dtype):
    # stride 2**31 (found by the fuzzer): the depthwise scratch would be 2**31 x rows, the
    # reference needs next to nothing; the grouped path computes what the reference does
    rng = np.random.default_rng(16)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in [(5, 5, 4, 3), (10, 1, 2, 2), (10,)])
    kw = dict(stride=2**31, padding=1, groups=5)
    y = K.conv2d_forward(x, w, b, **kw)
    close(y, R.conv2d_forward(x, w, b, **kw), dtype, 4)
    for a, r in zip(K.conv2d_backward(np.cos(y), x, w, **kw), R.conv2d_backward(np.cos(y), x, w, **kw)):
        close(a, r, dtype, 4)


X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)
G = np.zeros((2, 4, 6, 6), np.float32)
X4 = np.zeros((2, 4, 8, 8), np.float32)
BAD = [
    ("x", TypeError, lambda B: B.conv2d_forward(X.tolist(), W)),
    ("x", TypeError, lambda B: B.conv2d_forward(X.astype(np.int32), W)),
    ("x", ValueError, lambda B: B.conv2d_forward(X[0], W)),
    ("x", ValueError, lambda B: B.conv2d_forward(np.asfortranarray(X), W)),
    ("weight", TypeError, lambda B: B.conv2d_forward(X, W.astype(np.float64))),
    ("weight", ValueError, lambda B: B.conv2d_forward(X, W[:, :2].copy())),
    ("weight", ValueError, lambda B: B.conv2d_forward(X, W[0])),
    ("kernel_size", ValueError, lambda B: B.conv2d_forward(X, np.zeros((4, 3, 9, 3), np.float32))),
    ("stride", ValueError, lambda B: B.conv2d_forward(X, W, stride=0)),
    ("stride", TypeError, lambda B: B.conv2d_forward(X, W, stride=1.5)),
    ("padding", ValueError, lambda B: B.conv2d_forward(X, W, padding=-1)),
    ("dilation", ValueError, lambda B: B.conv2d_forward(X, W, dilation=(1, 0))),
    ("bias", ValueError, lambda B: B.conv2d_forward(X, W, np.zeros(3, np.float32))),
    ("bias", TypeError, lambda B: B.conv2d_forward(X, W, np.zeros(4))),
    ("grad_out", ValueError, lambda B: B.conv2d_backward(G[:, :3].copy(), X, W)),
    ("grad_out", ValueError, lambda B: B.conv2d_backward(G[0], X, W)),
    ("grad_out", TypeError, lambda B: B.conv2d_backward(G.astype(np.float64), X, W)),
    ("weight", ValueError, lambda B: B.conv2d_backward(G, X, W[:, :1].copy())),
    ("kernel_size", ValueError, lambda B: B.im2col(X, 0)),
    ("kernel_size", ValueError, lambda B: B.im2col(X, 9)),
    ("x", ValueError, lambda B: B.im2col(X[0], 3)),
    ("cols", ValueError, lambda B: B.col2im(np.zeros((2, 27, 35), np.float32), X.shape, 3)),
    ("x_shape", TypeError, lambda B: B.col2im(np.zeros((2, 27, 36), np.float32), (3, 8, 8), 3)),
    ("x_shape", ValueError, lambda B: B.col2im(np.zeros((2, 27, 36), np.float32), (2, 3, 0, 8), 3)),
    ("groups", ValueError, lambda B: B.conv2d_forward(X4, W[:, :1].copy(), groups=0)),
    ("groups", ValueError, lambda B: B.conv2d_forward(X4, W[:, :1].copy(), groups=-4)),
    ("groups", TypeError, lambda B: B.conv2d_forward(X4, W[:, :1].copy(), groups=2.0)),
    ("groups", TypeError, lambda B: B.conv2d_forward(X4, W[:, :1].copy(), groups=True)),
    ("groups", TypeError, lambda B: B.conv2d_backward(G, X4, W[:, :1].copy(), groups="4")),
    ("groups", ValueError, lambda B: B.conv2d_forward(X, W[:, :1].copy(), groups=2)),       # C_in 3
    ("groups", ValueError, lambda B: B.conv2d_forward(X4, np.zeros((6, 1, 3, 3), np.float32),
                                                        groups=4)),                         # C_out 6
    ("groups", ValueError, lambda B: B.conv2d_backward(np.zeros((2, 6, 6, 6), np.float32), X4,
                                                         np.zeros((6, 1, 3, 3), np.float32), groups=4)),
    ("weight", ValueError, lambda B: B.conv2d_forward(X4, W[:, :2].copy(), groups=4)),      # wants 1
    ("weight", ValueError, lambda B: B.conv2d_forward(X4, np.zeros((4, 4, 3, 3), np.float32), groups=2)),
    ("weight", ValueError, lambda B: B.conv2d_backward(G, X4, W[:, :2].copy(), groups=4)),
    ("bias", ValueError, lambda B: B.conv2d_forward(X4, W[:, :1].copy(), np.zeros(2, np.float32), groups=4)),
    ("grad_out", ValueError, lambda B: B.conv2d_backward(G[:, :2].copy(), X4, W[:, :1].copy(), groups=4)),
    ("grad_out", ValueError, lambda B: B.conv2d_backward(G[..., :5].copy(), X4, W[:, :1].copy(), groups=4)),
    ("grad_out", TypeError, lambda B: B.conv2d_backward(G.astype(np.float64), X4, W[:, :1].copy(), groups=4)),
    # the geometry is checked before bias and grad_out, on both backends
    ("stride", ValueError, lambda B: B.conv2d_forward(X, W, np.zeros(4, np.int32), stride=0)),
    ("padding", ValueError, lambda B: B.conv2d_backward(G.astype(bool), X, W, padding=-1)),
    # shared limits: each value at most 2**40, the padded plane 2**31 positions, an x_shape
    # and one image's column matrix 2**60 elements (beyond, C sizes could wrap around)
    ("stride", ValueError, lambda B: B.conv2d_forward(X, W, stride=10**400)),
    ("dilation", ValueError, lambda B: B.im2col(X, 1, dilation=(1, 2**40 + 1))),
    ("kernel_size", ValueError, lambda B: B.col2im(np.zeros((2, 27, 36), np.float32), X.shape, 2**41)),
    ("padding", ValueError, lambda B: B.conv2d_forward(X, W, padding=(2**31 - 1, 0))),
    ("padding", ValueError, lambda B: B.im2col(X, 3, padding=2**40)),
    ("x_shape", ValueError, lambda B: B.col2im(np.zeros((0, 9, 36), np.float32), (0, 2**40, 2**40, 1), 3)),
    ("column matrix", ValueError,
     lambda B: B.col2im(np.zeros((0, 2**30, 2**30), np.float32), (0, 2**30, 2**15, 2**15), 1)),
]


@pytest.mark.parametrize("B", BACKENDS)
@pytest.mark.parametrize("name, exc, call", BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_input(B, name, exc, call):
    with pytest.raises(exc, match=name):
        call(B)


def test_geometry_matches_torch_formula():
    assert conv_geometry((28, 28), 3, 1, 0, 1)[-1] == (26, 26)
    assert conv_geometry((13, 13), (3, 3), 2, 1, 2)[-1] == (6, 6)


def test_geometry_limits_are_inclusive():
    # 2**40 per value and a 2**31-position padded plane are accepted, one more is not
    assert conv_geometry((1, 1), 1, 2**40, 0, 2**40)[-1] == (1, 1)
    assert conv_geometry((2, 2), 1, 2**40, (2**15 - 1, 2**14 - 1), 1)[-1] == (1, 1)  # 2**16 x 2**15
    with pytest.raises(ValueError, match="padding"):
        conv_geometry((2, 2), 1, 2**40, (2**15 - 1, 2**14), 1)
    with pytest.raises(ValueError, match="stride"):
        conv_geometry((1, 1), 1, 2**40 + 1, 0, 1)
