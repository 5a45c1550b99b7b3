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
    n, c, co = draw(st.integers(1, 5)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    assume(all(hw + 2 * pp >= dd * (kk - 1) + 1 for hw, pp, dd, kk in zip((h, w), p, d, k)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    bias = draw(st.booleans())
    return (n, c, h, w), (co, c) + k, dict(stride=s, padding=p, dilation=d), dtype, bias


@settings(max_examples=200, deadline=None)
@given(conv_case(), st.integers(0, 2**32 - 1))
def test_backends_agree(case, seed):
    xs, ws, kw, dtype, with_bias = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if with_bias else None
    close(K.im2col(x, ws[2:], **kw), R.im2col(x, ws[2:], **kw), dtype)
    y = R.conv2d_forward(x, w, b, **kw)
    k = ws[1] * ws[2] * ws[3]
    close(K.conv2d_forward(x, w, b, **kw), y, dtype, k)
    g = rng.standard_normal(y.shape).astype(dtype)
    cols = rng.standard_normal(R.im2col(x, ws[2:], **kw).shape).astype(dtype)
    close(K.col2im(cols, xs, ws[2:], **kw), R.col2im(cols, xs, ws[2:], **kw), dtype, k)
    terms = (ws[0] * k, y.size // ws[0], y.size // ws[0])    # grad_x, grad_w, grad_b
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
def test_empty_batch(B):
    x, w = np.zeros((0, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    y = B.conv2d_forward(x, w, np.ones(3, np.float32))
    assert y.shape == (0, 3, 3, 3)
    gx, gw, gb = B.conv2d_backward(y, x, w)
    assert gx.shape == x.shape and not gw.any() and not gb.any()


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


X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)
G = np.zeros((2, 4, 6, 6), np.float32)
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
]


@pytest.mark.parametrize("B", BACKENDS)
@pytest.mark.parametrize("name, exc, call", BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_input(B, name, exc, call):
    with pytest.raises(exc, match=name):
        call(B)


def test_geometry_matches_torch_formula():
    assert conv_geometry((28, 28), 3, 1, 0, 1)[-1] == (26, 26)
    assert conv_geometry((13, 13), (3, 3), 2, 1, 2)[-1] == (6, 6)
